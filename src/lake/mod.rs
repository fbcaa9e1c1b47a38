//! A cluster's shared storage: DuckLake, with its catalog in PostgreSQL and its data files
//! in a directory every node reaches. Receivers append raw signals to the lake
//! ([`append`]); stitchers and query nodes copy what was added since their watermark
//! snapshot into their local files ([`pull`]) and stitch it there, as a single process
//! stitches what it received. One stitcher is elected ([`leader`]): it alone evaluates
//! alerts and keeps the lake ([`upkeep`]), its retention taking turns with the receivers'
//! commits ([`gate`]).
//!
//! Public face: [`LakeConfig`], [`Roles`], [`open`], [`append::LakeSink`], [`gate`],
//! [`pull::Puller`], [`leader::Leadership`], [`upkeep::Upkeep`].

pub mod append;
pub mod gate;
pub mod leader;
pub mod pull;
pub mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use duckdb::Connection;
use tokio::sync::watch;

use crate::store::StoreError;

/// The attached lake's name in queries.
pub const LAKE: &str = "lake";

/// The extensions a node loads, in order, by the file names their packages ship them
/// under (DuckLake writes its data as Parquet; the catalog is reached through postgres).
const EXTENSIONS: [&str; 3] = ["parquet", "postgres_scanner", "ducklake"];

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake extension {name}.duckdb_extension not found under {dir} (install the PyPI packages duckdb-extension-ducklake, duckdb-extension-postgres-scanner and duckdb-extension-parquet for DuckDB {version}, e.g. `pip install --target DIR ...`, and pass DIR)")]
    ExtensionMissing { name: &'static str, dir: PathBuf, version: String },
    #[error("cannot copy lake extension {from} to {to}: {source}")]
    ExtensionCopy { from: PathBuf, to: PathBuf, source: std::io::Error },
    #[error("invalid {setting}: {message}")]
    Invalid { setting: &'static str, message: String },
    /// The catalog's connection string is left out: it may hold a password.
    #[error("cannot attach the lake: {source}")]
    Attach { source: duckdb::Error },
    #[error("this node's file holds the lake up to snapshot {through}, but the lake keeps snapshots from {oldest} only: start this node on an empty --db file to copy the lake afresh")]
    Behind { through: i64, oldest: i64 },
    #[error("lake catalog (PostgreSQL): {0}")]
    Catalog(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<duckdb::Error> for LakeError {
    fn from(e: duckdb::Error) -> Self {
        LakeError::Store(StoreError::Db(e))
    }
}

/// Where the lake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeConfig {
    /// The PostgreSQL catalog, as a libpq connection string
    /// (`host=db port=5432 dbname=flowscope user=flowscope`).
    pub catalog: String,
    /// The data files' directory (or object store URL), the same for every node.
    pub data_path: String,
    /// Where the extension packages were installed: searched for the extension files.
    pub extensions: PathBuf,
    /// How long a receiver gathers requests into one lake commit: every commit is a
    /// snapshot and a data file per table, and the catalog takes a few dozen commits a
    /// second in all.
    pub commit_every: Duration,
    /// The active stitcher's upkeep of the lake.
    pub upkeep: upkeep::UpkeepConfig,
}

impl LakeConfig {
    pub const DEFAULT_COMMIT_EVERY: Duration = Duration::from_millis(500);
}

/// What a node does. A single process (no lake) does everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Takes OTLP in and appends it to the lake.
    pub receiver: bool,
    /// Stands for election as the active stitcher, which alone evaluates alerts and keeps
    /// the lake (upkeep, retention). Every stitcher follows the lake (see `query`), so a
    /// standby takes over with its flows already made.
    pub stitcher: bool,
    /// Follows the lake: copies its new rows into this node's file and stitches them there
    /// (stitching is deterministic, so its flows are the active stitcher's), and serves
    /// the pages and API from that file. Never elected.
    pub query: bool,
}

impl Roles {
    /// A node given no `--role`, and the single process.
    pub const DEFAULT: Roles = Roles { receiver: true, stitcher: true, query: false };
    const NONE: Roles = Roles { receiver: false, stitcher: false, query: false };

    /// Parses a comma-separated list of `receiver`, `stitcher` and `query`; none means
    /// receiver and stitcher.
    pub fn parse(list: &[String]) -> Result<Roles, String> {
        let mut roles = Roles::NONE;
        for name in list.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "receiver" => roles.receiver = true,
                "stitcher" => roles.stitcher = true,
                "query" => roles.query = true,
                other => return Err(format!("unknown role {other:?} (use receiver, stitcher, query)")),
            }
        }
        if roles == Roles::NONE {
            return Ok(Roles::DEFAULT);
        }
        Ok(roles)
    }

    /// Whether this node copies the lake into its file and stitches it.
    pub fn follows_lake(&self) -> bool {
        self.stitcher || self.query
    }

    /// Every role's name, and whether this node has it.
    pub fn each(&self) -> [(&'static str, bool); 3] {
        [("receiver", self.receiver), ("stitcher", self.stitcher), ("query", self.query)]
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.each().into_iter().filter_map(|(n, on)| on.then_some(n)).collect()
    }
}

