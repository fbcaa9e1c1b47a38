//! The hops of a flow: which message each consumer span took, from which producer, and
//! which consuming service took it.
//!
//! A hop is one message crossing one destination to one consuming service: a topic read
//! by two consumer groups makes two hops, each with its own queue wait. Several spans can
//! record one send (an SQS instrumentation's PRODUCER span around the AWS SDK's
//! `SendMessage` CLIENT span) or one delivery (a `receive` span around its `process`
//! span, a poll loop's `recv` around the record it returned): those are one send and one
//! delivery. A consuming span that names no message (no message id, no link, no producer
//! above it) and either names no destination or wraps spans that do name one is a poll,
//! not a hop.

use super::{role, Hop, QueueAlias, Role, SpanFacts};
use crate::flows::ids::{SpanId, TraceId};
use crate::flows::{HashMap, HashSet};

fn new_hop(system: Option<String>, destination: Option<String>, producer: Option<usize>, time: i64) -> Hop {
    Hop {
        system,
        destination,
        producer,
        consumers: Vec::new(),
        queue_wait_ns: None,
        clock_skew: false,
        dead_letter: false,
        retry: false,
        source_destination: None,
        wait_from: None,
        time,
    }
}

/// What the spans of a flow are to its messages, worked out once.
pub(super) struct Messages {
    /// For a producer span, the span that stands for its send (the outermost producer
    /// span above it in an unbroken line of producer spans); None for other spans.
    pub send_of: Vec<Option<usize>>,
    /// For a consuming span, the delivery it is part of (the outermost consuming span
    /// above it in an unbroken line of consuming spans); None for other spans.
    pub delivery_of: Vec<Option<usize>>,
    /// Consuming spans that are polls: they take no message of their own.
    pub poll: Vec<bool>,
}

impl Messages {
    pub fn of(spans: &[&SpanFacts], parent_of: &impl Fn(usize) -> Option<usize>) -> Messages {
        let roles: Vec<Role> = spans.iter().map(|s| role(s)).collect();
        let outermost = |i: usize, r: Role| {
            let mut at = i;
            // Parents are acyclic, so the walk ends.
            while let Some(p) = parent_of(at).filter(|p| roles[*p] == r) {
                at = p;
            }
            at
        };
        let send_of =
            (0..spans.len()).map(|i| (roles[i] == Role::Producer).then(|| outermost(i, Role::Producer))).collect();
        let delivery_of: Vec<Option<usize>> =
            (0..spans.len()).map(|i| (roles[i] == Role::Consumer).then(|| outermost(i, Role::Consumer))).collect();
        let names_message = |i: usize| {
            let s = spans[i];
            s.message_id.is_some() || !s.links.is_empty() || parent_of(i).is_some_and(|p| roles[p] == Role::Producer)
        };
        let mut wraps_messages = vec![false; spans.len()];
        for i in 0..spans.len() {
            if roles[i] == Role::Consumer && names_message(i) {
                if let Some(p) = parent_of(i).filter(|p| roles[*p] == Role::Consumer) {
                    wraps_messages[p] = true;
                }
            }
        }
        let poll = (0..spans.len())
            .map(|i| {
                roles[i] == Role::Consumer && !names_message(i) && (spans[i].destination.is_none() || wraps_messages[i])
            })
            .collect();
        Messages { send_of, delivery_of, poll }
    }
}

