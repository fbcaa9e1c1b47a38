//! Storage: the embedded DuckDB file, its versioned schema, the single group-commit writer
//! and a small pool of read connections for the API and background stages.
//!
//! Public face: [`Store::open`], [`Store::start_writer`] (-> [`Writer`]), [`Store::read`],
//! [`retention`], and the row builders in [`tables`].

pub mod checkpoints;
mod feed;
pub mod reads;
pub mod retention;
pub mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::Connection;
use parking_lot::Mutex;

pub use checkpoints::{CheckpointConfig, CheckpointStats, Checkpointer};
pub use feed::{CommitFeed, Committed, SPAN_FACT_COLUMNS};
pub use writer::{
    append_in_transaction, append_tables, CommitSink, CommitStats, WriteTask, Writer, WriterConfig, COMMIT_BUCKETS_MS,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("write queue is full ({queued_bytes} bytes waiting); retry later")]
    Overloaded { queued_bytes: usize },
    #[error("flows are {lag_secs} s behind the data received; retry later")]
    StitchingBehind { lag_secs: u64 },
    #[error("flowscope is shutting down")]
    ShuttingDown,
    /// Shared storage (a cluster's lake) could not take the commit now.
    #[error("storage unavailable, retry later: {0}")]
    Unavailable(String),
    #[error("background task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether DuckDB has invalidated the database after a fatal error (such as a
    /// corrupted in-memory column found by a checkpoint): it refuses every statement
    /// until the process opens the file again, which replays the write-ahead log.
    pub fn database_lost(&self) -> bool {
        self.to_string().contains(DATABASE_INVALIDATED)
    }
}

/// What DuckDB says of a database it has invalidated.
const DATABASE_INVALIDATED: &str = "database has been invalidated";

const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "signals", include_str!("../../queries/migrations/001_signals.sql")),
    (2, "flows", include_str!("../../queries/migrations/002_flows.sql")),
    (3, "alerts", include_str!("../../queries/migrations/003_alerts.sql")),
    (4, "flow_indexes", include_str!("../../queries/migrations/004_flow_indexes.sql")),
    (5, "queue_counts", include_str!("../../queries/migrations/005_queue_counts.sql")),
    (6, "hop_chain", include_str!("../../queries/migrations/006_hop_chain.sql")),
    (7, "broker_dead_letters", include_str!("../../queries/migrations/007_broker_dead_letters.sql")),
    (8, "received_time", include_str!("../../queries/migrations/008_received_time.sql")),
    (9, "resources", include_str!("../../queries/migrations/009_resources.sql")),
    (10, "resources_backfill", include_str!("../../queries/migrations/010_resources_backfill.sql")),
    (11, "resources_drop", include_str!("../../queries/migrations/011_resources_drop.sql")),
    (12, "flow_metrics", include_str!("../../queries/migrations/012_flow_metrics.sql")),
    (13, "flow_steps", include_str!("../../queries/migrations/013_flow_steps.sql")),
    (14, "flow_map", include_str!("../../queries/migrations/014_flow_map.sql")),
    (15, "stitch_state", include_str!("../../queries/migrations/015_stitch_state.sql")),
    (16, "commit_rows", include_str!("../../queries/migrations/016_commit_rows.sql")),
    (17, "chain_sums", include_str!("../../queries/migrations/017_chain_sums.sql")),
    (18, "stitch_state_entries", include_str!("../../queries/migrations/018_stitch_state_entries.sql")),
    (19, "uuid_ids", include_str!("../../queries/migrations/019_uuid_ids.sql")),
    (20, "join_hash_runs", include_str!("../../queries/migrations/020_join_hash_runs.sql")),
    (21, "join_hashes", include_str!("../../queries/migrations/021_join_hashes.sql")),
    (22, "hop_retry", include_str!("../../queries/migrations/022_hop_retry.sql")),
    (23, "stitch_set_aside", include_str!("../../queries/migrations/023_stitch_set_aside.sql")),
    (24, "export_own_labels", include_str!("../../queries/migrations/024_export_own_labels.sql")),
    (25, "lake_pulls", include_str!("../../queries/migrations/025_lake_pulls.sql")),
];

pub struct Store {
    /// Kept open for the life of the store; every other connection is cloned from it.
    root: Mutex<Connection>,
    reads: Arc<reads::ReadPool>,
    /// Background writes (alert state, retention, metric roll-ups) take turns on this
    /// connection, so they never conflict with each other; ingest has its own writer.
    background: Mutex<Connection>,
    checkpoints: Arc<CheckpointStats>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Arc<Store>, StoreError> {
        Self::open_with(path, &default_settings())
    }

