//! A real PostgreSQL for the cluster tests: Debian's server binaries, a fresh cluster in a
//! temp directory on a free loopback port, stopped when dropped. As root (CI), the server
//! runs as the `postgres` user the package creates, as PostgreSQL refuses root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`).
fn server_binaries() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.flatten().map(|v| v.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).max()
    });
    found.unwrap_or_else(|| {
        panic!("the cluster tests need a PostgreSQL server: install Debian's `postgresql` (`apt-get install postgresql`, which scripts/test does)")
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_binaries();
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = running_as_root();
        let data = dir.path().join("data");
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { port, bin, data, as_postgres, _dir: dir };
        pg.run("initdb", &["-D", &pg.data_str(), "-A", "trust", "-U", "flowscope", "--no-sync"]);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg._dir.path().display()
        );
        let log = pg._dir.path().join("log").display().to_string();
        pg.run("pg_ctl", &["-D", &pg.data_str(), "-o", &options, "-l", &log, "-w", "start"]);
        pg
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The libpq connection string of database `name`.
    pub fn conninfo(&self, name: &str) -> String {
        format!("host=127.0.0.1 port={} user=flowscope dbname={name}", self.port)
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() { psql } else { Path::new("psql").to_owned() };
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "flowscope", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let data = self.data_str();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&path).args(args).output()
        } else {
            Command::new(&path).args(args).output()
        };
    }
}

/// Where the test script installed the lake extensions' PyPI packages.
pub fn lake_extensions() -> PathBuf {
    match std::env::var_os("FLOWSCOPE_TEST_LAKE_EXTENSIONS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "the cluster tests need the DuckLake, postgres and parquet extensions: run scripts/test, which installs \
             them, or `pip install --target DIR duckdb-extension-ducklake==1.5.5 \
             duckdb-extension-postgres-scanner==1.5.5 duckdb-extension-parquet==1.5.5` and set \
             FLOWSCOPE_TEST_LAKE_EXTENSIONS=DIR"
        ),
    }
}