/// What a cluster node shows of itself on `/metrics` and `/readyz`.
#[derive(Debug)]
pub struct ClusterStatus {
    pub roles: Roles,
    /// Whether this node is the active stitcher (always false without the role).
    pub leading: watch::Receiver<bool>,
    /// The last lake snapshot copied into this node's file (-1: none).
    pub pulled_snapshot: AtomicI64,
    /// The lake's latest snapshot when this node last looked (-1: not yet).
    pub latest_snapshot: AtomicI64,
    pub pulls: AtomicU64,
    pub pulled_rows: AtomicU64,
    pub pull_failures: AtomicU64,
    pub upkeep: upkeep::UpkeepStats,
}

impl ClusterStatus {
    pub fn new(roles: Roles, leading: watch::Receiver<bool>) -> ClusterStatus {
        ClusterStatus {
            roles,
            leading,
            pulled_snapshot: AtomicI64::new(-1),
            latest_snapshot: AtomicI64::new(-1),
            pulls: AtomicU64::default(),
            pulled_rows: AtomicU64::default(),
            pull_failures: AtomicU64::default(),
            upkeep: upkeep::UpkeepStats::default(),
        }
    }

    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }
}

/// Loads the extensions, attaches the lake as [`LAKE`] to the database `conn` belongs to
/// (every connection of it sees the lake) and creates the raw tables it lacks.
/// `extension_dir` is this node's own extension directory.
pub fn open(conn: &Connection, config: &LakeConfig, extension_dir: &Path) -> Result<(), LakeError> {
    install_extensions(conn, &config.extensions, extension_dir)?;
    conn.execute_batch(include_str!("../../queries/lake/load_extensions.sql"))?;
    conn.execute_batch(&attach_statement(config)?).map_err(|source| LakeError::Attach { source })?;
    // Nodes starting together race to create the tables: the losers find them made.
    let mut tries = 0;
    loop {
        match conn.execute_batch(include_str!("../../queries/lake/schema.sql")) {
            Ok(()) => return Ok(()),
            Err(_) if tries < 5 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copies the extension files from where their packages put them into this node's
/// extension directory, where `LOAD` finds them by name, for the running DuckDB's version
/// and platform. Nothing is downloaded.
fn install_extensions(conn: &Connection, packages: &Path, extension_dir: &Path) -> Result<(), LakeError> {
    let version: String = conn.query_row(include_str!("../../queries/lake/duckdb_version.sql"), [], |r| r.get(0))?;
    let platform: String = conn.query_row(include_str!("../../queries/lake/duckdb_platform.sql"), [], |r| r.get(0))?;
    let target = extension_dir.join(&version).join(&platform);
    std::fs::create_dir_all(&target).map_err(|source| LakeError::ExtensionCopy {
        from: packages.to_owned(),
        to: target.clone(),
        source,
    })?;
    for name in EXTENSIONS {
        let file = format!("{name}.duckdb_extension");
        let found = find_file(packages, &file, &version).ok_or_else(|| LakeError::ExtensionMissing {
            name,
            dir: packages.to_owned(),
            version: version.clone(),
        })?;
        let to = target.join(&file);
        let same = matches!((std::fs::metadata(&found), std::fs::metadata(&to)), (Ok(a), Ok(b)) if a.len() == b.len());
        if !same {
            std::fs::copy(&found, &to).map_err(|source| LakeError::ExtensionCopy {
                from: found.clone(),
                to,
                source,
            })?;
        }
    }
    conn.execute(
        include_str!("../../queries/lake/extension_directory_set.sql"),
        [extension_dir.to_string_lossy().into_owned()],
    )?;
    Ok(())
}

/// The file `name` under `dir` (at most [`SEARCH_ENTRIES`] entries looked at), preferring
/// one in a folder named after `version`: packages ship `extensions/<version>/<name>`.
fn find_file(dir: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let mut found = None;
    let mut folders = vec![dir.to_owned()];
    let mut budget = SEARCH_ENTRIES;
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            budget = budget.checked_sub(1)?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                folders.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                if folder.file_name().is_some_and(|v| v == version) {
                    return Some(path);
                }
                found = found.or(Some(path));
            }
        }
    }
    found
}