    /// [`Store::open`] with DuckDB settings (`checkpoint_threshold`, `memory_limit`, ...).
    pub fn open_with(path: &Path, settings: &[(String, String)]) -> Result<Arc<Store>, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })?;
        }
        // Nothing is ever downloaded at run time: extensions not compiled in stay off.
        let mut config = duckdb::Config::default()
            .enable_autoload_extension(false)?
            .with("autoinstall_known_extensions", "false")?;
        for (k, v) in settings {
            config = config.with(k, v)?;
        }
        let conn = Connection::open_with_flags(path, config)?;
        migrate(&conn)?;
        let background = Mutex::new(conn.try_clone()?);
        Ok(Arc::new(Store {
            root: Mutex::new(conn),
            reads: Arc::new(reads::ReadPool::new()),
            background,
            checkpoints: Arc::default(),
            path: path.to_owned(),
        }))
    }

    /// The database file: files that belong with it are named after it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own, for a background stage that writes its own tables.
    pub fn connect(&self) -> Result<Connection, StoreError> {
        Ok(self.root.lock().try_clone()?)
    }

    /// Starts the single writer thread; every signal's rows go through it.
    pub fn start_writer(&self, config: WriterConfig) -> Result<Writer, StoreError> {
        Writer::start(self.connect()?, config)
    }

    /// Starts a writer that commits somewhere else than this file (a cluster's lake).
    pub fn start_writer_to(&self, config: WriterConfig, sink: Box<dyn CommitSink>) -> Result<Writer, StoreError> {
        Writer::start_with(self.connect()?, config, sink)
    }

    /// Starts the thread that checkpoints the file as the log grows (see [`checkpoints`]).
    pub fn start_checkpointer(&self, config: CheckpointConfig) -> Result<Checkpointer, StoreError> {
        checkpoints::start(self.connect()?, self.path.clone(), Arc::clone(&self.checkpoints), config)
    }

    /// What the checkpointer has done.
    pub fn checkpoint_stats(&self) -> &CheckpointStats {
        &self.checkpoints
    }

    /// Runs `f` on a pooled read connection off the async runtime, once one of
    /// [`reads::MAX_READS`] slots is free; dropping the returned future interrupts it.
    ///
    /// Statements that return strings are prepared afresh (`prepare`, not
    /// `prepare_cached`): a cached statement run again after other statements had changed
    /// the file read its strings back garbled (duckdb 1.10506, seen 2026-12-07).
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        self.reads.run(move || store.connect(), f).await
    }

    /// Reads running now, and reads interrupted since start because their caller left.
    pub fn reads_in_flight(&self) -> (usize, usize) {
        (self.reads.in_flight(), self.reads.interrupted())
    }

    /// Runs `f` on the background-write connection, one writer at a time, off the async
    /// runtime.
    pub async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        off_runtime(move || f(&store.background.lock())).await
    }

    /// The blocking form of [`Store::read`], for background threads and tools.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.reads.take(|| self.connect())?;
        let result = f(&conn);
        self.reads.give_back(conn);
        result
    }

    /// Folds the write-ahead log into the database file, so the file alone is complete
    /// for other DuckDB clients. Called on shutdown.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.root.lock().execute_batch(include_str!("../../queries/checkpoint.sql"))?;
        Ok(())
    }

    /// DuckDB's accounted memory in bytes by tag (`BASE_TABLE`, `ART_INDEX`, ...).
    pub async fn duckdb_memory(self: &Arc<Self>) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/duckdb_memory.sql"))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// Runs blocking database work on tokio's blocking pool.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?
}

/// Runs the statements of a file of several (each ending in `;` and a line end), giving
/// each as many of `params`, from the first, as it has parameters: a statement that uses
/// `$2` must use `$1` too. Each is planned afresh: these statements join a temp table of
/// the moment's rows to stored tables whose sizes change by orders of magnitude, and a
/// cached plan keeps the join order chosen when they were small.
pub fn execute_statements(conn: &Connection, sql: &str, params: &[&dyn duckdb::ToSql]) -> Result<usize, StoreError> {
    let mut changed = 0;
    for statement in sql.split_terminator(";\n").filter(|s| !s.trim().is_empty()) {
        let mut stmt = conn.prepare(statement)?;
        let wanted = stmt.parameter_count().min(params.len());
        changed += stmt.execute(&params[..wanted])?;
    }
    Ok(changed)
}

