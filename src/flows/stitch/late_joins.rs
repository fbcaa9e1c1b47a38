//! Late joins: the stored flows that newly committed rows join.
//!
//! A span whose trace is not in memory, a link to such a trace, and a message or
//! correlation id not seen in memory may join a stored flow. One lookup per round finds
//! those flows: the 64-bit join hashes of all of them are looked up in
//! `flow_traces.trace_key` (a flow's traces) and `flow_join_keys.key` (its links and
//! keys). Each flow found is loaded whole (its traces, their joins, their spans) and then
//! joined like any flow in memory, so a restart changes no flow.
//!
//! Why sorted runs and not indexes: DuckDB holds an ART index wholly in memory, and an
//! index over trace ids has one entry per stored trace. Instead the window's hashes are
//! kept in runs sorted by hash ([`super::join_runs`]), where zone maps take a probe to one
//! row group of each run, and the hashes written since the newest run are scanned,
//! restricted by `updated_unix_nano`: rows are appended in write order (a rewritten
//! flow's rows move to the end), so zone maps skip everything older. A lookup so costs
//! about the same whatever the window holds, with nothing resident. A flow's rows are
//! found again by (flow_id, updated_unix_nano), also through zone maps.
//!
//! Most rounds skip the lookup: a Bloom filter of the hashes written in the window
//! ([`super::join_filter`], a sixteenth of the memory budget) shows when none of a
//! round's traces and keys was ever stored, which is the case unless late spans of
//! flows that left memory arrive. Past the hashes its size allows it says "maybe" to most
//! rounds, which the runs keep cheap. Its reads are planned each round: a plan cached on
//! an empty file put the hash table on the stored side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duckdb::{params, Connection};

use crate::flows::analysis::SpanFacts;
use crate::flows::ids::TraceId;
use crate::flows::{HashMap, HashSet};
use crate::store::StoreError;

use super::intake::{self, LinkRow};
use super::join_filter::{self, JoinFilters};
use super::join_runs::{self, JoinRuns, RunStats};
use super::joiner::{JoinKey, Joiner};
use super::working_set::StoredFlow;

/// The kind of a stored link row in `flow_join_keys`.
pub(super) const LINK: &str = "link";
/// The kind of a stored fan-in row: the trace (a batch) carries a message of the trace
/// named in `value` (see [`super::fan_in`]).
pub(super) const FAN_IN: &str = "fan_in";

/// The join hashes a round looks up: for a trace, None; for a key, the key (to tell a
/// hash collision from a real join, and to name a key found too often).
pub(super) type Probes = HashMap<i64, Option<JoinKey>>;

/// What a lookup found: the stored flows to load, with when each starts, and keys the
/// file shows in more flows than the limit allows.
#[derive(Default)]
pub(super) struct Found {
    pub flows: HashMap<StoredFlow, i64>,
    pub too_common: Vec<(JoinKey, usize)>,
}

/// A join of a loaded trace, as stored.
pub(super) enum StoredJoin {
    Link(TraceId, TraceId),
    /// A batch trace, and a trace whose message it carries.
    FanIn(TraceId, TraceId),
    Key(TraceId, JoinKey),
}

/// Stored flows brought back into memory.
pub(super) struct Loaded {
    /// Each trace loaded, with the stored flow it belongs to.
    pub members: Vec<(TraceId, StoredFlow)>,
    pub joins: Vec<StoredJoin>,
    pub spans: Vec<SpanFacts>,
}

/// How lookups went since the last report, and what they read from.
#[derive(Debug, Default, Clone)]
pub(super) struct LookupReport {
    pub made: u64,
    pub skipped: u64,
    pub filter_bytes: usize,
    pub filter_build_seconds: f64,
    pub filter_restored: bool,
    pub runs: RunStats,
}

pub(super) struct LateJoins {
    /// The join hashes written in the join window.
    filter: JoinFilters,
    /// Where the filter is saved at a clean stop.
    saved_filter: PathBuf,
    /// The join hashes of the window sorted into runs, and the time of each write.
    runs: JoinRuns,
    /// Lookups made and skipped since the last report.
    made: u64,
    skipped: u64,
}

