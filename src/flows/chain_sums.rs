//! A chain's figures from the sums the stitcher keeps per minute in `flow_edge_slots`
//! (see [`super::edges`]): each flow's `flow` cell (its end-to-end duration, path, error,
//! retries and dead letters), its `service_time`, `queue_wait` and `retry_delay` cells,
//! and the `consume` cells' queue waits per destination. From them come the overview's
//! row per chain, the chain page's percentiles, series, histogram and queue waits, and
//! the thresholds of the tail attribution ([`super::breakdown`]).
//!
//! Reading sums costs a few rows per chain, latency bucket and minute, whatever the
//! number of flows: at 5 million spans stored the chain page's reads of `flows` took
//! 50-150 ms each. The price is precision: percentiles come from latency buckets (eight
//! per doubling, interpolated within one), so they are within a bucket's width (9%) of
//! the exact values, and a range counts the whole minutes it starts in, as the map does.

use std::collections::BTreeMap;

use serde::Serialize;

use super::edges::{bucket_lower_ms, bucket_ms, quantile_ms, CellCounts, EdgeKind};

/// One row of the sums as read: a chain's cells of one kind, name (the path of `flow`
/// cells, the destination node of `consume` cells), part of the range and latency bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSum {
    pub chain: String,
    pub kind: EdgeKind,
    pub name: String,
    /// Which part of the range (for the series); `None` where the query does not split.
    pub part: Option<i64>,
    pub bucket: Option<i16>,
    pub counts: CellCounts,
}

/// Counts per latency bucket.
type Buckets = Vec<(i16, i64)>;

/// One chain's sums over a range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainSums {
    /// Flows (`n`), and their errors, retries and dead letters.
    pub flows: CellCounts,
    pub duration: Buckets,
    pub duration_by_part: BTreeMap<i64, Buckets>,
    /// Flows per path (a JSON array).
    pub paths: BTreeMap<String, i64>,
    pub service_time: Buckets,
    pub queue_wait: Buckets,
    pub retry_delay: Buckets,
    /// Queue waits per destination node.
    pub hop_waits: BTreeMap<String, Buckets>,
}

