//! The round loop: what each round takes in, which flows it loads, analyses and writes,
//! and how it reports progress (the steps are listed in [`super`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use crate::flows::analysis::{self, QueueAlias, SpanFacts};
use crate::flows::ids::TraceId;
use crate::flows::{HashMap, HashSet};
use crate::stage::{StageGuard, StageState};
use crate::store::{in_transaction, CommitFeed, CommitStats, Store, StoreError};
use crate::text::now_nanos;

use super::aliases::QueueAliases;
use super::attempts::{self, Attempts, Next};
use super::fan_in::{self, FanIn, FlowMembers};
use super::flow_rows::{AnalysedFlow, FlowWriter};
use super::intake::{self, LinkRow, NewRows};
use super::joiner::{JoinKey, Joiner};
use super::late_joins::{LateJoins, StoredJoin};
use super::map_sums::MapSums;
use super::pace::Pace;
use super::parallel;
use super::working_set::{StoredFlow, WorkingSet};
use super::{Restitch, StitchConfig, StitchProgress, StitcherHandle};

/// A flow with more spans than this is re-analysed at most once per interval (ns).
const BIG_FLOW_SPANS: usize = 1_000;
const BIG_FLOW_INTERVAL_NS: i64 = 2_000_000_000;

/// How far stitching has got.
struct Position {
    /// Every commit up to this one has been read.
    watermark: i64,
    /// The watermark as last saved in `stitch_state`.
    saved: i64,
    restitch: Option<Restitch>,
    /// Last commit whose messaging spans are in `queue_counts`.
    queues_counted_through: i64,
    /// Rounds attempted from the watermark (see [`super::attempts`]).
    attempts: Attempts,
}

