//! The background stitcher: turns newly committed spans into flows.
//!
//! Algorithm (each round, every `interval`):
//! 0. Count the new messaging spans per destination and 5-second slot into
//!    `queue_counts` (one INSERT ... SELECT), which the queue pages read.
//! 1. Take the rows committed since the watermark (`commit_seq` above it): spans, span
//!    links, and log records carrying a trace id and a correlation id. They come from the
//!    writer's in-memory feed, or from the file when the feed does not hold the whole
//!    range (see [`intake`]); the scan is cheap because `commit_seq` only grows, so
//!    DuckDB's zone maps skip old data.
//! 2. Bring into memory the stored flows these rows join (see "Joining late spans").
//! 3. Feed the joins into the [`Joiner`] (union-find over trace ids): links connect two
//!    traces; message ids and correlation ids are keys connecting every trace they occur
//!    in. Merges are O(smaller side); keys shared by too many traces are ignored.
//! 4. Every flow that gained spans or changed shape is re-analysed from its spans
//!    ([`analysis::analyze`]), which stay in memory while the flow is active.
//! 5. The changed flows' rows are replaced in one transaction (flows, flow_traces,
//!    flow_join_keys, flow_hops, flow_retries, flow_dead_letters), appended as Arrow
//!    batches. The flow map's sums in `flow_edge_slots` change in the same transaction:
//!    the old flows' cells, returned by the delete, subtracted, the new ones added (see
//!    [`edges`]). Then the watermark is saved in `stitch_state`.
//! 6. Flows with no new span for `quiet_period` (and, beyond `cache_spans`, the least
//!    recently active) leave memory whole, with what the joiner knew of them.
//!
//! ## Memory does not grow with what is stored
//! The stitcher holds the flows still arriving and nothing else: no map over stored
//! traces. A restart resumes from the saved watermark with an empty working set, so it
//! stitches new spans at once whatever is stored. Recomputing stored flows (after the
//! analysis changed) is an explicit restitch: the watermark goes back (to 0 with the flow
//! tables emptied, or to the first commit since a time) and rounds proceed as usual,
//! resumably, since the watermark is saved each round ([`Restitch`]).
//!
//! ## Joining late spans
//! A span whose trace is not in memory, a link to such a trace, and a message or
//! correlation id not seen in memory may join a stored flow. One lookup per round finds
//! those flows: the 64-bit join hashes of all of them go into a temp table, joined
//! against `flow_traces.trace_key` (a flow's traces) and `flow_join_keys.key` (its links
//! and keys). Each flow found is loaded whole (its traces, their joins, their spans) and
//! then joined like any flow in memory, so a restart changes no flow.
//!
//! Why sorted runs and not indexes: DuckDB holds an ART index wholly in memory, and an
//! index over trace ids has one entry per stored trace (in-memory maps per stored trace
//! cost ~700 bytes per stored span before this design; with the flow-id ART indexes kept,
//! a 10 M-span file filled DuckDB's 512 MiB share and every stitching round failed with
//! "failed to pin block"). Instead the window's hashes are kept in runs sorted by hash
//! ([`super::join_runs`]), where zone maps take a probe to one row group of each run,
//! and the hashes written since the newest run are scanned, restricted by
//! `updated_unix_nano`: rows are appended in write order (a rewritten flow's rows move to
//! the end), so zone maps skip everything older. A lookup so costs about the same
//! whatever the window holds (0.15 s at 40 M spans, where a scan of the window took
//! 0.37 s and kept growing), with nothing resident. A flow's rows are found again by
//! (flow_id, updated_unix_nano), also through zone maps (BENCHMARKS.md, "Fifth session"
//! and "Sixteenth session").
//!
//! Most rounds skip the lookup: a Bloom filter of the hashes written in the window
//! ([`super::join_filter`], a sixteenth of the memory budget) shows when none of a
//! round's traces and keys was ever stored, which is the case unless late spans of
//! flows that left memory arrive. Past the 33 M hashes its size allows it says "maybe"
//! to most rounds, which the runs keep cheap. Its reads are planned each round: a plan
//! cached on an empty file put the hash table on the stored side.
//!
//! ## Keeping pace
//! A round reads at most `round_rows` rows (a quarter of the working set), however many
//! commits that takes. After each round the stitcher reports how late waiting data will
//! be once stitched (the lag plus the backlog at its measured rate); while that exceeds
//! `--max-stitch-lag`, the writer refuses new requests retryably, so a sustained ingest
//! faster than stitching slows the exporters instead of growing the backlog.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use super::analysis::{self, DeadLetterPatterns, FlowAnalysis, QueueAlias, SpanFacts};
use super::edges::{self, EdgeChanges};
use super::ids::TraceId;
use super::intake::{self, NewRows};
use super::join_filter::{self, JoinFilters};
use super::join_runs::{self, JoinRuns, RunStats};
use super::joiner::{self, JoinKey, Joiner};
use super::{HashMap, HashSet};
use crate::stage::{StageGuard, StageState};
use crate::store::tables::{
    FlowDeadLetterRows, FlowEdgeSlotRows, FlowHopRows, FlowJoinKeyRows, FlowRetryRows, FlowRows, FlowTraceRows,
};
use crate::store::{execute_statements, in_transaction, CommitFeed, CommitStats, Store, StoreError};
use crate::text::now_nanos;

#[derive(Debug, Clone)]
pub struct StitchConfig {
    pub interval: Duration,
    /// A flow with no new span for this long is settled.
    pub quiet_period: Duration,
    /// A message or correlation id shared by more traces than this is ignored for joining.
    pub key_trace_limit: usize,
    /// Most commits read per round, so catching up proceeds in bounded steps.
    pub commits_per_round: i64,
    /// Most rows (spans, span links, log records) read per round, beyond its first
    /// commit: a lagging stitcher otherwise reads 50 large commits at once.
    pub round_rows: usize,
    /// Most spans kept in memory; beyond it the least recently active traces are
    /// dropped (and reloaded from the file should they get a late span).
    pub cache_spans: usize,
    pub dead_letter_patterns: DeadLetterPatterns,
    /// Most spans of one flow analysed; a larger flow is analysed on its earliest spans
    /// and marked truncated, so one runaway flow cannot make every round cost more.
    pub max_flow_spans: usize,
    /// Queue aliases from the config file: alias (an exchange) -> queue, any system.
    pub configured_queue_aliases: std::collections::BTreeMap<String, String>,
    /// How long after its last change a stored flow can still be joined by a late span
    /// (through its trace id, a link, a message id or a correlation id). Lookups read
    /// the join rows written in this window, so it bounds their cost.
    pub join_window: Duration,
    /// Most bytes of the filter of hashes written in the join window (see
    /// [`super::join_filter`]).
    pub join_filter_bytes: usize,
    /// Join hashes written since the newest sorted run that make a new run (see
    /// [`super::join_runs`]); lookups scan at most about this many unsorted hashes.
    pub join_run_hashes: usize,
}

