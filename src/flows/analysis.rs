//! What one flow is made of, computed from its spans alone (a pure function, so the
//! stitcher and the flow page agree): its chain, hops with queue waits, retries, dead
//! letters, the split of its duration, and its critical path.

use std::collections::BTreeMap;

use super::ids::{SpanId, TraceId};
use super::{HashMap, HashSet};

pub use crate::semconv::{MessagingOperation, SpanKind};

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

/// How a consumer span took its message: `process` (the handler ran; push-style legacy
/// `receive` spans of kind CONSUMER, as pika records them, are the same) or `receive`
/// (a pull that may wrap process spans). Redeliveries are counted on process spans where
/// a consumer has them, on receives otherwise, so a receive and its process are one
/// delivery, not two.
fn takes_by_processing(s: &SpanFacts) -> bool {
    match s.operation {
        Some(MessagingOperation::Process) => true,
        Some(MessagingOperation::Receive) => s.kind == SpanKind::Consumer,
        _ => s.kind == SpanKind::Consumer,
    }
}

/// One message crossing one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub system: Option<String>,
    pub destination: Option<String>,
    /// Index into the flow's spans.
    pub producer: Option<usize>,
    pub consumers: Vec<usize>,
    /// Producer end to first consumer start, clamped at zero.
    pub queue_wait_ns: i64,
    /// The consumer started before the producer ended: the clocks disagree.
    pub clock_skew: bool,
    pub dead_letter: bool,
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

/// Destination names that mean "dead-letter queue": `*` matches any run of characters,
/// matching ignores case.
#[derive(Debug, Clone)]
pub struct DeadLetterPatterns(Vec<String>);

pub const DEFAULT_DEAD_LETTER_PATTERNS: &[&str] = &[
    "*.DLT",
    "*-dlt",
    "*.dlq",
    "*_dlq",
    "*-dlq",
    "*.dlx",
    "*-dlx",
    "*_dlx",
    "*dead-letter*",
    "*deadletter*",
    "*dead_letter*",
    "*.dead",
];

impl DeadLetterPatterns {
    pub fn new(patterns: &[String]) -> Self {
        DeadLetterPatterns(patterns.to_vec())
    }

    pub fn matches(&self, destination: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), destination.as_bytes()))
    }
}

impl Default for DeadLetterPatterns {
    fn default() -> Self {
        Self::new(&DEFAULT_DEAD_LETTER_PATTERNS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }
}

/// `*`-only glob, the kind users write for queue names; ASCII letters match either case.
/// It runs for every destination of every flow analysed, so it compares in place: the
/// text before the first `*` is a prefix, after the last a suffix, and each part between
/// is found at its earliest place after the one before (which is all a `*` glob needs).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut parts = pattern.split(|c| *c == b'*');
    let first = parts.next().unwrap_or_default();
    if text.len() < first.len() || !text[..first.len()].eq_ignore_ascii_case(first) {
        return false;
    }
    let mut rest = &text[first.len()..];
    let Some(last) = parts.next_back() else {
        return rest.is_empty();
    };
    for middle in parts.filter(|m| !m.is_empty()) {
        match rest.windows(middle.len()).position(|w| w.eq_ignore_ascii_case(middle)) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest[rest.len() - last.len()..].eq_ignore_ascii_case(last)
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
pub fn analyze(spans: &[&SpanFacts], dead_letter_patterns: &DeadLetterPatterns) -> FlowAnalysis {
    assert!(!spans.is_empty(), "a flow has at least one span");
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|a, b| {
        let (x, y) = (spans[*a], spans[*b]);
        (x.start, &x.trace_id, &x.span_id, x.end).cmp(&(y.start, &y.trace_id, &y.span_id, y.end))
    });
    let canonical: Vec<&SpanFacts> = order.iter().map(|i| spans[*i]).collect();
    let mut a = analyze_canonical(&canonical, dead_letter_patterns);
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

fn analyze_canonical(spans: &[&SpanFacts], dead_letter_patterns: &DeadLetterPatterns) -> FlowAnalysis {
    let by_id: HashMap<(TraceId, SpanId), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id, s.span_id), i)).collect();
    let parents = acyclic_parents(spans, &by_id);
    let parent_of = |i: usize| parents[i];

    let root = find_root(spans, &parent_of);
    let is_dead_letter_queue = |d: Option<&str>| d.is_some_and(|d| dead_letter_patterns.matches(d));
    let (hops, queue_aliases) = build_hops(spans, &by_id, &parent_of, &is_dead_letter_queue);
    let retries = find_retries(spans, &hops, &parent_of);
    let dead_letters = find_dead_letters(spans, &hops, &parent_of);

    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(start).max(start);
    let queue_intervals: Vec<(i64, i64)> = hops
        .iter()
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

