//! One flow (its spans, hops and dead letters, analysed afresh), lists of flows, search.

use std::sync::Arc;

use duckdb::{params, Connection};
use serde::Serialize;

use super::super::analysis::{self, DestinationPatterns, LinkFacts, SpanFacts};
use super::super::ids::{SpanId, TraceId};
use super::{ms, parse_json, DeadLetterRow, Range};
use crate::flows::stitch::intake;
use crate::semconv::{SpanKind, SpanStatus};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowRow {
    pub flow_id: String,
    pub chain: String,
    pub start_unix_nano: i64,
    pub duration_ms: f64,
    pub error: bool,
    pub hops: i32,
    pub retries: i32,
    pub dead_letters: i32,
    pub queue_wait_ms: f64,
    pub span_count: i32,
    pub trace_count: i32,
}

/// A row of `flows_by_*.sql` (and `flows_across_edge.sql`).
pub(super) fn flow_row(r: &duckdb::Row<'_>) -> duckdb::Result<FlowRow> {
    Ok(FlowRow {
        flow_id: r.get(0)?,
        chain: r.get(1)?,
        start_unix_nano: r.get(2)?,
        duration_ms: r.get(3)?,
        error: r.get(4)?,
        hops: r.get(5)?,
        retries: r.get(6)?,
        dead_letters: r.get(7)?,
        queue_wait_ms: r.get(8)?,
        span_count: r.get(9)?,
        trace_count: r.get(10)?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowOrder {
    Newest,
    Slowest,
}

pub async fn flows(
    store: &Arc<Store>,
    range: Range,
    chain: Option<String>,
    order: FlowOrder,
    limit: i64,
) -> Result<Vec<FlowRow>, StoreError> {
    store
        .read(move |c| {
            let rows = match order {
                FlowOrder::Newest => c
                    .prepare(include_str!("../../../queries/flows_by_time.sql"))?
                    .query_map(params![range.from, range.to, chain, limit], flow_row)?
                    .collect::<Result<_, _>>()?,
                FlowOrder::Slowest => {
                    let floor = super::chains::slowest_floor_ms(c, range, chain.as_deref(), limit)?;
                    c.prepare(include_str!("../../../queries/flows_by_duration.sql"))?
                        .query_map(params![range.from, range.to, chain, limit, floor], flow_row)?
                        .collect::<Result<_, _>>()?
                }
            };
            Ok(rows)
        })
        .await
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub status: SpanStatus,
    pub status_message: Option<String>,
    pub critical: bool,
    pub retry_attempt: Option<i32>,
    pub dead_letter: bool,
    pub destination: Option<String>,
    pub attributes: serde_json::Value,
    pub resource_attributes: serde_json::Value,
    pub events: serde_json::Value,
    pub links: Vec<FlowLink>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowLink {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowHop {
    pub system: Option<String>,
    pub destination: Option<String>,
    pub producer_span_id: Option<String>,
    pub consumer_span_ids: Vec<String>,
    pub sent_unix_nano: i64,
    pub received_unix_nano: Option<i64>,
    /// None when no span shows when the message was sent.
    pub queue_wait_ms: Option<f64>,
    pub clock_skew: bool,
    pub dead_letter: bool,
    /// A failed record re-produced to a retry destination: its wait is retry delay.
    pub retry: bool,
    /// Where the broker moved the message from (dead-letter exchanges, SQS redrive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_destination: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowDetail {
    pub flow_id: String,
    pub chain: String,
    pub path: Vec<String>,
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub duration_ms: f64,
    pub services: Vec<String>,
    pub trace_ids: Vec<String>,
    pub error: bool,
    pub retries: usize,
    pub dead_lettered: bool,
    pub queue_wait_ms: f64,
    pub service_ms: f64,
    pub retry_delay_ms: f64,
    pub settled: bool,
    /// The flow has more spans than the cap: only the earliest are shown and analysed.
    pub truncated: bool,
    pub spans: Vec<FlowSpan>,
    pub hops: Vec<FlowHop>,
    pub dead_letters: Vec<DeadLetterRow>,
}

/// How a flow is read for its page: as the stitcher analyses it.
#[derive(Debug, Clone)]
pub struct FlowReading {
    pub destination_patterns: DestinationPatterns,
    /// A flow with no new span for this long is settled.
    pub quiet_period_ns: i64,
    /// At most this many spans are read and analysed (the stitcher's cap).
    pub max_spans: usize,
}

/// The whole flow containing `id` (a flow id or any of its trace ids), analysed afresh
/// from its spans; `None` when no flow contains it.
pub async fn flow(store: &Arc<Store>, id: String, reading: FlowReading) -> Result<Option<FlowDetail>, StoreError> {
    store.read(move |c| flow_blocking(c, &id.to_ascii_lowercase(), &reading)).await
}

fn flow_blocking(c: &Connection, id: &str, reading: &FlowReading) -> Result<Option<FlowDetail>, StoreError> {
    let Some(trace) = TraceId::parse(id) else { return Ok(None) };
    let summary = c
        .prepare(include_str!("../../../queries/flow_summary.sql"))?
        .query_map(params![trace.hex(), trace.join_hash()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get(4)?))
        })?
        .next()
        .transpose()?;
    let Some((flow_id, updated, start, end, stitched_truncated)) = summary else {
        return Ok(None);
    };
    struct Extra {
        status: SpanStatus,
        attributes: Option<String>,
        events: Option<String>,
        resource: Option<String>,
    }
    let mut facts: Vec<SpanFacts> = Vec::new();
    let mut extras: Vec<Extra> = Vec::new();
    {
        let mut stmt = c.prepare(include_str!("../../../queries/flow_spans.sql"))?;
        let limit = reading.max_spans.saturating_add(1) as i64;
        for b in stmt.query_arrow(params![flow_id, start, end, limit, updated])? {
            intake::spans_from_batch(&b, None, &mut facts);
            let text = |column| intake::strings(&b, column);
            let (status, attributes, events, resource) =
                (text("status_code"), text("attributes"), text("events"), text("resource_attributes"));
            let owned = |a, i| intake::opt_str(a, i).map(str::to_owned);
            extras.extend((0..b.num_rows()).map(|i| Extra {
                status: SpanStatus::parse(status.value(i)),
                attributes: owned(attributes, i),
                events: owned(events, i),
                resource: owned(resource, i),
            }));
        }
    }
    if facts.is_empty() {
        return Ok(None);
    }
    // The stitcher kept the earliest spans (and the flow's bounds are theirs), or more
    // spans than the cap fall within those bounds.
    let truncated: bool = stitched_truncated || facts.len() > reading.max_spans;
    facts.truncate(reading.max_spans);
    extras.truncate(reading.max_spans);
    // (span's trace, span id, linked trace, linked span, message id, attributes)
    type LinkRow = (String, String, String, String, Option<String>, Option<String>);
    let mut link_rows: Vec<LinkRow> = Vec::new();
    {
        let mut stmt = c.prepare(include_str!("../../../queries/flow_links.sql"))?;
        let rows = stmt.query_map(params![flow_id, start, end, updated], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        for row in rows {
            link_rows.push(row?);
        }
    }
    let index: std::collections::HashMap<(TraceId, SpanId), usize> =
        facts.iter().enumerate().map(|(i, s)| ((s.trace_id, s.span_id), i)).collect();
    let mut link_attrs: Vec<Vec<FlowLink>> = vec![Vec::new(); facts.len()];
    for (trace, span, linked_trace, linked_span, message_id, attrs) in link_rows {
        let ids =
            (TraceId::parse(&trace), SpanId::parse(&span), TraceId::parse(&linked_trace), SpanId::parse(&linked_span));
        let (Some(trace), Some(span), Some(linked), Some(linked_id)) = ids else { continue };
        if let Some(i) = index.get(&(trace, span)) {
            let attributes = parse_json(attrs, serde_json::json!({}));
            link_attrs[*i].push(FlowLink { trace_id: linked_trace, span_id: linked_span, attributes });
            facts[*i].links.push(LinkFacts { trace_id: linked, span_id: linked_id, message_id });
        }
    }

    let a = analysis::analyze(&facts.iter().collect::<Vec<_>>(), &reading.destination_patterns);
    let mut retry_attempt: Vec<Option<i32>> = vec![None; facts.len()];
    for r in &a.retries {
        retry_attempt[r.span] = Some(r.attempt);
        // The first attempt of what was retried is numbered too.
        if let Some(p) = r.previous.filter(|_| r.attempt == 2) {
            retry_attempt[p].get_or_insert(1);
        }
    }
    let mut dead: Vec<bool> = vec![false; facts.len()];
    for d in &a.dead_letters {
        dead[d.span] = true;
    }
    let spans: Vec<FlowSpan> = facts
        .iter()
        .zip(extras)
        .zip(link_attrs)
        .enumerate()
        .map(|(i, ((s, x), links))| FlowSpan {
            trace_id: s.trace_id.to_string(),
            span_id: s.span_id.to_string(),
            parent_span_id: s.parent_span_id.map(|p| p.to_string()),
            service: s.service.clone(),
            name: s.name.clone(),
            kind: s.kind,
            start_unix_nano: s.start,
            end_unix_nano: s.end,
            status: x.status,
            status_message: s.status_message.clone(),
            critical: a.critical[i],
            retry_attempt: retry_attempt[i],
            dead_letter: dead[i],
            destination: s.destination.clone(),
            attributes: parse_json(x.attributes, serde_json::json!({})),
            resource_attributes: parse_json(x.resource, serde_json::json!({})),
            events: parse_json(x.events, serde_json::json!([])),
            links,
        })
        .collect();
    let hops = a
        .hops
        .iter()
        .map(|h| FlowHop {
            system: h.system.clone(),
            destination: h.destination.clone(),
            producer_span_id: h.producer.map(|p| facts[p].span_id.to_string()),
            consumer_span_ids: h.consumers.iter().map(|c| facts[*c].span_id.to_string()).collect(),
            sent_unix_nano: h.time,
            received_unix_nano: h.consumers.iter().map(|c| facts[*c].start).min(),
            queue_wait_ms: h.queue_wait_ns.map(ms),
            retry: h.retry,
            clock_skew: h.clock_skew,
            dead_letter: h.dead_letter,
            source_destination: h.source_destination.clone(),
        })
        .collect();
    let dead_letters = a
        .dead_letters
        .iter()
        .map(|d| DeadLetterRow {
            time_unix_nano: d.time,
            flow_id: flow_id.clone(),
            destination: d.destination.clone(),
            source_destination: d.source_destination.clone(),
            message_id: d.message_id.clone(),
            correlation_id: d.correlation_id.clone(),
            error: d.error.clone(),
        })
        .collect::<Vec<_>>();
    let now = crate::text::now_nanos();
    Ok(Some(FlowDetail {
        flow_id,
        chain: a.chain.clone(),
        path: a.path.clone(),
        start_unix_nano: a.start,
        end_unix_nano: a.end,
        duration_ms: ms(a.end - a.start),
        services: a.services.clone(),
        trace_ids: a.trace_ids.iter().map(TraceId::to_string).collect(),
        error: a.error,
        retries: a.retries.len(),
        dead_lettered: !dead_letters.is_empty(),
        queue_wait_ms: ms(a.queue_wait_ns),
        service_ms: ms(a.service_ns),
        retry_delay_ms: ms(a.retry_delay_ns),
        settled: now - updated > reading.quiet_period_ns,
        truncated,
        spans,
        hops,
        dead_letters,
    }))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchHit {
    pub flow_id: String,
    pub chain: String,
    pub start_unix_nano: i64,
    pub duration_ms: f64,
}

/// Flows containing `q` as a trace id (a cheap lookup, tried first) or else as a span id,
/// message id or correlation id (a scan of those span, link and log columns).
pub async fn search(store: &Arc<Store>, q: String) -> Result<Vec<SearchHit>, StoreError> {
    store
        .read(move |c| {
            let q = q.trim();
            // Only what reads as a trace id is looked up as one (the flow tables hold
            // trace ids as UUIDs, which other text does not convert to).
            if let Some(trace) = TraceId::parse(&q.to_ascii_lowercase()) {
                let sql = include_str!("../../../queries/search_by_trace_id.sql");
                let by_trace = search_with(c, sql, params![trace.hex(), trace.join_hash()])?;
                if !by_trace.is_empty() {
                    return Ok(by_trace);
                }
            }
            search_with(c, include_str!("../../../queries/search.sql"), params![q])
        })
        .await
}

fn search_with(c: &Connection, sql: &str, params: impl duckdb::Params) -> Result<Vec<SearchHit>, StoreError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok(SearchHit { flow_id: r.get(0)?, chain: r.get(1)?, start_unix_nano: r.get(2)?, duration_ms: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IgnoredKeyRow {
    pub kind: String,
    pub value: String,
    pub traces: i64,
    pub detected_unix_nano: i64,
}

/// A commit the stitcher set aside because stitching it failed again and again.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetAsideRow {
    pub commit_seq: i64,
    pub reason: String,
    pub set_aside_unix_nano: i64,
}

/// The commits set aside most recently.
pub async fn set_aside_commits(store: &Arc<Store>) -> Result<Vec<SetAsideRow>, StoreError> {
    store
        .read(|c| {
            let mut stmt = c.prepare(include_str!("../../../queries/stitch_set_aside_recent.sql"))?;
            let rows = stmt.query_map([], |r| {
                Ok(SetAsideRow { commit_seq: r.get(0)?, reason: r.get(1)?, set_aside_unix_nano: r.get(2)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

pub async fn ignored_keys(store: &Arc<Store>) -> Result<Vec<IgnoredKeyRow>, StoreError> {
    store
        .read(|c| {
            let mut stmt = c.prepare(include_str!("../../../queries/ignored_join_keys.sql"))?;
            let rows = stmt.query_map([], |r| {
                Ok(IgnoredKeyRow {
                    kind: r.get(0)?,
                    value: r.get(1)?,
                    traces: r.get(2)?,
                    detected_unix_nano: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}