/// How many directory entries the search for the extension files looks at.
const SEARCH_ENTRIES: usize = 100_000;

/// DuckDB's ATTACH takes no parameters: the catalog and the data path, which come from
/// the operator's configuration, go in as SQL string literals, and anything that could
/// end one early is refused.
fn attach_statement(config: &LakeConfig) -> Result<String, LakeError> {
    let literal = |setting: &'static str, value: &str| -> Result<String, LakeError> {
        if value.is_empty() || value.len() > 4096 || value.chars().any(|c| c.is_control() || c == '\'' || c == '\\') {
            return Err(LakeError::Invalid {
                setting,
                message: "must be 1-4096 characters without quotes, backslashes or control characters".into(),
            });
        }
        Ok(format!("'{value}'"))
    };
    let raw = &config.data_path;
    let data_path = if raw.is_empty() || raw.ends_with('/') { raw.clone() } else { format!("{raw}/") };
    Ok(include_str!("../../queries/lake/attach.sql")
        .replace("{catalog}", &literal("lake catalog", &format!("ducklake:postgres:{}", config.catalog))?)
        .replace("{data_path}", &literal("lake data path", &data_path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_lists_and_default_to_all() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<(bool, bool, bool)>)] = &[
            (&[], Some((true, true, false))),
            (&["receiver"], Some((true, false, false))),
            (&["receiver,stitcher"], Some((true, true, false))),
            (&[" stitcher "], Some((false, true, false))),
            (&["query"], Some((false, false, true))),
            (&["receiver", "query"], Some((true, false, true))),
            (&["writer"], None),
        ];
        for (list, want) in cases {
            let got = Roles::parse(&s(list)).ok().map(|r| (r.receiver, r.stitcher, r.query));
            assert_eq!(got, *want, "{list:?}");
        }
    }

    #[test]
    fn attach_refuses_what_could_end_a_literal() {
        let config = |catalog: &str, data: &str| LakeConfig {
            catalog: catalog.into(),
            data_path: data.into(),
            extensions: PathBuf::new(),
            commit_every: LakeConfig::DEFAULT_COMMIT_EVERY,
            upkeep: Default::default(),
        };
        let ok = attach_statement(&config("host=db port=5432 dbname=lake", "/srv/lake")).unwrap();
        assert!(ok.contains("'ducklake:postgres:host=db port=5432 dbname=lake'"), "{ok}");
        assert!(ok.contains("'/srv/lake/'"), "{ok}");
        for (c, d) in [("host=db' ; DROP", "/srv"), ("host=db", "/srv\n"), ("host=db", ""), ("x\\", "/srv")] {
            assert!(attach_statement(&config(c, d)).is_err(), "{c:?} {d:?}");
        }
    }

    #[test]
    fn extension_files_are_found_in_package_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let put = |p: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        };
        put("duckdb_extension_ducklake/extensions/v1.5.4/ducklake.duckdb_extension");
        put("duckdb_extension_ducklake/extensions/v1.5.5/ducklake.duckdb_extension");
        let found = find_file(dir.path(), "ducklake.duckdb_extension", "v1.5.5").unwrap();
        assert!(found.ends_with("v1.5.5/ducklake.duckdb_extension"), "{found:?}");
        assert!(find_file(dir.path(), "postgres_scanner.duckdb_extension", "v1.5.5").is_none());
    }
}