impl LateJoins {
    /// Opens on the saved filter when the last stop left one for this database, else
    /// starts building it.
    pub fn open(
        conn: &Connection,
        db: &Path,
        saved_token: i64,
        filter_bytes: usize,
        window_start: i64,
        run_hashes: usize,
        run_every: Duration,
    ) -> Result<LateJoins, StoreError> {
        let saved_filter = join_filter::saved_path(db);
        let filter = JoinFilters::take_saved(conn, &saved_filter, saved_token, filter_bytes, window_start)?;
        let runs = JoinRuns::open(conn, run_hashes, run_every)?;
        Ok(LateJoins { filter, saved_filter, runs, made: 0, skipped: 0 })
    }

    /// The join hashes to look up for new rows: traces and link targets not in memory,
    /// and message and correlation ids not seen in memory.
    pub fn probes(joiner: &Joiner, spans: &[SpanFacts], links: &[LinkRow], log_keys: &[(TraceId, String)]) -> Probes {
        let mut probes = Probes::default();
        let trace = |probes: &mut Probes, t: TraceId| {
            if !joiner.knows_trace(t) {
                probes.insert(t.join_hash(), None);
            }
        };
        let key = |probes: &mut Probes, k: JoinKey| {
            if !joiner.knows_key(&k) {
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
        for l in links {
            trace(&mut probes, l.trace);
            trace(&mut probes, l.link.trace_id);
            if let Some(m) = &l.link.message_id {
                key(&mut probes, JoinKey::MessageId(m.clone()));
            }
        }
        for (t, corr) in log_keys {
            trace(&mut probes, *t);
            key(&mut probes, JoinKey::Correlation(corr.clone()));
        }
        probes
    }

    /// The stored flows, written since `since` and not in `in_memory`, that the probes
    /// reach. Probes the filter shows were never written are not looked up; a stored id
    /// that does not read as hex digits (only a file changed by hand holds one) joins
    /// nothing.
    pub fn find(
        &mut self,
        conn: &Connection,
        mut probes: Probes,
        since: i64,
        key_trace_limit: usize,
        in_memory: &HashSet<StoredFlow>,
    ) -> Result<Found, StoreError> {
        if probes.is_empty() {
            return Ok(Found::default());
        }
        probes.retain(|key, _| self.filter.may_contain(*key));
        if probes.is_empty() {
            self.skipped += 1;
            return Ok(Found::default());
        }
        self.made += 1;
        // key -> the stored flows it reaches
        let mut reached: HashMap<i64, Vec<(StoredFlow, i64)>> = HashMap::default();
        for r in join_runs::look_up(conn, probes.keys().copied(), since, self.runs.through())? {
            if let Some(flow_id) = TraceId::parse(&r.flow_id) {
                reached.entry(r.key).or_default().push((StoredFlow { flow_id, updated: r.updated }, r.flow_start));
            }
        }
        let mut found = Found::default();
        for (key, flows) in reached {
            match probes.get(&key) {
                // A key the file shows in more flows than the limit is not an identifier
                // of one operation: ignored, as if the traces had arrived together.
                Some(Some(join_key)) if flows.len() > key_trace_limit => {
                    found.too_common.push((join_key.clone(), flows.len()));
                    continue;
                }
                Some(_) => {}
                None => continue, // a hash collision with nothing probed
            }
            for (flow, start) in flows {
                if !in_memory.contains(&flow) {
                    found.flows.insert(flow, start);
                }
            }
        }
        tracing::debug!(flows = found.flows.len(), probes = probes.len(), "stored flows that new rows join");
        Ok(found)
    }

    /// Loads the flows found whole: their traces, the traces' links and keys, and their
    /// spans committed up to `upto_seq`. No span starts before `from_start`, which bounds
    /// the scan.
    pub fn load(
        conn: &Connection,
        found: &HashMap<StoredFlow, i64>,
        from_start: i64,
        upto_seq: i64,
    ) -> Result<Loaded, StoreError> {
        let oldest_write = found.keys().map(|f| f.updated).min().unwrap_or(i64::MAX);
        {
            let mut app = conn.appender("found_flows")?;
            for flow in found.keys() {
                app.append_row(params![flow.flow_id.hex(), flow.updated])?;
            }
            app.flush()?;
        }
        let by_id: HashMap<TraceId, StoredFlow> = found.keys().map(|f| (f.flow_id, *f)).collect();
        let mut members: Vec<(TraceId, StoredFlow)> = Vec::new();
        {
            let mut stmt = conn.prepare(include_str!("../../../queries/stitch_found_members.sql"))?;
            let rows = stmt.query_map([oldest_write], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (trace, flow) = row?;
                let (Some(trace), Some(flow)) = (TraceId::parse(&trace), TraceId::parse(&flow)) else { continue };
                if let Some(f) = by_id.get(&flow) {
                    members.push((trace, *f));
                }
            }
        }
        let mut joins = Vec::new();
        {
            let mut stmt = conn.prepare(include_str!("../../../queries/stitch_found_joins.sql"))?;
            let rows = stmt.query_map([oldest_write], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            for row in rows {
                let (trace, kind, value) = row?;
                let Some(trace) = TraceId::parse(&trace) else { continue };
                if kind == LINK || kind == FAN_IN {
                    if let Some(to) = TraceId::parse(&value) {
                        joins.push(if kind == LINK {
                            StoredJoin::Link(trace, to)
                        } else {
                            StoredJoin::FanIn(trace, to)
                        });
                    }
                } else if let Some(key) = JoinKey::from_stored(&kind, value) {
                    joins.push(StoredJoin::Key(trace, key));
                }
            }
        }
        let spans = Self::spans_of(conn, members.iter().map(|(t, _)| *t), from_start, upto_seq)?;
        Ok(Loaded { members, joins, spans })
    }

    /// Every span (with its links) of the given traces, from the file.
    fn spans_of(
        conn: &Connection,
        traces: impl Iterator<Item = TraceId>,
        from_start: i64,
        upto_seq: i64,
    ) -> Result<Vec<SpanFacts>, StoreError> {
        conn.execute_batch(include_str!("../../../queries/stitch_traces_clear.sql"))?;
        {
            let mut app = conn.appender("stitch_traces")?;
            for t in traces {
                app.append_row([t.hex()])?;
            }
            app.flush()?;
        }
        intake::reload_from_file(conn, from_start, upto_seq)
    }

    /// Remembers a join hash about to be written.
    pub fn written(&mut self, hash: i64) {
        self.filter.insert(hash);
    }

    /// The time of the next write: later than any before, so runs can tell what they hold.
    pub fn write_time(&mut self) -> i64 {
        self.runs.write_time()
    }

    /// Moves the filter and the runs on with the window.
    pub fn advance(
        &mut self,
        conn: &Connection,
        now: i64,
        window_nanos: i64,
        filter_bytes: usize,
    ) -> Result<(), StoreError> {
        self.filter.advance(conn, now, window_nanos, filter_bytes)?;
        self.runs.advance(conn, now.saturating_sub(window_nanos))
    }

    /// How lookups went since the last report.
    pub fn report(&mut self) -> LookupReport {
        LookupReport {
            made: std::mem::take(&mut self.made),
            skipped: std::mem::take(&mut self.skipped),
            filter_bytes: self.filter.bytes(),
            filter_build_seconds: self.filter.last_build_seconds(),
            filter_restored: self.filter.restored(),
            runs: self.runs.stats(),
        }
    }

    /// What a clean stop leaves for the next start: the runs' job finished, and the filter
    /// saved (see [`JoinFilters::save_for_next_start`]).
    pub fn stop(&mut self, conn: &Connection) {
        self.runs.finish();
        self.filter.save_for_next_start(conn, &self.saved_filter);
    }
}
