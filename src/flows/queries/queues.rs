//! Queues (depth, rates, trend), the retry heatmap, dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::params;
use serde::Serialize;

pub use super::super::backlog::QueueView;
use super::super::backlog::{self, Buckets, DepthPoint};
use super::Range;
use crate::flows::stitch::aliases::stored as stored_queue_aliases;
use crate::store::{Store, StoreError};

/// How many buckets a range is cut into for series.
const SERIES_BUCKETS: i64 = 60;

/// Width of the slots `queue_counts` counts messages in (migration 005).
const QUEUE_COUNT_SLOT: i64 = 5_000_000_000;

pub async fn queues(store: &Arc<Store>, range: Range) -> Result<Vec<QueueView>, StoreError> {
    // Whole slots per bucket, so every bucket holds the same number of them.
    let per_bucket = ((range.to - range.from) / SERIES_BUCKETS).max(1);
    let bucket = (per_bucket + QUEUE_COUNT_SLOT - 1) / QUEUE_COUNT_SLOT * QUEUE_COUNT_SLOT;
    let (points, flows, names) = store
        .read(move |c| {
            let mut points: BTreeMap<(String, String), Vec<DepthPoint>> = BTreeMap::new();
            let mut stmt = c.prepare(include_str!("../../../queries/queue_depth_points.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to])?;
            while let Some(r) = rows.next()? {
                points.entry((r.get(0)?, r.get(1)?)).or_default().push(DepthPoint {
                    metric: r.get(2)?,
                    time: r.get(3)?,
                    depth: r.get(4)?,
                });
            }
            let mut counted: BTreeMap<(String, String), Vec<(i64, i64, i64, i64)>> = BTreeMap::new();
            let mut stmt = c.prepare(include_str!("../../../queries/queue_span_flow.sql"))?;
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
    let mut out: Vec<QueueView> = destinations
        .into_iter()
        .filter_map(|key| {
            let counted = flows.get(&key).map(Vec::as_slice).unwrap_or_default();
            let depth = points.get(&key).map(Vec::as_slice).unwrap_or_default();
            let aliases = names.aliases_of(&key.0, &key.1);
            backlog::queue_view(key, aliases, depth, counted, Buckets { from: range.from, to: range.to, width: bucket })
        })
        .collect();
    backlog::trouble_first(&mut out);
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
            let mut stmt = c.prepare(include_str!("../../../queries/retry_heatmap.sql"))?;
            let cells = stmt
                .query_map(params![range.from, range.to, bucket_ns], |r| {
                    Ok(HeatCell {
                        row: r.get(0)?,
                        bucket_start_unix_nano: range.from + r.get::<_, i64>(1)? * bucket_ns,
                        count: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut stmt = c.prepare(include_str!("../../../queries/retry_attempts.sql"))?;
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
            let mut stmt = c.prepare(include_str!("../../../queries/dead_letters.sql"))?;
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

/// Dead letters into one destination over a range, for alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterCount {
    pub destination: String,
    pub count: i64,
    pub latest_flow_id: String,
    pub latest_error: Option<String>,
}

/// Every dead-letter destination's count over `range` (one row per destination, not per
/// dead letter: a storm of them costs the same to judge).
pub async fn dead_letter_counts(store: &Arc<Store>, range: Range) -> Result<Vec<DeadLetterCount>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare(include_str!("../../../queries/dead_letter_counts.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to], |r| {
                Ok(DeadLetterCount {
                    destination: r.get(0)?,
                    count: r.get(1)?,
                    latest_flow_id: r.get(2)?,
                    latest_error: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}
