//! The background stitcher: turns newly committed spans into flows.
//!
//! Algorithm (each round, every `interval`):
//! 0. Count the new messaging spans per destination and 5-second slot into
//!    `queue_counts` (one INSERT ... SELECT), which the queue pages read.
//! 1. Take the rows committed since the last round (`commit_seq` above the watermark):
//!    spans, span links, and log records carrying a trace id and a correlation id. They
//!    come from the writer's in-memory feed, or from the file when the feed does not hold
//!    the whole range (see [`intake`]); the scan is cheap because `commit_seq` only grows,
//!    so DuckDB's zone maps skip old data.
//! 2. Feed the joins into the [`Joiner`] (union-find over trace ids): links connect two
//!    traces; message ids and correlation ids are keys connecting every trace they occur
//!    in. Merges are O(smaller side); keys shared by too many traces are ignored.
//! 3. Every flow that gained spans or changed shape is re-analysed from its spans
//!    ([`analysis::analyze`]), which the stitcher keeps in memory while the flow is
//!    active; a trace with no new span for `quiet_period` (or, beyond `cache_spans`, the
//!    least recently active ones) is evicted and reloaded from DuckDB only if a late span
//!    arrives for it.
//! 4. The changed flows' rows are replaced in one transaction on the stitcher's own
//!    connection (flows, flow_traces, flow_hops, flow_retries, flow_dead_letters),
//!    appended as Arrow batches; the old rows of a few changed flows are deleted through
//!    the flow-id indexes, of many with one scan per table. The flow map's sums in
//!    `flow_edge_slots` change in the same transaction: the old flows' cells, returned
//!    by the delete, subtracted, the new ones added (see [`edges`]).
//!
//! Each span is read once and each flow re-analysed once per round it changes in, so the
//! cost grows linearly with the spans ingested. On start the stitcher replays the stored
//! spans from the beginning (recomputing every flow), which also applies any change to
//! the analysis to old data; spans already in `queue_counts` are not counted again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use super::analysis::{self, DeadLetterPatterns, FlowAnalysis, QueueAlias, SpanFacts};
use super::edges::{self, EdgeChanges};
use super::intake::{self, NewRows};
use super::joiner::{JoinKey, Joiner, TraceId};
use super::{HashMap, HashSet};
use crate::stage::{StageGuard, StageState};
use crate::store::tables::{FlowDeadLetterRows, FlowEdgeSlotRows, FlowHopRows, FlowRetryRows, FlowRows, FlowTraceRows};
use crate::store::{in_transaction, CommitFeed, CommitStats, Store, StoreError};
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
    /// Most spans kept in memory; beyond it the least recently active traces are
    /// dropped (and reloaded from the file should they get a late span).
    pub cache_spans: usize,
    pub dead_letter_patterns: DeadLetterPatterns,
    /// Most spans of one flow analysed; a larger flow is analysed on its earliest spans
    /// and marked truncated, so one runaway flow cannot make every round cost more.
    pub max_flow_spans: usize,
    /// Queue aliases from the config file: alias (an exchange) -> queue, any system.
    pub configured_queue_aliases: std::collections::BTreeMap<String, String>,
}

