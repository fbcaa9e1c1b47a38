//! Checkpoints off the commit path.
//!
//! A checkpoint folds DuckDB's write-ahead log into the file, compressing every row
//! written since the last one, and every write waits for it. Left to DuckDB, it runs
//! inside whichever commit finds the log past `checkpoint_threshold`, on that thread
//! alone: under sustained ingest the writer's or the stitcher's commit stalled for seconds
//! while the other cores idled, and exporters saw it as their p99. Here a thread of its
//! own checkpoints once the log passes [`CheckpointConfig::wal_bytes`], with DuckDB's
//! worker threads raised to the cores for the checkpoint (it compresses row groups in
//! parallel) and set back after. DuckDB's own threshold (see [`super::default_settings`])
//! stays far above, a backstop should this thread fall behind.
//!
//! A quiet store gets a checkpoint of a smaller log too (after a restitch, say), so pages
//! read compressed rows instead of the log's.
//!
//! ## Merging row groups, a little at a time
//! After each checkpoint, DuckDB starts every table's next append in a new row group, so
//! each checkpoint leaves a partly filled row group per table; its vacuum then merges
//! runs of such row groups into fewer at the following checkpoints, up to
//! `max_vacuum_tasks` runs per table. Under ingest that merging recompressed as many span
//! rows as were written, and was most of each checkpoint's time (so of every commit's
//! stall). The store runs with it off (see [`super::default_settings`]): one checkpoint in
//! [`CheckpointConfig::merge_every`] merges one run per table, and a checkpoint while
//! quiet merges up to [`CheckpointConfig::merges_when_quiet`]. A table of a few rows per
//! checkpoint still ends up in few row groups (one run takes in as many small row groups as
//! fit in three); a table taking whole row groups between checkpoints keeps its partly
//! filled ones until a quiet moment. Row groups left empty by deletes are dropped at every
//! checkpoint, as before.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::Connection;

use super::StoreError;

#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Log size past which a checkpoint is made. A quarter of it (64 MB) halved export
    /// p99, but under a stitch lag of 15-20 s DuckDB then ran out of its memory and a
    /// commit failed that way left a column misaligned: the next checkpoint invalidated
    /// the database (see BENCHMARKS.md, "Checkpoints every 64 MB of log").
    pub wal_bytes: u64,
    /// Log size checkpointed once no commit has come for `quiet`.
    pub quiet_wal_bytes: u64,
    pub quiet: Duration,
    /// DuckDB threads while a checkpoint runs (no more than the store's: left as they are).
    pub threads: usize,
    /// How often the log's size is looked at.
    pub every: Duration,
    /// One checkpoint in this many merges one run of row groups per table (0: none does).
    pub merge_every: u64,
    /// Runs of row groups per table a checkpoint of a quiet store merges.
    pub merges_when_quiet: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            wal_bytes: 256 << 20,
            quiet_wal_bytes: 16 << 20,
            quiet: Duration::from_secs(2),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            every: Duration::from_millis(200),
            merge_every: 8,
            merges_when_quiet: 16,
        }
    }
}

/// A checkpoint only starts while no write transaction is open; under ingest one is open
/// most of the time, so it is tried this often, this many times, before waiting for the
/// next look at the log.
const TRY_EVERY: Duration = Duration::from_millis(2);
const TRIES: usize = 500;

/// What the checkpointer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    pub checkpoints: AtomicU64,
    pub micros_sum: AtomicU64,
    /// Attempts that found write transactions open (each retried).
    pub busy: AtomicU64,
    pub failures: AtomicU64,
    /// The log's size at the last look.
    pub wal_bytes: AtomicU64,
}

/// Stops the checkpointer thread when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What to do after a look at the log.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Wait,
    /// Checkpoint, merging up to this many runs of row groups per table.
    Checkpoint {
        merges: u64,
    },
}

/// `made`: checkpoints made so far.
fn decide(config: &CheckpointConfig, wal_bytes: u64, quiet: bool, made: u64) -> Decision {
    if quiet && wal_bytes >= config.quiet_wal_bytes {
        Decision::Checkpoint { merges: config.merges_when_quiet }
    } else if wal_bytes >= config.wal_bytes {
        let merges = u64::from(config.merge_every > 0 && made % config.merge_every == 0);
        Decision::Checkpoint { merges }
    } else {
        Decision::Wait
    }
}

