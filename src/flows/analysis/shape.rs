//! The shape of a flow: its entry point, its synchronous calls, where its time went
//! step by step, its critical path and the path of its hops.

use std::collections::BTreeMap;

use super::{covered, role, Call, Hop, Retry, Role, SpanFacts, SpanKind, Step, StepKind};
use crate::flows::ids::TraceId;
use crate::flows::{HashMap, HashSet};

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
        let wait = h.queue_wait_ns.filter(|w| *w > 0 && !h.retry);
        if let (Some(d), Some(wait)) = (h.destination.as_deref(), wait) {
            *total.entry((StepKind::QueueWait, d)).or_default() += wait;
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

/// The entry point, the span that names the flow's chain: the earliest root span of a
/// trace no hop leads into before one leads out of it (a consumer's poll loop may start
/// before the message it takes exists, but its trace is entered by a hop and never names
/// the chain; a request whose reply comes back into its own trace sent first); failing
/// that, the earliest span with no parent, or a SERVER/PRODUCER/CONSUMER span whose
/// parent was never stored; failing all, the earliest span.
pub(super) fn find_root(spans: &[&SpanFacts], parent_of: &impl Fn(usize) -> Option<usize>, hops: &[Hop]) -> usize {
    // Per trace: when the first hop led into it (a consumer of a message sent from
    // elsewhere), and when it first sent a message.
    let mut first_in: HashMap<TraceId, i64> = HashMap::default();
    let mut first_out: HashMap<TraceId, i64> = HashMap::default();
    for h in hops {
        let from = h.producer.map(|p| spans[p].trace_id);
        if let Some(p) = h.producer {
            let t = first_out.entry(spans[p].trace_id).or_insert(i64::MAX);
            *t = (*t).min(spans[p].start);
        }
        for c in h.consumers.iter().map(|c| spans[*c]).filter(|c| Some(c.trace_id) != from) {
            let t = first_in.entry(c.trace_id).or_insert(i64::MAX);
            *t = (*t).min(c.start);
        }
    }
    let entered = |t: &TraceId| first_in.get(t).is_some_and(|i| first_out.get(t).is_none_or(|o| i < o));
    let earliest = |candidates: &mut dyn Iterator<Item = usize>| candidates.min_by_key(|i| (spans[*i].start, *i));
    let is_root = |i: &usize| spans[*i].parent_span_id.is_none();
    earliest(&mut (0..spans.len()).filter(is_root).filter(|i| !entered(&spans[*i].trace_id)))
        .or_else(|| earliest(&mut (0..spans.len()).filter(is_root)))
        .or_else(|| {
            earliest(&mut (0..spans.len()).filter(|i| {
                parent_of(*i).is_none()
                    && matches!(spans[*i].kind, SpanKind::Server | SpanKind::Producer | SpanKind::Consumer)
            }))
        })
        .or_else(|| earliest(&mut (0..spans.len())))
        .expect("non-empty")
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
pub(super) fn critical_path(
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
pub(super) fn hop_path(spans: &[&SpanFacts], root: usize, hops: &[Hop]) -> Vec<String> {
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