impl Default for StitchConfig {
    fn default() -> Self {
        StitchConfig {
            interval: Duration::from_millis(500),
            quiet_period: Duration::from_secs(30),
            key_trace_limit: 1000,
            commits_per_round: 50,
            cache_spans: 100_000,
            dead_letter_patterns: DeadLetterPatterns::default(),
            configured_queue_aliases: Default::default(),
            max_flow_spans: 10_000,
        }
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
}

/// Where a trace's rows were last written: its flow's id and start. No span of the trace
/// starts before that, which bounds the scan when the trace is reloaded.
struct WrittenAs {
    flow_id: String,
    flow_start: i64,
}

struct CachedTrace {
    spans: Vec<SpanFacts>,
    /// When the stitcher last took in a span of this trace (its clock, not the span's:
    /// exporters batch, retry and run on skewed clocks).
    last_seen: i64,
}

impl CachedTrace {
    fn new(now: i64) -> Self {
        CachedTrace { spans: Vec::new(), last_seen: now }
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
    /// The flow id each trace's rows were last written under.
    written_as: HashMap<TraceId, WrittenAs>,
    /// Flows changed but not yet written (kept across a failed write).
    dirty: HashSet<TraceId>,
    watermark: i64,
    /// Last commit whose messaging spans are in `queue_counts`.
    queues_counted_through: i64,
    /// Queue aliases already in `queue_aliases` (a few per exchange: small).
    known_aliases: HashSet<QueueAlias>,
    /// When to compact the map's sums.
    edge_slots: EdgeSlotsSize,
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
        let mut written_as = HashMap::default();
        {
            let mut stmt = conn.prepare(include_str!("../../queries/stitch_written_flows.sql"))?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(1)?, WrittenAs { flow_id: r.get(0)?, flow_start: r.get(2)? }))
            })?;
            for row in rows {
                let (trace, written) = row?;
                written_as.insert(trace, written);
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
        let edge_rows: i64 =
            conn.query_row(include_str!("../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
        Ok(Stitcher {
            known_aliases,
            commits,
            feed,
            conn,
            joiner: Joiner::new(config.key_trace_limit),
            config,
            cache: HashMap::default(),
            written_as,
            dirty: HashSet::default(),
            watermark: 0,
            queues_counted_through,
            edge_slots: EdgeSlotsSize::compacted(edge_rows as usize),
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
                    guard.stopped();
                    return;
                }
            }
        })?;
        Ok(StitcherHandle { stop, thread: Some(thread), stage })
    }

    /// One round. Returns whether more committed data is waiting.
    pub fn round(&mut self) -> Result<bool, StoreError> {
        let latest = self.commits.last_commit_seq.load(Ordering::Acquire) as i64;
        let mut upper = latest.min(self.watermark + self.config.commits_per_round);
        if self.watermark < self.queues_counted_through {
            // Replaying: a round stays on one side of what is already counted.
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
        self.evict(now_nanos());
        let watermark = self.watermark;
        self.progress.send_modify(|p| {
            p.stitched_seq = watermark;
            p.spans_stitched += stitched as u64;
            p.flows_written += written as u64;
            p.rounds += 1;
            p.last_error = None;
        });
        Ok(upper < latest)
    }

    fn ingest_new(&mut self, from: i64, to: i64) -> Result<usize, StoreError> {
        let NewRows { mut spans, links, log_keys } = match self.feed.take(from, to) {
            Some(commits) => intake::from_feed(&commits),
            None => intake::from_file(&self.conn, from, to)?,
        };
        for (trace, _, link) in &links {
            if !self.joiner.link(trace, &link.trace_id) && self.joiner.ignored_links().is_power_of_two() {
                tracing::warn!(
                    ignored = self.joiner.ignored_links(),
                    "span links that would join more traces than the guard allows are ignored"
                );
            }
            if let Some(m) = &link.message_id {
                self.join_key(trace, JoinKey::MessageId(m.clone()));
            }
        }
        intake::attach_links(&mut spans, links);
        for (trace, corr) in log_keys {
            self.join_key(&trace, JoinKey::Correlation(corr));
            self.dirty.insert(trace);
        }
        let count = spans.len();
        // Traces seen before whose spans were evicted are reloaded whole (which includes
        // the new spans), the others get the new spans appended.
        let evicted: HashSet<TraceId> = spans
            .iter()
            .map(|s| &s.trace_id)
            .filter(|t| !self.cache.contains_key(*t) && self.written_as.contains_key(*t))
            .cloned()
            .collect();
        for s in &spans {
            self.joiner.add_trace(&s.trace_id);
            if let Some(m) = &s.message_id {
                self.join_key(&s.trace_id, JoinKey::MessageId(m.clone()));
            }
            if let Some(c) = &s.correlation_id {
                self.join_key(&s.trace_id, JoinKey::Correlation(c.clone()));
            }
            self.dirty.insert(s.trace_id.clone());
        }
        let now = now_nanos();
        for s in spans {
            if evicted.contains(&s.trace_id) {
                continue;
            }
            let entry = match self.cache.get_mut(&s.trace_id) {
                Some(entry) => entry,
                None => self.cache.entry(s.trace_id.clone()).or_insert_with(|| CachedTrace::new(now)),
            };
            entry.last_seen = now;
            entry.spans.push(s);
        }
        self.reload(&evicted.into_iter().collect::<Vec<_>>(), to)?;
        Ok(count)
    }

    fn join_key(&mut self, trace: &str, key: JoinKey) {
        if let Some(split) = self.joiner.key(trace, key) {
            tracing::warn!(
                kind = split.ignored.key.kind(),
                value = split.ignored.key.value(),
                traces = split.ignored.traces,
                "join key shared by too many traces; ignoring it for joining"
            );
            let _ = self.conn.execute(
                include_str!("../../queries/ignored_join_key_insert.sql"),
                params![split.ignored.key.kind(), split.ignored.key.value(), split.ignored.traces as i64, now_nanos()],
            );
            self.dirty.extend(split.traces);
        }
    }

    /// Loads every span (and link) of the given traces from the database into the cache.
    fn reload(&mut self, traces: &[TraceId], upto_seq: i64) -> Result<(), StoreError> {
        if traces.is_empty() {
            return Ok(());
        }
        let from_start = traces.iter().filter_map(|t| self.written_as.get(t)).map(|w| w.flow_start).min();
        self.conn.execute_batch(include_str!("../../queries/stitch_traces_clear.sql"))?;
        {
            let mut app = self.conn.appender("stitch_traces")?;
            for t in traces {
                app.append_row([t])?;
            }
            app.flush()?;
        }
        let spans = intake::reload_from_file(&self.conn, from_start.unwrap_or(i64::MIN), upto_seq)?;
        let now = now_nanos();
        for t in traces {
            self.cache.insert(t.clone(), CachedTrace::new(now));
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
        let flows = self.joiner.flows_of(self.dirty.iter().map(String::as_str));
        // Members of these flows that are not in memory must be reloaded first.
        let missing: Vec<TraceId> = flows
            .iter()
            .flatten()
            .filter(|t| !self.cache.contains_key(*t) && self.written_as.contains_key(*t))
            .cloned()
            .collect();
        self.reload(&missing, self.watermark)?;

        let now = now_nanos();
        let mut stale: HashSet<String> = HashSet::default();
        // Spans are analysed in place (borrowed from the cache), not copied per round.
        let mut analysed: Vec<AnalysedFlow> = Vec::new();
        for members in flows {
            for t in &members {
                if let Some(old) = self.written_as.get(t) {
                    stale.insert(old.flow_id.clone());
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
        let conn = &self.conn;
        let (written, edge_rows) = in_transaction(conn, || {
            // New flows have nothing to replace; only rewritten flows need the deletes. A
            // few are deleted one by one through the flow-id indexes; many at once with
            // one scan per table.
            let mut edge_changes = EdgeChanges::default();
            let mut subtract = |rows: &mut duckdb::Rows<'_>| -> Result<(), StoreError> {
                while let Some(r) = rows.next()? {
                    let (chain, seq, cells): (String, i64, Option<String>) = (r.get(0)?, r.get(1)?, r.get(2)?);
                    edge_changes.apply(&chain, seq, &edges::parse_cells(cells.as_deref()), -1);
                }
                Ok(())
            };
            if stale.len() <= DELETE_ONE_BY_ONE {
                for id in &stale {
                    subtract(
                        &mut conn
                            .prepare_cached(include_str!("../../queries/stitch_delete_flow_row.sql"))?
                            .query([id])?,
                    )?;
                    for sql in include_str!("../../queries/stitch_delete_flow.sql").split_terminator(";\n") {
                        conn.prepare_cached(sql)?.execute([id])?;
                    }
                }
            } else {
                let mut app = conn.appender("stale_flows")?;
                for id in &stale {
                    app.append_row([id])?;
                }
                app.flush()?;
                drop(app);
                subtract(&mut conn.prepare(include_str!("../../queries/stitch_delete_stale_rows.sql"))?.query([])?)?;
                conn.execute_batch(include_str!("../../queries/stitch_delete_stale.sql"))?;
            }
            write_flows(conn, &analysed, now, &mut edge_changes)?;
            Ok((analysed.len(), append_edge_changes(conn, edge_changes)?))
        })?;
        let aliases: Vec<QueueAlias> =
            analysed.iter().flat_map(|(_, _, a, _)| a.queue_aliases.iter().cloned()).collect();
        let flow_ids: Vec<(Vec<TraceId>, String, i64)> = analysed
            .into_iter()
            .map(|(members, spans, a, _)| (members, spans[a.root].trace_id.clone(), a.start))
            .collect();
        for (members, flow_id, flow_start) in flow_ids {
            for t in members {
                self.written_as.insert(t, WrittenAs { flow_id: flow_id.clone(), flow_start });
            }
        }
        self.dirty.clear();
        self.learn_aliases(aliases.iter(), now)?;
        self.edge_slots.appended(edge_rows);
        if self.edge_slots.due() {
            let conn = &self.conn;
            in_transaction(
                conn,
                || Ok(conn.execute_batch(include_str!("../../queries/flow_edge_slots_compact.sql"))?),
            )?;
            let rows: i64 =
                conn.query_row(include_str!("../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
            self.edge_slots = EdgeSlotsSize::compacted(rows as usize);
        }
        Ok(written)
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

    /// Forgets the spans of traces quiet for `quiet_period`, then, while more than
    /// `cache_spans` remain, those of the least recently active traces (down to three
    /// quarters of the cap, so the sort is paid rarely).
    fn evict(&mut self, now: i64) {
        let cutoff = now - self.config.quiet_period.as_nanos() as i64;
        self.cache.retain(|_, c| c.last_seen >= cutoff);
        let cached: usize = self.cache.values().map(|c| c.spans.len()).sum();
        if cached <= self.config.cache_spans {
            return;
        }
        let mut by_age: Vec<(i64, usize, &TraceId)> =
            self.cache.iter().map(|(t, c)| (c.last_seen, c.spans.len(), t)).collect();
        by_age.sort_unstable_by_key(|(seen, _, _)| *seen);
        let target = self.config.cache_spans / 4 * 3;
        let mut remaining = cached;
        let mut oldest: Vec<TraceId> = Vec::new();
        for (_, spans, trace) in by_age {
            if remaining <= target {
                break;
            }
            remaining -= spans;
            oldest.push(trace.clone());
        }
        for t in oldest {
            self.cache.remove(&t);
        }
    }
}

/// Most queue aliases learnt; real brokers have a few per exchange.
const MAX_QUEUE_ALIASES: usize = 10_000;

/// Up to this many changed flows are deleted through the indexes, one by one; beyond it a
/// scan per table is cheaper.
const DELETE_ONE_BY_ONE: usize = 200;

fn json_array(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    serde_json::to_string(&items.into_iter().map(|s| s.as_ref().to_owned()).collect::<Vec<_>>())
        .expect("strings serialize")
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// A flow ready to write: its traces, the spans analysed, the analysis, and whether the
/// flow had more spans than were analysed.
type AnalysedFlow<'a> = (Vec<TraceId>, Vec<&'a SpanFacts>, FlowAnalysis, bool);

/// Appends the round's changes to the map's sums; returns how many rows it appended.
fn append_edge_changes(conn: &Connection, changes: EdgeChanges) -> Result<usize, StoreError> {
    let mut rows = FlowEdgeSlotRows::new();
    for (chain, seq, key, counts) in changes.into_rows() {
        rows.slot_unix_nano.append_value(key.slot);
        rows.chain.append_value(chain);
        rows.kind.append_value(key.kind.as_str());
        rows.source.append_value(key.source);
        rows.target.append_value(key.target);
        rows.system.append_option(key.system);
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

    fn compacted(rows: usize) -> Self {
        EdgeSlotsSize { compacted: rows, appended: 0 }
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
    flows: &[AnalysedFlow<'_>],
    now: i64,
    edge_changes: &mut EdgeChanges,
) -> Result<(), StoreError> {
    // Built as Arrow batches: appending whole columns costs a fraction of binding values
    // row by row, which profiles showed as a quarter of the stitcher's time.
    let mut flow_rows = FlowRows::new();
    let mut trace_rows = FlowTraceRows::new();
    let mut hop_rows = FlowHopRows::new();
    let mut retry_rows = FlowRetryRows::new();
    let mut dead_rows = FlowDeadLetterRows::new();
    for (members, spans, a, truncated) in flows {
        let root = &spans[a.root];
        let flow_id = root.trace_id.as_str();
        let last_commit_seq = spans.iter().map(|s| s.commit_seq).max().unwrap_or(0);
        let f = &mut flow_rows;
        f.flow_id.append_value(flow_id);
        f.chain.append_value(&a.chain);
        f.root_service.append_value(&root.service);
        f.root_name.append_value(&root.name);
        f.path.append_value(json_array(&a.path));
        f.services.append_value(json_array(&a.services));
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
        f.edges.append_value(edges::cells_json(&cells));
        edge_changes.apply(&a.chain, last_commit_seq, &cells, 1);
        for t in members {
            trace_rows.flow_id.append_value(flow_id);
            trace_rows.trace_id.append_value(t);
        }
        for (i, h) in a.hops.iter().enumerate() {
            let producer = h.producer.map(|p| spans[p]);
            let r = &mut hop_rows;
            r.flow_id.append_value(flow_id);
            r.hop_index.append_value(i as i32);
            r.system.append_option(h.system.as_deref());
            r.destination.append_option(h.destination.as_deref());
            r.producer_trace_id.append_option(producer.map(|p| &p.trace_id));
            r.producer_span_id.append_option(producer.map(|p| &p.span_id));
            r.producer_service.append_option(producer.map(|p| &p.service));
            r.consumer_span_ids.append_value(json_array(h.consumers.iter().map(|c| spans[*c].span_id.as_str())));
            r.consumer_service.append_option(h.consumers.first().map(|c| &spans[*c].service));
            r.sent_unix_nano.append_value(h.time);
            r.queue_wait_ms.append_value(ms(h.queue_wait_ns));
            r.clock_skew.append_value(h.clock_skew);
            r.dead_letter.append_value(h.dead_letter);
            r.chain.append_value(&a.chain);
            r.flow_start_unix_nano.append_value(a.start);
            r.source_destination.append_option(h.source_destination.as_deref());
        }
        for retry in &a.retries {
            let r = &mut retry_rows;
            r.flow_id.append_value(flow_id);
            r.time_unix_nano.append_value(retry.time);
            r.service.append_value(&retry.service);
            r.destination.append_option(retry.destination.as_deref());
            r.span_id.append_value(&spans[retry.span].span_id);
            r.attempt.append_value(retry.attempt);
            r.delay_ms.append_value(ms(retry.delay_ns));
            r.previous_span_id.append_option(retry.previous.map(|p| &spans[p].span_id));
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
            r.span_id.append_value(&spans[d.span].span_id);
        }
    }
    let batches = [flow_rows.finish(), trace_rows.finish(), hop_rows.finish(), retry_rows.finish(), dead_rows.finish()];
    for batch in batches.into_iter().flatten() {
        let mut appender = conn.appender(batch.table)?;
        appender.append_record_batch(batch.batch)?;
        appender.flush()?;
    }
    Ok(())
}
