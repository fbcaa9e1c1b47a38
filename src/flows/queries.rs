//! The read side of flows: what the JSON API and the pages show. Every function runs
//! parameterized SQL from `queries/` on a pooled read connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::{params, Connection};
use serde::Serialize;

use super::analysis::{self, DeadLetterPatterns, LinkFacts, QueueAlias, SpanFacts};
use super::backlog::{self, DepthPoint, QueueStatus};
use super::breakdown::{self, Breakdown, FlowSteps};
use super::intake;
use crate::store::{Store, StoreError};

/// A time range in unix nanoseconds, `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

impl Range {
    pub fn seconds(&self) -> f64 {
        (self.to - self.from) as f64 / 1e9
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChainStats {
    pub chain: String,
    pub count: i64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub queue_wait_share: f64,
    pub retries: i64,
    pub dead_letters: i64,
    pub path: Vec<String>,
}

fn json_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

pub async fn chains(store: &Arc<Store>, range: Range) -> Result<Vec<ChainStats>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/chains.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to], |r| {
                Ok(ChainStats {
                    chain: r.get(0)?,
                    count: r.get(1)?,
                    error_rate: r.get(2)?,
                    p50_ms: r.get(3)?,
                    p95_ms: r.get(4)?,
                    p99_ms: r.get(5)?,
                    max_ms: r.get(6)?,
                    queue_wait_share: r.get(7)?,
                    retries: r.get(8)?,
                    dead_letters: r.get(9)?,
                    path: json_list(r.get(10)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

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
            let sql = match order {
                FlowOrder::Newest => include_str!("../../queries/flows_by_time.sql"),
                FlowOrder::Slowest => include_str!("../../queries/flows_by_duration.sql"),
            };
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params![range.from, range.to, chain, limit], |r| {
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
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
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
    pub kind: String,
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub status: String,
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
    pub queue_wait_ms: f64,
    pub clock_skew: bool,
    pub dead_letter: bool,
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

fn parse_json(text: Option<String>, empty: serde_json::Value) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(empty)
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// The whole flow containing `id` (a flow id or any of its trace ids), analysed afresh
/// from its spans; `None` when no flow contains it.
/// How a flow is read for its page: as the stitcher analyses it.
#[derive(Debug, Clone)]
pub struct FlowReading {
    pub dead_letter_patterns: DeadLetterPatterns,
    /// A flow with no new span for this long is settled.
    pub quiet_period_ns: i64,
    /// At most this many spans are read and analysed (the stitcher's cap).
    pub max_spans: usize,
}

pub async fn flow(store: &Arc<Store>, id: String, reading: FlowReading) -> Result<Option<FlowDetail>, StoreError> {
    store.read(move |c| flow_blocking(c, &id.to_ascii_lowercase(), &reading)).await
}

fn flow_blocking(c: &Connection, id: &str, reading: &FlowReading) -> Result<Option<FlowDetail>, StoreError> {
    let summary = c
        .prepare_cached(include_str!("../../queries/flow_summary.sql"))?
        .query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get(4)?))
        })?
        .next()
        .transpose()?;
    let Some((flow_id, updated, start, end, stitched_truncated)) = summary else {
        return Ok(None);
    };
    struct Extra {
        kind: String,
        status: String,
        attributes: Option<String>,
        events: Option<String>,
        resource: Option<String>,
    }
    let mut facts: Vec<SpanFacts> = Vec::new();
    let mut extras: Vec<Extra> = Vec::new();
    {
        let mut stmt = c.prepare_cached(include_str!("../../queries/flow_spans.sql"))?;
        let limit = reading.max_spans.saturating_add(1) as i64;
        let mut rows = stmt.query(params![flow_id, start, end, limit])?;
        let mut read_span = intake::span_reader();
        while let Some(r) = rows.next()? {
            facts.push(read_span(r)?);
            extras.push(Extra {
                kind: r.get("kind")?,
                status: r.get("status_code")?,
                attributes: r.get("attributes")?,
                events: r.get("events")?,
                resource: r.get("resource_attributes")?,
            });
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
    let mut link_rows: Vec<(String, String, LinkFacts, Option<String>)> = Vec::new();
    {
        let mut stmt = c.prepare_cached(include_str!("../../queries/flow_links.sql"))?;
        let rows = stmt.query_map(params![flow_id, start, end], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                LinkFacts { trace_id: r.get(2)?, span_id: r.get(3)?, message_id: r.get(4)? },
                r.get(5)?,
            ))
        })?;
        for row in rows {
            link_rows.push(row?);
        }
    }
    let index: std::collections::HashMap<(String, String), usize> =
        facts.iter().enumerate().map(|(i, s)| ((s.trace_id.clone(), s.span_id.clone()), i)).collect();
    let mut link_attrs: Vec<Vec<FlowLink>> = vec![Vec::new(); facts.len()];
    for (trace, span, link, attrs) in link_rows {
        if let Some(i) = index.get(&(trace, span)) {
            link_attrs[*i].push(FlowLink {
                trace_id: link.trace_id.clone(),
                span_id: link.span_id.clone(),
                attributes: parse_json(attrs, serde_json::json!({})),
            });
            facts[*i].links.push(link);
        }
    }

    let a = analysis::analyze(&facts.iter().collect::<Vec<_>>(), &reading.dead_letter_patterns);
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
            trace_id: s.trace_id.clone(),
            span_id: s.span_id.clone(),
            parent_span_id: s.parent_span_id.clone(),
            service: s.service.clone(),
            name: s.name.clone(),
            kind: x.kind,
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
            producer_span_id: h.producer.map(|p| facts[p].span_id.clone()),
            consumer_span_ids: h.consumers.iter().map(|c| facts[*c].span_id.clone()).collect(),
            sent_unix_nano: h.time,
            received_unix_nano: h.consumers.iter().map(|c| facts[*c].start).min(),
            queue_wait_ms: ms(h.queue_wait_ns),
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
        trace_ids: a.trace_ids.clone(),
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
            let by_trace = search_with(c, include_str!("../../queries/search_by_trace_id.sql"), q)?;
            if !by_trace.is_empty() {
                return Ok(by_trace);
            }
            search_with(c, include_str!("../../queries/search.sql"), q)
        })
        .await
}