/// Synchronous calls: each client span (not a messaging one) with a server span of
/// another service among its children; the first such child is the callee.
pub fn calls(spans: &[&SpanFacts], children: &[Vec<usize>]) -> Vec<Call> {
    spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SpanKind::Client && role(s) == Role::Other)
        .filter_map(|(i, s)| {
            let server = children[i]
                .iter()
                .copied()
                .find(|c| spans[*c].kind == SpanKind::Server && spans[*c].service != s.service)?;
            Some(Call { client: i, server })
        })
        .collect()
}

/// The flow's time by step: each service's own time, each destination's queue wait, the
/// retry delay before each retried destination (or service), each synchronous call
/// between two services. O(n log n) in the spans.
pub fn steps(
    spans: &[&SpanFacts],
    children: &[Vec<usize>],
    calls: &[Call],
    hops: &[Hop],
    retries: &[Retry],
) -> Vec<Step> {
    // Keyed by borrowed names while summing; calls' "a → b" names are built once each.
    let mut total: BTreeMap<(StepKind, &str), i64> = BTreeMap::new();
    let mut call_time: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut inside: Vec<(i64, i64)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        inside.clear();
        inside.extend(children[i].iter().map(|c| (spans[*c].start.max(s.start), spans[*c].end.min(s.end))));
        let own = (s.end - s.start - covered(&inside)).max(0);
        if own > 0 {
            *total.entry((StepKind::Service, s.service.as_str())).or_default() += own;
        }
    }
    for c in calls {
        let (client, server) = (spans[c.client], spans[c.server]);
        *call_time.entry((client.service.as_str(), server.service.as_str())).or_default() += client.end - client.start;
    }
    for h in hops {
        if let Some(d) = h.destination.as_deref().filter(|_| h.queue_wait_ns > 0) {
            *total.entry((StepKind::QueueWait, d)).or_default() += h.queue_wait_ns;
        }
    }
    for r in retries.iter().filter(|r| r.delay_ns > 0) {
        *total.entry((StepKind::RetryDelay, r.destination.as_deref().unwrap_or(&r.service))).or_default() += r.delay_ns;
    }
    let mut steps: Vec<Step> =
        total.into_iter().map(|((kind, name), ns)| Step { kind, name: name.to_owned(), ns }).collect();
    steps.extend(call_time.into_iter().filter(|(_, ns)| *ns > 0).map(|((from, to), ns)| Step {
        kind: StepKind::Call,
        name: format!("{from} → {to}"),
        ns,
    }));
    steps
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

/// The entry point: the earliest span with no parent, or a SERVER/PRODUCER/CONSUMER span
/// whose parent was never stored; failing both, the earliest span.
fn find_root(spans: &[&SpanFacts], parent_of: &impl Fn(usize) -> Option<usize>) -> usize {
    let earliest = |candidates: &mut dyn Iterator<Item = usize>| candidates.min_by_key(|i| (spans[*i].start, *i));
    earliest(&mut (0..spans.len()).filter(|i| spans[*i].parent_span_id.is_none()))
        .or_else(|| {
            earliest(&mut (0..spans.len()).filter(|i| {
                parent_of(*i).is_none()
                    && matches!(spans[*i].kind, SpanKind::Server | SpanKind::Producer | SpanKind::Consumer)
            }))
        })
        .or_else(|| earliest(&mut (0..spans.len())))
        .expect("non-empty")
}

fn new_hop(system: Option<String>, destination: Option<String>, producer: Option<usize>, time: i64) -> Hop {
    Hop {
        system,
        destination,
        producer,
        consumers: Vec::new(),
        queue_wait_ns: 0,
        clock_skew: false,
        dead_letter: false,
        source_destination: None,
        wait_from: None,
        time,
    }
}