/// Runs `f` in one transaction on `conn`: committed when it succeeds, rolled back when it
/// fails (the error is returned either way).
pub fn in_transaction<T>(conn: &Connection, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(value) => {
            conn.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// DuckDB checkpoints (folds its write-ahead log into the file) every 16 MB of log by
/// default, inside the commit that finds the log past it. flowscope's checkpointer does it
/// off the commit path every 256 MB (see [`checkpoints`]); DuckDB's own threshold is set
/// far above, a backstop.
/// DuckDB's buffer pool may otherwise grow to 80% of the machine's memory: it gets half
/// of the default memory budget (see `config::MemoryBudget`).
///
/// Each query runs on the thread that asks it (`threads=1`: no DuckDB worker threads).
/// flowscope's own threads (the writer, the stitcher, the filter build, page requests)
/// already keep the cores busy with queries of their own; with a worker per core, a thread
/// whose query's last task ran on a worker spun in DuckDB's scheduler until it finished
/// (a third of a restitch's instructions under callgrind). Measured under `bench ingest`:
/// a fifth less server CPU per span, no slower pages at idle (BENCHMARKS.md). `--duckdb-setting threads=N` restores intra-query parallelism.
///
/// A new file is written in DuckDB 1.3's storage format (readable by DuckDB 1.3 and
/// later), not 1.0's, DuckDB's default: it compresses strings with a dictionary whose
/// entries are FSST-compressed, and the file holds 169 bytes a span instead of 275 for
/// the same CPU (BENCHMARKS.md). A file made before keeps its format.
///
/// Checkpoints merge no row groups unless the checkpointer asks (`max_vacuum_tasks=0`):
/// merging after every checkpoint rewrote as much as was written (see [`checkpoints`]).
pub fn default_settings() -> Vec<(String, String)> {
    [
        ("checkpoint_threshold", "1GB"),
        ("memory_limit", "512MiB"),
        ("threads", "1"),
        ("storage_compatibility_version", "v1.3.0"),
        ("max_vacuum_tasks", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(include_str!("../../queries/schema_migrations_init.sql"))?;
    let applied: Vec<i32> = conn
        .prepare(include_str!("../../queries/schema_migrations_applied.sql"))?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        in_transaction(conn, || {
            conn.execute_batch(sql)?;
            conn.execute(include_str!("../../queries/schema_migrations_record.sql"), duckdb::params![version, name])?;
            Ok(())
        })?;
        tracing::info!(version, name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_builders_match_the_migrated_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x.duckdb")).unwrap();
        let columns_of = |table: &str| -> Vec<(String, String)> {
            store
                .read_blocking(|c| {
                    let mut stmt = c.prepare(
                        "SELECT column_name, data_type FROM information_schema.columns
                         WHERE table_name = ? ORDER BY ordinal_position",
                    )?;
                    let names = stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
                    Ok(names)
                })
                .unwrap()
        };
        for (table, columns, commit_seq_at) in tables::ALL {
            let actual: Vec<String> = columns_of(table).into_iter().map(|(name, _)| name).collect();
            let mut expected: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            expected.insert(*commit_seq_at, "commit_seq".into());
            assert_eq!(actual, expected, "columns of {table}");
        }
        // The flow tables' types too: a batch column of another type than the table's is
        // cast by the appender, row by row, which costs what the Arrow path saves.
        use duckdb::arrow::datatypes::DataType;
        for (table, schema) in tables::FLOW_TABLES {
            let expected: Vec<(String, String)> = schema()
                .fields()
                .iter()
                .map(|f| {
                    let sql_type = match f.data_type() {
                        DataType::Utf8 => "VARCHAR",
                        DataType::Int64 => "BIGINT",
                        DataType::Int32 => "INTEGER",
                        DataType::Int16 => "SMALLINT",
                        DataType::Float64 => "DOUBLE",
                        DataType::Boolean => "BOOLEAN",
                        t if *t == tables::UUID => "UUID",
                        t => panic!("{table}.{}: no SQL type for {t}", f.name()),
                    };
                    (f.name().clone(), sql_type.to_owned())
                })
                .collect();
            assert_eq!(columns_of(table), expected, "columns of {table}");
        }
    }

    /// A file whose schema stops at migration `version`, as that release left it.
    fn file_of_schema(path: &Path, version: i32) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(include_str!("../../queries/schema_migrations_init.sql")).unwrap();
        for (version, name, sql) in MIGRATIONS.iter().take_while(|(v, _, _)| *v <= version) {
            conn.execute_batch(sql).unwrap();
            conn.execute(include_str!("../../queries/schema_migrations_record.sql"), duckdb::params![version, name])
                .unwrap();
        }
        conn
    }

    #[test]
    fn stored_flow_and_trace_ids_become_uuids_that_read_back_as_their_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.duckdb");
        let (flow, trace) = ("0af7651916cd43dd8448eb211c80319c", "5b8efff798038103d269b633813fc60c");
        {
            let conn = file_of_schema(&path, 18);
            conn.execute_batch(&format!(
                "INSERT INTO flows (flow_id, chain, root_service, root_name, path, services, start_unix_nano,
                                    end_unix_nano, duration_ms, span_count, trace_count, error, hops, retries,
                                    dead_letters, queue_wait_ms, service_ms, retry_delay_ms, clock_skew_hops,
                                    updated_unix_nano)
                 SELECT id, 'web GET', 'web', 'GET', '[]', '[]', 1, 2, 0, 1, 1, false, 0, 0, 0, 0, 0, 0, 0, 5
                 FROM (VALUES ('{flow}'), ('not an id')) ids(id);
                 INSERT INTO flow_traces VALUES ('{flow}', '{flow}', 1, 1, 5), ('{flow}', '{trace}', 2, 1, 5),
                                                ('{flow}', 'xyz', 3, 1, 5);
                 INSERT INTO flow_join_keys VALUES (7, '{flow}', '{trace}', 'message_id', 'm1', 1, 5);
                 INSERT INTO flow_hops (flow_id, hop_index, producer_trace_id, consumer_span_ids, sent_unix_nano,
                                        queue_wait_ms, clock_skew, dead_letter)
                 VALUES ('{flow}', 0, '{trace}', '[]', 1, 0, false, false), ('{flow}', 1, NULL, '[]', 1, 0, false, false);"
            ))
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let read = |sql: &str| -> Vec<String> {
            store
                .read_blocking(|c| Ok(c.prepare(sql)?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?))
                .unwrap()
        };
        assert_eq!(read("SELECT hex_id(flow_id) FROM flows"), vec![flow], "the unreadable id's row is dropped");
        assert_eq!(read("SELECT hex_id(trace_id) FROM flow_traces ORDER BY trace_id"), vec![flow, trace]);
        assert_eq!(read("SELECT hex_id(trace_id) || ' ' || value FROM flow_join_keys"), vec![format!("{trace} m1")]);
        assert_eq!(
            read("SELECT coalesce(hex_id(producer_trace_id), '-') FROM flow_hops ORDER BY hop_index"),
            vec![trace, "-"]
        );
        let types = read(
            "SELECT DISTINCT data_type FROM information_schema.columns
             WHERE table_name LIKE 'flow%' AND (column_name = 'flow_id' OR column_name LIKE '%trace_id')",
        );
        assert_eq!(types, vec!["UUID"]);
    }

    #[test]
    fn a_file_of_the_previous_schema_is_upgraded_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.duckdb");
        {
            // The schema as the release of migration 6 left it, with data.
            let conn = file_of_schema(&path, 6);
            conn.execute_batch(
                "INSERT INTO spans (trace_id, span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
                                    status_code, attributes, resource_attributes, link_count, dead_letter_evidence, commit_seq)
                 VALUES ('t1', 's1', 'api', 'GET /', 'SERVER', 1, 2, 'UNSET', '{}', '{\"service.name\":\"api\"}', 0, false, 1),
                        ('t2', 's2', 'api', 'GET /', 'SERVER', 3, 4, 'UNSET', '{}', '{\"service.name\":\"api\"}', 0, false, 2);
                 INSERT INTO logs (time_unix_nano, observed_time_unix_nano, service_name, severity_number, attributes,
                                   resource_attributes, commit_seq)
                 VALUES (1, 1, 'api', 9, '{}', '{\"service.name\":\"api\"}', 2);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let (spans, resources, orphans): (i64, i64, i64) = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM resources),
                            (SELECT count(*) FROM spans s WHERE NOT EXISTS
                                (SELECT 1 FROM resources r WHERE r.resource_id = s.resource_id AND r.commit_seq = s.commit_seq))",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert_eq!(spans, 2, "every row kept");
        assert_eq!(resources, 3, "one resource row per table and commit");
        assert_eq!(orphans, 0, "every span finds its resource");
        drop(store);
        // And the upgraded file takes new rows through the writer's column order.
        let store = Store::open(&path).unwrap();
        let cols: i64 =
            store.read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM span_facts", [], |r| r.get(0))?)).unwrap();
        assert_eq!(cols, 2);
    }

    #[test]
    fn reopening_applies_no_migration_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.duckdb");
        drop(Store::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        let n: i64 = store
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }
}