impl Default for StitchConfig {
    fn default() -> Self {
        StitchConfig {
            interval: Duration::from_millis(500),
            quiet_period: Duration::from_secs(30),
            key_trace_limit: 1000,
            commits_per_round: 50,
            round_rows: 25_000,
            cache_spans: 100_000,
            dead_letter_patterns: DeadLetterPatterns::default(),
            configured_queue_aliases: Default::default(),
            max_flow_spans: 10_000,
            join_window: Duration::from_secs(24 * 3600),
            join_filter_bytes: 64 << 20,
            join_run_hashes: 1 << 20,
        }
    }
}

impl StitchConfig {
    /// The join window in nanoseconds.
    fn window_nanos(&self) -> i64 {
        self.join_window.as_nanos().min(i64::MAX as u128) as i64
    }

    /// Where the join window starts now: only flows written since can be joined.
    fn window_start(&self) -> i64 {
        now_nanos().saturating_sub(self.window_nanos())
    }
}

/// What the rest of flowscope can see of the stitcher's progress.
#[derive(Debug, Default, Clone)]
pub struct StitchProgress {
    /// Highest commit sequence number fully stitched.
    pub stitched_seq: i64,
    pub spans_stitched: u64,
    pub flows_written: u64,
    pub rounds: u64,
    pub last_error: Option<String>,
    /// How long ago the oldest commit not yet stitched was received (0: caught up).
    pub lag: Duration,
    /// A restitch in progress: from which commit to which (see [`Restitch`]).
    pub restitch: Option<Restitch>,
    /// What the stitcher holds in memory: traces with their spans, and spans.
    pub cached_traces: usize,
    pub cached_spans: usize,
    /// Traces the in-memory joiner knows (the cached ones and those they link to).
    pub joined_traces: usize,
    /// Rounds that looked stored flows up in the file, and rounds whose traces and keys
    /// the join filter showed were never written, so that read nothing.
    pub file_lookups: u64,
    pub lookups_skipped: u64,
    /// Bytes of the join filter, and how long its last build took.
    pub join_filter_bytes: usize,
    pub join_filter_build_seconds: f64,
    /// Whether the filter in use at start was the one saved at the last clean stop.
    pub join_filter_restored: bool,
    /// The sorted runs of join hashes that lookups read.
    pub join_runs: RunStats,
}

/// The `stitch_state` entry holding the rows of `flow_edge_slots` after its last
/// compaction.
const EDGE_SLOTS_COMPACTED_ROWS: &str = "edge_slots_compacted_rows";

/// A recomputation of stored flows: the stitcher went back to commit `from` and is
/// stitching again up to `to` (the last commit when it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restitch {
    pub from: i64,
    pub to: i64,
}

impl Restitch {
    /// The share done, 0 to 1, at the given watermark.
    pub fn done(&self, watermark: i64) -> f64 {
        let span = (self.to - self.from).max(1) as f64;
        ((watermark - self.from) as f64 / span).clamp(0.0, 1.0)
    }
}

/// Where the flow of a trace in memory was last written: its id and the time of the
/// write, which together find its rows without an index (migration 015).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StoredFlow {
    flow_id: TraceId,
    updated: i64,
}

struct CachedTrace {
    spans: Vec<SpanFacts>,
    /// When the stitcher last took in a span of this trace (its clock, not the span's:
    /// exporters batch, retry and run on skewed clocks).
    last_seen: i64,
    /// The earliest commit among spans taken in since the trace's flow was last written.
    unwritten_from: Option<i64>,
}

impl CachedTrace {
    fn new(now: i64) -> Self {
        CachedTrace { spans: Vec::new(), last_seen: now, unwritten_from: None }
    }
}

/// Stops the stitcher thread when asked or dropped.
pub struct StitcherHandle {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    stage: Arc<StageState>,
}