/// The hops of a flow. Each consumer span joins the hop(s) of the message it took, found
/// by (in order) its links, its parent, its message id, or its correlation id. A consumer
/// reading a dead-letter destination while the message was sent elsewhere gets a hop of
/// its own: the broker moved the message there (RabbitMQ's dead-letter exchanges, SQS
/// redrive), and no span records that move.
fn build_hops(
    spans: &[&SpanFacts],
    by_id: &HashMap<(TraceId, SpanId), usize>,
    parent_of: &impl Fn(usize) -> Option<usize>,
    is_dead_letter_queue: &impl Fn(Option<&str>) -> bool,
) -> (Vec<Hop>, Vec<QueueAlias>) {
    let mut aliases: Vec<QueueAlias> = Vec::new();
    // A dead-letter destination is never another name of a live queue, nor the reverse:
    // such a pair only comes from a message matched to its dead-letter republish (by
    // message id) before its original publish arrived.
    let mut alias = |system: &Option<String>, alias: &str, queue: &str| {
        if alias != queue && !is_dead_letter_queue(Some(queue)) && !is_dead_letter_queue(Some(alias)) {
            let system = system.clone().unwrap_or_default();
            aliases.push(QueueAlias { system, alias: alias.to_owned(), queue: queue.to_owned() });
        }
    };
    let producers: Vec<usize> = (0..spans.len()).filter(|i| role(spans[*i]) == Role::Producer).collect();
    // The first send of a message id is its producer (a dead-letter republish keeps the id).
    let mut by_message: HashMap<&str, usize> = HashMap::default();
    for p in &producers {
        if let Some(m) = spans[*p].message_id.as_deref() {
            let e = by_message.entry(m).or_insert(*p);
            if spans[*p].start < spans[*e].start {
                *e = *p;
            }
        }
    }
    // Producers by (correlation id, destination), in start order, for step 4 below.
    let mut by_correlation: HashMap<(&str, &str), Vec<usize>> = HashMap::default();
    for p in &producers {
        if let (Some(c), Some(d)) = (spans[*p].correlation_id.as_deref(), spans[*p].destination.as_deref()) {
            by_correlation.entry((c, d)).or_default().push(*p);
        }
    }
    for ps in by_correlation.values_mut() {
        ps.sort_by_key(|p| (spans[*p].start, *p));
    }
    let mut hops: Vec<Hop> = Vec::new();
    // The hop each producer's message makes, and the dead-letter hop (by destination)
    // the broker moved a hop's message on to.
    let mut hop_of_producer: HashMap<usize, usize> = HashMap::default();
    let mut dead_letter_hop: HashMap<(usize, &str), usize> = HashMap::default();
    // Hops of consumers whose producer is not in the flow, by (destination, message id),
    // so every delivery of one such message lands in one hop.
    let mut orphan_hop: HashMap<(Option<&str>, &str), usize> = HashMap::default();
    let mut hop_for = |hops: &mut Vec<Hop>, p: usize| -> usize {
        *hop_of_producer.entry(p).or_insert_with(|| {
            let s = spans[p];
            let mut hop = new_hop(s.system.clone(), s.destination.clone(), Some(p), s.end);
            hop.wait_from = Some(s.end);
            hops.push(hop);
            hops.len() - 1
        })
    };
    for p in &producers {
        hop_for(&mut hops, *p);
    }

    // Consumers in time order, so a `process` span finds its `receive` span's hop and a
    // dead-letter consumer finds the rejected delivery before it.
    let mut consumers: Vec<usize> = (0..spans.len()).filter(|i| role(spans[*i]) == Role::Consumer).collect();
    consumers.sort_by_key(|i| (spans[*i].start, *i));
    let mut hops_of_consumer: HashMap<usize, Vec<usize>> = HashMap::default();
    for c in consumers {
        let s = spans[c];
        let mut found: Vec<usize> = Vec::new();
        // 1. links to the creation context (one per message for batch consumers)
        for link in &s.links {
            let linked = by_id.get(&(link.trace_id, link.span_id)).copied();
            let producer = linked
                .filter(|l| role(spans[*l]) == Role::Producer)
                .or_else(|| link.message_id.as_deref().and_then(|m| by_message.get(m).copied()));
            if let Some(p) = producer {
                found.push(hop_for(&mut hops, p));
            }
        }
        // 2. parent-child across the queue, or a process span under its receive span
        if found.is_empty() {
            if let Some(parent) = parent_of(c) {
                match role(spans[parent]) {
                    Role::Producer => found.push(hop_for(&mut hops, parent)),
                    Role::Consumer => found.extend(hops_of_consumer.get(&parent).cloned().unwrap_or_default()),
                    Role::Other => {}
                }
            }
        }
        // 3. the same message id
        if found.is_empty() {
            if let Some(p) = s.message_id.as_deref().and_then(|m| by_message.get(m)) {
                found.push(hop_for(&mut hops, *p));
            }
        }
        // 4. nothing propagated: the same correlation id to the same destination, sent
        //    most recently before this consumer started
        if found.is_empty() {
            if let (Some(corr), Some(dest)) = (s.correlation_id.as_deref(), s.destination.as_deref()) {
                if let Some(p) = by_correlation.get(&(corr, dest)).and_then(|ps| latest_starting_by(spans, ps, s.start))
                {
                    found.push(hop_for(&mut hops, p));
                }
            }
        }
        let own = s.destination.as_deref();
        if is_dead_letter_queue(own) {
            // 5. a dead-letter consumer joined by nothing above: the message the flow
            //    last failed to deliver is the one that was dead-lettered
            if found.is_empty() {
                found.extend(last_failed_hop(spans, &hops, s.start, is_dead_letter_queue));
            }
            // The broker moved the message: a hop of its own from where it was rejected.
            for h in found.iter_mut() {
                if is_dead_letter_queue(hops[*h].destination.as_deref()) {
                    continue;
                }
                let source = *h;
                let dlq = own.expect("a dead-letter queue has a name");
                *h = *dead_letter_hop.entry((source, dlq)).or_insert_with(|| {
                    let rejected = hops[source]
                        .consumers
                        .iter()
                        .map(|c| spans[*c])
                        .filter(|d| d.start <= s.start)
                        .max_by_key(|d| d.end);
                    let from = rejected.map(|d| d.end).or(hops[source].wait_from).unwrap_or(s.start);
                    let mut hop = new_hop(s.system.clone(), Some(dlq.to_owned()), hops[source].producer, from);
                    // The broker's record names the queue the message was rejected
                    // from, which the publish may have named by its exchange.
                    if let (Some(sent_to), Some(queue)) = (&hops[source].destination, &s.dead_letter_source) {
                        alias(&s.system, sent_to, queue);
                    }
                    hop.source_destination = s.dead_letter_source.clone().or_else(|| hops[source].destination.clone());
                    hop.wait_from = Some(from);
                    hops.push(hop);
                    hops.len() - 1
                });
            }
        }
        if found.is_empty() {
            // A message whose producer is not in this flow: a hop without a producer,
            // shared by every delivery of the same message id.
            let key = s.message_id.as_deref().map(|m| (own, m));
            let existing = key.and_then(|k| orphan_hop.get(&k).copied());
            let h = existing.unwrap_or_else(|| {
                hops.push(new_hop(s.system.clone(), s.destination.clone(), None, s.start));
                hops.len() - 1
            });
            if let Some(k) = key {
                orphan_hop.insert(k, h);
            }
            found.push(h);
        }
        found.sort_unstable();
        found.dedup();
        for h in &found {
            let hop = &mut hops[*h];
            if let (Some(sent_to), Some(read_from), None) = (&hop.destination, own, &hop.source_destination) {
                alias(&s.system, sent_to, read_from);
            }
            hop.consumers.push(c);
            if hop.destination.is_none() {
                hop.destination = s.destination.clone();
            }
            if hop.system.is_none() {
                hop.system = s.system.clone();
            }
        }
        hops_of_consumer.insert(c, found);
    }
    for hop in &mut hops {
        hop.dead_letter = is_dead_letter_queue(hop.destination.as_deref());
        if let (Some(from), Some(first)) = (hop.wait_from, hop.consumers.iter().map(|c| spans[*c].start).min()) {
            let wait = first - from;
            hop.queue_wait_ns = wait.max(0);
            hop.clock_skew = wait < 0;
        }
    }
    hops.sort_by_key(|h| h.time);
    aliases.sort();
    aliases.dedup();
    (hops, aliases)
}