pub struct Stitcher {
    conn: Connection,
    config: StitchConfig,
    commits: Arc<CommitStats>,
    feed: Arc<CommitFeed>,
    joiner: Joiner,
    fan_in: FanIn,
    working: WorkingSet,
    late_joins: LateJoins,
    position: Position,
    pace: Pace,
    aliases: QueueAliases,
    map_sums: MapSums,
    /// Why the last round failed, if it did.
    last_failure: Option<String>,
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
        conn.execute_batch(include_str!("../../../queries/stitch_temp_tables.sql"))?;
        let queues_counted_through =
            conn.query_row(include_str!("../../../queries/queue_counts_through.sql"), [], |r| r.get(0))?;
        let state: HashMap<String, i64> = conn
            .prepare(include_str!("../../../queries/stitch_state.sql"))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let watermark = state.get("stitched_seq").copied().unwrap_or(0);
        let restitch = match (state.get("restitch_from"), state.get("restitch_to")) {
            (Some(from), Some(to)) if *to > watermark => Some(Restitch { from: *from, to: *to }),
            _ => None,
        };
        let mut joiner = Joiner::new(config.key_trace_limit);
        {
            let mut stmt = conn.prepare(include_str!("../../../queries/ignored_join_keys.sql"))?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (kind, value, traces) = row?;
                if let Some(key) = JoinKey::from_stored(&kind, value) {
                    joiner.ignore_key(key, traces as usize);
                }
            }
        }
        let aliases = QueueAliases::open(&conn, &config.configured_queue_aliases)?;
        let late_joins = LateJoins::open(
            &conn,
            store.path(),
            state.get(super::join_filter::SAVED_TOKEN).copied().unwrap_or(0),
            config.join_filter_bytes,
            config.window_start(),
            config.join_run_hashes,
            config.interval * 4,
        )?;
        let map_sums = MapSums::open(&conn, &state)?;
        let set_aside = attempts::set_aside_total(&conn)?;
        progress.send_modify(|p| p.set_aside = set_aside);
        Ok(Stitcher {
            conn,
            config,
            commits,
            feed,
            joiner,
            fan_in: FanIn::default(),
            working: WorkingSet::default(),
            late_joins,
            position: Position {
                watermark,
                saved: watermark,
                restitch,
                queues_counted_through,
                attempts: Attempts::open(&state),
            },
            pace: Pace::default(),
            aliases,
            map_sums,
            last_failure: None,
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
                    tracing::warn!(error = %e, "stitching round failed; will retry from the last saved watermark");
                    self.progress.send_modify(|p| p.last_error = Some(e.clone()));
                    self.start_over(e);
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

    /// What a clean stop leaves for the next start (see [`LateJoins::stop`]).
    pub fn stop(&mut self) {
        self.late_joins.stop(&self.conn);
    }

    /// One round. Returns whether more committed data is waiting.
    pub fn round(&mut self) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let latest = self.commits.last_commit_seq.load(Ordering::Acquire) as i64;
        let mut upper = self.round_upper(latest)?;
        let (watermark, counted) = (self.position.watermark, self.position.queues_counted_through);
        if watermark < counted {
            // Restitching: a round stays on one side of what is already counted.
            upper = upper.min(counted);
        }
        let mut stitched = 0;
        if upper > watermark {
            let next = self.position.attempts.next(watermark, upper);
            self.position.attempts.save(&self.conn)?;
            match next {
                Next::SetAside(commit) => {
                    self.set_aside(commit)?;
                    return Ok(true);
                }
                Next::Stitch(last) => upper = last,
            }
            if upper > counted {
                // Counted first: should the rest of the round fail, its retry does not
                // count the same spans again.
                self.conn.execute(include_str!("../../../queries/queue_counts_add.sql"), params![watermark, upper])?;
                self.position.queues_counted_through = upper;
            }
            stitched = self.take_new(watermark, upper)?;
            self.position.watermark = upper;
        }
        let written = self.write_changed()?;
        self.map_sums.compact_if_due(&self.conn)?;
        self.save_watermark()?;
        let now = now_nanos();
        let quiet_cutoff = now - self.config.quiet_period.as_nanos() as i64;
        if self.working.eviction_due(now, self.config.cache_spans) {
            let groups = self.fan_in.eviction_groups(self.joiner.flows().collect());
            let forgotten = self.working.evict(groups, now, quiet_cutoff, self.config.cache_spans);
            self.fan_in.forget(&forgotten);
            self.joiner.forget(forgotten);
        }
        let through = self.working.written_through(self.position.watermark);
        let (lag, backlog) = self.lag(through, latest)?;
        self.pace.round(stitched, started.elapsed());
        // Ingest is held back by how late new data will be once stitched (not by a
        // restitch of old data): the lag now plus the time the backlog takes to clear.
        // Going by the lag alone, ingest resumed only once the backlog had cleared, and the
        // lag went on growing for as long as that took (to twice the limit).
        let expected = match self.position.restitch {
            Some(_) => Duration::ZERO,
            None => self.pace.expected_lag(lag, backlog),
        };
        self.commits.report_stitch_lag(expected);
        self.late_joins.advance(&self.conn, now_nanos(), self.config.window_nanos(), self.config.join_filter_bytes)?;
        let lookups = self.late_joins.report();
        let (restitch, joined_traces) = (self.position.restitch, self.joiner.traces());
        let (cached_traces, cached_spans) = self.working.size();
        self.progress.send_modify(|p| {
            p.stitched_seq = through;
            p.spans_stitched += stitched as u64;
            p.flows_written += written as u64;
            p.rounds += 1;
            p.last_error = None;
            p.lag = lag;
            p.restitch = restitch;
            p.cached_traces = cached_traces;
            p.cached_spans = cached_spans;
            p.joined_traces = joined_traces;
            p.file_lookups += lookups.made;
            p.lookups_skipped += lookups.skipped;
            p.join_filter_bytes = lookups.filter_bytes;
            p.join_filter_build_seconds = lookups.filter_build_seconds;
            p.join_filter_restored = lookups.filter_restored;
            p.join_runs = lookups.runs;
        });
        self.last_failure = None;
        Ok(upper < latest)
    }

    /// After a failed round: forgets what memory holds, as a restart would, and goes back
    /// to the last saved watermark, so the next round counts as another attempt of it.
    fn start_over(&mut self, error: String) {
        self.last_failure = Some(error);
        self.working = WorkingSet::default();
        let ignored = self.joiner.ignored_keys().to_vec();
        self.joiner = Joiner::new(self.config.key_trace_limit);
        for k in ignored {
            self.joiner.ignore_key(k.key, k.traces);
        }
        self.fan_in = FanIn::default();
        self.position.watermark = self.position.saved;
    }

    /// Skips a commit that failed again and again, even alone: recorded, with why, and
    /// stitching goes on past it. Its rows stay stored.
    fn set_aside(&mut self, commit: i64) -> Result<(), StoreError> {
        let reason = self
            .last_failure
            .take()
            .unwrap_or_else(|| "the stitcher stopped (the process ended) each time it stitched this commit".to_owned());
        attempts::set_aside(&self.conn, commit, &reason)?;
        self.start_over(reason);
        self.last_failure = None;
        self.position.watermark = commit;
        self.position.queues_counted_through = self.position.queues_counted_through.max(commit);
        self.save_watermark()?;
        self.progress.send_modify(|p| p.set_aside += 1);
        Ok(())
    }

    /// The last commit of the next round: as many commits as fit in `round_rows` rows,
    /// at least one, at most `commits_per_round`.
    fn round_upper(&self, latest: i64) -> Result<i64, StoreError> {
        let watermark = self.position.watermark;
        let most = latest.min(watermark + self.config.commits_per_round);
        if most <= watermark + 1 {
            return Ok(most);
        }
        let fits: Option<i64> = self
            .conn
            .prepare_cached(include_str!("../../../queries/stitch_round_upper.sql"))?
            .query_row(params![watermark, most, self.config.round_rows as i64], |r| r.get(0))?;
        Ok(fits.unwrap_or(watermark + 1).max(watermark + 1))
    }

    /// Saves how far flows are written, so a restart resumes there (reading again what a
    /// pending flow had not written); ends a restitch that has reached its target.
    fn save_watermark(&mut self) -> Result<(), StoreError> {
        let through = self.working.written_through(self.position.watermark);
        if through == self.position.saved {
            return Ok(());
        }
        let conn = &self.conn;
        let finished = self.position.restitch.filter(|r| through >= r.to);
        in_transaction(conn, || {
            let mut set = conn.prepare_cached(include_str!("../../../queries/stitch_state_set.sql"))?;
            set.execute(params!["stitched_seq", through])?;
            if finished.is_some() {
                set.execute(params!["restitch_to", 0])?;
            }
            Ok(())
        })?;
        if let Some(r) = finished {
            tracing::info!(from = r.from, to = r.to, "restitch finished");
            self.position.restitch = None;
        }
        self.position.saved = through;
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
            .prepare_cached(include_str!("../../../queries/stitch_lag.sql"))?
            .query_row(params![through, latest], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let lag =
            received.map_or(Duration::ZERO, |t| Duration::from_nanos(now_nanos().saturating_sub(t).max(0) as u64));
        Ok((lag, backlog.max(0) as u64))
    }

    /// Takes in the rows of commits `from + 1 ..= to`; returns how many spans they hold.
    fn take_new(&mut self, from: i64, to: i64) -> Result<usize, StoreError> {
        let NewRows { mut spans, links, log_keys } = match self.feed.take(from, to) {
            Some(commits) => intake::from_feed(&commits),
            None => {
                self.progress.send_modify(|p| p.rows_from_file += 1);
                intake::from_file(&self.conn, from, to)?
            }
        };
        // Stored flows these rows join are brought into memory first (with every span
        // committed up to `to`, so this round's spans of them are already there).
        let loaded = self.load_joined_flows(&spans, &links, &log_keys, to)?;
        let batches = fan_in::batch_spans(&links);
        for l in &links {
            if batches.contains(&(l.trace, l.span)) {
                // A batch: attached to the flow of each message it carries, joining none.
                self.joiner.add_trace(l.trace);
                self.joiner.add_trace(l.link.trace_id);
                if !self.fan_in.add(l.trace, l.link.trace_id) && self.fan_in.ignored().is_power_of_two() {
                    tracing::warn!(
                        ignored = self.fan_in.ignored(),
                        "batch links past the number of traces one batch may carry are ignored"
                    );
                }
                continue;
            }
            if !self.joiner.link(l.trace, l.link.trace_id) && self.joiner.ignored_links().is_power_of_two() {
                tracing::warn!(
                    ignored = self.joiner.ignored_links(),
                    "span links that would join more traces than the guard allows are ignored"
                );
            }
            if let Some(m) = &l.link.message_id {
                self.join_key(l.trace, JoinKey::MessageId(m.clone()));
            }
        }
        intake::attach_links(&mut spans, links);
        let now = now_nanos();
        for (trace, corr) in log_keys {
            self.join_key(trace, JoinKey::Correlation(corr));
            self.working.touch(trace, now);
        }
        let count = spans.len();
        for s in spans {
            self.joiner.add_trace(s.trace_id);
            if let Some(m) = &s.message_id {
                self.join_key(s.trace_id, JoinKey::MessageId(m.clone()));
            }
            if let Some(c) = &s.correlation_id {
                self.join_key(s.trace_id, JoinKey::Correlation(c.clone()));
            }
            let already_loaded = loaded.contains(&s.trace_id);
            self.working.take_span(s, now, already_loaded);
        }
        Ok(count)
    }

    /// Finds the stored flows that the new rows join and loads each whole (see
    /// [`super::late_joins`]), with its spans committed up to `upto_seq`. Returns the
    /// traces loaded.
    fn load_joined_flows(
        &mut self,
        spans: &[SpanFacts],
        links: &[LinkRow],
        log_keys: &[(TraceId, String)],
        upto_seq: i64,
    ) -> Result<HashSet<TraceId>, StoreError> {
        let probes = LateJoins::probes(&self.joiner, spans, links, log_keys);
        let in_memory = self.working.stored_flows();
        let found = self.late_joins.find(
            &self.conn,
            probes,
            self.config.window_start(),
            self.config.key_trace_limit,
            &in_memory,
        )?;
        for (key, flows) in found.too_common {
            self.record_ignored_key(&key, flows);
            self.joiner.ignore_key(key, flows);
        }
        if found.flows.is_empty() {
            return Ok(HashSet::default());
        }
        // No stored span of these flows starts before their stored start; this round's
        // spans (read again with them) may, such as a root span arriving last.
        let from_start = found.flows.values().copied().chain(spans.iter().map(|s| s.start)).min().unwrap_or(i64::MIN);
        let loaded = LateJoins::load(&self.conn, &found.flows, from_start, upto_seq)?;
        for (t, _) in &loaded.members {
            self.joiner.add_trace(*t);
        }
        for join in loaded.joins {
            match join {
                StoredJoin::Link(from, to) => {
                    self.joiner.link(from, to);
                }
                StoredJoin::FanIn(batch, target) => {
                    self.joiner.add_trace(target);
                    self.fan_in.add(batch, target);
                }
                StoredJoin::Key(trace, key) => self.join_key(trace, key),
            }
        }
        let traces = loaded.members.iter().map(|(t, _)| *t).collect();
        self.working.load(&loaded.members, loaded.spans, now_nanos());
        Ok(traces)
    }

    fn join_key(&mut self, trace: TraceId, key: JoinKey) {
        if let Some(split) = self.joiner.key(trace, key) {
            self.record_ignored_key(&split.ignored.key, split.ignored.traces);
            self.working.mark_changed(split.traces);
        }
    }

    fn record_ignored_key(&self, key: &JoinKey, traces: usize) {
        tracing::warn!(
            kind = key.kind(),
            value = key.value(),
            traces,
            "join key shared by too many traces; ignoring it for joining"
        );
        let _ = self.conn.execute(
            include_str!("../../../queries/ignored_join_key_insert.sql"),
            params![key.kind(), key.value(), traces as i64, now_nanos()],
        );
    }

    /// Re-analyses and rewrites every changed flow; returns how many flows were written.
    fn write_changed(&mut self) -> Result<usize, StoreError> {
        if self.working.changed().is_empty() {
            return Ok(0);
        }
        // Every member of these flows is in memory: stored flows are loaded whole.
        let working = &self.working;
        let flows = self
            .fan_in
            .flows_to_write(&self.joiner, working.changed().iter().copied(), |members| working.span_count(members) > 0);
        let now = self.late_joins.write_time();
        let mut stale: HashSet<StoredFlow> = HashSet::default();
        let mut to_analyse: Vec<FlowMembers> = Vec::new();
        let mut deferred: HashSet<TraceId> = HashSet::default();
        let mut attached: HashSet<TraceId> = HashSet::default();
        for members in flows {
            if self.defer(&members.own, now) {
                deferred.extend(members.all().copied());
                continue;
            }
            if self.working.span_count(&members.own) == 0 && !members.attached.is_empty() {
                // Known only as where a batch's message came from: nothing of its own yet.
                continue;
            }
            stale.extend(members.own.iter().filter_map(|t| self.working.stored_flow(t)));
            // A batch written as a flow of its own before its messages' flows arrived:
            // that flow's id is one of its traces (a flow containing it has another).
            for t in &members.attached {
                let own_flow = self.working.stored_flow(t).filter(|f| members.attached.contains(&f.flow_id));
                if let Some(f) = own_flow {
                    stale.insert(f);
                    attached.insert(*t);
                }
            }
            to_analyse.push(members);
        }
        let (working, config) = (&self.working, &self.config);
        let analyses = parallel::map_in_order(&to_analyse, config.threads, |members| analyse(working, config, members));
        let analysed: Vec<AnalysedFlow<'_>> = to_analyse
            .into_iter()
            .zip(analyses)
            .filter_map(|(members, a)| {
                a.map(|(spans, analysis, truncated)| AnalysedFlow { members, spans, analysis, truncated })
            })
            .collect();
        tracing::debug!(flows = analysed.len(), rewritten = stale.len(), "writing flows");
        FlowWriter {
            conn: &self.conn,
            joiner: &self.joiner,
            fan_in: &self.fan_in,
            late_joins: &mut self.late_joins,
            map_sums: &mut self.map_sums,
            threads: self.config.threads,
        }
        .replace(&stale, &analysed, now)?;
        let written = analysed.len();
        let aliases: Vec<QueueAlias> = analysed.iter().flat_map(|f| f.analysis.queue_aliases.iter().cloned()).collect();
        // Collected first: the analysed flows borrow their spans from the working set.
        let written_flows: Vec<(TraceId, Vec<TraceId>)> =
            analysed.into_iter().map(|f| (f.flow_id(), f.members.own)).collect();
        for (flow_id, own) in written_flows {
            self.working.written(own, StoredFlow { flow_id, updated: now });
        }
        self.working.forget_stored(attached);
        self.working.still_changed(deferred);
        self.aliases.learn(&self.conn, aliases.iter(), now)?;
        Ok(written)
    }

    /// Whether to leave a changed flow for a later round: a large flow written less than
    /// `BIG_FLOW_INTERVAL` ago. Re-analysing a flow costs its size, so a flow of
    /// thousands of spans receiving one span per round would otherwise cost thousands
    /// of span analyses per span; this way it costs at most one analysis per interval.
    fn defer(&self, members: &[TraceId], now: i64) -> bool {
        self.working.span_count(members) > BIG_FLOW_SPANS
            && members
                .iter()
                .filter_map(|t| self.working.stored_flow(t))
                .any(|f| now - f.updated < BIG_FLOW_INTERVAL_NS)
    }
}

/// A flow's analysis: the spans analysed (borrowed from the working set, not copied per
/// round), what they make, and whether the flow had more.
type Analysis<'a> = (Vec<&'a SpanFacts>, analysis::FlowAnalysis, bool);

/// Analyses a flow's spans. None for a flow of log records only, and for one whose
/// analysis panicked (logged: its spans stay stored, the flow is not written).
fn analyse<'a>(working: &'a WorkingSet, config: &StitchConfig, members: &FlowMembers) -> Option<Analysis<'a>> {
    let all: Vec<TraceId> = members.all().copied().collect();
    let mut spans = working.spans_of(&all);
    let truncated = analysis::keep_earliest(&mut spans, config.max_flow_spans);
    if spans.is_empty() {
        return None;
    }
    let patterns = &config.destination_patterns;
    match std::panic::catch_unwind(|| analysis::analyze(&spans, patterns)) {
        Ok(analysis) => Some((spans, analysis, truncated)),
        Err(panic) => {
            tracing::error!(
                trace = %members.own[0],
                spans = spans.len(),
                error = %crate::text::panic_message(&panic),
                "analysing a flow panicked; its spans stay stored, the flow is not written"
            );
            None
        }
    }
}
