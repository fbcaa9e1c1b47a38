//! Chains: latency percentiles, their series, where the time goes, tail attribution.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::{params, Connection};

use super::super::breakdown::{self, Breakdown, FlowSteps};
use super::super::chain_sums::{self, ChainSums, SlotSum};
use super::super::edges::{self, CellCounts, EdgeKind, SLOT_NS};
use super::Range;
use crate::store::{Store, StoreError};

pub use super::super::chain_sums::{ChainStats, ChainSummary, HopWait, LatencyPoint};

/// The range's whole slots (the one `from` falls in counts, as on the map), split into
/// about `parts` parts of whole slots each.
#[derive(Debug, Clone, Copy)]
struct Parts {
    from: i64,
    to: i64,
    part_ns: i64,
}

impl Parts {
    fn of(range: Range, parts: i64) -> Parts {
        let from = edges::slot_of(range.from);
        let per_part = (range.to - from).max(1) / parts.max(1);
        let slots = (per_part + SLOT_NS - 1) / SLOT_NS;
        Parts { from, to: range.to, part_ns: slots.max(1) * SLOT_NS }
    }
}

/// Reads the sums of every chain (or of `chain`, with its queue waits; or of the chains
/// through `service`) over `parts`.
fn read_sums(
    c: &Connection,
    parts: Parts,
    chain: Option<&str>,
    service: Option<&str>,
) -> Result<BTreeMap<String, ChainSums>, StoreError> {
    let service = service.map(edges::service_node);
    let mut stmt = c.prepare(include_str!("../../../queries/chain_sums.sql"))?;
    let rows = stmt
        .query_map(params![parts.from, parts.to, parts.part_ns, chain, service], |r| {
            // Kinds this build does not know (written by a newer one) are skipped.
            let Some(kind) = EdgeKind::parse(&r.get::<_, String>(1)?) else { return Ok(None) };
            Ok(Some(SlotSum {
                chain: r.get(0)?,
                kind,
                name: r.get(2)?,
                part: r.get(3)?,
                bucket: r.get(4)?,
                counts: CellCounts { n: r.get(5)?, errors: r.get(6)?, retries: r.get(7)?, dead_letters: r.get(8)? },
            }))
        })?
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(chain_sums::by_chain(rows))
}

/// A duration (ms) that the `limit` slowest flows of the range (of `chain`) all reach,
/// from the sums of the minutes wholly inside the range, which count no flow outside it;
/// `None` when they count fewer. The slowest-flows list then reads only flows above it.
pub(super) fn slowest_floor_ms(
    c: &Connection,
    range: Range,
    chain: Option<&str>,
    limit: i64,
) -> Result<Option<f64>, StoreError> {
    let (from, to) = (edges::slot_of(range.from.saturating_add(SLOT_NS - 1)), edges::slot_of(range.to));
    if to <= from {
        return Ok(None);
    }
    let sums = read_sums(c, Parts { from, to, part_ns: to - from }, chain, None)?;
    let durations: Vec<(i16, i64)> = sums.values().flat_map(|s| s.duration.iter().copied()).collect();
    Ok(chain_sums::slowest_floor_ms(&durations, limit))
}

/// Every chain with flows in the range; only those through `service` when given.
pub async fn chains(store: &Arc<Store>, range: Range, service: Option<String>) -> Result<Vec<ChainStats>, StoreError> {
    Ok(chains_over_time(store, range, service, 1).await?.into_iter().map(|(stats, _)| stats).collect())
}

/// Every chain with flows in the range (through `service` when given), each with its
/// percentiles over about `parts` parts of the range.
pub async fn chains_over_time(
    store: &Arc<Store>,
    range: Range,
    service: Option<String>,
    parts: i64,
) -> Result<Vec<(ChainStats, Vec<LatencyPoint>)>, StoreError> {
    let parts = Parts::of(range, parts);
    store
        .read(move |c| {
            let sums = read_sums(c, parts, None, service.as_deref())?;
            Ok(sums.iter().map(|(chain, s)| (s.stats(chain), s.series(parts.from, parts.part_ns))).collect())
        })
        .await
}