/// Of `candidates` (sorted by start), the one that started last at or before `t`.
fn latest_starting_by(spans: &[&SpanFacts], candidates: &[usize], t: i64) -> Option<usize> {
    let started = candidates.partition_point(|p| spans[*p].start <= t);
    started.checked_sub(1).map(|k| candidates[k])
}

/// The (non-dead-letter) hop whose latest failed delivery before `before` is the latest.
fn last_failed_hop(
    spans: &[&SpanFacts],
    hops: &[Hop],
    before: i64,
    is_dead_letter_queue: &impl Fn(Option<&str>) -> bool,
) -> Option<usize> {
    hops.iter()
        .enumerate()
        .filter(|(_, h)| !is_dead_letter_queue(h.destination.as_deref()))
        .filter_map(|(i, h)| {
            let failed = h.consumers.iter().map(|c| spans[*c]).filter(|d| d.error && d.start <= before);
            failed.map(|d| d.end).max().map(|t| (t, i))
        })
        .max()
        .map(|(_, i)| i)
}

fn find_retries(spans: &[&SpanFacts], hops: &[Hop], parent_of: &impl Fn(usize) -> Option<usize>) -> Vec<Retry> {
    let mut retries = Vec::new();
    let mut counted: HashSet<usize> = HashSet::default();
    let push = |retries: &mut Vec<Retry>, i: usize, attempt: i32, previous: Option<usize>| {
        let s = spans[i];
        retries.push(Retry {
            span: i,
            previous,
            time: s.start,
            service: s.service.clone(),
            destination: s.destination.clone(),
            attempt,
            delay_ns: previous.map_or(0, |p| (s.start - spans[p].end).max(0)),
        });
    };
    // Redeliveries: the same message taken again by the same consuming service (another
    // service taking it is a fan-out; a dead-letter consumer has a hop of its own).
    for hop in hops {
        let mut by_service: HashMap<(&str, bool), Vec<usize>> = HashMap::default();
        for c in &hop.consumers {
            let s = spans[*c];
            by_service.entry((s.service.as_str(), takes_by_processing(s))).or_default().push(*c);
        }
        let mut groups: Vec<((&str, bool), Vec<usize>)> = by_service
            .iter()
            .filter(|((service, processing), _)| *processing || !by_service.contains_key(&(*service, true)))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        groups.sort();
        for (_, mut deliveries) in groups {
            deliveries.sort_by_key(|c| (spans[*c].start, *c));
            for (n, pair) in deliveries.windows(2).enumerate() {
                if counted.insert(pair[1]) {
                    push(&mut retries, pair[1], n as i32 + 2, Some(pair[0]));
                }
            }
        }
    }
    // Attempt counters above 1 (delivery counts, celery.retries, http resend_count); the
    // attempt before is the same operation of the same service that ended last before it.
    // (Indexed only when some span has a counter: most flows have none.)
    let mut by_operation: HashMap<(&str, &str), Vec<usize>> = HashMap::default();
    if spans.iter().any(|s| s.attempt.is_some_and(|a| a > 1)) {
        for (i, s) in spans.iter().enumerate() {
            by_operation.entry((s.service.as_str(), s.name.as_str())).or_default().push(i);
        }
        for same in by_operation.values_mut() {
            same.sort_by_key(|p| (spans[*p].end, *p));
        }
    }
    for (i, s) in spans.iter().enumerate() {
        let Some(attempt) = s.attempt.filter(|a| *a > 1) else {
            continue;
        };
        if !counted.insert(i) {
            continue;
        }
        let same = &by_operation[&(s.service.as_str(), s.name.as_str())];
        let ended_before = same.partition_point(|p| spans[*p].end <= s.start);
        let previous = same[..ended_before].iter().rev().find(|p| **p != i).copied();
        push(&mut retries, i, attempt, previous);
    }
    // Client calls repeated to the same target after an error.
    let mut siblings: HashMap<(Option<usize>, &str, &str), Vec<usize>> = HashMap::default();
    for (i, s) in spans.iter().enumerate() {
        if s.kind == SpanKind::Client && role(s) == Role::Other {
            siblings.entry((parent_of(i), s.service.as_str(), s.name.as_str())).or_default().push(i);
        }
    }
    for (_, mut calls) in siblings {
        calls.sort_by_key(|c| spans[*c].start);
        for (n, pair) in calls.windows(2).enumerate() {
            if spans[pair[0]].error && counted.insert(pair[1]) {
                push(&mut retries, pair[1], n as i32 + 2, Some(pair[0]));
            }
        }
    }
    retries.sort_by_key(|r| (r.time, r.span));
    retries
}