pub(super) fn start(
    conn: Connection,
    db: PathBuf,
    stats: Arc<CheckpointStats>,
    config: CheckpointConfig,
) -> Result<Checkpointer, StoreError> {
    let at_rest: i64 = conn.query_row(include_str!("../../queries/duckdb_threads.sql"), [], |r| r.get(0))?;
    let mut wal = db.into_os_string();
    wal.push(".wal");
    let wal = PathBuf::from(wal);
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("flowscope-checkpoint".into())
        .spawn(move || {
            let mut log = LogWatch::default();
            loop {
                match stopped.recv_timeout(config.every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                stats.wal_bytes.store(size, Ordering::Relaxed);
                if let Decision::Checkpoint { merges } = log.look(&config, size, Instant::now()) {
                    if checkpoint(&conn, &config, at_rest, merges, &stats, &stopped) {
                        log.checkpointed(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                    }
                }
            }
        })
        .map_err(|e| StoreError::Task(e.to_string()))?;
    Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
}

/// The log's size over time: it grows with every write, so a size that stays put means
/// nothing is being written.
#[derive(Debug, Default)]
struct LogWatch {
    size: u64,
    grew_at: Option<Instant>,
    /// The size a checkpoint left: a log no checkpoint could shrink is not checkpointed
    /// again and again while quiet.
    after_checkpoint: Option<u64>,
    /// Checkpoints made so far: which of them merge row groups goes by it.
    checkpoints: u64,
}

impl LogWatch {
    fn look(&mut self, config: &CheckpointConfig, size: u64, now: Instant) -> Decision {
        if size != self.size || self.grew_at.is_none() {
            (self.size, self.grew_at) = (size, Some(now));
        }
        let quiet =
            self.grew_at.is_some_and(|t| now.duration_since(t) >= config.quiet) && self.after_checkpoint != Some(size);
        decide(config, size, quiet, self.checkpoints)
    }

    fn checkpointed(&mut self, size: u64) {
        self.after_checkpoint = Some(size);
        self.checkpoints += 1;
    }
}

/// Checkpoints with DuckDB's threads raised and up to `merges` runs of row groups merged
/// per table, trying until no write transaction is open. Returns whether it did.
fn checkpoint(
    conn: &Connection,
    config: &CheckpointConfig,
    at_rest: i64,
    merges: u64,
    stats: &CheckpointStats,
    stop: &mpsc::Receiver<()>,
) -> bool {
    let threads = (config.threads as i64).max(at_rest);
    // Each setting changed for the checkpoint only: (query, during, after).
    let mut changed = Vec::new();
    if threads > at_rest {
        changed.push((include_str!("../../queries/duckdb_threads_set.sql"), threads, at_rest));
    }
    if merges > 0 {
        changed.push((include_str!("../../queries/duckdb_vacuum_tasks_set.sql"), merges as i64, 0));
    }
    let set = |sql: &str, value: i64| {
        if let Err(e) = conn.execute(sql, [value]) {
            tracing::warn!(error = %e, setting = sql, value, "could not change a DuckDB setting around a checkpoint");
        }
    };
    for (sql, during, _) in &changed {
        set(sql, *during);
    }
    let mut done = false;
    for _ in 0..TRIES {
        let started = Instant::now();
        match conn.execute_batch(include_str!("../../queries/checkpoint.sql")) {
            Ok(()) => {
                let took = started.elapsed();
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                stats.micros_sum.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                tracing::debug!(seconds = took.as_secs_f64(), merges, "checkpointed");
                done = true;
                break;
            }
            Err(e) if is_busy(&e) => {
                stats.busy.fetch_add(1, Ordering::Relaxed);
                if !matches!(stop.recv_timeout(TRY_EVERY), Err(RecvTimeoutError::Timeout)) {
                    break;
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "checkpoint failed; DuckDB's own checkpoint stays the backstop");
                break;
            }
        }
    }
    for (sql, _, after) in &changed {
        set(sql, *after);
    }
    done
}

/// Whether a checkpoint failed only because write transactions were open.
fn is_busy(e: &duckdb::Error) -> bool {
    e.to_string().contains("other write transactions active")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_log_is_checkpointed_once_it_stops_growing_and_not_again_unchanged() {
        let config = CheckpointConfig {
            wal_bytes: 1000,
            quiet_wal_bytes: 10,
            quiet: Duration::from_secs(2),
            ..Default::default()
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = LogWatch::default();
        let quiet = Decision::Checkpoint { merges: config.merges_when_quiet };
        assert_eq!(log.look(&config, 50, at(0)), Decision::Wait);
        assert_eq!(log.look(&config, 60, at(1)), Decision::Wait, "still growing");
        assert_eq!(log.look(&config, 60, at(2)), Decision::Wait, "unchanged for 1 s only");
        assert_eq!(log.look(&config, 60, at(3)), quiet);
        log.checkpointed(60);
        assert_eq!(log.look(&config, 60, at(9)), Decision::Wait, "a checkpoint left it as it was");
        assert_eq!(log.look(&config, 2000, at(10)), Decision::Checkpoint { merges: 0 }, "past the size, quiet or not");
        log.checkpointed(0);
        assert_eq!(log.look(&config, 0, at(20)), Decision::Wait);
    }

    #[test]
    fn checkpoints_past_the_size_or_a_smaller_log_when_quiet() {
        let config = CheckpointConfig {
            wal_bytes: 100,
            quiet_wal_bytes: 10,
            merge_every: 4,
            merges_when_quiet: 16,
            ..Default::default()
        };
        let merging = |merges| Decision::Checkpoint { merges };
        // (log bytes, quiet, checkpoints made, decision)
        let cases = [
            (0, false, 1, Decision::Wait),
            (0, true, 1, Decision::Wait),
            (99, false, 1, Decision::Wait),
            (100, false, 1, merging(0)),
            (100, false, 3, merging(0)),
            (100, false, 4, merging(1)),
            (100, false, 0, merging(1)),
            (9, true, 1, Decision::Wait),
            (10, true, 1, merging(16)),
            (100, true, 1, merging(16)),
            (50, false, 4, Decision::Wait),
        ];
        for (bytes, quiet, made, want) in cases {
            assert_eq!(decide(&config, bytes, quiet, made), want, "{bytes} {quiet} {made}");
        }
        let never = CheckpointConfig { merge_every: 0, ..config };
        assert_eq!(decide(&never, 100, false, 0), merging(0), "merge_every 0: no merging under load");
    }

    #[test]
    fn checkpoints_a_growing_log_off_the_writers_and_sets_the_threads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.duckdb");
        let store = crate::store::Store::open(&path).unwrap();
        let conn = store.connect().unwrap();
        conn.execute_batch("CREATE TABLE filler (x VARCHAR)").unwrap();
        let config = CheckpointConfig {
            wal_bytes: 256 << 10,
            quiet_wal_bytes: u64::MAX,
            threads: 2,
            every: Duration::from_millis(10),
            ..Default::default()
        };
        let checkpointer = store.start_checkpointer(config).unwrap();
        let stats = store.checkpoint_stats();
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.checkpoints.load(Ordering::Relaxed) < 2 {
            assert!(Instant::now() < deadline, "no checkpoint: {stats:?}");
            conn.execute_batch("INSERT INTO filler SELECT repeat('x', 200) || i FROM range(5000) t(i)").unwrap();
        }
        // Writes have stopped; what they logged while the last checkpoint ran is past the
        // threshold too, so the checkpointer folds it in without another write.
        let wal = || std::fs::metadata(dir.path().join("c.duckdb.wal")).map_or(0, |m| m.len());
        while wal() >= 256 << 10 {
            assert!(Instant::now() < deadline, "the log was not folded into the file: {} bytes left", wal());
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(checkpointer);
        let threads: i64 = conn.query_row(include_str!("../../queries/duckdb_threads.sql"), [], |r| r.get(0)).unwrap();
        assert_eq!(threads, 1, "DuckDB's threads are back to the store's setting");
        let rows: i64 = conn.query_row("SELECT count(*) FROM filler", [], |r| r.get(0)).unwrap();
        assert!(rows >= 10_000);
        assert_eq!(vacuum_tasks(&conn), 0, "row-group merging is off again");
    }

    fn vacuum_tasks(conn: &Connection) -> i64 {
        conn.query_row("SELECT current_setting('max_vacuum_tasks')::BIGINT", [], |r| r.get(0)).unwrap()
    }

    fn row_groups(conn: &Connection, table: &str) -> i64 {
        conn.query_row("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info(?)", [table], |r| r.get(0))
            .unwrap()
    }

    /// What the checkpointer relies on: each checkpoint leaves a table's appends since the
    /// last one in a row group of their own, and merging is off unless a checkpoint asks.
    #[test]
    fn checkpoints_leave_a_row_group_each_until_one_merges_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("m.duckdb")).unwrap();
        let conn = store.connect().unwrap();
        assert_eq!(vacuum_tasks(&conn), 0, "the store opens with merging off");
        conn.execute_batch("CREATE TABLE few (x BIGINT)").unwrap();
        let config = CheckpointConfig { threads: 1, ..Default::default() };
        let (_keep, never) = mpsc::channel::<()>();
        let stats = CheckpointStats::default();
        for i in 0..12 {
            conn.execute("INSERT INTO few SELECT ? FROM range(10)", [i]).unwrap();
            assert!(checkpoint(&conn, &config, 1, 0, &stats, &never));
        }
        assert_eq!(row_groups(&conn, "few"), 12, "a row group per checkpoint, none merged");
        conn.execute("INSERT INTO few SELECT 12 FROM range(10)", []).unwrap();
        assert!(checkpoint(&conn, &config, 1, 1, &stats, &never));
        assert_eq!(row_groups(&conn, "few"), 1, "one run takes in every small row group");
        assert_eq!(vacuum_tasks(&conn), 0);
        let rows: i64 = conn.query_row("SELECT count(*) FROM few", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 130, "merging keeps every row");
    }
}
