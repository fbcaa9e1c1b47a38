//! The background stitcher: turns newly committed spans into flows.
//!
//! Algorithm (each round, every `interval`):
//! 1. Read the rows committed since the last round (`commit_seq` above the watermark):
//!    spans, span links, and log records carrying a trace id and a correlation id. The
//!    scan is cheap because `commit_seq` only grows, so DuckDB's zone maps skip old data.
//! 2. Feed the joins into the [`Joiner`] (union-find over trace ids): links connect two
//!    traces; message ids and correlation ids are keys connecting every trace they occur
//!    in. Merges are O(smaller side); keys shared by too many traces are ignored.
//! 3. Every flow that gained spans or changed shape is re-analysed from its spans
//!    ([`analysis::analyze`]), which the stitcher keeps in memory while the flow is
//!    active; a flow quiet for `quiet_period` is evicted and reloaded from DuckDB only if
//!    a late span arrives for it.
//! 4. The changed flows' rows are replaced in one transaction on the stitcher's own
//!    connection (flows, flow_traces, flow_hops, flow_retries, flow_dead_letters).
//!
//! Each span is read once and each flow re-analysed once per round it changes in, so the
//! cost grows linearly with the spans ingested. On start the stitcher replays the stored
//! spans from the beginning (recomputing every flow), which also applies any change to
//! the analysis to old data.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use super::analysis::{self, DeadLetterPatterns, FlowAnalysis, LinkFacts, SpanFacts, SpanKind};
use super::joiner::{JoinKey, Joiner, TraceId};
use crate::store::{in_transaction, CommitStats, Store, StoreError};
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
    pub dead_letter_patterns: DeadLetterPatterns,
}

impl Default for StitchConfig {
    fn default() -> Self {
        StitchConfig {
            interval: Duration::from_millis(500),
            quiet_period: Duration::from_secs(30),
            key_trace_limit: 1000,
            commits_per_round: 50,
            dead_letter_patterns: DeadLetterPatterns::default(),
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

struct CachedTrace {
    spans: Vec<SpanFacts>,
    last_end: i64,
}

/// Stops the stitcher thread when asked or dropped.
pub struct StitcherHandle {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StitcherHandle {
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
    conn: Connection,
    config: StitchConfig,
    joiner: Joiner,
    cache: HashMap<TraceId, CachedTrace>,
    /// The flow id each trace's rows were last written under.
    written_as: HashMap<TraceId, String>,
    /// Flows changed but not yet written (kept across a failed write).
    dirty: HashSet<TraceId>,
    watermark: i64,
    progress: watch::Sender<StitchProgress>,
}

fn span_from_row(row: &duckdb::Row<'_>) -> duckdb::Result<SpanFacts> {
    Ok(SpanFacts {
        trace_id: row.get(0)?,
        span_id: row.get(1)?,
        parent_span_id: row.get(2)?,
        service: row.get(3)?,
        name: row.get(4)?,
        kind: SpanKind::parse(&row.get::<_, String>(5)?),
        start: row.get(6)?,
        end: row.get(7)?,
        error: row.get(8)?,
        status_message: row.get(9)?,
        system: row.get(10)?,
        operation: row.get(11)?,
        destination: row.get(12)?,
        message_id: row.get(13)?,
        correlation_id: row.get(14)?,
        attempt: row.get(15)?,
        dead_letter_evidence: row.get(16)?,
        links: Vec::new(),
    })
}

/// (span's trace, span id, link)
type LinkRow = (String, String, LinkFacts);

fn link_from_row(row: &duckdb::Row<'_>) -> duckdb::Result<LinkRow> {
    Ok((row.get(0)?, row.get(1)?, LinkFacts { trace_id: row.get(2)?, span_id: row.get(3)?, message_id: row.get(4)? }))
}

fn attach_links(spans: &mut [SpanFacts], links: Vec<LinkRow>) {
    let index: HashMap<(String, String), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id.clone(), s.span_id.clone()), i)).collect();
    for (trace, span, link) in links {
        if let Some(i) = index.get(&(trace, span)) {
            spans[*i].links.push(link);
        }
    }
}

impl Stitcher {
    pub fn new(
        store: &Store,
        commits: Arc<CommitStats>,
        config: StitchConfig,
        progress: watch::Sender<StitchProgress>,
    ) -> Result<Stitcher, StoreError> {
        let conn = store.connect()?;
        conn.execute_batch(include_str!("../../queries/stitch_temp_tables.sql"))?;
        let mut written_as = HashMap::new();
        {
            let mut stmt = conn.prepare(include_str!("../../queries/stitch_written_flows.sql"))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (flow, trace) = row?;
                written_as.insert(trace, flow);
            }
        }
        Ok(Stitcher {
            commits,
            conn,
            joiner: Joiner::new(config.key_trace_limit),
            config,
            cache: HashMap::new(),
            written_as,
            dirty: HashSet::new(),
            watermark: 0,
            progress,
        })
    }