impl StitcherHandle {
    /// Whether the stitcher thread is alive.
    pub fn stage(&self) -> &Arc<StageState> {
        &self.stage
    }

    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StitcherHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

pub struct Stitcher {
    commits: Arc<CommitStats>,
    feed: Arc<CommitFeed>,
    conn: Connection,
    config: StitchConfig,
    joiner: Joiner,
    cache: HashMap<TraceId, CachedTrace>,
    /// The stored flow of each trace in memory whose flow has been written.
    stored: HashMap<TraceId, StoredFlow>,
    /// Flows changed but not yet written (kept across a failed write).
    dirty: HashSet<TraceId>,
    watermark: i64,
    /// The watermark as last saved in `stitch_state`.
    saved_watermark: i64,
    restitch: Option<Restitch>,
    /// When the cache was last trimmed (stitcher clock).
    last_eviction: i64,
    /// Flows written since the stitcher last checkpointed.
    written_since_checkpoint: usize,
    /// Spans stitched per second of a busy round (a moving average): how fast a backlog
    /// clears.
    spans_per_second: f64,
    /// Last commit whose messaging spans are in `queue_counts`.
    queues_counted_through: i64,
    /// Queue aliases already in `queue_aliases` (a few per exchange: small).
    known_aliases: HashSet<QueueAlias>,
    /// When to compact the map's sums.
    edge_slots: EdgeSlotsSize,
    /// The join hashes written in the join window, and when it was built (stitcher clock).
    join_filter: JoinFilters,
    /// Where the join filter is saved at a clean stop.
    saved_filter: std::path::PathBuf,
    /// Lookups made and skipped since the last progress report.
    lookups: (u64, u64),
    /// The join hashes of the window sorted into runs, which lookups read; and the
    /// time of each write.
    join_runs: JoinRuns,
    progress: watch::Sender<StitchProgress>,
}

impl Stitcher {
    pub fn new(
        store: &Store,
        commits: Arc<CommitStats>,
        feed: Arc<CommitFeed>,
        config: StitchConfig,
        progress: watch::Sender<StitchProgress>,
    ) -> Result<Stitcher, StoreError> {
        let conn = store.connect()?;
        conn.execute_batch(include_str!("../../queries/stitch_temp_tables.sql"))?;
        let queues_counted_through =
            conn.query_row(include_str!("../../queries/queue_counts_through.sql"), [], |r| r.get(0))?;
        let state: HashMap<String, i64> = conn
            .prepare(include_str!("../../queries/stitch_state.sql"))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let watermark = state.get("stitched_seq").copied().unwrap_or(0);
        let restitch = match (state.get("restitch_from"), state.get("restitch_to")) {
            (Some(from), Some(to)) if *to > watermark => Some(Restitch { from: *from, to: *to }),
            _ => None,
        };
        let mut joiner = Joiner::new(config.key_trace_limit);
        {
            let mut stmt = conn.prepare(include_str!("../../queries/ignored_join_keys.sql"))?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (kind, value, traces) = row?;
                if let Some(key) = JoinKey::from_stored(&kind, value) {
                    joiner.ignore_key(key, traces as usize);
                }
            }
        }
        in_transaction(&conn, || {
            conn.execute(include_str!("../../queries/queue_aliases_clear_configured.sql"), [])?;
            let mut insert = conn.prepare(include_str!("../../queries/queue_alias_insert.sql"))?;
            for (alias, queue) in &config.configured_queue_aliases {
                insert.execute(params!["", alias, queue, 0, "config"])?;
            }
            Ok(())
        })?;
        let known_aliases = super::queries::stored_queue_aliases(&conn)?.into_iter().collect();
        let saved_filter = join_filter::saved_path(store.path());
        let join_filter = JoinFilters::take_saved(
            &conn,
            &saved_filter,
            state.get(join_filter::SAVED_TOKEN).copied().unwrap_or(0),
            config.join_filter_bytes,
            config.window_start(),
        )?;
        let edge_rows: i64 =
            conn.query_row(include_str!("../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
        let join_runs = JoinRuns::open(&conn, config.join_run_hashes, config.interval * 4)?;
        Ok(Stitcher {
            join_runs,
            join_filter,
            saved_filter,
            lookups: (0, 0),
            known_aliases,
            commits,
            feed,
            conn,
            joiner,
            config,
            cache: HashMap::default(),
            stored: HashMap::default(),
            dirty: HashSet::default(),
            watermark,
            saved_watermark: watermark,
            restitch,
            last_eviction: 0,
            written_since_checkpoint: 0,
            spans_per_second: 0.0,
            queues_counted_through,
            edge_slots: EdgeSlotsSize::since_compaction(
                state.get(EDGE_SLOTS_COMPACTED_ROWS).copied().unwrap_or(0) as usize,
                edge_rows as usize,
            ),
            progress,
        })
    }

    /// Runs rounds on a thread of its own (it owns a DuckDB connection and does blocking
    /// work) until the returned handle is stopped. Catching up runs rounds back to back.
    pub fn spawn(mut self) -> std::io::Result<StitcherHandle> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let stage = StageState::new();
        let guard = StageGuard::new("stitcher", Arc::clone(&stage));
        let thread = std::thread::Builder::new().name("flowscope-stitcher".into()).spawn(move || loop {
            // A panic in a round (a bug meeting odd data) is reported like a failed round;
            // flows that panic the analysis are skipped inside the round already.
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.round()));
            let round = match round {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(panic) => Err(format!("stitching round panicked: {}", crate::text::panic_message(&panic))),
            };
            let caught_up = match round {
                Ok(more) => !more,
                Err(e) => {
                    tracing::warn!(error = %e, "stitching round failed; will retry");
                    self.progress.send_modify(|p| p.last_error = Some(e));
                    true
                }
            };
            let wait = if caught_up { self.config.interval } else { Duration::ZERO };
            match stopped.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => {
                    self.stop();
                    guard.stopped();
                    return;
                }
            }
        })?;
        Ok(StitcherHandle { stop, thread: Some(thread), stage })
    }

    /// What a clean stop leaves for the next start: the join filter in use (see
    /// [`JoinFilters::save_for_next_start`]).
    pub fn stop(&mut self) {
        self.join_runs.finish();
        self.join_filter.save_for_next_start(&self.conn, &self.saved_filter);
    }

    /// One round. Returns whether more committed data is waiting.
    pub fn round(&mut self) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let latest = self.commits.last_commit_seq.load(Ordering::Acquire) as i64;
        let mut upper = self.round_upper(latest)?;
        if self.watermark < self.queues_counted_through {
            // Restitching: a round stays on one side of what is already counted.
            upper = upper.min(self.queues_counted_through);
        }
        let mut stitched = 0;
        if upper > self.watermark {
            if upper > self.queues_counted_through {
                // Counted first: should the rest of the round fail, its retry does not
                // count the same spans again.
                self.conn
                    .execute(include_str!("../../queries/queue_counts_add.sql"), params![self.watermark, upper])?;
                self.queues_counted_through = upper;
            }
            stitched = self.ingest_new(self.watermark, upper)?;
            self.watermark = upper;
        }
        let written = self.write_dirty()?;
        self.compact_edge_slots_if_due()?;
        self.save_watermark()?;
        self.evict(now_nanos());
        self.written_since_checkpoint += written;
        if upper >= latest && self.written_since_checkpoint >= CHECKPOINT_AFTER_FLOWS {
            // Caught up after many rewrites: fold the log into the file now, while quiet.
            // Until then every page reads the rewritten flows' old versions and the log's
            // uncompressed rows (at 10 M spans the chain page took 230 ms just after a
            // catch-up, 90 ms after a checkpoint). Fails harmlessly while other
            // transactions run; DuckDB's own checkpoint (by log size) stays the backstop.
            let checkpoint_started = std::time::Instant::now();
            match self.conn.execute_batch(include_str!("../../queries/checkpoint.sql")) {
                Ok(()) => {
                    tracing::info!(
                        flows_written = self.written_since_checkpoint,
                        seconds = checkpoint_started.elapsed().as_secs_f64(),
                        "checkpointed after catching up"
                    );
                    self.written_since_checkpoint = 0;
                }
                Err(e) => tracing::debug!(error = %e, "checkpoint after catching up deferred"),
            }
        }
        let watermark = self.written_through();
        let (lag, backlog) = self.lag(watermark, latest)?;
        if stitched >= BUSY_ROUND_SPANS {
            let rate = stitched as f64 / started.elapsed().as_secs_f64().max(1e-3);
            self.spans_per_second =
                if self.spans_per_second == 0.0 { rate } else { 0.8 * self.spans_per_second + 0.2 * rate };
        }
        // Ingest is held back by how late new data will be once stitched (not by a
        // restitch of old data): the lag now plus the time the backlog takes to clear.
        // Going by the lag alone, ingest resumed only once the backlog had cleared, and the
        // lag went on growing for as long as that took (to twice the limit).
        let expected = match self.restitch {
            Some(_) => Duration::ZERO,
            None => expected_lag(lag, backlog, self.spans_per_second),
        };
        self.commits.report_stitch_lag(expected);
        self.join_filter.advance(&self.conn, now_nanos(), self.config.window_nanos(), self.config.join_filter_bytes)?;
        self.join_runs.advance(&self.conn, self.config.window_start())?;
        let join_runs = self.join_runs.stats();
        let (restitch, joined_traces) = (self.restitch, self.joiner.traces());
        let ((file_lookups, lookups_skipped), join_filter_bytes, join_filter_build_seconds) =
            (std::mem::take(&mut self.lookups), self.join_filter.bytes(), self.join_filter.last_build_seconds());
        let join_filter_restored = self.join_filter.restored();
        let (cached_traces, cached_spans) = (self.cache.len(), self.cache.values().map(|c| c.spans.len()).sum());
        self.progress.send_modify(|p| {
            p.stitched_seq = watermark;
            p.spans_stitched += stitched as u64;
            p.flows_written += written as u64;
            p.rounds += 1;
            p.last_error = None;
            p.lag = lag;
            p.restitch = restitch;
            p.cached_traces = cached_traces;
            p.cached_spans = cached_spans;
            p.joined_traces = joined_traces;
            p.file_lookups += file_lookups;
            p.lookups_skipped += lookups_skipped;
            p.join_filter_bytes = join_filter_bytes;
            p.join_filter_build_seconds = join_filter_build_seconds;
            p.join_filter_restored = join_filter_restored;
            p.join_runs = join_runs;
        });
        Ok(upper < latest)
    }

    /// The last commit of the next round: as many commits as fit in `round_rows` rows,
    /// at least one, at most `commits_per_round`.
    fn round_upper(&self, latest: i64) -> Result<i64, StoreError> {
        let most = latest.min(self.watermark + self.config.commits_per_round);
        if most <= self.watermark + 1 {
            return Ok(most);
        }
        let fits: Option<i64> = self
            .conn
            .prepare_cached(include_str!("../../queries/stitch_round_upper.sql"))?
            .query_row(params![self.watermark, most, self.config.round_rows as i64], |r| r.get(0))?;
        Ok(fits.unwrap_or(self.watermark + 1).max(self.watermark + 1))
    }

    /// The last commit whose spans are all in written flows: the watermark, or just below
    /// the earliest span of a flow whose write is pending (deferred, or failed).
    fn written_through(&self) -> i64 {
        let pending = self.dirty.iter().filter_map(|t| self.cache.get(t)?.unwritten_from).min();
        pending.map_or(self.watermark, |seq| self.watermark.min(seq - 1))
    }

    /// Saves how far flows are written, so a restart resumes there (reading again what a
    /// pending flow had not written); ends a restitch that has reached its target.
    fn save_watermark(&mut self) -> Result<(), StoreError> {
        let through = self.written_through();
        if through == self.saved_watermark {
            return Ok(());
        }
        let conn = &self.conn;
        let finished = self.restitch.filter(|r| through >= r.to);
        in_transaction(conn, || {
            let mut set = conn.prepare_cached(include_str!("../../queries/stitch_state_set.sql"))?;
            set.execute(params!["stitched_seq", through])?;
            if finished.is_some() {
                set.execute(params!["restitch_to", 0])?;
            }
            Ok(())
        })?;
        if let Some(r) = finished {
            tracing::info!(from = r.from, to = r.to, "restitch finished");
            self.restitch = None;
        }
        self.saved_watermark = through;
        Ok(())
    }

    /// How long ago the oldest commit not yet in written flows was received, and how many
    /// rows of those commits the stitcher has still to read.
    fn lag(&self, through: i64, latest: i64) -> Result<(Duration, u64), StoreError> {
        if latest <= through {
            return Ok((Duration::ZERO, 0));
        }
        let (received, backlog): (Option<i64>, i64) = self
            .conn
            .prepare_cached(include_str!("../../queries/stitch_lag.sql"))?
            .query_row(params![through, latest], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let lag =
            received.map_or(Duration::ZERO, |t| Duration::from_nanos(now_nanos().saturating_sub(t).max(0) as u64));
        Ok((lag, backlog.max(0) as u64))
    }

    fn ingest_new(&mut self, from: i64, to: i64) -> Result<usize, StoreError> {
        let NewRows { mut spans, links, log_keys } = match self.feed.take(from, to) {
            Some(commits) => intake::from_feed(&commits),
            None => intake::from_file(&self.conn, from, to)?,
        };
        // Stored flows these rows join are brought into memory first (with every span
        // committed up to `to`, so this round's spans of them are already there).
        let loaded = self.load_joined_flows(&spans, &links, &log_keys, to)?;
        for (trace, _, link) in &links {
            if !self.joiner.link(*trace, link.trace_id) && self.joiner.ignored_links().is_power_of_two() {
                tracing::warn!(
                    ignored = self.joiner.ignored_links(),
                    "span links that would join more traces than the guard allows are ignored"
                );
            }
            if let Some(m) = &link.message_id {
                self.join_key(*trace, JoinKey::MessageId(m.clone()));
            }
        }
        intake::attach_links(&mut spans, links);
        let now = now_nanos();
        for (trace, corr) in log_keys {
            self.join_key(trace, JoinKey::Correlation(corr));
            // A trace known only from logs so far stays in memory for the quiet period,
            // so that its spans, when they come, are joined by the log's correlation id.
            self.cache.entry(trace).or_insert_with(|| CachedTrace::new(now)).last_seen = now;
            self.dirty.insert(trace);
        }
        let count = spans.len();
        for s in &spans {
            self.joiner.add_trace(s.trace_id);
            if let Some(m) = &s.message_id {
                self.join_key(s.trace_id, JoinKey::MessageId(m.clone()));
            }
            if let Some(c) = &s.correlation_id {
                self.join_key(s.trace_id, JoinKey::Correlation(c.clone()));
            }
            self.dirty.insert(s.trace_id);
        }
        for s in spans {
            let entry = self.cache.entry(s.trace_id).or_insert_with(|| CachedTrace::new(now));
            entry.last_seen = now;
            entry.unwritten_from = Some(entry.unwritten_from.map_or(s.commit_seq, |u| u.min(s.commit_seq)));
            if !loaded.contains(&s.trace_id) {
                entry.spans.push(s);
            }
        }
        Ok(count)
    }

    /// Finds the stored flows that the new rows join (by trace id, link target, message id
    /// or correlation id not already in memory), and loads each whole: its traces, their
    /// links and keys, and their spans committed up to `upto_seq`. Returns the traces
    /// loaded. A stored id that does not read as hex digits (only a file changed by hand
    /// holds one) joins nothing.
    fn load_joined_flows(
        &mut self,
        spans: &[SpanFacts],
        links: &[intake::LinkRow],
        log_keys: &[(TraceId, String)],
        upto_seq: i64,
    ) -> Result<HashSet<TraceId>, StoreError> {
        let mut probes = self.probes(spans, links, log_keys);
        if probes.is_empty() {
            return Ok(HashSet::default());
        }
        probes.retain(|key, _| self.join_filter.may_contain(*key));
        if probes.is_empty() {
            self.lookups.1 += 1;
            return Ok(HashSet::default());
        }
        self.lookups.0 += 1;
        let since = self.config.window_start();
        // key -> the stored flows it reaches
        let mut reached: HashMap<i64, Vec<(StoredFlow, i64)>> = HashMap::default();
        for (key, flow_id, updated, start) in
            join_runs::look_up(&self.conn, probes.keys().copied(), since, self.join_runs.through())?
        {
            if let Some(flow_id) = TraceId::parse(&flow_id) {
                reached.entry(key).or_default().push((StoredFlow { flow_id, updated }, start));
            }
        }
        let in_memory: HashSet<&StoredFlow> = self.stored.values().collect();
        let mut found: HashMap<StoredFlow, i64> = HashMap::default();
        let mut giant: Vec<(JoinKey, usize)> = Vec::new();
        for (key, flows) in reached {
            match probes.get(&key) {
                // A key the file shows in more flows than the limit is not an identifier
                // of one operation: ignored, as if the traces had arrived together.
                Some(Some(join_key)) if flows.len() > self.config.key_trace_limit => {
                    giant.push((join_key.clone(), flows.len()));
                    continue;
                }
                Some(_) => {}
                None => continue, // a hash collision with nothing probed
            }
            for (flow, start) in flows {
                if !in_memory.contains(&flow) {
                    found.insert(flow, start);
                }
            }
        }
        for (key, traces) in giant {
            self.ignore_key(key, traces);
        }
        if found.is_empty() {
            return Ok(HashSet::default());
        }
        let oldest_write = found.keys().map(|f| f.updated).min().unwrap_or(since);
        let conn = &self.conn;
        {
            let mut app = conn.appender("found_flows")?;
            for flow in found.keys() {
                app.append_row(params![flow.flow_id.hex(), flow.updated])?;
            }
            app.flush()?;
        }
        let by_id: HashMap<TraceId, StoredFlow> = found.keys().map(|f| (f.flow_id, *f)).collect();
        let mut member_flows: Vec<(TraceId, StoredFlow)> = Vec::new();
        {
            let mut stmt = conn.prepare(include_str!("../../queries/stitch_found_members.sql"))?;
            let rows = stmt.query_map([oldest_write], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (trace, flow) = row?;
                let (Some(trace), Some(flow)) = (TraceId::parse(&trace), TraceId::parse(&flow)) else { continue };
                if let Some(f) = by_id.get(&flow) {
                    member_flows.push((trace, *f));
                }
            }
        }
        let joins: Vec<(String, String, String)> = conn
            .prepare(include_str!("../../queries/stitch_found_joins.sql"))?
            .query_map([oldest_write], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        // No stored span of these flows starts before their stored start; this round's
        // spans (read again with them) may, such as a root span arriving last.
        let from_start = found.values().copied().chain(spans.iter().map(|s| s.start)).min().unwrap_or(i64::MIN);
        let members: Vec<TraceId> = member_flows.iter().map(|(t, _)| *t).collect();
        for t in &members {
            self.joiner.add_trace(*t);
        }
        for (trace, kind, value) in joins {
            let Some(trace) = TraceId::parse(&trace) else { continue };
            if kind == LINK {
                if let Some(to) = TraceId::parse(&value) {
                    self.joiner.link(trace, to);
                }
            } else if let Some(key) = JoinKey::from_stored(&kind, value) {
                self.join_key(trace, key);
            }
        }
        tracing::debug!(
            flows = found.len(),
            traces = members.len(),
            probes = probes.len(),
            span_window_s = (spans.iter().map(|s| s.start).max().unwrap_or(from_start) - from_start) / 1_000_000_000,
            "loading stored flows that new rows join"
        );
        self.stored.extend(member_flows);
        self.reload(&members, from_start, upto_seq)?;
        Ok(members.into_iter().collect())
    }

    /// The join hashes to look up for new rows: traces and link targets not in memory, and
    /// message and correlation ids not seen in memory (None for a trace, else the key).
    fn probes(
        &self,
        spans: &[SpanFacts],
        links: &[intake::LinkRow],
        log_keys: &[(TraceId, String)],
    ) -> HashMap<i64, Option<JoinKey>> {
        let mut probes: HashMap<i64, Option<JoinKey>> = HashMap::default();
        let trace = |probes: &mut HashMap<i64, Option<JoinKey>>, t: TraceId| {
            if !self.joiner.knows_trace(t) {
                probes.insert(t.join_hash(), None);
            }
        };
        let key = |probes: &mut HashMap<i64, Option<JoinKey>>, k: JoinKey| {
            if !self.joiner.knows_key(&k) {
                probes.insert(k.hash(), Some(k));
            }
        };
        for s in spans {
            trace(&mut probes, s.trace_id);
            if let Some(m) = &s.message_id {
                key(&mut probes, JoinKey::MessageId(m.clone()));
            }
            if let Some(c) = &s.correlation_id {
                key(&mut probes, JoinKey::Correlation(c.clone()));
            }
        }
        for (t, _, link) in links {
            trace(&mut probes, *t);
            trace(&mut probes, link.trace_id);
            if let Some(m) = &link.message_id {
                key(&mut probes, JoinKey::MessageId(m.clone()));
            }
        }
        for (t, corr) in log_keys {
            trace(&mut probes, *t);
            key(&mut probes, JoinKey::Correlation(corr.clone()));
        }
        probes
    }

    fn join_key(&mut self, trace: TraceId, key: JoinKey) {
        if let Some(split) = self.joiner.key(trace, key) {
            self.record_ignored_key(&split.ignored.key, split.ignored.traces);
            self.dirty.extend(split.traces);
        }
    }

    /// Ignores a key the file shows to be shared by more flows than the limit.
    fn ignore_key(&mut self, key: JoinKey, flows: usize) {
        self.record_ignored_key(&key, flows);
        self.joiner.ignore_key(key, flows);
    }

    fn record_ignored_key(&self, key: &JoinKey, traces: usize) {
        tracing::warn!(
            kind = key.kind(),
            value = key.value(),
            traces,
            "join key shared by too many traces; ignoring it for joining"
        );
        let _ = self.conn.execute(
            include_str!("../../queries/ignored_join_key_insert.sql"),
            params![key.kind(), key.value(), traces as i64, now_nanos()],
        );
    }

    /// Loads every span (and link) of the given traces from the database into the cache;
    /// none starts before `from_start`, which bounds the scan.
    fn reload(&mut self, traces: &[TraceId], from_start: i64, upto_seq: i64) -> Result<(), StoreError> {
        if traces.is_empty() {
            return Ok(());
        }
        self.conn.execute_batch(include_str!("../../queries/stitch_traces_clear.sql"))?;
        {
            let mut app = self.conn.appender("stitch_traces")?;
            for t in traces {
                app.append_row([t.hex()])?;
            }
            app.flush()?;
        }
        let spans = intake::reload_from_file(&self.conn, from_start, upto_seq)?;
        let now = now_nanos();
        for t in traces {
            self.cache.insert(*t, CachedTrace::new(now));
        }
        for s in spans {
            let entry = self.cache.get_mut(&s.trace_id).expect("reloaded trace has an entry");
            entry.spans.push(s);
        }
        Ok(())
    }

    /// Re-analyses and rewrites every dirty flow; returns how many flows were written.
    fn write_dirty(&mut self) -> Result<usize, StoreError> {
        if self.dirty.is_empty() {
            return Ok(0);
        }
        // Every member of these flows is in memory: stored flows are loaded whole.
        let flows = self.joiner.flows_of(self.dirty.iter().copied());

        let now = self.join_runs.write_time();
        let mut stale: HashSet<StoredFlow> = HashSet::default();
        // Spans are analysed in place (borrowed from the cache), not copied per round.
        let mut analysed: Vec<AnalysedFlow> = Vec::new();
        let mut deferred: HashSet<TraceId> = HashSet::default();
        for members in flows {
            if self.defer(&members, now) {
                deferred.extend(members);
                continue;
            }
            for t in &members {
                if let Some(old) = self.stored.get(t) {
                    stale.insert(*old);
                }
            }
            let mut spans: Vec<&SpanFacts> =
                members.iter().filter_map(|t| self.cache.get(t)).flat_map(|c| &c.spans).collect();
            let truncated = analysis::keep_earliest(&mut spans, self.config.max_flow_spans);
            if spans.is_empty() {
                // Only log records so far: nothing to show until a span arrives.
                continue;
            }
            let patterns = &self.config.dead_letter_patterns;
            match std::panic::catch_unwind(|| analysis::analyze(&spans, patterns)) {
                Ok(a) => analysed.push((members, spans, a, truncated)),
                Err(panic) => tracing::error!(
                    trace = %members[0],
                    spans = spans.len(),
                    error = %crate::text::panic_message(&panic),
                    "analysing a flow panicked; its spans stay stored, the flow is not written"
                ),
            }
        }

        tracing::debug!(flows = analysed.len(), rewritten = stale.len(), "writing flows");
        let (conn, joiner, join_filter) = (&self.conn, &self.joiner, &mut self.join_filter);
        let (written, edge_rows) = in_transaction(conn, || {
            // New flows have nothing to replace; only rewritten flows need the deletes. A
            // few are deleted one by one through the flow-id indexes; many at once with
            // one scan per table.
            let mut edge_changes = EdgeChanges::default();
            let mut subtract = |rows: &mut duckdb::Rows<'_>| -> Result<(), StoreError> {
                while let Some(r) = rows.next()? {
                    let (chain, seq, cells, start): (String, i64, Option<String>, i64) =
                        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                    edge_changes.apply(&chain, seq, edges::parse_cells(cells.as_deref(), start), -1);
                }
                Ok(())
            };
            if stale.len() <= DELETE_ONE_BY_ONE {
                for old in &stale {
                    let key: [&dyn duckdb::ToSql; 2] = [&old.flow_id.hex(), &old.updated];
                    subtract(
                        &mut conn
                            .prepare_cached(include_str!("../../queries/stitch_delete_flow_row.sql"))?
                            .query(&key[..])?,
                    )?;
                    execute_statements(conn, include_str!("../../queries/stitch_delete_flow.sql"), &key)?;
                }
            } else if let Some(oldest_write) = stale.iter().map(|f| f.updated).min() {
                let mut app = conn.appender("stale_flows")?;
                for old in &stale {
                    app.append_row([old.flow_id.hex()])?;
                }
                app.flush()?;
                drop(app);
                subtract(
                    &mut conn
                        .prepare(include_str!("../../queries/stitch_delete_stale_rows.sql"))?
                        .query([oldest_write])?,
                )?;
                execute_statements(conn, include_str!("../../queries/stitch_delete_stale.sql"), &[&oldest_write])?;
            }
            write_flows(conn, joiner, join_filter, &analysed, now, &mut edge_changes)?;
            Ok((analysed.len(), append_edge_changes(conn, &edge_changes)?))
        })?;
        let aliases: Vec<QueueAlias> =
            analysed.iter().flat_map(|(_, _, a, _)| a.queue_aliases.iter().cloned()).collect();
        let flow_ids: Vec<(Vec<TraceId>, TraceId)> =
            analysed.into_iter().map(|(members, spans, a, _)| (members, spans[a.root].trace_id)).collect();
        for (members, flow_id) in flow_ids {
            for t in members {
                if let Some(c) = self.cache.get_mut(&t) {
                    c.unwritten_from = None;
                }
                self.stored.insert(t, StoredFlow { flow_id, updated: now });
            }
        }
        self.dirty = deferred;
        self.learn_aliases(aliases.iter(), now)?;
        self.edge_slots.appended(edge_rows);
        Ok(written)
    }

    /// Folds the map's sums into a row per cell once as many rows have been appended since
    /// the last time as it then held (see `flow_edge_slots_compact.sql`).
    fn compact_edge_slots_if_due(&mut self) -> Result<(), StoreError> {
        if !self.edge_slots.due() {
            return Ok(());
        }
        let conn = &self.conn;
        let started = std::time::Instant::now();
        let rows = in_transaction(conn, || {
            conn.execute_batch(include_str!("../../queries/flow_edge_slots_compact.sql"))?;
            let rows: i64 =
                conn.query_row(include_str!("../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
            conn.execute(include_str!("../../queries/stitch_state_set.sql"), params![EDGE_SLOTS_COMPACTED_ROWS, rows])?;
            Ok(rows)
        })?;
        tracing::info!(
            appended = self.edge_slots.appended,
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "flow map sums compacted"
        );
        self.edge_slots = EdgeSlotsSize::since_compaction(rows as usize, rows as usize);
        Ok(())
    }

    /// Whether to leave a changed flow for a later round: a large flow written less than
    /// `BIG_FLOW_INTERVAL` ago. Re-analysing a flow costs its size, so a flow of
    /// thousands of spans receiving one span per round would otherwise cost thousands
    /// of span analyses per span; this way it costs at most one analysis per interval.
    fn defer(&self, members: &[TraceId], now: i64) -> bool {
        let spans: usize = members.iter().filter_map(|t| self.cache.get(t)).map(|c| c.spans.len()).sum();
        spans > BIG_FLOW_SPANS
            && members.iter().filter_map(|t| self.stored.get(t)).any(|f| now - f.updated < BIG_FLOW_INTERVAL_NS)
    }

    /// Records queue aliases not seen before. An alias is a pair of names one exchange
    /// or queue really has, so they are few; the cap only stops a hostile stream of
    /// made-up names from growing the table and the set.
    fn learn_aliases<'a>(&mut self, seen: impl Iterator<Item = &'a QueueAlias>, now: i64) -> Result<(), StoreError> {
        let new: Vec<QueueAlias> = seen
            .filter(|a| !self.known_aliases.contains(*a))
            .take(MAX_QUEUE_ALIASES.saturating_sub(self.known_aliases.len()))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let conn = &self.conn;
        in_transaction(conn, || {
            let mut insert = conn.prepare_cached(include_str!("../../queries/queue_alias_insert.sql"))?;
            for a in &new {
                insert.execute(params![a.system, a.alias, a.queue, now, "learnt"])?;
            }
            Ok(())
        })?;
        for a in new {
            tracing::info!(system = %a.system, alias = %a.alias, queue = %a.queue, "learnt a queue alias");
            self.known_aliases.insert(a);
        }
        Ok(())
    }

    /// Forgets the flows quiet for `quiet_period`, then, while more than `cache_spans`
    /// remain, the least recently active ones (down to three quarters of the cap, so the
    /// sort is paid rarely). Whole flows go, with what the joiner knew of them; a late span
    /// finds them again in the file. Runs at most once a second unless over the cap.
    fn evict(&mut self, now: i64) {
        // A trace known only from log records counts as one span, so that a flood of them
        // is capped like spans are.
        let cached: usize = self.cache.values().map(|c| c.spans.len().max(1)).sum();
        let over_cap = cached > self.config.cache_spans;
        if !over_cap && now - self.last_eviction < EVICTION_INTERVAL_NS {
            return;
        }
        self.last_eviction = now;
        let cutoff = now - self.config.quiet_period.as_nanos() as i64;
        // (last activity, spans, members) of every flow in memory
        let mut flows: Vec<(i64, usize, Vec<TraceId>)> = self
            .joiner
            .flows()
            .map(|members| {
                let cached = members.iter().filter_map(|t| self.cache.get(t));
                let (seen, spans) =
                    cached.fold((i64::MIN, 0), |(seen, n), c| (seen.max(c.last_seen), n + c.spans.len().max(1)));
                (seen, spans, members)
            })
            .collect();
        let before = flows.len();
        let mut forget: Vec<TraceId> = Vec::new();
        // Flows whose write is pending (deferred, or failed) stay.
        let pending = |members: &[TraceId]| members.iter().any(|t| self.dirty.contains(t));
        flows.retain_mut(|(seen, _, members)| {
            let keep = *seen >= cutoff || pending(members);
            if !keep {
                forget.append(members);
            }
            keep
        });
        let mut remaining: usize = flows.iter().map(|(_, spans, _)| spans).sum();
        if remaining > self.config.cache_spans {
            flows.sort_unstable_by_key(|(seen, _, _)| *seen);
            let target = self.config.cache_spans / 4 * 3;
            for (_, spans, members) in &mut flows {
                if remaining <= target {
                    break;
                }
                if pending(members) {
                    continue;
                }
                remaining -= *spans;
                forget.append(members);
            }
        }
        if forget.is_empty() {
            return;
        }
        tracing::trace!(flows = before - flows.len(), traces = forget.len(), "forgetting quiet flows");
        for t in &forget {
            self.cache.remove(t);
            self.stored.remove(t);
        }
        self.joiner.forget(forget);
    }
}

/// How late data waiting to be stitched will be once it is: `lag` now, plus `backlog`
/// rows at `rows_per_second` (not yet measured: the lag alone).
fn expected_lag(lag: Duration, backlog: u64, rows_per_second: f64) -> Duration {
    if rows_per_second <= 0.0 {
        return lag;
    }
    lag + Duration::from_secs_f64((backlog as f64 / rows_per_second).min(1e6))
}

/// Rounds with fewer spans than this say little about how fast a backlog clears.
const BUSY_ROUND_SPANS: usize = 1_000;

/// A flow with more spans than this is re-analysed at most once per interval (ns).
const BIG_FLOW_SPANS: usize = 1_000;
const BIG_FLOW_INTERVAL_NS: i64 = 2_000_000_000;

/// Flows written after which a caught-up stitcher checkpoints the database.
const CHECKPOINT_AFTER_FLOWS: usize = 100_000;

/// How often quiet flows are forgotten when the cache is under its cap (ns).
const EVICTION_INTERVAL_NS: i64 = 1_000_000_000;

/// The kind of a stored link row in `flow_join_keys`.
const LINK: &str = "link";

/// Most queue aliases learnt; real brokers have a few per exchange.
const MAX_QUEUE_ALIASES: usize = 10_000;

/// Up to this many changed flows are deleted through the indexes, one by one; beyond it a
/// scan per table is cheaper.
const DELETE_ONE_BY_ONE: usize = 200;

/// A JSON array of strings, serialised from borrowed ones.
fn json_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::to_string(&items.into_iter().collect::<Vec<&str>>()).expect("strings serialize")
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// A flow ready to write: its traces, the spans analysed, the analysis, and whether the
/// flow had more spans than were analysed.
type AnalysedFlow<'a> = (Vec<TraceId>, Vec<&'a SpanFacts>, FlowAnalysis, bool);

