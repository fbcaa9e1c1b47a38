//! What went wrong on the way: retries (redeliveries, attempt counters, repeated calls,
//! retry destinations) and dead letters.

use super::hops::Messages;
use super::{role, DeadLetter, Hop, Retry, Role, SpanFacts, SpanKind};
use crate::flows::{HashMap, HashSet};

pub(super) fn find_retries(
    spans: &[&SpanFacts],
    hops: &[Hop],
    parent_of: &impl Fn(usize) -> Option<usize>,
    messages: &Messages,
) -> Vec<Retry> {
    let mut retries = Vec::new();
    let mut counted: HashSet<usize> = HashSet::default();
    // `previous`: the attempt before, and when it ended.
    let push = |retries: &mut Vec<Retry>, i: usize, attempt: i32, previous: Option<(usize, i64)>| {
        let s = spans[i];
        retries.push(Retry {
            span: i,
            previous: previous.map(|(p, _)| p),
            time: s.start,
            service: s.service.clone(),
            destination: s.destination.clone(),
            attempt,
            delay_ns: previous.map_or(0, |(_, end)| (s.start - end).max(0)),
        });
    };
    let ended = |p: usize| Some((p, spans[p].end));
    // When each delivery (by its outermost consuming span) ended: its last span's end.
    let mut delivery_end: HashMap<usize, i64> = HashMap::default();
    for (i, d) in messages.delivery_of.iter().enumerate() {
        if let Some(d) = d {
            let e = delivery_end.entry(*d).or_insert(spans[i].end);
            *e = (*e).max(spans[i].end);
        }
    }
    // Redeliveries: the same message taken again by the same consuming service (a hop is
    // one service's; a dead-letter consumer has a hop of its own). A delivery is all the
    // hop's spans under one outermost consuming span (a `receive` and its `process`, a
    // poll's `recv` and the record it returned); its first span stands for it.
    for hop in hops {
        let mut deliveries: HashMap<usize, usize> = HashMap::default(); // delivery -> its first span
        for c in &hop.consumers {
            let first = deliveries.entry(messages.delivery_of[*c].unwrap_or(*c)).or_insert(*c);
            if (spans[*c].start, *c) < (spans[*first].start, *first) {
                *first = *c;
            }
        }
        let mut ordered: Vec<(usize, usize)> = deliveries.into_iter().collect();
        ordered.sort_by_key(|(_, first)| (spans[*first].start, *first));
        for (n, pair) in ordered.windows(2).enumerate() {
            let ((before, before_first), (_, this)) = (pair[0], pair[1]);
            if counted.insert(this) {
                let end = delivery_end.get(&before).copied().unwrap_or(spans[before_first].end);
                push(&mut retries, this, n as i32 + 2, Some((before_first, end)));
            }
        }
    }
    // Retry destinations: the failed attempt is the delivery the re-produce happened in;
    // attempts count along the chain of retry hops (in time order), unless the record
    // carries its attempt number.
    let mut attempt_of: HashMap<usize, i32> = HashMap::default(); // delivery -> attempt
    for hop in hops.iter().filter(|h| h.retry) {
        let Some(next) = hop.consumers.iter().copied().min_by_key(|c| (spans[*c].start, *c)) else { continue };
        let Some(failed) = hop.producer.and_then(|p| consumer_above(p, parent_of, messages)) else { continue };
        let failed_delivery = messages.delivery_of[failed].unwrap_or(failed);
        let attempt = spans[next]
            .attempt
            .filter(|a| *a > 1)
            .unwrap_or_else(|| attempt_of.get(&failed_delivery).copied().unwrap_or(1) + 1);
        attempt_of.insert(messages.delivery_of[next].unwrap_or(next), attempt);
        if counted.insert(next) {
            let end = delivery_end.get(&failed_delivery).copied().unwrap_or(spans[failed].end);
            push(&mut retries, next, attempt, Some((failed, end)));
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
        push(&mut retries, i, attempt, previous.and_then(ended));
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
                push(&mut retries, pair[1], n as i32 + 2, ended(pair[0]));
            }
        }
    }
    retries.sort_by_key(|r| (r.time, r.span));
    retries
}

/// The consuming span nearest above `span` (itself included): the delivery it happened in.
fn consumer_above(span: usize, parent_of: &impl Fn(usize) -> Option<usize>, messages: &Messages) -> Option<usize> {
    let mut at = Some(span);
    // Parents are acyclic, so the walk ends.
    while let Some(a) = at {
        if messages.delivery_of[a].is_some() {
            return Some(a);
        }
        at = parent_of(a);
    }
    None
}

fn error_text(s: &SpanFacts) -> String {
    s.status_message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| format!("{} failed", s.name))
}

pub(super) fn find_dead_letters(
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