/// One chain's summary, its percentiles over about `parts` parts of the range, and its
/// queue waits; `None` when the chain has no flow in the range.
pub async fn chain_overview(
    store: &Arc<Store>,
    range: Range,
    chain: String,
    parts: i64,
) -> Result<Option<(ChainSummary, Vec<LatencyPoint>, Vec<HopWait>)>, StoreError> {
    let parts = Parts::of(range, parts);
    store
        .read(move |c| {
            let sums = read_sums(c, parts, Some(&chain), None)?;
            Ok(sums.get(&chain).map(|s| (s.summary(), s.series(parts.from, parts.part_ns), s.hop_waits())))
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
            let mut stmt = c.prepare(include_str!("../../../queries/chain_quantile.sql"))?;
            let rows = stmt.query_map(params![range.from, range.to, quantile], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// Flows of each group the tail attribution reads at most (a deterministic sample): a
/// median of 1,000 is within about a 3% rank of the group's. The read's cost is the
/// table's vectors it decodes to find them, which made most of the chain page's time
/// at twice this sample.
const BREAKDOWN_SAMPLE: i64 = 1_000;

/// The shares of the table the tail attribution reads, largest first, about 1.4 times
/// apart so that the one chosen reads at most 1.5 times what it needs (DuckDB takes only
/// constants for a sample's size, so the statement is made with one of these; each text
/// parses to exactly its share).
const SAMPLE_PERCENTS: [(f64, &str); 16] = [
    (1.0, "100"),
    (0.7, "70"),
    (0.5, "50"),
    (0.35, "35"),
    (0.25, "25"),
    (0.18, "18"),
    (0.125, "12.5"),
    (0.09, "9"),
    (0.0625, "6.25"),
    (0.045, "4.5"),
    (0.03, "3"),
    (0.0225, "2.25"),
    (0.015, "1.5"),
    (0.01, "1"),
    (0.0075, "0.75"),
    (0.005, "0.5"),
];

/// The smallest listed share of the table that should hold one and a half times the
/// sample of a tail of `tail_flows` flows (a little under the sample now and then does no
/// harm; the time is in the vectors read).
fn sample_percent(tail_flows: i64) -> (f64, &'static str) {
    let needed = (BREAKDOWN_SAMPLE * 3 / 2) as f64 / tail_flows.max(1) as f64;
    SAMPLE_PERCENTS.iter().rev().find(|(share, _)| *share >= needed).copied().unwrap_or(SAMPLE_PERCENTS[0])
}

/// Tail attribution of a chain over a range (see [`breakdown`]).
pub async fn chain_breakdown(store: &Arc<Store>, range: Range, chain: String) -> Result<Breakdown, StoreError> {
    store
        .read(move |c| {
            let sums = read_sums(c, Parts::of(range, 1), Some(&chain), None)?;
            let Some(t) = sums.get(&chain).and_then(ChainSums::tail_thresholds) else {
                return Ok(breakdown::tail_attribution(&chain, &[]));
            };
            let (share, percent) = sample_percent(t.tail_flows);
            // Keep one flow in `thin` of a group expected to hold `flows` in the sample:
            // about twice the sample, so that the ranking sorts thousands of rows.
            let thin = |flows: i64| ((flows as f64 * share) as i64 / (BREAKDOWN_SAMPLE * 2)).max(1);
            let sql = include_str!("../../../queries/chain_breakdown.sql").replace("SAMPLE_PERCENT", percent);
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(
                    params![
                        chain,
                        range.from,
                        range.to,
                        t.p95_ms,
                        t.p40_ms,
                        t.p60_ms,
                        thin(t.tail_flows),
                        thin(t.typical_flows),
                        BREAKDOWN_SAMPLE
                    ],
                    |r| {
                        let steps: String = r.get(2)?;
                        Ok(FlowSteps { tail: r.get(0)?, flow_id: r.get(1)?, steps: breakdown::parse_steps(&steps) })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(breakdown::tail_attribution(&chain, &rows))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_holds_the_tail_it_needs() {
        for (tail, want) in [
            (0, "100"),
            (1_500, "100"),
            (1_501, "100"),
            (2_143, "70"),
            (3_000, "50"),
            (6_000, "25"),
            (12_000, "12.5"),
            (12_001, "12.5"),
            (16_667, "9"),
            (300_000, "0.5"),
            (i64::MAX, "0.5"),
        ] {
            assert_eq!(sample_percent(tail).1, want, "{tail} tail flows");
        }
        for (share, percent) in SAMPLE_PERCENTS {
            assert_eq!(percent.parse::<f64>().unwrap() / 100.0, share);
        }
    }

    #[test]
    fn parts_are_whole_slots() {
        let p = Parts::of(Range { from: 90 * SLOT_NS + 5, to: 150 * SLOT_NS }, 24);
        assert_eq!((p.from, p.part_ns), (90 * SLOT_NS, 3 * SLOT_NS));
        let p = Parts::of(Range { from: 0, to: 10 }, 24);
        assert_eq!(p.part_ns, SLOT_NS);
    }
}
