//! Folding DuckDB's write-ahead log into the file, on a thread of its own.
//!
//! DuckDB checkpoints at the commit that takes its log past `checkpoint_threshold`, on the
//! committing thread (with `threads=1` nothing else helps): whichever of the writer and
//! the stitcher committed then spent one to three seconds compressing everything appended
//! since the last checkpoint. Export requests waited behind it for their acknowledgement,
//! the stitcher's lag jumped, and where the checkpoints happened to land decided the two
//! stages' CPU figures more than anything they did (BENCHMARKS.md, fourteenth session).
//!
//! This stage checkpoints when the log reaches the threshold, and while it runs DuckDB's
//! own threshold is one and a half times that, so that DuckDB checkpoints only as the
//! backstop: the threshold keeps its meaning (how much log is folded at a time, which
//! bounds the memory its uncheckpointed rows take), only the thread changes. Checkpointing
//! earlier than the threshold instead cost more CPU overall: every checkpoint rewrites
//! the partly filled last row group of each table (BENCHMARKS.md, fifteenth session).
//! A checkpoint needs a moment when no write transaction is open; the stage tries every
//! few milliseconds while one is due. Past a quarter more than the threshold it asks for
//! `FORCE CHECKPOINT`, which holds new transactions back until the open ones have
//! finished. A stage may also ask for a checkpoint when it suits the pages (the stitcher,
//! after catching up with many rewrites): that one is tried until it succeeds, never
//! forced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;

use super::StoreError;

/// What the checkpointer did, for `/metrics`, and the requests it takes.
#[derive(Debug, Default)]
pub struct Checkpoints {
    requested: AtomicBool,
    /// Checkpoints completed, by trigger: the log's size, a request, forced.
    pub by_size: AtomicU64,
    pub by_request: AtomicU64,
    pub forced: AtomicU64,
    /// Time spent checkpointing, microseconds.
    pub micros: AtomicU64,
    /// The log's size when last looked at.
    pub wal_bytes: AtomicU64,
}

impl Checkpoints {
    /// Asks for a checkpoint soon. Without a running checkpointer nothing happens and
    /// DuckDB's own threshold decides.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    pub fn completed(&self) -> u64 {
        self.by_size.load(Ordering::Relaxed)
            + self.by_request.load(Ordering::Relaxed)
            + self.forced.load(Ordering::Relaxed)
    }
}

/// When to checkpoint, from the threshold configured for DuckDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thresholds {
    due: u64,
    force: u64,
    /// What DuckDB's own threshold is set to.
    backstop: u64,
}

impl Thresholds {
    fn of(configured: u64) -> Thresholds {
        Thresholds { due: configured, force: configured / 4 * 5, backstop: configured / 2 * 3 }
    }
}

/// The threshold configured for the database on `conn` (read when the store opens, before
/// any checkpointer moves DuckDB's).
pub(super) fn configured_threshold(conn: &Connection) -> Result<u64, StoreError> {
    let setting: String = conn.query_row("SELECT current_setting('checkpoint_threshold')", [], |r| r.get(0))?;
    parse_setting_bytes(&setting)
        .ok_or_else(|| StoreError::Task(format!("cannot read DuckDB's checkpoint_threshold {setting:?}")))
}

fn set_duckdb_threshold(conn: &Connection, bytes: u64) -> Result<(), StoreError> {
    conn.execute_batch(&format!("SET GLOBAL checkpoint_threshold = '{bytes}B'"))?;
    Ok(())
}

/// A request with less log than this waits for the log to grow: folding a few megabytes
/// gains the pages nothing and costs a pass over every table.
const MIN_REQUESTED_BYTES: u64 = 16 << 20;
/// How often the log's size is looked at, and how soon a due checkpoint is tried again.
const POLL: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_millis(10);

/// DuckDB's `checkpoint_threshold` as it shows it (`244.1 MiB`, `1.3 GiB`).
fn parse_setting_bytes(text: &str) -> Option<u64> {
    let (number, unit) = text.trim().split_once(' ').unwrap_or((text.trim(), "bytes"));
    let scale: f64 = match unit.trim() {
        "bytes" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * scale) as u64)
}

/// The running stage; [`Checkpointer::stop`] ends it and gives DuckDB its threshold back.
pub struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `db` (the file; the log is beside it) on `conn`, at the
    /// `configured` threshold ([`configured_threshold`]).
    pub(super) fn start(
        conn: Connection,
        db: &Path,
        configured: u64,
        checkpoints: Arc<Checkpoints>,
    ) -> Result<Checkpointer, StoreError> {
        let thresholds = Thresholds::of(configured);
        set_duckdb_threshold(&conn, thresholds.backstop)?;
        let wal = wal_path(db);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("flowscope-checkpoint".into())
            .spawn(move || {
                run(&conn, &wal, thresholds, &checkpoints, &stopped);
                if let Err(e) = set_duckdb_threshold(&conn, configured) {
                    tracing::warn!(error = %e, "could not give DuckDB its checkpoint threshold back");
                }
            })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }

    /// Ends the stage, after the checkpoint it may be running.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".wal");
    path.into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Size,
    Request,
    Force,
}

/// What to do with a log of `wal_bytes`.
fn decide(wal_bytes: u64, requested: bool, t: Thresholds) -> Option<Trigger> {
    if wal_bytes >= t.force {
        Some(Trigger::Force)
    } else if wal_bytes >= t.due {
        Some(Trigger::Size)
    } else if requested && wal_bytes >= MIN_REQUESTED_BYTES {
        Some(Trigger::Request)
    } else {
        None
    }
}