/// Adds up rows by chain; rows of kinds that carry no chain figure are ignored.
pub fn by_chain(rows: impl IntoIterator<Item = SlotSum>) -> BTreeMap<String, ChainSums> {
    let mut chains: BTreeMap<String, ChainSums> = BTreeMap::new();
    for row in rows {
        let sums = chains.entry(row.chain).or_default();
        let n = row.counts.n;
        let Some(bucket) = row.bucket else { continue };
        match row.kind {
            EdgeKind::Flow => {
                let f = &mut sums.flows;
                f.n += n;
                f.errors += row.counts.errors;
                f.retries += row.counts.retries;
                f.dead_letters += row.counts.dead_letters;
                sums.duration.push((bucket, n));
                if let Some(part) = row.part {
                    sums.duration_by_part.entry(part).or_default().push((bucket, n));
                }
                *sums.paths.entry(row.name).or_default() += n;
            }
            EdgeKind::ServiceTime => sums.service_time.push((bucket, n)),
            EdgeKind::QueueWait => sums.queue_wait.push((bucket, n)),
            EdgeKind::RetryDelay => sums.retry_delay.push((bucket, n)),
            EdgeKind::Consume => sums.hop_waits.entry(row.name).or_default().push((bucket, n)),
            EdgeKind::Call | EdgeKind::Publish | EdgeKind::Entry => {}
        }
    }
    chains.retain(|_, s| s.flows.n > 0);
    chains
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

/// Latency percentiles of one time bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyPoint {
    pub bucket_start_unix_nano: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub flows: i64,
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

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopWait {
    pub destination: Option<String>,
    pub count: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// Where the tail attribution splits a chain's flows: the tail is slower than `p95`, the
/// typical between `p40` and `p60`; and how many flows each group holds, about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailThresholds {
    pub p40_ms: f64,
    pub p60_ms: f64,
    pub p95_ms: f64,
    pub tail_flows: i64,
    pub typical_flows: i64,
}

/// A duration (ms) that the `limit` slowest of the values counted all exceed: the lower
/// end of the bucket in which, counting down from the slowest, `limit` is reached (less a
/// little, for rounding); `None` when fewer are counted or the bucket starts at zero.
pub fn slowest_floor_ms(buckets: &[(i16, i64)], limit: i64) -> Option<f64> {
    let mut merged: BTreeMap<i16, i64> = BTreeMap::new();
    for (b, n) in buckets {
        *merged.entry(*b).or_default() += n;
    }
    let mut seen = 0;
    let (bucket, _) = merged.into_iter().rev().find(|(_, n)| {
        seen += (*n).max(0);
        seen >= limit.max(1)
    })?;
    let floor = bucket_lower_ms(bucket);
    (floor > 0.0).then_some(floor * (1.0 - 1e-9))
}

fn q(buckets: &Buckets, q: f64) -> f64 {
    quantile_ms(buckets, q).unwrap_or(0.0)
}

/// The sum of the values counted, each taken as its bucket's middle.
fn total_ms(buckets: &Buckets) -> f64 {
    buckets.iter().map(|(b, n)| bucket_ms(*b) * *n as f64).sum()
}

impl ChainSums {
    /// The overview's row.
    pub fn stats(&self, chain: &str) -> ChainStats {
        let n = self.flows.n.max(1) as f64;
        let duration = total_ms(&self.duration);
        ChainStats {
            chain: chain.to_owned(),
            count: self.flows.n,
            error_rate: self.flows.errors as f64 / n,
            p50_ms: q(&self.duration, 0.50),
            p95_ms: q(&self.duration, 0.95),
            p99_ms: q(&self.duration, 0.99),
            max_ms: q(&self.duration, 1.0),
            queue_wait_share: if duration > 0.0 { total_ms(&self.queue_wait) / duration } else { 0.0 },
            retries: self.flows.retries,
            dead_letters: self.flows.dead_letters,
            path: self.most_common_path(),
        }
    }

    /// The path most of the flows took (the first in order among equals).
    fn most_common_path(&self) -> Vec<String> {
        let path = self.paths.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(p, _)| p.as_str());
        path.and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }

    /// Percentiles per part of the range; part `i` starts at `from + i * part_ns`.
    pub fn series(&self, from: i64, part_ns: i64) -> Vec<LatencyPoint> {
        self.duration_by_part
            .iter()
            .map(|(part, buckets)| LatencyPoint {
                bucket_start_unix_nano: from + part * part_ns,
                p50_ms: q(buckets, 0.50),
                p95_ms: q(buckets, 0.95),
                p99_ms: q(buckets, 0.99),
                flows: buckets.iter().map(|(_, n)| n).sum(),
            })
            .collect()
    }

    /// The chain page's percentiles and histogram.
    pub fn summary(&self) -> ChainSummary {
        let both = |b: &Buckets| (q(b, 0.50), q(b, 0.95));
        let mut histogram: BTreeMap<u32, i64> = BTreeMap::new();
        for (b, n) in &self.duration {
            // Eight latency buckets per doubling: bucket b ends at 2^(b/8) ms.
            let pow2 = (i32::from(*b) + 7).div_euclid(8).max(0) as u32;
            *histogram.entry(pow2).or_default() += n;
        }
        ChainSummary {
            flows: self.flows.n,
            p50_ms: q(&self.duration, 0.50),
            p95_ms: q(&self.duration, 0.95),
            p99_ms: q(&self.duration, 0.99),
            max_ms: q(&self.duration, 1.0),
            service_ms: both(&self.service_time),
            queue_wait_ms: both(&self.queue_wait),
            retry_delay_ms: both(&self.retry_delay),
            histogram: histogram.into_iter().filter(|(_, n)| *n > 0).collect(),
        }
    }

    /// Queue wait per destination, in the order of the chain's most common path (then by
    /// name).
    pub fn hop_waits(&self) -> Vec<HopWait> {
        let path = self.most_common_path();
        let mut waits: Vec<HopWait> = self
            .hop_waits
            .iter()
            .filter_map(|(node, buckets)| {
                let count: i64 = buckets.iter().map(|(_, n)| n).sum();
                (count > 0).then(|| HopWait {
                    destination: Some(node.strip_prefix("destination:").unwrap_or(node).to_owned()),
                    count,
                    p50_ms: q(buckets, 0.50),
                    p95_ms: q(buckets, 0.95),
                })
            })
            .collect();
        let position = |w: &HopWait| path.iter().position(|p| Some(p) == w.destination.as_ref()).unwrap_or(usize::MAX);
        waits.sort_by(|a, b| position(a).cmp(&position(b)).then_with(|| a.destination.cmp(&b.destination)));
        waits
    }

    /// The tail attribution's groups; `None` without flows.
    pub fn tail_thresholds(&self) -> Option<TailThresholds> {
        (self.flows.n > 0).then(|| TailThresholds {
            p40_ms: q(&self.duration, 0.40),
            p60_ms: q(&self.duration, 0.60),
            p95_ms: q(&self.duration, 0.95),
            tail_flows: (self.flows.n as f64 * 0.05).ceil() as i64,
            typical_flows: (self.flows.n as f64 * 0.20).ceil() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::edges::latency_bucket;

    fn row(chain: &str, kind: EdgeKind, name: &str, part: i64, ms: f64, counts: CellCounts) -> SlotSum {
        SlotSum {
            chain: chain.into(),
            kind,
            name: name.into(),
            part: Some(part),
            bucket: Some(latency_bucket((ms * 1e6) as i64)),
            counts,
        }
    }

    fn n(n: i64) -> CellCounts {
        CellCounts { n, ..CellCounts::default() }
    }

    /// Flows of 1..=100 ms in part 0 (one with an error, a retry and a dead letter) and
    /// 10 flows of 1 s in part 1; queue waits of 5 ms in orders.q; a cancelled flow.
    fn checkout() -> Vec<SlotSum> {
        let path = r#"["web","orders.q","worker"]"#;
        let mut rows: Vec<SlotSum> = (1..=100)
            .map(|ms| {
                let c = if ms == 7 { CellCounts { n: 1, errors: 1, retries: 2, dead_letters: 1 } } else { n(1) };
                row("checkout", EdgeKind::Flow, path, 0, ms as f64, c)
            })
            .collect();
        rows.push(row("checkout", EdgeKind::Flow, r#"["web"]"#, 1, 1_000.0, n(10)));
        rows.push(row("checkout", EdgeKind::Flow, r#"["web"]"#, 1, 3_000.0, n(1)));
        rows.push(row("checkout", EdgeKind::Flow, r#"["web"]"#, 1, 3_000.0, n(-1)));
        rows.push(row("checkout", EdgeKind::QueueWait, "", 0, 55.0, n(110)));
        rows.push(row("checkout", EdgeKind::ServiceTime, "", 0, 20.0, n(110)));
        rows.push(row("checkout", EdgeKind::RetryDelay, "", 0, 0.0, n(110)));
        rows.push(row("checkout", EdgeKind::Consume, "destination:emails.q", 0, 50.0, n(3)));
        rows.push(row("checkout", EdgeKind::Consume, "destination:orders.q", 0, 5.0, n(100)));
        rows.push(row("checkout", EdgeKind::Call, "service:web", 0, 5.0, n(100)));
        rows.push(row("refund", EdgeKind::Flow, "[]", 0, 9.0, n(1)));
        rows.push(row("refund", EdgeKind::Flow, "[]", 0, 9.0, n(-1)));
        rows
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.045 * b.abs().max(1e-9)
    }

    #[test]
    fn the_overview_row_of_a_chain() {
        let chains = by_chain(checkout());
        assert_eq!(chains.keys().collect::<Vec<_>>(), ["checkout"], "a chain whose flows all cancel is gone");
        let s = chains["checkout"].stats("checkout");
        assert_eq!((s.count, s.retries, s.dead_letters), (110, 2, 1));
        assert!(close(s.error_rate, 1.0 / 110.0));
        assert!(close(s.p50_ms, 55.0), "{s:?}");
        assert!(close(s.p95_ms, 1_000.0) && close(s.max_ms, 1_000.0), "{s:?}");
        assert_eq!(s.path, ["web", "orders.q", "worker"], "the most common path");
        // 110 × 55 ms waiting over 100 × 50.5 ms + 10 × 1 s of flows, each side within 4.5%.
        let exact = 110.0 * 55.0 / (5_050.0 + 10_000.0);
        assert!((s.queue_wait_share - exact).abs() < 0.09 * exact, "{s:?}");
    }

    #[test]
    fn series_summary_and_histogram() {
        let chains = by_chain(checkout());
        let c = &chains["checkout"];
        let series = c.series(1_000, 60);
        assert_eq!(
            series.iter().map(|p| (p.bucket_start_unix_nano, p.flows)).collect::<Vec<_>>(),
            [(1_000, 100), (1_060, 10)]
        );
        assert!(close(series[0].p95_ms, 95.0) && close(series[1].p50_ms, 1_000.0), "{series:?}");
        let s = c.summary();
        assert_eq!(s.flows, 110);
        // All in one bucket: a quantile is somewhere in it, within its width (9%).
        let within_bucket = |a: f64, b: f64| (a - b).abs() <= 0.09 * b;
        assert!(within_bucket(s.queue_wait_ms.1, 55.0) && within_bucket(s.service_ms.0, 20.0), "{s:?}");
        assert_eq!(s.retry_delay_ms, (0.0, 0.0));
        // 1 ms; 2; 3-4; 5-8; 9-16; 17-32; 33-64; 65-100 ms; and 1 s in (512, 1024].
        assert_eq!(s.histogram, [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 36), (10, 10)]);
    }

    #[test]
    fn queue_waits_follow_the_path() {
        let chains = by_chain(checkout());
        let waits = chains["checkout"].hop_waits();
        let names: Vec<_> = waits.iter().map(|w| w.destination.clone().unwrap()).collect();
        assert_eq!(names, ["orders.q", "emails.q"], "on the path first, then by name");
        assert_eq!((waits[0].count, waits[1].count), (100, 3));
        assert!(close(waits[0].p95_ms, 5.0), "{waits:?}");
    }

    #[test]
    fn the_slowest_flows_are_above_the_floor() {
        let durations: Vec<(i16, i64)> = (1..=100).map(|ms| (latency_bucket(ms * 1_000_000), 1)).collect();
        for limit in [1, 5, 20, 99] {
            let floor = slowest_floor_ms(&durations, limit).unwrap();
            let above = (1..=100).filter(|ms| *ms as f64 >= floor).count() as i64;
            assert!(above >= limit && above <= limit + 10, "limit {limit}: floor {floor}, {above} above");
        }
        assert_eq!(slowest_floor_ms(&durations, 101), None, "fewer than the limit");
        assert_eq!(slowest_floor_ms(&[(latency_bucket(0), 50)], 10), None, "a floor of zero filters nothing");
        assert_eq!(slowest_floor_ms(&[(40, 5), (40, -5), (30, 3)], 3), Some(bucket_lower_ms(30) * (1.0 - 1e-9)));
    }

    #[test]
    fn tail_thresholds() {
        let chains = by_chain(checkout());
        let t = chains["checkout"].tail_thresholds().unwrap();
        assert!(t.p40_ms < t.p60_ms && t.p60_ms < t.p95_ms, "{t:?}");
        assert!(close(t.p40_ms, 44.0) && close(t.p60_ms, 66.0), "{t:?}");
        assert_eq!((t.tail_flows, t.typical_flows), (6, 22));
        assert_eq!(ChainSums::default().tail_thresholds(), None);
    }
}