fn search_with(c: &Connection, sql: &str, q: &str) -> Result<Vec<SearchHit>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map([q], |r| {
        Ok(SearchHit { flow_id: r.get(0)?, chain: r.get(1)?, start_unix_nano: r.get(2)?, duration_ms: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueView {
    pub system: String,
    pub destination: String,
    /// Other names of this queue merged into this entry (the exchanges that feed it).
    pub aliases: Vec<String>,
    pub depth: f64,
    pub depth_source: &'static str,
    pub series: Vec<(i64, f64)>,
    pub publish_rate: f64,
    pub consume_rate: f64,
    pub drain_seconds: Option<f64>,
    pub growth_per_minute: f64,
    pub status: QueueStatus,
}

/// How many buckets a range is cut into for series.
const SERIES_BUCKETS: i64 = 60;
/// The trailing part of the range the trend and rates are judged on.
const RECENT_BUCKETS: usize = 10;

/// Width of the slots `queue_counts` counts messages in (migration 005).
const QUEUE_COUNT_SLOT: i64 = 5_000_000_000;

pub async fn queues(store: &Arc<Store>, range: Range) -> Result<Vec<QueueView>, StoreError> {
    // Whole slots per bucket, so every bucket holds the same number of them.
    let per_bucket = ((range.to - range.from) / SERIES_BUCKETS).max(1);
    let bucket = (per_bucket + QUEUE_COUNT_SLOT - 1) / QUEUE_COUNT_SLOT * QUEUE_COUNT_SLOT;
    let (points, flows, names) = store
        .read(move |c| {
            let mut points: BTreeMap<(String, String), Vec<DepthPoint>> = BTreeMap::new();
            let mut stmt = c.prepare_cached(include_str!("../../queries/queue_depth_points.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to])?;
            while let Some(r) = rows.next()? {
                points.entry((r.get(0)?, r.get(1)?)).or_default().push(DepthPoint {
                    metric: r.get(2)?,
                    time: r.get(3)?,
                    depth: r.get(4)?,
                });
            }
            let mut counted: BTreeMap<(String, String), Vec<(i64, i64, i64, i64)>> = BTreeMap::new();
            let mut stmt = c.prepare_cached(include_str!("../../queries/queue_span_flow.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to, bucket])?;
            while let Some(r) = rows.next()? {
                let counts = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
                counted.entry((r.get(0)?, r.get(1)?)).or_default().push(counts);
            }
            // (bucket, sent, consumed): consumed by process spans where there are any.
            let flows: BTreeMap<(String, String), Vec<(i64, i64, i64)>> = counted
                .into_iter()
                .map(|(key, buckets)| {
                    let by_process = buckets.iter().any(|b| b.2 > 0);
                    let flow = buckets
                        .into_iter()
                        .map(|(b, sent, processed, received)| (b, sent, if by_process { processed } else { received }))
                        .collect();
                    (key, flow)
                })
                .collect();
            let names = backlog::QueueNames::new(&stored_queue_aliases(c)?);
            Ok((names.merge_points(points), names.merge_counts(flows), names))
        })
        .await?;
    let mut destinations: Vec<(String, String)> = points.keys().chain(flows.keys()).cloned().collect();
    destinations.sort();
    destinations.dedup();
    let mut out = Vec::new();
    for key in destinations {
        let span_buckets = flows.get(&key).cloned().unwrap_or_default();
        let before: i64 = span_buckets.iter().filter(|(b, _, _)| *b < 0).map(|(_, s, c)| s - c).sum();
        let in_range: Vec<(i64, i64, i64)> = span_buckets
            .iter()
            .filter(|(b, _, _)| *b >= 0)
            .map(|(b, s, c)| (range.from + b * bucket, *s, *c))
            .collect();
        let recent_from = range.to - bucket * RECENT_BUCKETS as i64;
        let recent_sent: i64 = in_range.iter().filter(|(t, _, _)| *t >= recent_from).map(|(_, s, _)| s).sum();
        let recent_consumed: i64 = in_range.iter().filter(|(t, _, _)| *t >= recent_from).map(|(_, _, c)| c).sum();
        let window_s = (bucket * RECENT_BUCKETS as i64) as f64 / 1e9;
        let metric_series =
            points.get(&key).map(|p| backlog::series_from_metrics(p, range.from, bucket)).unwrap_or_default();
        let (series, source) = if metric_series.is_empty() {
            (backlog::series_from_spans(before, &in_range), "spans")
        } else {
            (metric_series, "metrics")
        };
        if series.is_empty() {
            continue;
        }
        let has_spans = !in_range.is_empty() || before != 0;
        let recent: Vec<(i64, f64)> = series.iter().copied().filter(|(t, _)| *t >= recent_from).collect();
        let recent = if recent.len() >= 2 { recent } else { series.iter().rev().take(2).rev().copied().collect() };
        let t = backlog::trend(&recent, has_spans.then_some(recent_consumed > 0));
        out.push(QueueView {
            aliases: names.aliases_of(&key.0, &key.1),
            system: key.0,
            destination: key.1,
            depth: series.last().map_or(0.0, |(_, d)| *d),
            depth_source: source,
            publish_rate: recent_sent as f64 / window_s,
            consume_rate: recent_consumed as f64 / window_s,
            drain_seconds: t.drain_seconds,
            growth_per_minute: t.slope_per_second * 60.0,
            status: t.status,
            series,
        });
    }
    // Trouble first: stalled, growing, draining, then the rest.
    let rank = |s: QueueStatus| match s {
        QueueStatus::Stalled => 0,
        QueueStatus::Growing => 1,
        QueueStatus::Draining => 2,
        QueueStatus::Ok => 3,
    };
    out.sort_by(|a, b| rank(a.status).cmp(&rank(b.status)).then(a.destination.cmp(&b.destination)));
    Ok(out)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeatCell {
    pub row: String,
    pub bucket_start_unix_nano: i64,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetryView {
    pub bucket_ns: i64,
    pub cells: Vec<HeatCell>,
    pub attempts: Vec<(i32, i64)>,
}

pub async fn retries(store: &Arc<Store>, range: Range, bucket_ns: i64) -> Result<RetryView, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/retry_heatmap.sql"))?;
            let cells = stmt
                .query_map(params![range.from, range.to, bucket_ns], |r| {
                    Ok(HeatCell {
                        row: r.get(0)?,
                        bucket_start_unix_nano: range.from + r.get::<_, i64>(1)? * bucket_ns,
                        count: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut stmt = c.prepare_cached(include_str!("../../queries/retry_attempts.sql"))?;
            let attempts = stmt
                .query_map(params![range.from, range.to], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(RetryView { bucket_ns, cells, attempts })
        })
        .await
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetterRow {
    pub time_unix_nano: i64,
    pub flow_id: String,
    pub destination: String,
    pub source_destination: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub error: Option<String>,
}

pub async fn dead_letters(store: &Arc<Store>, range: Range) -> Result<Vec<DeadLetterRow>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/dead_letters.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to], |r| {
                Ok(DeadLetterRow {
                    time_unix_nano: r.get(0)?,
                    flow_id: r.get(1)?,
                    destination: r.get(2)?,
                    source_destination: r.get(3)?,
                    message_id: r.get(4)?,
                    correlation_id: r.get(5)?,
                    error: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IgnoredKeyRow {
    pub kind: String,
    pub value: String,
    pub traces: i64,
    pub detected_unix_nano: i64,
}

pub async fn ignored_keys(store: &Arc<Store>) -> Result<Vec<IgnoredKeyRow>, StoreError> {
    store
        .read(|c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/ignored_join_keys.sql"))?;
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

/// Latency percentiles of one time bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyPoint {
    pub bucket_start_unix_nano: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub flows: i64,
}

/// p50/p95/p99 over time per chain (one chain when `chain` is given).
pub async fn chain_latency_series(
    store: &Arc<Store>,
    range: Range,
    bucket_ns: i64,
    chain: Option<String>,
) -> Result<BTreeMap<String, Vec<LatencyPoint>>, StoreError> {
    store
        .read(move |c| {
            let mut out: BTreeMap<String, Vec<LatencyPoint>> = BTreeMap::new();
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_p95_series.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to, bucket_ns, chain])?;
            while let Some(r) = rows.next()? {
                out.entry(r.get(0)?).or_default().push(LatencyPoint {
                    bucket_start_unix_nano: range.from + r.get::<_, i64>(1)? * bucket_ns,
                    p50_ms: r.get(2)?,
                    p95_ms: r.get(3)?,
                    p99_ms: r.get(4)?,
                    flows: r.get(5)?,
                });
            }
            Ok(out)
        })
        .await
}

/// Percentiles (ms) of one chain's flows in a range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainSummary {
    pub flows: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// (p50, p95) of service time, queue wait and retry delay.
    pub service_ms: (f64, f64),
    pub queue_wait_ms: (f64, f64),
    pub retry_delay_ms: (f64, f64),
    /// Flows per power-of-two duration bucket: (b, count) counts durations in
    /// (2^(b-1), 2^b] ms; bucket 0 is everything up to 1 ms.
    pub histogram: Vec<(u32, i64)>,
}

/// `None` when the chain has no flow in the range.
pub async fn chain_summary(
    store: &Arc<Store>,
    range: Range,
    chain: String,
) -> Result<Option<ChainSummary>, StoreError> {
    store
        .read(move |c| {
            let p = params![range.from, range.to, chain];
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_summary.sql"))?;
            let mut summary = stmt.query_row(p, |r| {
                let q = |i| r.get::<_, Option<f64>>(i).map(Option::unwrap_or_default);
                Ok(ChainSummary {
                    flows: r.get(0)?,
                    p50_ms: q(1)?,
                    p95_ms: q(2)?,
                    p99_ms: q(3)?,
                    max_ms: q(4)?,
                    service_ms: (q(5)?, q(6)?),
                    queue_wait_ms: (q(7)?, q(8)?),
                    retry_delay_ms: (q(9)?, q(10)?),
                    histogram: Vec::new(),
                })
            })?;
            if summary.flows == 0 {
                return Ok(None);
            }
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_duration_histogram.sql"))?;
            let rows = stmt.query_map(p, |r| Ok((r.get::<_, i32>(0)?.max(0) as u32, r.get(1)?)))?;
            summary.histogram = rows.collect::<Result<_, _>>()?;
            Ok(Some(summary))
        })
        .await
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopWait {
    pub destination: Option<String>,
    pub count: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

pub async fn chain_hop_waits(store: &Arc<Store>, range: Range, chain: String) -> Result<Vec<HopWait>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_hop_waits.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, chain], |r| {
                Ok(HopWait { destination: r.get(0)?, count: r.get(1)?, p50_ms: r.get(2)?, p95_ms: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// Whether anything was ever received: a fresh install shows the getting-started page.
pub async fn has_any_span(store: &Arc<Store>) -> Result<bool, StoreError> {
    store.read(|c| Ok(c.query_row(include_str!("../../queries/has_any_span.sql"), [], |r| r.get(0))?)).await
}

/// The given quantile of end-to-end duration per chain, over flows that ended in range.
pub async fn chain_quantiles(
    store: &Arc<Store>,
    range: Range,
    quantile: f64,
) -> Result<Vec<(String, f64)>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_quantile.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, quantile], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// Every queue alias stored (learnt or configured; migration 007).
pub(super) fn stored_queue_aliases(c: &Connection) -> Result<Vec<QueueAlias>, StoreError> {
    let mut stmt = c.prepare_cached(include_str!("../../queries/queue_aliases.sql"))?;
    let rows = stmt.query_map([], |r| Ok(QueueAlias { system: r.get(0)?, alias: r.get(1)?, queue: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Flows of each group the tail attribution reads at most (a deterministic sample).
const BREAKDOWN_SAMPLE: i64 = 5_000;

/// Tail attribution of a chain over a range (see [`breakdown`]).
pub async fn chain_breakdown(store: &Arc<Store>, range: Range, chain: String) -> Result<Breakdown, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../queries/chain_breakdown.sql"))?;
            let rows = stmt
                .query_map(params![chain, range.from, range.to, BREAKDOWN_SAMPLE], |r| {
                    let steps: String = r.get(2)?;
                    Ok(FlowSteps { tail: r.get(0)?, flow_id: r.get(1)?, steps: breakdown::parse_steps(&steps) })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(breakdown::tail_attribution(&chain, &rows))
        })
        .await
}