fn error_text(s: &SpanFacts) -> String {
    s.status_message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| format!("{} failed", s.name))
}

fn find_dead_letters(
    spans: &[&SpanFacts],
    hops: &[Hop],
    parent_of: &impl Fn(usize) -> Option<usize>,
) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    let mut seen: HashSet<usize> = HashSet::default();
    // The failed span that ended last among those started by `t`: failed spans by start,
    // with the one that ended latest so far, so each lookup is a binary search.
    let mut failed: Vec<usize> = (0..spans.len()).filter(|i| spans[*i].error).collect();
    failed.sort_by_key(|i| (spans[*i].start, *i));
    let mut latest_end: Vec<usize> = Vec::with_capacity(failed.len());
    for f in &failed {
        let keep = latest_end.last().copied().filter(|l| spans[*l].end > spans[*f].end);
        latest_end.push(keep.unwrap_or(*f));
    }
    let last_error_before = |t: i64| {
        let started = failed.partition_point(|f| spans[*f].start <= t);
        started.checked_sub(1).map(|k| error_text(spans[latest_end[k]]))
    };
    // The queue a republished dead letter came from: the consumer span above the
    // dead-letter publish, or else the destination that was last consumed before it.
    // (Parents are acyclic, so the walk ends.)
    let source_of = |i: usize, dlq: &str| {
        let mut at = parent_of(i);
        while let Some(a) = at {
            if role(spans[a]) == Role::Consumer && spans[a].destination.as_deref() != Some(dlq) {
                return spans[a].destination.clone();
            }
            at = parent_of(a);
        }
        spans
            .iter()
            .filter(|s| {
                role(s) == Role::Consumer
                    && s.start <= spans[i].start
                    && s.destination.as_deref().is_some_and(|d| d != dlq)
            })
            .max_by_key(|s| s.start)
            .and_then(|s| s.destination.clone())
    };
    for hop in hops.iter().filter(|h| h.dead_letter) {
        let destination = hop.destination.clone().unwrap_or_default();
        seen.extend(hop.producer);
        seen.extend(&hop.consumers);
        let dead = if hop.source_destination.is_some() || hop.producer.is_none() {
            // Moved by the broker: the dead-letter consumer is the evidence, the error is
            // that of the delivery rejected before it.
            let Some(first) = hop.consumers.iter().copied().min_by_key(|c| (spans[*c].start, *c)) else {
                continue;
            };
            let s = spans[first];
            let rejected = hop.wait_from.unwrap_or(s.start);
            DeadLetter {
                span: first,
                time: rejected,
                source_destination: hop
                    .source_destination
                    .clone()
                    .or_else(|| s.dead_letter_source.clone())
                    .or_else(|| source_of(first, &destination)),
                destination,
                message_id: s.message_id.clone(),
                correlation_id: s.correlation_id.clone(),
                error: last_error_before(rejected),
            }
        } else {
            let Some(span) = hop.producer else { continue };
            let s = spans[span];
            DeadLetter {
                span,
                time: s.start,
                source_destination: source_of(span, &destination),
                destination,
                message_id: s.message_id.clone(),
                correlation_id: s.correlation_id.clone(),
                error: last_error_before(s.start),
            }
        };
        out.push(dead);
    }
    // Dead-lettering recorded on a span (disposition, x-death, an event).
    for (i, s) in spans.iter().enumerate() {
        if s.dead_letter_evidence && seen.insert(i) {
            let destination = s.destination.clone().unwrap_or_else(|| "(dead letter)".to_owned());
            out.push(DeadLetter {
                span: i,
                time: s.end,
                source_destination: s.dead_letter_source.clone().or_else(|| s.destination.clone()),
                destination,
                message_id: s.message_id.clone(),
                correlation_id: s.correlation_id.clone(),
                error: last_error_before(s.end).or_else(|| s.status_message.clone()),
            });
        }
    }
    out.sort_by_key(|d| (d.time, d.span));
    out
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

