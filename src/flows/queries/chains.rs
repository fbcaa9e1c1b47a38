//! Chains: latency percentiles, their series, where the time goes, tail attribution.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::params;
use serde::Serialize;

use super::super::breakdown::{self, Breakdown, FlowSteps};
use super::{json_list, Range};
use crate::store::{Store, StoreError};

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

/// Every chain with flows in the range; only those through `service` when given.
pub async fn chains(store: &Arc<Store>, range: Range, service: Option<String>) -> Result<Vec<ChainStats>, StoreError> {
    // `flows.services` is a JSON array: the service as a JSON string matches an element.
    let service = service.map(|s| serde_json::to_string(&s).expect("strings serialize"));
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chains.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, service], |r| {
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

/// Latency percentiles of one time bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyPoint {
    pub bucket_start_unix_nano: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub flows: i64,
}

/// p50/p95/p99 over time per chain.
pub async fn chain_latency_series(
    store: &Arc<Store>,
    range: Range,
    bucket_ns: i64,
) -> Result<BTreeMap<String, Vec<LatencyPoint>>, StoreError> {
    store
        .read(move |c| {
            let mut out: BTreeMap<String, Vec<LatencyPoint>> = BTreeMap::new();
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chain_p95_series.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to, bucket_ns])?;
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

/// One chain's summary and its percentiles over time (buckets of `bucket_ns`), from one
/// read of its flows; `None` when the chain has no flow in the range.
pub async fn chain_overview(
    store: &Arc<Store>,
    range: Range,
    chain: String,
    bucket_ns: i64,
) -> Result<Option<(ChainSummary, Vec<LatencyPoint>)>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chain_overview.sql"))?;
            let mut rows = stmt.query(params![range.from, range.to, chain, bucket_ns])?;
            let mut summary = ChainSummary::default();
            let mut series = Vec::new();
            while let Some(r) = rows.next()? {
                let q = |i| r.get::<_, Option<f64>>(i).map(Option::unwrap_or_default);
                match r.get::<_, String>(0)?.as_str() {
                    "summary" => {
                        summary = ChainSummary {
                            flows: r.get(2)?,
                            p50_ms: q(3)?,
                            p95_ms: q(4)?,
                            p99_ms: q(5)?,
                            max_ms: q(6)?,
                            service_ms: (q(7)?, q(8)?),
                            queue_wait_ms: (q(9)?, q(10)?),
                            retry_delay_ms: (q(11)?, q(12)?),
                            histogram: std::mem::take(&mut summary.histogram),
                        }
                    }
                    "series" => series.push(LatencyPoint {
                        bucket_start_unix_nano: range.from + r.get::<_, i64>(1)? * bucket_ns,
                        p50_ms: q(3)?,
                        p95_ms: q(4)?,
                        p99_ms: q(5)?,
                        flows: r.get(2)?,
                    }),
                    _ => summary.histogram.push((r.get::<_, i64>(1)?.max(0) as u32, r.get(2)?)),
                }
            }
            Ok((summary.flows > 0).then_some((summary, series)))
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
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chain_hop_waits.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, chain], |r| {
                Ok(HopWait { destination: r.get(0)?, count: r.get(1)?, p50_ms: r.get(2)?, p95_ms: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// The given quantile of end-to-end duration per chain, over flows that ended in range.
pub async fn chain_quantiles(
    store: &Arc<Store>,
    range: Range,
    quantile: f64,
) -> Result<Vec<(String, f64)>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chain_quantile.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, quantile], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// Flows of each group the tail attribution reads at most (a deterministic sample).
const BREAKDOWN_SAMPLE: i64 = 5_000;

/// Tail attribution of a chain over a range (see [`breakdown`]).
pub async fn chain_breakdown(store: &Arc<Store>, range: Range, chain: String) -> Result<Breakdown, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(include_str!("../../../queries/chain_breakdown.sql"))?;
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
