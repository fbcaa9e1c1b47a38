//! What one flow is made of, computed from its spans alone (a pure function, so the
//! stitcher and the flow page agree): its chain, hops with queue waits, retries, dead
//! letters, the split of its duration, and its critical path.
use super::ids::{SpanId, TraceId};
use super::HashMap;

pub use crate::semconv::{MessagingOperation, SpanKind};

mod hops;
mod outcomes;
mod patterns;
mod shape;

use hops::{build_hops, Messages};
use outcomes::{find_dead_letters, find_retries};
pub use patterns::{glob, DestinationPatterns, NamePatterns, DEFAULT_DEAD_LETTER_PATTERNS, DEFAULT_RETRY_PATTERNS};
pub use shape::{calls, steps};
use shape::{critical_path, find_root, hop_path};

/// The parts of a span that stitching needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanFacts {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    pub start: i64,
    pub end: i64,
    pub error: bool,
    pub status_message: Option<String>,
    pub system: Option<String>,
    pub operation: Option<MessagingOperation>,
    pub destination: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub attempt: Option<i32>,
    pub dead_letter_evidence: bool,
    /// The queue a broker dead-lettered this message from (RabbitMQ's `x-death` queue).
    pub dead_letter_source: Option<String>,
    /// The group commit the span arrived in (when it was received).
    pub commit_seq: i64,
    pub links: Vec<LinkFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkFacts {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
    Other,
}

fn role(s: &SpanFacts) -> Role {
    match s.operation {
        Some(op) if op.produces() => Role::Producer,
        Some(op) if op.consumes() => Role::Consumer,
        Some(_) => Role::Other,
        None => match s.kind {
            SpanKind::Producer => Role::Producer,
            SpanKind::Consumer => Role::Consumer,
            _ => Role::Other,
        },
    }
}

/// One message crossing one destination to one consuming service.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub system: Option<String>,
    pub destination: Option<String>,
    /// Index into the flow's spans.
    pub producer: Option<usize>,
    /// The spans of the service that took the message, each delivery's spans included.
    pub consumers: Vec<usize>,
    /// Producer end to first consumer start, clamped at zero; None when no span shows
    /// when the message was sent (no producer in the flow).
    pub queue_wait_ns: Option<i64>,
    /// The consumer started before the producer ended: the clocks disagree.
    pub clock_skew: bool,
    pub dead_letter: bool,
    /// The message is a failed record re-produced to a retry destination and consumed
    /// again by the service that failed it: its wait is retry delay, not queue wait.
    pub retry: bool,
    /// Set when the broker moved the message here (a dead-letter exchange, an SQS
    /// redrive): the destination it was consumed from before.
    pub source_destination: Option<String>,
    /// When the wait began: the producer's end, or for a message the broker
    /// dead-lettered, the end of the rejected delivery.
    pub wait_from: Option<i64>,
    /// When the message was sent (or first seen, without a producer).
    pub time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub span: usize,
    /// The attempt before this one, when it is in the flow.
    pub previous: Option<usize>,
    pub time: i64,
    pub service: String,
    pub destination: Option<String>,
    pub attempt: i32,
    pub delay_ns: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub span: usize,
    pub time: i64,
    pub destination: String,
    pub source_destination: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowAnalysis {
    pub root: usize,
    pub chain: String,
    /// Services and destinations in the order the flow visits them.
    pub path: Vec<String>,
    pub start: i64,
    pub end: i64,
    pub services: Vec<String>,
    pub trace_ids: Vec<TraceId>,
    pub error: bool,
    pub hops: Vec<Hop>,
    pub retries: Vec<Retry>,
    pub dead_letters: Vec<DeadLetter>,
    pub queue_wait_ns: i64,
    pub retry_delay_ns: i64,
    pub service_ns: i64,
    pub critical: Vec<bool>,
    /// Other names of queues this flow went through (see [`QueueAlias`]).
    pub queue_aliases: Vec<QueueAlias>,
    /// Where the flow's time went, step by step along its path (see [`steps`]).
    pub steps: Vec<Step>,
    /// Synchronous calls from one service to another (see [`calls`]).
    pub calls: Vec<Call>,
}

/// A synchronous call between two services: a client span and the server span under it
/// in another service (indexes into the flow's spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub client: usize,
    pub server: usize,
}

/// What kind of time a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    /// A service's own work: the self time of its spans (their time not covered by
    /// their children).
    Service,
    /// Messages waiting in a destination.
    QueueWait,
    /// Waiting between a failed attempt and the next, by destination (or service).
    RetryDelay,
    /// A synchronous call from one service to another, as the caller saw it.
    Call,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Service => "service",
            StepKind::QueueWait => "queue_wait",
            StepKind::RetryDelay => "retry_delay",
            StepKind::Call => "call",
        }
    }
}

/// One step of a flow and the time it took (summed when it happens more than once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub name: String,
    pub ns: i64,
}

/// A name under which a queue is seen: RabbitMQ publishes name an exchange while the
/// consumer (or the broker's dead-letter record) names the queue it fed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueAlias {
    pub system: String,
    pub alias: String,
    pub queue: String,
}

/// Keeps the `max` earliest spans (by start, then ids); returns whether any were dropped.
/// O(n) selection, then the kept part sorted by the analysis itself.
pub fn keep_earliest(spans: &mut Vec<&SpanFacts>, max: usize) -> bool {
    if spans.len() <= max {
        return false;
    }
    spans.select_nth_unstable_by(max - 1, |a, b| {
        (a.start, &a.trace_id, &a.span_id).cmp(&(b.start, &b.trace_id, &b.span_id))
    });
    spans.truncate(max);
    true
}