/// The flow as a tree: parent-child within traces, plus consumer-under-producer across
/// queues; other top-level spans hang under the root so the path can reach them.
fn flow_children(
    spans: &[&SpanFacts],
    root: usize,
    hops: &[Hop],
    parent_of: &impl Fn(usize) -> Option<usize>,
) -> Vec<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = (0..spans.len()).map(parent_of).collect();
    for hop in hops {
        if let Some(p) = hop.producer {
            for c in &hop.consumers {
                if parent[*c].is_none() {
                    parent[*c] = Some(p);
                }
            }
        }
    }
    let mut children = vec![Vec::new(); spans.len()];
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) if *p != i => children[*p].push(i),
            _ if i != root => children[root].push(i),
            _ => {}
        }
    }
    children
}

/// Marks the spans that determine when the flow ends: from the root, the child whose
/// subtree finishes last, then, walking back in time, each earlier child that finished
/// before the previous one started.
fn critical_path(
    spans: &[&SpanFacts],
    root: usize,
    hops: &[Hop],
    parent_of: &impl Fn(usize) -> Option<usize>,
) -> Vec<bool> {
    let children = flow_children(spans, root, hops, parent_of);
    // Subtree ends, computed bottom-up without recursion.
    let mut order = Vec::with_capacity(spans.len());
    let mut stack = vec![root];
    let mut visited = vec![false; spans.len()];
    while let Some(s) = stack.pop() {
        if std::mem::replace(&mut visited[s], true) {
            continue;
        }
        order.push(s);
        stack.extend(children[s].iter().copied());
    }
    let mut subtree_end: Vec<i64> = spans.iter().map(|s| s.end).collect();
    for s in order.iter().rev() {
        for c in &children[*s] {
            subtree_end[*s] = subtree_end[*s].max(subtree_end[*c]);
        }
    }
    let mut critical = vec![false; spans.len()];
    let mut stack = vec![root];
    while let Some(s) = stack.pop() {
        if std::mem::replace(&mut critical[s], true) {
            continue;
        }
        let mut kids = children[s].clone();
        kids.sort_by_key(|c| std::cmp::Reverse((subtree_end[*c], spans[*c].start)));
        let mut cursor = subtree_end[s];
        for c in kids {
            if subtree_end[c] <= cursor {
                stack.push(c);
                cursor = spans[c].start;
            }
        }
    }
    critical
}

/// "checkout → orders → billing → payments → payments-worker": services and destinations
/// in the order the flow's hops happen. A hop repeating an earlier one (the same services
/// and destination: batches, redeliveries) adds nothing.
fn hop_path(spans: &[&SpanFacts], root: usize, hops: &[Hop]) -> Vec<String> {
    let mut path = vec![spans[root].service.clone()];
    let mut seen: HashSet<(Option<&str>, Option<&str>, Option<&str>)> = HashSet::default();
    let push = |p: &mut Vec<String>, item: &str| {
        if p.last().map(String::as_str) != Some(item) {
            p.push(item.to_owned());
        }
    };
    for hop in hops {
        // A message the broker moved has no producing service of its own.
        let producer = hop.producer.filter(|_| hop.source_destination.is_none()).map(|p| spans[p].service.as_str());
        let consumer = hop.consumers.first().map(|c| spans[*c].service.as_str());
        if !seen.insert((producer, hop.destination.as_deref(), consumer)) {
            continue;
        }
        for item in [producer, hop.destination.as_deref(), consumer].into_iter().flatten() {
            push(&mut path, item);
        }
    }
    path
}

#[cfg(test)]
pub(crate) mod tests;
