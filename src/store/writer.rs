//! The single writer: every export request's rows are appended here, many requests per
//! transaction (group commit), and each request is acknowledged only once its transaction
//! has committed. In front of it sits a bounded queue measured in rows: when it is full,
//! `write` fails at once with `Overloaded`, which ingest turns into a retryable error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::array::{ArrayRef, Int64Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::feed::CommitFeed;
use super::tables::{TableBatch, ALL};
use super::StoreError;
use crate::stage::{StageGuard, StageState};
use crate::text::now_nanos;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Bytes of decoded rows (Arrow buffers) that may wait for a commit before new
    /// requests are turned away.
    pub queue_capacity_bytes: usize,
    /// Longest time a request waits for others to share its commit.
    pub flush_interval: Duration,
    /// Commit as soon as this many rows are pending.
    pub flush_rows: usize,
    /// How long the writer waits for another request before committing what it has.
    pub linger: Duration,
    /// Least time from one commit's start to the next one's. A commit has a fixed cost
    /// (planning each table's append, writing and syncing the log) as large as appending
    /// hundreds of rows, so under load requests wait for the next commit to share it; an
    /// idle writer still commits at once.
    pub commit_spacing: Duration,
    /// Bytes of committed rows held in memory for the stitcher (see [`CommitFeed`]).
    pub feed_capacity_bytes: usize,
    /// New writes are refused (retryably) while the flow stitcher reports being further
    /// behind than this, so that a sustained ingest faster than stitching slows the
    /// exporters down instead of growing the backlog without bound. `None`: never.
    pub max_stitch_lag: Option<Duration>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity_bytes: 256 << 20,
            flush_interval: Duration::from_millis(200),
            flush_rows: 100_000,
            linger: Duration::from_millis(2),
            commit_spacing: Duration::from_millis(50),
            feed_capacity_bytes: 32 << 20,
            max_stitch_lag: Some(Duration::from_secs(30)),
        }
    }
}

/// Counters for the self-metrics page.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub rows: AtomicU64,
    /// Sum of commit durations in microseconds, and a histogram by upper bound.
    pub commit_micros_sum: AtomicU64,
    pub commit_micros_buckets: [AtomicU64; COMMIT_BUCKETS_MS.len()],
    pub last_commit_seq: AtomicU64,
    /// How far behind the commits the flow stitcher last said it was (ms), and when it
    /// said so (unix ms; 0: never). Its report is what admission goes by.
    stitch_lag_ms: AtomicU64,
    stitch_reported_unix_ms: AtomicU64,
}

/// Upper bounds (milliseconds) of the commit-latency histogram buckets.
pub const COMMIT_BUCKETS_MS: [u64; 8] = [5, 10, 25, 50, 100, 250, 1000, 5000];

fn now_unix_ms() -> u64 {
    (now_nanos() / 1_000_000).max(0) as u64
}

/// A stitcher silent for this long is not trusted to be catching up: its last report
/// no longer holds back ingest (data first; flows can be recomputed).
const STITCH_REPORT_STALE_MS: u64 = 30_000;

impl CommitStats {
    /// The stitcher's report, made after every round: how far its written flows are
    /// behind the latest commit (zero while a restitch, not ingest, is what it works on).
    pub fn report_stitch_lag(&self, lag: Duration) {
        self.stitch_lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
        self.stitch_reported_unix_ms.store(now_unix_ms().max(1), Ordering::Relaxed);
    }

    /// The stitcher's lag when it is beyond `max` by a recent report.
    fn stitching_behind(&self, max: Option<Duration>, now_unix_ms: u64) -> Option<Duration> {
        let reported = self.stitch_reported_unix_ms.load(Ordering::Relaxed);
        let lag = Duration::from_millis(self.stitch_lag_ms.load(Ordering::Relaxed));
        let fresh = reported > 0 && now_unix_ms.saturating_sub(reported) < STITCH_REPORT_STALE_MS;
        (fresh && lag > max?).then_some(lag)
    }