fn run(conn: &Connection, wal: &Path, t: Thresholds, checkpoints: &Checkpoints, stopped: &mpsc::Receiver<()>) {
    let mut wait = POLL;
    loop {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        wait = POLL;
        let wal_bytes = std::fs::metadata(wal).map_or(0, |m| m.len());
        checkpoints.wal_bytes.store(wal_bytes, Ordering::Relaxed);
        let Some(trigger) = decide(wal_bytes, checkpoints.requested.load(Ordering::Relaxed), t) else { continue };
        let started = Instant::now();
        let sql = if trigger == Trigger::Force { "FORCE CHECKPOINT" } else { "CHECKPOINT" };
        match conn.execute_batch(sql) {
            Ok(()) => {
                let micros = started.elapsed().as_micros() as u64;
                checkpoints.micros.fetch_add(micros, Ordering::Relaxed);
                let counter = match trigger {
                    Trigger::Size => &checkpoints.by_size,
                    Trigger::Request => &checkpoints.by_request,
                    Trigger::Force => &checkpoints.forced,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                checkpoints.requested.store(false, Ordering::Relaxed);
                tracing::debug!(?trigger, wal_bytes, seconds = micros as f64 / 1e6, "checkpointed");
            }
            // A write transaction is open: try again in a moment.
            Err(e) if trigger != Trigger::Force => {
                tracing::trace!(error = %e, "checkpoint deferred");
                wait = RETRY;
            }
            Err(e) => {
                tracing::warn!(error = %e, wal_bytes, "forced checkpoint failed; DuckDB's own threshold stays the backstop");
                wait = POLL * 10;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Store;

    /// Appends about `mib` MiB to the log in small transactions (none big enough to
    /// checkpoint at its own commit unless the log passes DuckDB's threshold).
    fn log_grows_by(store: &Store, mib: usize) {
        let conn = store.connect().unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (s VARCHAR)").unwrap();
        for _ in 0..mib {
            conn.execute_batch("INSERT INTO filler SELECT repeat(md5(range::VARCHAR), 32) FROM range(1000)").unwrap();
        }
    }

    /// Waits (bounded) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn store_with_threshold(dir: &Path, threshold: &str) -> Arc<Store> {
        let settings = [("checkpoint_threshold".to_owned(), threshold.to_owned())];
        Store::open_with(&dir.join("c.duckdb"), &settings).unwrap()
    }

    #[test]
    fn the_log_is_checkpointed_before_duckdb_would_at_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_threshold(dir.path(), "16MiB");
        let checkpointer = store.start_checkpointer().unwrap();
        let c = Arc::clone(store.checkpoints());
        // 18 MiB: past the threshold, short of the forced 20 and DuckDB's own 24.
        log_grows_by(&store, 18);
        eventually("a checkpoint by the log's size", || c.by_size.load(Ordering::Relaxed) == 1);
        eventually("the log folded into the file", || c.wal_bytes.load(Ordering::Relaxed) < 1 << 20);
        assert_eq!((c.by_request.load(Ordering::Relaxed), c.forced.load(Ordering::Relaxed)), (0, 0));
        checkpointer.stop();
    }

    #[test]
    fn a_requested_checkpoint_waits_for_enough_log_and_then_happens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_threshold(dir.path(), "256MiB");
        let checkpointer = store.start_checkpointer().unwrap();
        let c = Arc::clone(store.checkpoints());
        log_grows_by(&store, 2);
        c.request();
        // Two looks at the log since the request (each poll notes its size, then
        // decides): too little log to act on.
        for _ in 0..2 {
            c.wal_bytes.store(0, Ordering::Relaxed);
            eventually("the checkpointer looks at the log", || c.wal_bytes.load(Ordering::Relaxed) > 0);
        }
        assert_eq!(c.completed(), 0);
        log_grows_by(&store, 18);
        eventually("the requested checkpoint", || c.by_request.load(Ordering::Relaxed) == 1);
        assert_eq!(c.completed(), 1);
        checkpointer.stop();
    }

    #[test]
    fn duckdbs_shown_sizes_read_back() {
        for (text, bytes) in [
            ("244.1 MiB", Some(255_957_401)),
            ("1.3 GiB", Some(1_395_864_371)),
            ("0 bytes", Some(0)),
            ("16.0 KiB", Some(16_384)),
            ("512", Some(512)),
            ("lots", None),
            ("-1 MiB", None),
            ("3 parsecs", None),
        ] {
            assert_eq!(parse_setting_bytes(text), bytes, "{text}");
        }
    }

    #[test]
    fn checkpoints_are_due_at_the_threshold_and_forced_before_duckdbs_own() {
        let t = Thresholds::of(256 << 20);
        assert!(t.due == 256 << 20 && t.due < t.force && t.force < t.backstop);
        let mib = |n: u64| n << 20;
        // (log size, requested, trigger)
        for (wal, requested, trigger) in [
            (0, false, None),
            (mib(100), false, None),
            (mib(100), true, Some(Trigger::Request)),
            (mib(8), true, None),
            (mib(256), false, Some(Trigger::Size)),
            (mib(300), true, Some(Trigger::Size)),
            (mib(320), false, Some(Trigger::Force)),
            (mib(900), true, Some(Trigger::Force)),
        ] {
            assert_eq!(decide(wal, requested, t), trigger, "{wal} bytes, requested {requested}");
        }
    }
}