/// Appends the round's changes to the map's sums; returns how many rows it appended.
fn append_edge_changes(conn: &Connection, changes: &EdgeChanges) -> Result<usize, StoreError> {
    let mut rows = FlowEdgeSlotRows::new();
    for (chain, seq, key, counts) in changes.rows() {
        rows.slot_unix_nano.append_value(key.slot);
        rows.chain.append_value(chain);
        rows.kind.append_value(key.kind.as_str());
        rows.source.append_value(&key.source);
        rows.target.append_value(&key.target);
        rows.system.append_option(key.system.as_deref());
        rows.latency_bucket.append_option(key.bucket);
        rows.n.append_value(counts.n);
        rows.errors.append_value(counts.errors);
        rows.retries.append_value(counts.retries);
        rows.dead_letters.append_value(counts.dead_letters);
        rows.commit_seq.append_value(seq);
    }
    let Some(batch) = rows.finish() else { return Ok(0) };
    let appended = batch.batch.num_rows();
    let mut appender = conn.appender(batch.table)?;
    appender.append_record_batch(batch.batch)?;
    appender.flush()?;
    Ok(appended)
}

/// How many rows `flow_edge_slots` holds: compacted, and appended since. Compacting once
/// the appended rows outnumber the compacted ones keeps the cost per row constant.
#[derive(Debug, Clone, Copy)]
struct EdgeSlotsSize {
    compacted: usize,
    appended: usize,
}