    fn record(&self, rows: usize, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        let micros = took.as_micros() as u64;
        self.commit_micros_sum.fetch_add(micros, Ordering::Relaxed);
        for (bound, bucket) in COMMIT_BUCKETS_MS.iter().zip(&self.commit_micros_buckets) {
            if micros <= bound * 1000 {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Job {
    batches: Vec<TableBatch>,
    rows: usize,
    done: oneshot::Sender<Result<i64, StoreError>>,
    /// Held until the job is committed, so queued rows count against the capacity.
    permit: OwnedSemaphorePermit,
}

impl Job {
    /// Frees the job's queue space, then answers the waiting request: by the time an
    /// exporter hears "committed", the queue no longer counts its rows.
    fn finish(self, result: Result<i64, StoreError>) {
        drop(self.permit);
        let _ = self.done.send(result);
    }
}

/// Rows that come from elsewhere than a request (a cluster's lake): written by the
/// writer thread, as the file's one writer, under the next commit number. Returns how
/// many rows it committed; it commits them itself, all or nothing.
pub type WriteTask = Box<dyn FnOnce(&Connection, i64) -> Result<usize, StoreError> + Send>;

enum Msg {
    Write(Job),
    Task(WriteTask, oneshot::Sender<Result<(i64, usize), StoreError>>),
    Stop(oneshot::Sender<()>),
}

/// Where a group commit goes.
pub trait CommitSink: Send + 'static {
    /// Appends the batches as commit number `seq` and commits them, all or nothing.
    fn commit(&self, conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError>;
    /// Whether the rows are stitched from this file (and so go to the commit feed).
    fn feeds_stitcher(&self) -> bool;
}

/// The local database file: what a single process commits to.
struct LocalFile;

impl CommitSink for LocalFile {
    fn commit(&self, conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError> {
        append_in_transaction(conn, batches, seq)
    }

    fn feeds_stitcher(&self) -> bool {
        true
    }
}

pub struct Writer {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    capacity: usize,
    closed: AtomicBool,
    stats: Arc<CommitStats>,
    feed: Arc<CommitFeed>,
    stage: Arc<StageState>,
    max_stitch_lag: Option<Duration>,
}

impl Writer {
    pub(super) fn start(conn: Connection, config: WriterConfig) -> Result<Writer, StoreError> {
        Writer::start_with(conn, config, Box::new(LocalFile))
    }

    pub(super) fn start_with(
        conn: Connection,
        config: WriterConfig,
        sink: Box<dyn CommitSink>,
    ) -> Result<Writer, StoreError> {
        let next_seq: i64 = conn.query_row(include_str!("../../queries/max_commit_seq.sql"), [], |r| r.get(0))?;
        conn.execute(include_str!("../../queries/commit_time_backfill.sql"), duckdb::params![next_seq, now_nanos()])?;
        // Permits are KiB: a semaphore counts in u32 per acquisition.
        let capacity = (config.queue_capacity_bytes / 1024).max(1);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        stats.last_commit_seq.store(next_seq as u64, Ordering::Relaxed);
        let feed = Arc::new(CommitFeed::new(config.feed_capacity_bytes));
        let committed = Committer { stats: Arc::clone(&stats), feed: Arc::clone(&feed), sink };
        let stage = StageState::new();
        let guard = StageGuard::new("writer", Arc::clone(&stage));
        let max_stitch_lag = config.max_stitch_lag;
        std::thread::Builder::new()
            .name("flowscope-writer".into())
            .spawn(move || match run(conn, rx, config, next_seq, &committed) {
                Ok(()) => guard.stopped(),
                // Requests still queued are answered "shutting down" (retryable) as the
                // queue is dropped; the process exits, and a restart recovers the file.
                Err(lost) => guard.died(lost),
            })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Writer {
            tx,
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            closed: AtomicBool::new(false),
            stats,
            feed,
            stage,
            max_stitch_lag,
        })
    }

    /// Whether the writer thread is alive.
    pub fn stage(&self) -> &Arc<StageState> {
        &self.stage
    }

    /// Queues the batches and waits until they are committed. Returns the commit sequence
    /// number the rows were stored under.
    pub async fn write(&self, batches: Vec<TableBatch>) -> Result<i64, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
        if rows == 0 {
            return Ok(self.stats.last_commit_seq.load(Ordering::Relaxed) as i64);
        }
        let bytes: usize = batches.iter().map(|b| b.batch.get_array_memory_size()).sum();
        // A request larger than the whole queue takes the whole queue rather than never fitting.
        let wanted = bytes.div_ceil(1024).clamp(1, self.capacity) as u32;
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(wanted)
            .map_err(|_| StoreError::Overloaded { queued_bytes: self.queued_bytes() })?;
        let (done, committed) = oneshot::channel();
        self.tx.send(Msg::Write(Job { batches, rows, done, permit })).map_err(|_| StoreError::ShuttingDown)?;
        committed.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Runs `task` on the writer thread as the next commit; returns its commit number and
    /// how many rows it wrote.
    pub async fn run_task(&self, task: WriteTask) -> Result<(i64, usize), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        let (done, finished) = oneshot::channel();
        self.tx.send(Msg::Task(task, done)).map_err(|_| StoreError::ShuttingDown)?;
        finished.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Fails with `Overloaded` when the queue has no room left at all, so a request can be
    /// turned away before it is decoded: under overload, decoding and flattening requests
    /// that cannot be queued would take CPU and memory from the commits that drain it.
    pub fn check_room(&self) -> Result<(), StoreError> {
        match self.permits.available_permits() {
            0 => Err(StoreError::Overloaded { queued_bytes: self.queued_bytes() }),
            _ => Ok(()),
        }
    }

    /// Fails with `StitchingBehind` while the stitcher reports flows further behind than
    /// `max_stitch_lag`: what it reads (spans, links, logs) waits until it catches up.
    pub fn check_stitch_lag(&self) -> Result<(), StoreError> {
        match self.stats.stitching_behind(self.max_stitch_lag, now_unix_ms()) {
            Some(lag) => Err(StoreError::StitchingBehind { lag_secs: lag.as_secs() }),
            None => Ok(()),
        }
    }

    /// Whether new spans and logs are being refused because flows are too far behind.
    pub fn held_back_by_stitching(&self) -> bool {
        self.stats.stitching_behind(self.max_stitch_lag, now_unix_ms()).is_some()
    }

    /// Bytes of rows waiting for a commit (to the KiB).
    pub fn queued_bytes(&self) -> usize {
        (self.capacity - self.permits.available_permits()) * 1024
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity * 1024
    }

    pub fn stats(&self) -> &Arc<CommitStats> {
        &self.stats
    }

    /// The committed rows waiting for the stitcher.
    pub fn feed(&self) -> &Arc<CommitFeed> {
        &self.feed
    }

    /// Refuses new writes, commits everything queued, and waits for the writer to finish.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Where the writer commits to and reports what it committed.
struct Committer {
    stats: Arc<CommitStats>,
    feed: Arc<CommitFeed>,
    sink: Box<dyn CommitSink>,
}

impl Committer {
    /// Runs a task as commit `seq + 1`.
    fn run_task(&self, conn: &Connection, task: WriteTask, seq: &mut i64) -> Result<(i64, usize), StoreError> {
        *seq += 1;
        let started = Instant::now();
        let rows = task(conn, *seq)?;
        self.stats.record(rows, started.elapsed());
        self.stats.last_commit_seq.store(*seq as u64, Ordering::Release);
        Ok((*seq, rows))
    }
}

/// Commits until asked to stop; ends early with DuckDB's error if it invalidates the
/// database (nothing more can be committed until the file is opened again).
fn run(
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    config: WriterConfig,
    mut seq: i64,
    committed: &Committer,
) -> Result<(), String> {
    let mut stop: Option<oneshot::Sender<()>> = None;
    let mut last_commit: Option<Instant> = None;
    while stop.is_none() {
        let first = match rx.recv() {
            Ok(Msg::Write(job)) => job,
            Ok(Msg::Task(task, done)) => {
                let _ = done.send(committed.run_task(&conn, task, &mut seq));
                continue;
            }
            Ok(Msg::Stop(ack)) => {
                stop = Some(ack);
                break;
            }
            Err(_) => break,
        };
        // Group commit: keep taking requests until `commit_spacing` after the last commit
        // started, then while they keep coming (each within `linger` of the last), up to
        // `flush_rows` or `flush_interval`. An idle writer commits at once.
        let deadline = Instant::now() + config.flush_interval;
        let spaced = last_commit.map(|at| at + config.commit_spacing);
        let mut rows = first.rows;
        let mut jobs = vec![first];
        while rows < config.flush_rows {
            let now = Instant::now();
            let wait = match spaced {
                Some(spaced) if now < spaced => spaced - now,
                _ => config.linger,
            };
            let wait = wait.min(deadline.saturating_duration_since(now));
            match rx.recv_timeout(wait) {
                Ok(Msg::Write(job)) => {
                    rows += job.rows;
                    jobs.push(job);
                }
                Ok(Msg::Task(task, done)) => {
                    // Queued behind the requests taken so far: those commit first.
                    commit_jobs(&conn, std::mem::take(&mut jobs), &mut seq, committed)?;
                    let _ = done.send(committed.run_task(&conn, task, &mut seq));
                    break;
                }
                Ok(Msg::Stop(ack)) => {
                    stop = Some(ack);
                    break;
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        last_commit = Some(Instant::now());
        commit_jobs(&conn, jobs, &mut seq, committed)?;
    }
    // Shutting down: whatever was queued behind the stop request still gets committed.
    let rest: Vec<Job> = rx
        .try_iter()
        .filter_map(|m| match m {
            Msg::Write(job) => Some(job),
            Msg::Task(..) | Msg::Stop(_) => None,
        })
        .collect();
    let last = commit_jobs(&conn, rest, &mut seq, committed);
    drop(conn);
    if let Some(ack) = stop {
        let _ = ack.send(());
    }
    last
}

/// Commits the jobs in one transaction. Should that fail, each job is tried alone so that
/// one bad request cannot take the others down with it. Fails only when DuckDB has
/// invalidated the database.
fn commit_jobs(conn: &Connection, jobs: Vec<Job>, seq: &mut i64, committed: &Committer) -> Result<(), String> {
    if jobs.is_empty() {
        return Ok(());
    }
    *seq += 1;
    let started = Instant::now();
    let all: Vec<&TableBatch> = jobs.iter().flat_map(|j| &j.batches).collect();
    match committed.sink.commit(conn, &all, *seq) {
        Ok(()) => {
            let stats = &committed.stats;
            let rows = jobs.iter().map(|j| j.rows).sum();
            let took = started.elapsed();
            stats.record(rows, took);
            if took > Duration::from_millis(250) {
                tracing::debug!(rows, seconds = took.as_secs_f64(), "slow commit");
            }
            // Fed before the sequence number is published, so a stitcher that sees the
            // number finds the rows.
            if committed.sink.feeds_stitcher() {
                committed.feed.push(*seq, &all);
            }
            stats.last_commit_seq.store(*seq as u64, Ordering::Release);
            for job in jobs {
                job.finish(Ok(*seq));
            }
        }
        Err(err) if err.database_lost() => {
            committed.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, "DuckDB has invalidated the database; the writer stops");
            for job in jobs {
                job.finish(Err(StoreError::ShuttingDown));
            }
            return Err(err.to_string());
        }
        Err(StoreError::Unavailable(why)) if jobs.len() > 1 => {
            // The store out of reach is no request's fault: committing them one by one
            // would only make each wait for it again. All are answered retryably at once.
            committed.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %why, jobs = jobs.len(), "group commit failed: the store is unavailable");
            for job in jobs {
                job.finish(Err(StoreError::Unavailable(why.clone())));
            }
        }
        Err(err) if jobs.len() == 1 => {
            committed.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, "commit failed");
            if let Some(job) = jobs.into_iter().next() {
                job.finish(Err(err));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, jobs = jobs.len(), "group commit failed; committing requests one by one");
            for job in jobs {
                commit_jobs(conn, vec![job], seq, committed)?;
            }
        }
    }
    Ok(())
}

/// Appends the batches and commits, all or nothing. Also the benchmark's measure of what
/// DuckDB's appender can take on this machine.
pub fn append_in_transaction(conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError> {
    super::in_transaction(conn, || {
        // When the rows were received: what retention goes by.
        conn.prepare_cached(include_str!("../../queries/commit_time_insert.sql"))?.execute(duckdb::params![
            seq,
            now_nanos(),
            super::feed::stitch_rows(batches) as i64
        ])?;
        append_tables(conn, batches, seq, None)
    })
}

/// Appends each table's batches, with `commit_seq` set to `seq`, to the tables of
/// `catalog` (None: the local file), inside the caller's transaction.
pub fn append_tables(
    conn: &Connection,
    batches: &[&TableBatch],
    seq: i64,
    catalog: Option<&str>,
) -> Result<(), StoreError> {
    for (table, _, commit_seq_at) in ALL {
        let mut of_table = batches.iter().filter(|b| b.table == *table).peekable();
        if of_table.peek().is_none() {
            continue;
        }
        let mut appender = match catalog {
            Some(catalog) => conn.appender_to_catalog_and_db(table, catalog, "main")?,
            None => conn.appender(table)?,
        };
        for b in of_table {
            appender.append_record_batch(with_commit_seq(&b.batch, seq, *commit_seq_at))?;
        }
        appender.flush()?;
    }
    Ok(())
}

/// The batch with a `commit_seq` column inserted at `at` (the table's column order).
fn with_commit_seq(batch: &RecordBatch, seq: i64, at: usize) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.insert(at, Field::new("commit_seq", DataType::Int64, false));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.insert(at, Arc::new(Int64Array::from_value(seq, batch.num_rows())));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("one more column of the same length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_is_held_back_only_by_a_recent_report_beyond_the_limit() {
        let s = Duration::from_secs;
        let now = 1_000_000_000u64;
        // (limit, reported lag, reported how long ago in ms (None: never), held back?)
        let cases: &[(Option<Duration>, Duration, Option<u64>, bool)] = &[
            (Some(s(30)), s(31), Some(0), true),
            (Some(s(30)), s(30), Some(0), false),
            (Some(s(30)), s(5), Some(0), false),
            (None, s(3600), Some(0), false),
            (Some(s(30)), s(3600), Some(STITCH_REPORT_STALE_MS - 1), true),
            // A stitcher that stopped reporting does not hold data back.
            (Some(s(30)), s(3600), Some(STITCH_REPORT_STALE_MS), false),
            (Some(s(30)), s(3600), None, false),
        ];
        for &(limit, lag, ago, held) in cases {
            let stats = CommitStats::default();
            if let Some(ago) = ago {
                stats.stitch_lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
                stats.stitch_reported_unix_ms.store(now - ago, Ordering::Relaxed);
            }
            assert_eq!(stats.stitching_behind(limit, now).is_some(), held, "{limit:?} {lag:?} {ago:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arriving_soon_after_a_commit_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(&dir.path().join("x.duckdb")).unwrap();
        let config = WriterConfig {
            commit_spacing: Duration::from_secs(1),
            flush_interval: Duration::from_secs(5),
            ..WriterConfig::default()
        };
        let writer = Arc::new(store.start_writer(config).unwrap());
        let rows = |n: u32| vec![crate::test_support::span_rows([format!("{n:032x}")])];
        // An idle writer commits the first request by itself.
        let first = writer.write(rows(1)).await.unwrap();
        // Requests sent one at a time, each 20 ms after the last: with only the linger
        // (2 ms) to wait for company each would be a commit of its own; within the
        // spacing they are one.
        let mut waiting = Vec::new();
        for n in 2..7 {
            let writer = Arc::clone(&writer);
            waiting.push(tokio::spawn(async move { writer.write(rows(n)).await.unwrap() }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut seqs = Vec::new();
        for w in waiting {
            seqs.push(w.await.unwrap());
        }
        assert_eq!(seqs, vec![first + 1; 5]);
        writer.shutdown().await;
    }

    /// A sink whose database DuckDB has invalidated, as after a fatal error.
    struct Invalidated;

    impl CommitSink for Invalidated {
        fn commit(&self, _: &Connection, _: &[&TableBatch], _: i64) -> Result<(), StoreError> {
            Err(StoreError::Task(
                "FATAL Error: Failed: database has been invalidated because of a previous fatal error".into(),
            ))
        }

        fn feeds_stitcher(&self) -> bool {
            false
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_duckdb_has_invalidated_stops_the_writer_and_the_stage_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(&dir.path().join("x.duckdb")).unwrap();
        let writer = store.start_writer_to(WriterConfig::default(), Box::new(Invalidated)).unwrap();
        let rows = |n: u32| vec![crate::test_support::span_rows([format!("{n:032x}")])];
        // Answered retryably: a restart recovers the file.
        assert!(matches!(writer.write(rows(1)).await, Err(StoreError::ShuttingDown)));
        tokio::time::timeout(Duration::from_secs(10), writer.stage().died()).await.expect("the writer's stage dies");
        let why = writer.stage().dead().unwrap();
        assert!(why.contains("writer") && why.contains("invalidated"), "{why}");
        assert!(matches!(writer.write(rows(2)).await, Err(StoreError::ShuttingDown)));
        assert_eq!(writer.stats().failed_commits.load(Ordering::Relaxed), 1);
    }
}
