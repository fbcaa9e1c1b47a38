//! The flows still arriving: their spans in memory, where each was last written, which
//! changed since, and when they leave memory.
//!
//! Only what is still arriving is held: a flow with no new span for the quiet period,
//! or beyond the span cap the least recently active, leaves memory whole, with what the
//! joiner knew of it. A late span finds it again in the file ([`super::late_joins`]).

use crate::flows::analysis::SpanFacts;
use crate::flows::ids::TraceId;
use crate::flows::{HashMap, HashSet};

/// Where the flow of a trace in memory was last written: its id and the time of the
/// write, which together find its rows without an index (migration 015).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct StoredFlow {
    pub flow_id: TraceId,
    pub updated: i64,
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

/// How often quiet flows are forgotten when the cache is under its cap (ns).
const EVICTION_INTERVAL_NS: i64 = 1_000_000_000;

#[derive(Default)]
pub(super) struct WorkingSet {
    traces: HashMap<TraceId, CachedTrace>,
    /// The stored flow of each trace in memory whose flow has been written.
    stored: HashMap<TraceId, StoredFlow>,
    /// Traces whose flows changed but are not yet written (kept across a failed write).
    dirty: HashSet<TraceId>,
    /// When the cache was last trimmed (stitcher clock).
    last_eviction: i64,
}

impl WorkingSet {
    /// Takes in a newly committed span. A span of a trace just loaded from the file is
    /// already among the loaded spans and only marks the trace as changed.
    pub fn take_span(&mut self, span: SpanFacts, now: i64, already_loaded: bool) {
        self.dirty.insert(span.trace_id);
        let entry = self.traces.entry(span.trace_id).or_insert_with(|| CachedTrace::new(now));
        entry.last_seen = now;
        entry.unwritten_from = Some(entry.unwritten_from.map_or(span.commit_seq, |u| u.min(span.commit_seq)));
        if !already_loaded {
            entry.spans.push(span);
        }
    }

    /// A trace known only from log records so far stays in memory for the quiet period,
    /// so that its spans, when they come, are joined by the log's correlation id.
    pub fn touch(&mut self, trace: TraceId, now: i64) {
        self.traces.entry(trace).or_insert_with(|| CachedTrace::new(now)).last_seen = now;
        self.dirty.insert(trace);
    }

    pub fn mark_changed(&mut self, traces: impl IntoIterator<Item = TraceId>) {
        self.dirty.extend(traces);
    }

    /// Replaces the spans of traces loaded from the file, and remembers their flows.
    pub fn load(&mut self, members: &[(TraceId, StoredFlow)], spans: Vec<SpanFacts>, now: i64) {
        for (t, flow) in members {
            self.traces.insert(*t, CachedTrace::new(now));
            self.stored.insert(*t, *flow);
        }
        for s in spans {
            if let Some(entry) = self.traces.get_mut(&s.trace_id) {
                entry.spans.push(s);
            }
        }
    }

    /// The stored flows of the traces in memory.
    pub fn stored_flows(&self) -> HashSet<StoredFlow> {
        self.stored.values().copied().collect()
    }

    pub fn stored_flow(&self, trace: &TraceId) -> Option<StoredFlow> {
        self.stored.get(trace).copied()
    }

    pub fn changed(&self) -> &HashSet<TraceId> {
        &self.dirty
    }

    /// The spans of a flow's member traces, borrowed.
    pub fn spans_of<'a>(&'a self, members: &[TraceId]) -> Vec<&'a SpanFacts> {
        members.iter().filter_map(|t| self.traces.get(t)).flat_map(|c| &c.spans).collect()
    }

    pub fn span_count(&self, members: &[TraceId]) -> usize {
        members.iter().filter_map(|t| self.traces.get(t)).map(|c| c.spans.len()).sum()
    }

    /// Records that a flow's members were written as `flow_id` at `updated`.
    pub fn written(&mut self, members: Vec<TraceId>, flow: StoredFlow) {
        for t in members {
            if let Some(c) = self.traces.get_mut(&t) {
                c.unwritten_from = None;
            }
            self.stored.insert(t, flow);
        }
    }

    /// Batch traces now written with the flows they are attached to: no flow of their own.
    pub fn forget_stored(&mut self, traces: impl IntoIterator<Item = TraceId>) {
        for t in traces {
            self.stored.remove(&t);
        }
    }

    /// After a write: the flows left for a later round stay changed, the others are done.
    pub fn still_changed(&mut self, deferred: HashSet<TraceId>) {
        self.dirty = deferred;
    }

    /// The last commit whose spans are all in written flows: `watermark`, or just below
    /// the earliest span of a flow whose write is pending (deferred, or failed).
    pub fn written_through(&self, watermark: i64) -> i64 {
        let pending = self.dirty.iter().filter_map(|t| self.traces.get(t)?.unwritten_from).min();
        pending.map_or(watermark, |seq| watermark.min(seq - 1))
    }

    /// Traces and spans held.
    pub fn size(&self) -> (usize, usize) {
        (self.traces.len(), self.traces.values().map(|c| c.spans.len()).sum())
    }

    /// Whether to look for flows to forget: at most once a second, unless over the cap.
    pub fn eviction_due(&self, now: i64, cap: usize) -> bool {
        // A trace known only from log records counts as one span, so that a flood of them
        // is capped like spans are.
        let cached: usize = self.traces.values().map(|c| c.spans.len().max(1)).sum();
        cached > cap || now - self.last_eviction >= EVICTION_INTERVAL_NS
    }

    /// Forgets the groups of flows (see [`super::fan_in::FanIn::eviction_groups`]) quiet
    /// since `quiet_cutoff`, then, while more than `cap` spans remain, the least recently
    /// active ones (down to three quarters of the cap, so the sort is paid rarely). Whole
    /// groups go; returns their traces, for the joiner to forget too.
    pub fn evict(&mut self, groups: Vec<Vec<TraceId>>, now: i64, quiet_cutoff: i64, cap: usize) -> Vec<TraceId> {
        self.last_eviction = now;
        // (last activity, spans, members) of every flow in memory
        let mut flows: Vec<(i64, usize, Vec<TraceId>)> = groups
            .into_iter()
            .map(|members| {
                let cached = members.iter().filter_map(|t| self.traces.get(t));
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
            let keep = *seen >= quiet_cutoff || pending(members);
            if !keep {
                forget.append(members);
            }
            keep
        });
        let mut remaining: usize = flows.iter().map(|(_, spans, _)| spans).sum();
        if remaining > cap {
            flows.sort_unstable_by_key(|(seen, _, _)| *seen);
            let target = cap / 4 * 3;
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
        if !forget.is_empty() {
            tracing::trace!(flows = before - flows.len(), traces = forget.len(), "forgetting quiet flows");
        }
        for t in &forget {
            self.traces.remove(t);
            self.stored.remove(t);
        }
        forget
    }
}
