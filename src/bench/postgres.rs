//! A real PostgreSQL for `bench cluster` and the cluster tests: Debian's server binaries,
//! a fresh cluster in a temp directory on a free loopback port, stopped when dropped. As
//! root, the server runs as the `postgres` user the package creates, as PostgreSQL
//! refuses root.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BenchError;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// Removed when dropped.
    dir: PathBuf,
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`).
fn server_binaries() -> Result<PathBuf, BenchError> {
    let found = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.flatten().map(|v| v.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).max()
    });
    found.ok_or_else(|| {
        BenchError::Server(
            "a cluster needs a PostgreSQL server: install Debian's `postgresql` (`apt-get install postgresql`, which scripts/test does)".into(),
        )
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Result<Postgres, BenchError> {
        let bin = server_binaries()?;
        let dir = super::tempfile_dir()?;
        let as_postgres = running_as_root();
        let data = dir.join("data");
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Postgres { port, bin, data, as_postgres, dir };
        pg.run("initdb", &["-D", &pg.data_str(), "-A", "trust", "-U", "flowscope", "--no-sync"])?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg.dir.display()
        );
        let log = pg.dir.join("log").display().to_string();
        pg.run("pg_ctl", &["-D", &pg.data_str(), "-o", &options, "-l", &log, "-w", "start"])?;
        Ok(pg)
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), BenchError> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .output()
            .map_err(|e| BenchError::Server(format!("cannot run {}: {e}", path.display())))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(BenchError::Server(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))),
        }
    }

    /// The libpq connection string of database `name`.
    pub fn conninfo(&self, name: &str) -> String {
        format!("host=127.0.0.1 port={} user=flowscope dbname={name}", self.port)
    }

    /// Creates database `name`.
    /// Creates database `name` (letters, digits and underscores).
    pub fn create_database(&self, name: &str) -> Result<(), BenchError> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(BenchError::Server(format!("not a plain database name: {name:?}")));
        }
        let psql = self.bin.join("psql");
        let psql = if psql.exists() { psql } else { Path::new("psql").to_owned() };
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "flowscope", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()?;
        match out.status.success() {
            true => Ok(()),
            false => {
                Err(BenchError::Server(format!("CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr))))
            }
        }
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