    /// Runs rounds on a thread of its own (it owns a DuckDB connection and does blocking
    /// work) until the returned handle is stopped. Catching up runs rounds back to back.
    pub fn spawn(mut self) -> std::io::Result<StitcherHandle> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("flowscope-stitcher".into()).spawn(move || loop {
            let caught_up = match self.round() {
                Ok(more) => !more,
                Err(e) => {
                    tracing::warn!(error = %e, "stitching round failed; will retry");
                    self.progress.send_modify(|p| p.last_error = Some(e.to_string()));
                    true
                }
            };
            let wait = if caught_up { self.config.interval } else { Duration::ZERO };
            match stopped.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })?;
        Ok(StitcherHandle { stop, thread: Some(thread) })
    }

    /// One round. Returns whether more committed data is waiting.
    pub fn round(&mut self) -> Result<bool, StoreError> {
        let latest = self.commits.last_commit_seq.load(Ordering::Acquire) as i64;
        let upper = latest.min(self.watermark + self.config.commits_per_round);
        let mut stitched = 0;
        if upper > self.watermark {
            stitched = self.ingest_new(self.watermark, upper)?;
            self.watermark = upper;
        }
        let written = self.write_dirty()?;
        self.evict_quiet();
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
        let mut spans: Vec<SpanFacts> = {
            let mut stmt = self.conn.prepare_cached(include_str!("../../queries/stitch_new_spans.sql"))?;
            let rows = stmt.query_map(params![from, to], span_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let links: Vec<LinkRow> = {
            let mut stmt = self.conn.prepare_cached(include_str!("../../queries/stitch_new_links.sql"))?;
            let rows = stmt.query_map(params![from, to], link_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let log_keys: Vec<(String, String)> = {
            let mut stmt = self.conn.prepare_cached(include_str!("../../queries/stitch_new_log_correlations.sql"))?;
            let rows = stmt.query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (trace, _, link) in &links {
            self.joiner.link(trace, &link.trace_id);
            if let Some(m) = &link.message_id {
                self.join_key(trace, JoinKey::MessageId(m.clone()));
            }
        }
        attach_links(&mut spans, links);
        for (trace, corr) in log_keys {
            self.join_key(&trace, JoinKey::Correlation(corr));
            self.dirty.insert(trace);
        }
        let count = spans.len();
        // Traces seen before whose spans were evicted are reloaded whole (which includes
        // the new spans), the others get the new spans appended.
        let evicted: Vec<TraceId> = spans
            .iter()
            .map(|s| &s.trace_id)
            .filter(|t| !self.cache.contains_key(*t) && self.written_as.contains_key(*t))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
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
        let evicted_set: HashSet<&TraceId> = evicted.iter().collect();
        for s in spans {
            if evicted_set.contains(&s.trace_id) {
                continue;
            }
            let entry = self
                .cache
                .entry(s.trace_id.clone())
                .or_insert_with(|| CachedTrace { spans: Vec::new(), last_end: i64::MIN });
            entry.last_end = entry.last_end.max(s.end);
            entry.spans.push(s);
        }
        self.reload(&evicted, to)?;
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
        self.conn.execute_batch("DELETE FROM stitch_traces")?;
        {
            let mut app = self.conn.appender("stitch_traces")?;
            for t in traces {
                app.append_row([t])?;
            }
            app.flush()?;
        }
        let mut spans: Vec<SpanFacts> = {
            let mut stmt = self.conn.prepare_cached(include_str!("../../queries/stitch_reload_spans.sql"))?;
            let rows = stmt.query_map([upto_seq], span_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let links: Vec<LinkRow> = {
            let mut stmt = self.conn.prepare_cached(include_str!("../../queries/stitch_reload_links.sql"))?;
            let rows = stmt.query_map([upto_seq], link_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        attach_links(&mut spans, links);
        for t in traces {
            self.cache.insert(t.clone(), CachedTrace { spans: Vec::new(), last_end: i64::MIN });
        }
        for s in spans {
            let entry = self.cache.get_mut(&s.trace_id).expect("reloaded trace has an entry");
            entry.last_end = entry.last_end.max(s.end);
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
        let mut stale: HashSet<String> = HashSet::new();
        // Spans are analysed in place (borrowed from the cache), not copied per round.
        let mut analysed: Vec<(Vec<TraceId>, Vec<&SpanFacts>, FlowAnalysis)> = Vec::new();
        for members in flows {
            for t in &members {
                if let Some(old) = self.written_as.get(t) {
                    stale.insert(old.clone());
                }
            }
            let spans: Vec<&SpanFacts> =
                members.iter().filter_map(|t| self.cache.get(t)).flat_map(|c| &c.spans).collect();
            if spans.is_empty() {
                // Only log records so far: nothing to show until a span arrives.
                continue;
            }
            let a = analysis::analyze(&spans, &self.config.dead_letter_patterns);
            analysed.push((members, spans, a));
        }

        let conn = &self.conn;
        let written = in_transaction(conn, || {
            // New flows have nothing to replace; only rewrite flows need the deletes.
            if !stale.is_empty() {
                let mut app = conn.appender("stale_flows")?;
                for id in &stale {
                    app.append_row([id])?;
                }
                app.flush()?;
                drop(app);
                conn.execute_batch(include_str!("../../queries/stitch_delete_stale.sql"))?;
            }
            write_flows(conn, &analysed, now)?;
            Ok(analysed.len())
        })?;
        let flow_ids: Vec<(Vec<TraceId>, String)> =
            analysed.into_iter().map(|(members, spans, a)| (members, spans[a.root].trace_id.clone())).collect();
        for (members, flow_id) in flow_ids {
            for t in members {
                self.written_as.insert(t, flow_id.clone());
            }
        }
        self.dirty.clear();
        Ok(written)
    }

    /// Forgets the spans of traces that ended more than `quiet_period` ago.
    fn evict_quiet(&mut self) {
        let cutoff = now_nanos() - self.config.quiet_period.as_nanos() as i64;
        self.cache.retain(|_, c| c.last_end >= cutoff);
    }
}

fn json_array(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    serde_json::to_string(&items.into_iter().map(|s| s.as_ref().to_owned()).collect::<Vec<_>>())
        .expect("strings serialize")
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn write_flows(
    conn: &Connection,
    flows: &[(Vec<TraceId>, Vec<&SpanFacts>, FlowAnalysis)],
    now: i64,
) -> Result<(), StoreError> {
    let mut flow_rows = conn.appender("flows")?;
    let mut trace_rows = conn.appender("flow_traces")?;
    let mut hop_rows = conn.appender("flow_hops")?;
    let mut retry_rows = conn.appender("flow_retries")?;
    let mut dead_rows = conn.appender("flow_dead_letters")?;
    for (members, spans, a) in flows {
        let root = &spans[a.root];
        let flow_id = &root.trace_id;
        flow_rows.append_row(params![
            flow_id,
            a.chain,
            root.service,
            root.name,
            json_array(&a.path),
            json_array(&a.services),
            a.start,
            a.end,
            ms(a.end - a.start),
            spans.len() as i32,
            a.trace_ids.len() as i32,
            a.error,
            a.hops.len() as i32,
            a.retries.len() as i32,
            a.dead_letters.len() as i32,
            ms(a.queue_wait_ns),
            ms(a.service_ns),
            ms(a.retry_delay_ns),
            a.hops.iter().filter(|h| h.clock_skew).count() as i32,
            now,
        ])?;
        for t in members {
            trace_rows.append_row(params![flow_id, t])?;
        }
        for (i, h) in a.hops.iter().enumerate() {
            let producer = h.producer.map(|p| &spans[p]);
            hop_rows.append_row(params![
                flow_id,
                i as i32,
                h.system,
                h.destination,
                producer.map(|p| p.trace_id.as_str()),
                producer.map(|p| p.span_id.as_str()),
                producer.map(|p| p.service.as_str()),
                json_array(h.consumers.iter().map(|c| spans[*c].span_id.as_str())),
                h.consumers.first().map(|c| spans[*c].service.as_str()),
                h.time,
                ms(h.queue_wait_ns),
                h.clock_skew,
                h.dead_letter,
            ])?;
        }
        for r in &a.retries {
            retry_rows.append_row(params![
                flow_id,
                r.time,
                r.service,
                r.destination,
                spans[r.span].span_id,
                r.attempt,
                ms(r.delay_ns)
            ])?;
        }
        for d in &a.dead_letters {
            dead_rows.append_row(params![
                flow_id,
                d.time,
                d.destination,
                d.source_destination,
                d.message_id,
                d.correlation_id,
                d.error,
                spans[d.span].span_id
            ])?;
        }
    }
    for app in [&mut flow_rows, &mut trace_rows, &mut hop_rows, &mut retry_rows, &mut dead_rows] {
        app.flush()?;
    }
    Ok(())
}