/// The hops of a flow. Each consumer span joins the hop(s) of the message it took, found
/// by (in order) its links, its parent, its message id, or its correlation id. A consumer
/// reading a dead-letter destination while the message was sent elsewhere gets a hop of
/// its own: the broker moved the message there (RabbitMQ's dead-letter exchanges, SQS
/// redrive), and no span records that move.
pub(super) fn build_hops(
    spans: &[&SpanFacts],
    by_id: &HashMap<(TraceId, SpanId), usize>,
    parent_of: &impl Fn(usize) -> Option<usize>,
    messages: &Messages,
    is_dead_letter_queue: &impl Fn(Option<&str>) -> bool,
    is_retry_queue: &impl Fn(Option<&str>) -> bool,
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
    // One producer per send: the outermost span of it.
    let producers: Vec<usize> = (0..spans.len()).filter(|i| messages.send_of[*i] == Some(*i)).collect();
    let send_of = |i: usize| messages.send_of[i];
    // The first send of a message id is its producer (a dead-letter republish keeps the id).
    let mut by_message: HashMap<&str, usize> = HashMap::default();
    for i in 0..spans.len() {
        if let (Some(p), Some(m)) = (send_of(i), spans[i].message_id.as_deref()) {
            let e = by_message.entry(m).or_insert(p);
            if spans[p].start < spans[*e].start {
                *e = p;
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
    // The hop of each producer's message to each consuming service (None: not consumed
    // yet), and the dead-letter hop (by destination) the broker moved a hop's message on to.
    let mut hop_of_send: HashMap<(usize, Option<&str>), usize> = HashMap::default();
    let mut dead_letter_hop: HashMap<(usize, &str), usize> = HashMap::default();
    // Hops of consumers whose producer is not in the flow, by (destination, message id,
    // service), so every delivery of one such message to one service lands in one hop.
    let mut orphan_hop: HashMap<(Option<&str>, &str, &str), usize> = HashMap::default();
    for p in &producers {
        let s = spans[*p];
        let mut hop = new_hop(s.system.clone(), s.destination.clone(), Some(*p), s.end);
        hop.wait_from = Some(s.end);
        hops.push(hop);
        hop_of_send.insert((*p, None), hops.len() - 1);
    }
    // The hop of producer `p`'s message to `service`: the unconsumed one, claimed by the
    // first service, or a copy for each further service.
    let mut hop_for = |hops: &mut Vec<Hop>, p: usize, consumer: usize| -> usize {
        let service = spans[consumer].service.as_str();
        if let Some(h) = hop_of_send.get(&(p, Some(service))) {
            return *h;
        }
        let h = match hop_of_send.remove(&(p, None)) {
            Some(unclaimed) => unclaimed,
            None => {
                let mut hop = new_hop(spans[p].system.clone(), spans[p].destination.clone(), Some(p), spans[p].end);
                hop.wait_from = Some(spans[p].end);
                hops.push(hop);
                hops.len() - 1
            }
        };
        hop_of_send.insert((p, Some(service)), h);
        h
    };

    // Consumers in time order, so a `process` span finds its `receive` span's hop and a
    // dead-letter consumer finds the rejected delivery before it.
    let mut consumers: Vec<usize> =
        (0..spans.len()).filter(|i| messages.delivery_of[*i].is_some() && !messages.poll[*i]).collect();
    consumers.sort_by_key(|i| (spans[*i].start, *i));
    let mut hops_of_consumer: HashMap<usize, Vec<usize>> = HashMap::default();
    for c in consumers {
        let s = spans[c];
        let service = s.service.as_str();
        let mut found: Vec<usize> = Vec::new();
        // 1. links to the creation context (one per message for batch consumers)
        for link in &s.links {
            let linked = by_id.get(&(link.trace_id, link.span_id)).copied();
            let producer = linked
                .and_then(send_of)
                .or_else(|| link.message_id.as_deref().and_then(|m| by_message.get(m).copied()));
            if let Some(p) = producer {
                found.push(hop_for(&mut hops, p, c));
            }
        }
        // 2. parent-child across the queue, or a span inside a delivery already placed
        if found.is_empty() {
            if let Some(parent) = parent_of(c) {
                match (send_of(parent), role(spans[parent])) {
                    (Some(p), _) => found.push(hop_for(&mut hops, p, c)),
                    (None, Role::Consumer) => found.extend(hops_of_consumer.get(&parent).cloned().unwrap_or_default()),
                    _ => {}
                }
            }
        }
        // 3. the same message id
        if found.is_empty() {
            if let Some(p) = s.message_id.as_deref().and_then(|m| by_message.get(m)) {
                found.push(hop_for(&mut hops, *p, c));
            }
        }
        // 4. nothing propagated: the same correlation id to the same destination, sent
        //    most recently before this consumer started
        if found.is_empty() {
            if let (Some(corr), Some(dest)) = (s.correlation_id.as_deref(), s.destination.as_deref()) {
                if let Some(p) = by_correlation.get(&(corr, dest)).and_then(|ps| latest_starting_by(spans, ps, s.start))
                {
                    found.push(hop_for(&mut hops, p, c));
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
                    // The delivery rejected last, by whichever service took the message.
                    let producer = hops[source].producer;
                    let rejected = hops
                        .iter()
                        .enumerate()
                        .filter(|(i, x)| *i == source || (producer.is_some() && x.producer == producer))
                        .flat_map(|(_, x)| x.consumers.iter().map(|c| spans[*c]))
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
            // shared by every delivery of the same message id to the same service.
            let key = s.message_id.as_deref().map(|m| (own, m, service));
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
    // A send consumed by some service has no further hop of its own; one nobody consumed
    // stays, showing the message waiting.
    let consumed: HashSet<usize> = hops.iter().filter(|h| !h.consumers.is_empty()).filter_map(|h| h.producer).collect();
    hops.retain(|h| !h.consumers.is_empty() || h.producer.is_none_or(|p| !consumed.contains(&p)));
    for hop in &mut hops {
        hop.dead_letter = is_dead_letter_queue(hop.destination.as_deref());
        // A failed record re-produced to a retry destination that the service which
        // failed it consumes again.
        hop.retry = !hop.dead_letter
            && is_retry_queue(hop.destination.as_deref())
            && hop.producer.is_some_and(|p| hop.consumers.iter().any(|c| spans[*c].service == spans[p].service));
        if let (Some(from), Some(first)) = (hop.wait_from, hop.consumers.iter().map(|c| spans[*c].start).min()) {
            let wait = first - from;
            hop.queue_wait_ns = Some(wait.max(0));
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