/// Analyses one flow. `spans` must be non-empty; their order does not matter: they are
/// analysed in a canonical order (every tie broken by ids, not by arrival), and the
/// indices in the result point into `spans` as given.
pub fn analyze(spans: &[&SpanFacts], destination_patterns: &DestinationPatterns) -> FlowAnalysis {
    assert!(!spans.is_empty(), "a flow has at least one span");
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|a, b| {
        let (x, y) = (spans[*a], spans[*b]);
        (x.start, &x.trace_id, &x.span_id, x.end).cmp(&(y.start, &y.trace_id, &y.span_id, y.end))
    });
    let canonical: Vec<&SpanFacts> = order.iter().map(|i| spans[*i]).collect();
    let mut a = analyze_canonical(&canonical, destination_patterns);
    let back = |i: &mut usize| *i = order[*i];
    back(&mut a.root);
    for h in &mut a.hops {
        h.producer.iter_mut().for_each(back);
        h.consumers.iter_mut().for_each(back);
    }
    for r in &mut a.retries {
        back(&mut r.span);
        r.previous.iter_mut().for_each(back);
    }
    for d in &mut a.dead_letters {
        back(&mut d.span);
    }
    for c in &mut a.calls {
        back(&mut c.client);
        back(&mut c.server);
    }
    let mut critical = vec![false; spans.len()];
    for (k, c) in a.critical.iter().enumerate() {
        critical[order[k]] = *c;
    }
    a.critical = critical;
    a
}

fn analyze_canonical(spans: &[&SpanFacts], destination_patterns: &DestinationPatterns) -> FlowAnalysis {
    let by_id: HashMap<(TraceId, SpanId), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id, s.span_id), i)).collect();
    let parents = acyclic_parents(spans, &by_id);
    let parent_of = |i: usize| parents[i];

    let messages = Messages::of(spans, &parent_of);
    let is_dead_letter_queue = |d: Option<&str>| destination_patterns.is_dead_letter(d);
    let is_retry_queue = |d: Option<&str>| destination_patterns.is_retry(d);
    let (hops, queue_aliases) =
        build_hops(spans, &by_id, &parent_of, &messages, &is_dead_letter_queue, &is_retry_queue);
    let root = find_root(spans, &parent_of, &hops);
    let retries = find_retries(spans, &hops, &parent_of, &messages);
    let dead_letters = find_dead_letters(spans, &hops, &parent_of);

    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(start).max(start);
    let queue_intervals: Vec<(i64, i64)> = hops
        .iter()
        .filter(|h| !h.retry)
        .filter_map(|h| {
            let from = h.wait_from?;
            let first = h.consumers.iter().map(|c| spans[*c].start).min()?;
            (first > from).then_some((from, first))
        })
        .collect();
    let retry_intervals: Vec<(i64, i64)> =
        retries.iter().filter(|r| r.delay_ns > 0).map(|r| (r.time - r.delay_ns, r.time)).collect();
    let queue_wait_ns = covered(&queue_intervals);
    let waiting_ns = covered(&[queue_intervals, retry_intervals].concat());
    let retry_delay_ns = waiting_ns - queue_wait_ns;
    let service_ns = (end - start - waiting_ns).max(0);

    let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    let mut trace_ids: Vec<TraceId> = spans.iter().map(|s| s.trace_id).collect();
    trace_ids.sort();
    trace_ids.dedup();

    let critical = critical_path(spans, root, &hops, &parent_of);
    let children = children_of(&parents);
    let calls = calls(spans, &children);
    let steps = steps(spans, &children, &calls, &hops, &retries);
    FlowAnalysis {
        root,
        chain: format!("{} {}", spans[root].service, spans[root].name),
        path: hop_path(spans, root, &hops),
        start,
        end,
        services,
        trace_ids,
        error: spans.iter().any(|s| s.error),
        hops,
        retries,
        dead_letters,
        queue_wait_ns,
        retry_delay_ns,
        service_ns,
        critical,
        queue_aliases,
        steps,
        calls,
    }
}

/// Each span's children, by index.
fn children_of(parents: &[Option<usize>]) -> Vec<Vec<usize>> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); parents.len()];
    for (i, p) in parents.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    children
}

/// Each span's parent within the flow, with parent cycles (a span naming itself, two
/// spans naming each other: careless or hostile exporters) cut where the walk closes
/// them, so every walk up the tree ends. O(n): each span is walked through once.
fn acyclic_parents(spans: &[&SpanFacts], by_id: &HashMap<(TraceId, SpanId), usize>) -> Vec<Option<usize>> {
    let mut parent: Vec<Option<usize>> =
        spans.iter().map(|s| s.parent_span_id.and_then(|p| by_id.get(&(s.trace_id, p)).copied())).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    let mut seen = vec![Seen::No; spans.len()];
    let mut path = Vec::new();
    for start in 0..spans.len() {
        let mut at = start;
        loop {
            match seen[at] {
                Seen::Done => break,
                Seen::OnPath => {
                    // The last span walked points back into the path: cut it there.
                    if let Some(last) = path.last() {
                        parent[*last] = None;
                    }
                    break;
                }
                Seen::No => {}
            }
            seen[at] = Seen::OnPath;
            path.push(at);
            match parent[at] {
                Some(p) => at = p,
                None => break,
            }
        }
        for p in path.drain(..) {
            seen[p] = Seen::Done;
        }
    }
    parent
}

/// Total length covered by the union of the intervals.
pub fn covered(intervals: &[(i64, i64)]) -> i64 {
    let mut sorted: Vec<(i64, i64)> = intervals.iter().copied().filter(|(a, b)| b > a).collect();
    sorted.sort();
    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for (a, b) in sorted {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + current.map_or(0, |(a, b)| b - a)
}

#[cfg(test)]
mod shapes;
#[cfg(test)]
pub(crate) mod tests;