impl EdgeSlotsSize {
    /// Appended rows that never warrant a compaction on their own.
    const FLOOR: usize = 100_000;

    /// The table's size after its last compaction (as saved), and now.
    fn since_compaction(compacted: usize, now: usize) -> Self {
        EdgeSlotsSize { compacted, appended: now.saturating_sub(compacted) }
    }

    fn appended(&mut self, rows: usize) {
        self.appended += rows;
    }

    fn due(&self) -> bool {
        self.appended > self.compacted.max(Self::FLOOR)
    }
}

fn write_flows(
    conn: &Connection,
    joiner: &Joiner,
    join_filter: &mut JoinFilters,
    flows: &[AnalysedFlow<'_>],
    now: i64,
    edge_changes: &mut EdgeChanges,
) -> Result<(), StoreError> {
    // Built as Arrow batches: appending whole columns costs a fraction of binding values
    // row by row, which profiles showed as a quarter of the stitcher's time.
    let mut flow_rows = FlowRows::new();
    let mut trace_rows = FlowTraceRows::new();
    let mut join_rows = FlowJoinKeyRows::new();
    let mut hop_rows = FlowHopRows::new();
    let mut retry_rows = FlowRetryRows::new();
    let mut dead_rows = FlowDeadLetterRows::new();
    for (members, spans, a, truncated) in flows {
        let root = &spans[a.root];
        let flow_id = root.trace_id.number();
        let last_commit_seq = spans.iter().map(|s| s.commit_seq).max().unwrap_or(0);
        let f = &mut flow_rows;
        f.flow_id.append_value(flow_id);
        f.chain.append_value(&a.chain);
        f.root_service.append_value(&root.service);
        f.root_name.append_value(&root.name);
        f.path.append_value(json_array(a.path.iter().map(String::as_str)));
        f.services.append_value(json_array(a.services.iter().map(String::as_str)));
        f.start_unix_nano.append_value(a.start);
        f.end_unix_nano.append_value(a.end);
        f.duration_ms.append_value(ms(a.end - a.start));
        f.span_count.append_value(spans.len() as i32);
        f.trace_count.append_value(a.trace_ids.len() as i32);
        f.error.append_value(a.error);
        f.hops.append_value(a.hops.len() as i32);
        f.retries.append_value(a.retries.len() as i32);
        f.dead_letters.append_value(a.dead_letters.len() as i32);
        f.queue_wait_ms.append_value(ms(a.queue_wait_ns));
        f.service_ms.append_value(ms(a.service_ns));
        f.retry_delay_ms.append_value(ms(a.retry_delay_ns));
        f.clock_skew_hops.append_value(a.hops.iter().filter(|h| h.clock_skew).count() as i32);
        f.updated_unix_nano.append_value(now);
        f.last_commit_seq.append_value(last_commit_seq);
        f.truncated.append_value(*truncated);
        f.steps.append_value(super::breakdown::steps_json(&a.steps));
        let cells = edges::flow_cells(spans, a);
        f.edges.append_value(edges::cells_json(&cells, a.start));
        edge_changes.apply(&a.chain, last_commit_seq, cells, 1);
        for t in members {
            let r = &mut trace_rows;
            r.flow_id.append_value(flow_id);
            r.trace_id.append_value(t.number());
            let trace_key = t.join_hash();
            join_filter.insert(trace_key);
            r.trace_key.append_value(trace_key);
            r.flow_start_unix_nano.append_value(a.start);
            r.updated_unix_nano.append_value(now);
            let (links, keys) = joiner.joins_of(*t);
            let mut join_row = |key: i64, kind: &str, value: &str| {
                let r = &mut join_rows;
                join_filter.insert(key);
                r.key.append_value(key);
                r.flow_id.append_value(flow_id);
                r.trace_id.append_value(t.number());
                r.kind.append_value(kind);
                r.value.append_value(value);
                r.flow_start_unix_nano.append_value(a.start);
                r.updated_unix_nano.append_value(now);
            };
            // A link joins two members of this flow, and both ends list it: the row is
            // written from one end only (the loader restores both), and no lookup needs
            // it, since the other end's trace row has the same hash. Written from both
            // ends, links were two fifths of the join rows.
            for to in links.into_iter().filter(|to| t < to) {
                let to = to.hex();
                join_row(joiner::trace_hash(&to), LINK, &to);
            }
            for k in keys {
                join_row(k.hash(), k.kind(), k.value());
            }
        }
        for (i, h) in a.hops.iter().enumerate() {
            let producer = h.producer.map(|p| spans[p]);
            let r = &mut hop_rows;
            r.flow_id.append_value(flow_id);
            r.hop_index.append_value(i as i32);
            r.system.append_option(h.system.as_deref());
            r.destination.append_option(h.destination.as_deref());
            r.producer_trace_id.append_option(producer.map(|p| p.trace_id.number()));
            r.producer_span_id.append_option(producer.map(|p| p.span_id.hex()));
            r.producer_service.append_option(producer.map(|p| &p.service));
            let consumers: Vec<_> = h.consumers.iter().map(|c| spans[*c].span_id.hex()).collect();
            r.consumer_span_ids.append_value(json_array(consumers.iter().map(|c| &**c)));
            r.consumer_service.append_option(h.consumers.first().map(|c| &spans[*c].service));
            r.sent_unix_nano.append_value(h.time);
            r.queue_wait_ms.append_value(ms(h.queue_wait_ns));
            r.clock_skew.append_value(h.clock_skew);
            r.dead_letter.append_value(h.dead_letter);
            r.chain.append_value(&a.chain);
            r.flow_start_unix_nano.append_value(a.start);
            r.source_destination.append_option(h.source_destination.as_deref());
            r.updated_unix_nano.append_value(now);
        }
        for retry in &a.retries {
            let r = &mut retry_rows;
            r.flow_id.append_value(flow_id);
            r.time_unix_nano.append_value(retry.time);
            r.service.append_value(&retry.service);
            r.destination.append_option(retry.destination.as_deref());
            r.span_id.append_value(spans[retry.span].span_id.hex());
            r.attempt.append_value(retry.attempt);
            r.delay_ms.append_value(ms(retry.delay_ns));
            r.previous_span_id.append_option(retry.previous.map(|p| spans[p].span_id.hex()));
            r.updated_unix_nano.append_value(now);
        }
        for d in &a.dead_letters {
            let r = &mut dead_rows;
            r.flow_id.append_value(flow_id);
            r.time_unix_nano.append_value(d.time);
            r.destination.append_value(&d.destination);
            r.source_destination.append_option(d.source_destination.as_deref());
            r.message_id.append_option(d.message_id.as_deref());
            r.correlation_id.append_option(d.correlation_id.as_deref());
            r.error.append_option(d.error.as_deref());
            r.span_id.append_value(spans[d.span].span_id.hex());
            r.updated_unix_nano.append_value(now);
        }
    }
    let batches = [
        flow_rows.finish(),
        trace_rows.finish(),
        join_rows.finish(),
        hop_rows.finish(),
        retry_rows.finish(),
        dead_rows.finish(),
    ];
    for batch in batches.into_iter().flatten() {
        let mut appender = conn.appender(batch.table)?;
        appender.append_record_batch(batch.batch)?;
        appender.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_sums_are_compacted_once_the_rows_appended_since_outgrow_what_was_left() {
        // (rows after the last compaction as saved, rows now, due)
        for (compacted, now, due) in [
            (0, 632_000, true),        // a file from before the count was saved
            (71_000, 140_000, false),  // appended less than the floor
            (71_000, 171_001, true),   // past the floor
            (400_000, 700_000, false), // appended less than it held
            (400_000, 800_001, true),  // doubled
            (500_000, 300_000, false), // retention deleted rows since
        ] {
            assert_eq!(EdgeSlotsSize::since_compaction(compacted, now).due(), due, "{compacted} then {now}");
        }
        let mut size = EdgeSlotsSize::since_compaction(71_000, 71_000);
        size.appended(100_000);
        assert!(!size.due());
        size.appended(1);
        assert!(size.due());
    }

    #[test]
    fn json_arrays_of_strings_are_escaped_like_serde_json_s() {
        for items in [vec![], vec!["checkout"], vec!["a \"quoted\" name", "tab\there", "ünïcode", "\u{1}"]] {
            assert_eq!(json_array(items.iter().copied()), serde_json::to_string(&items).unwrap());
        }
    }

    #[test]
    fn expected_lag_adds_the_time_the_backlog_takes() {
        let s = Duration::from_secs;
        // (lag now, backlog rows, rows per second, expected)
        let cases = [
            (s(5), 200_000, 20_000.0, s(15)),
            (s(0), 600_000, 20_000.0, s(30)),
            (s(5), 0, 20_000.0, s(5)),
            (s(5), 1_000_000, 0.0, s(5)), // rate not measured yet
            (s(1), u64::MAX, 1e-9, s(1) + s(1_000_000)),
        ];
        for (lag, backlog, rate, want) in cases {
            assert_eq!(expected_lag(lag, backlog, rate), want, "{lag:?} {backlog} {rate}");
        }
    }
}
