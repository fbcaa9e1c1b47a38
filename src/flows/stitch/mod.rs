//! The write side of flows: the background stitcher that turns newly committed spans into
//! the `flows` and `flow_*` tables. Nothing here reads what the pages read; pages read
//! what this writes (see [`super::queries`]).
//!
//! A round, every `interval` (see [`stitcher`]):
//! 0. Count the new messaging spans per destination and 5-second slot into
//!    `queue_counts` (one INSERT ... SELECT), which the queue pages read.
//! 1. Take the rows committed since the watermark (`commit_seq` above it): spans, span
//!    links, and log records carrying a trace id and a correlation id. They come from the
//!    writer's in-memory feed, or from the file when the feed does not hold the whole
//!    range ([`intake`]); the scan is cheap because `commit_seq` only grows, so DuckDB's
//!    zone maps skip old data.
//! 2. Bring into memory the stored flows these rows join ([`late_joins`]).
//! 3. Feed the joins into the [`joiner::Joiner`] (union-find over trace ids): links connect
//!    two traces; message ids and correlation ids are keys connecting every trace they
//!    occur in. Merges are O(smaller side); keys shared by too many traces are ignored.
//!    A span linking to several traces (a batch) joins none of them: its trace is
//!    attached to each of their flows instead ([`fan_in`]).
//! 4. Every flow that gained spans or changed shape is re-analysed from its spans
//!    ([`crate::flows::analysis::analyze`]), which stay in memory while the flow is active
//!    ([`working_set`]).
//! 5. The changed flows' rows are replaced in one transaction ([`flow_rows`]), appended as
//!    Arrow batches, with the map's sums in `flow_edge_slots` changed alongside
//!    ([`map_sums`]). Then the watermark is saved in `stitch_state`.
//! 6. Flows with no new span for `quiet_period` (and, beyond `cache_spans`, the least
//!    recently active) leave memory whole, with what the joiner knew of them.
//!
//! ## Memory does not grow with what is stored
//! The stitcher holds the flows still arriving and nothing else: no map over stored
//! traces. A restart resumes from the saved watermark with an empty working set, so it
//! stitches new spans at once whatever is stored. Recomputing stored flows (after the
//! analysis changed) is an explicit restitch ([`restitch`]): the watermark goes back and
//! rounds proceed as usual, resumably, since the watermark is saved each round.
//!
//! ## Keeping pace
//! A round reads at most `round_rows` rows (a quarter of the working set), however many
//! commits that takes. After each round the stitcher reports how late waiting data will
//! be once stitched (the lag plus the backlog at its measured rate); while that exceeds
//! `--max-stitch-lag`, the writer refuses new requests retryably, so a sustained ingest
//! faster than stitching slows the exporters instead of growing the backlog.

pub(crate) mod aliases;
mod attempts;
mod fan_in;
mod flow_rows;
pub mod intake;
pub mod join_filter;
pub mod join_runs;
pub mod joiner;
mod late_joins;
mod map_sums;
mod pace;
mod parallel;
pub mod restitch;
mod stitcher;
mod working_set;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::flows::analysis::DestinationPatterns;
use crate::stage::StageState;
use crate::store::{Store, StoreError, Writer};
use crate::text::now_nanos;
use join_runs::RunStats;
pub use stitcher::Stitcher;

/// Starts the stitcher thread; the receiver reports its progress.
pub fn start(
    store: &Store,
    writer: &Writer,
    config: StitchConfig,
) -> Result<(StitcherHandle, watch::Receiver<StitchProgress>), StoreError> {
    let (progress, watcher) = watch::channel(StitchProgress::default());
    let stitcher = Stitcher::new(store, Arc::clone(writer.stats()), Arc::clone(writer.feed()), config, progress)?;
    let handle = stitcher.spawn().map_err(|e| StoreError::Task(e.to_string()))?;
    Ok((handle, watcher))
}

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
    pub destination_patterns: DestinationPatterns,
    /// Most spans of one flow analysed; a larger flow is analysed on its earliest spans
    /// and marked truncated, so one runaway flow cannot make every round cost more.
    pub max_flow_spans: usize,
    /// Queue aliases from the config file: alias (an exchange) -> queue, any system.
    pub configured_queue_aliases: std::collections::BTreeMap<String, String>,
    /// How long after its last change a stored flow can still be joined by a late span
    /// (through its trace id, a link, a message id or a correlation id). Lookups read
    /// the join rows written in this window, so it bounds their cost.
    pub join_window: Duration,
    /// Most bytes of the filter of hashes written in the join window (see [`join_filter`]).
    pub join_filter_bytes: usize,
    /// Join hashes written since the newest sorted run that make a new run (see
    /// [`join_runs`]); lookups scan at most about this many unsorted hashes.
    pub join_run_hashes: usize,
    /// Threads a round's flows are analysed on (see [`parallel`]); the flows written
    /// are the same whatever the number.
    pub threads: usize,
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
            destination_patterns: DestinationPatterns::default(),
            configured_queue_aliases: Default::default(),
            max_flow_spans: 10_000,
            join_window: Duration::from_secs(24 * 3600),
            join_filter_bytes: 64 << 20,
            join_run_hashes: 1 << 20,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
    /// Rounds that read their new rows back from the file: the commit feed had let some
    /// of them go (it was full, or the process had just started).
    pub rows_from_file: u64,
    /// Bytes of the join filter, and how long its last build took.
    pub join_filter_bytes: usize,
    pub join_filter_build_seconds: f64,
    /// Whether the filter in use at start was the one saved at the last clean stop.
    pub join_filter_restored: bool,
    /// The sorted runs of join hashes that lookups read.
    pub join_runs: RunStats,
    /// Commits set aside in all: stitching them failed again and again, even alone.
    pub set_aside: u64,
}

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
