//! The flow map's edges: what one flow contributes to the map, and how the contributions
//! of many flows add up.
//!
//! A flow contributes *cells*: an edge (a synchronous call between two services, a
//! publish to a destination, a consumption from one; plus an `entry` pseudo-edge naming
//! the service the flow started in), a one-minute slot, and a latency bucket, with
//! counts. It also contributes four cells that are not drawn, for the chain pages: its
//! end-to-end duration (`flow`, with its path as target, its error, retries and dead
//! letters), and its service time, queue wait and retry delay. The chain overview and
//! chain page read those sums (see [`super::chain_sums`]) instead of every flow. The stitcher keeps a flow's cells on its row (`flows.edges`) and adds them to
//! `flow_edge_slots` (migration 014). A flow is rewritten whenever it gains spans: the
//! stitcher then subtracts the cells it stored before (read back by the `DELETE ...
//! RETURNING` that removes the old row) and adds the new ones, in the same transaction.
//! So the table always sums the flows as they are now, and the map reads a few rows per
//! edge and minute instead of every flow. Rows carry the commit the flow's last span
//! came in, and a subtraction carries that of the cells it cancels, so retention (by
//! commit) removes a row and its cancellation together.
//!
//! Latencies are counted in log buckets, eight per doubling: a percentile read from them
//! is within a bucket's width (9%) of the exact value, and closer where values spread
//! over several buckets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::analysis::{FlowAnalysis, SpanFacts};
use super::HashMap;

/// Width of the slots edges are counted in.
pub const SLOT_NS: i64 = 60_000_000_000;

const BUCKETS_PER_DOUBLING: f64 = 8.0;
/// Latencies at or below 2^-10 ms (about 1 µs) share the lowest bucket, read as zero.
const MIN_BUCKET: i16 = -80;
/// 2^24 ms: four and a half hours; longer latencies share the top bucket.
const MAX_BUCKET: i16 = 192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// A client span calling a server span of another service.
    Call,
    /// A producer sending to a destination (or the broker moving a message to a
    /// dead-letter destination: then the source is that message's queue).
    Publish,
    /// A destination delivering to a consuming service; the latency is the queue wait.
    Consume,
    /// Not drawn: the service a flow started in (target), counted once per flow, so the
    /// map knows where flows enter.
    Entry,
    /// Not on the map: the flow itself, its end-to-end duration as latency, its path (a
    /// JSON array) as target; counts its error, retries and dead letters.
    Flow,
    /// Not on the map: the flow's service time (time in its services' own spans).
    ServiceTime,
    /// Not on the map: the flow's total queue wait.
    QueueWait,
    /// Not on the map: the flow's total retry delay.
    RetryDelay,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Call => "call",
            EdgeKind::Publish => "publish",
            EdgeKind::Consume => "consume",
            EdgeKind::Entry => "entry",
            EdgeKind::Flow => "flow",
            EdgeKind::ServiceTime => "service_time",
            EdgeKind::QueueWait => "queue_wait",
            EdgeKind::RetryDelay => "retry_delay",
        }
    }

    /// Whether the map reads this kind (the others are for the chain pages).
    pub fn on_map(self) -> bool {
        matches!(self, EdgeKind::Call | EdgeKind::Publish | EdgeKind::Consume | EdgeKind::Entry)
    }

    pub fn parse(s: &str) -> Option<EdgeKind> {
        Some(match s {
            "call" => EdgeKind::Call,
            "publish" => EdgeKind::Publish,
            "consume" => EdgeKind::Consume,
            "entry" => EdgeKind::Entry,
            "flow" => EdgeKind::Flow,
            "service_time" => EdgeKind::ServiceTime,
            "queue_wait" => EdgeKind::QueueWait,
            "retry_delay" => EdgeKind::RetryDelay,
            _ => return None,
        })
    }
}

/// A map node's id: `service:NAME` or `destination:NAME`.
pub fn service_node(name: &str) -> String {
    format!("service:{name}")
}

pub fn destination_node(name: &str) -> String {
    format!("destination:{name}")
}

/// Where one edge occurrence is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub slot: i64,
    pub kind: EdgeKind,
    pub source: String,
    pub target: String,
    /// The messaging system of the destination end, if any.
    pub system: Option<String>,
    /// Latency bucket; none for events without a latency (a retry, a broker's move).
    pub bucket: Option<i16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellCounts {
    /// Occurrences (calls, messages, deliveries to one service).
    pub n: i64,
    pub errors: i64,
    pub retries: i64,
    pub dead_letters: i64,
}

impl CellCounts {
    fn add(&mut self, other: &CellCounts, sign: i64) {
        self.n += sign * other.n;
        self.errors += sign * other.errors;
        self.retries += sign * other.retries;
        self.dead_letters += sign * other.dead_letters;
    }

    pub fn is_zero(&self) -> bool {
        *self == CellCounts::default()
    }
}

/// One flow's cells.
pub type Cells = BTreeMap<CellKey, CellCounts>;

pub fn slot_of(t: i64) -> i64 {
    t.div_euclid(SLOT_NS) * SLOT_NS
}

pub fn latency_bucket(ns: i64) -> i16 {
    let ms = ns.max(0) as f64 / 1e6;
    if ms <= 2f64.powi(MIN_BUCKET as i32 / BUCKETS_PER_DOUBLING as i32) {
        return MIN_BUCKET;
    }
    ((ms.log2() * BUCKETS_PER_DOUBLING).ceil() as i64).clamp(MIN_BUCKET as i64, MAX_BUCKET as i64) as i16
}

/// The value a bucket stands for: the geometric middle of its bounds.
pub fn bucket_ms(bucket: i16) -> f64 {
    if bucket <= MIN_BUCKET {
        return 0.0;
    }
    2f64.powf((bucket as f64 - 0.5) / BUCKETS_PER_DOUBLING)
}

/// The lower end of a bucket: every latency counted in it is above it (0 for the lowest).
pub fn bucket_lower_ms(bucket: i16) -> f64 {
    if bucket <= MIN_BUCKET {
        return 0.0;
    }
    2f64.powf((bucket as f64 - 1.0) / BUCKETS_PER_DOUBLING)
}

/// The `q` quantile of latencies counted by bucket; `None` without any. Within the bucket
/// the rank falls in, values are taken as spread evenly on the log scale (as Prometheus's
/// `histogram_quantile` spreads them linearly), so the quantiles of many flows that share
/// a bucket still tell the slowest apart: a p95 is then the value 95% of them are under.
pub fn quantile_ms(buckets: &[(i16, i64)], q: f64) -> Option<f64> {
    let mut merged: BTreeMap<i16, i64> = BTreeMap::new();
    for (b, n) in buckets {
        *merged.entry(*b).or_default() += n;
    }
    merged.retain(|_, n| *n > 0);
    let total: i64 = merged.values().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0;
    merged.into_iter().find_map(|(b, n)| {
        let before = seen as f64;
        seen += n;
        if (seen as f64) < rank && seen < total {
            return None;
        }
        if b <= MIN_BUCKET {
            return Some(0.0);
        }
        let within = ((rank - before) / n as f64).clamp(0.0, 1.0);
        Some(bucket_lower_ms(b) * 2f64.powf(within / BUCKETS_PER_DOUBLING))
    })
}

/// The cells of one analysed flow.
pub fn flow_cells(spans: &[&SpanFacts], a: &FlowAnalysis) -> Cells {
    let mut cells = Cells::new();
    let mut add = |time: i64,
                   kind: EdgeKind,
                   source: String,
                   target: String,
                   system: Option<&str>,
                   latency: Option<i64>,
                   counts: CellCounts| {
        let key = CellKey {
            slot: slot_of(time),
            kind,
            source,
            target,
            system: system.map(str::to_owned),
            bucket: latency.map(latency_bucket),
        };
        cells.entry(key).or_insert_with(CellCounts::default).add(&counts, 1);
    };
    let one = |error: bool| CellCounts { n: 1, errors: error as i64, ..CellCounts::default() };
    let svc = |i: usize| service_node(&spans[i].service);

    add(a.start, EdgeKind::Entry, String::new(), svc(a.root), None, None, one(false));
    let path = serde_json::to_string(&a.path).expect("strings serialize");
    let flow = CellCounts {
        n: 1,
        errors: a.error as i64,
        retries: a.retries.len() as i64,
        dead_letters: a.dead_letters.len() as i64,
    };
    add(a.start, EdgeKind::Flow, String::new(), path, None, Some(a.end - a.start), flow);
    add(a.start, EdgeKind::ServiceTime, String::new(), String::new(), None, Some(a.service_ns), one(false));
    add(a.start, EdgeKind::QueueWait, String::new(), String::new(), None, Some(a.queue_wait_ns), one(false));
    add(a.start, EdgeKind::RetryDelay, String::new(), String::new(), None, Some(a.retry_delay_ns), one(false));
    for c in &a.calls {
        let (client, server) = (spans[c.client], spans[c.server]);
        let latency = Some(client.end - client.start);
        add(
            client.start,
            EdgeKind::Call,
            svc(c.client),
            svc(c.server),
            None,
            latency,
            one(client.error || server.error),
        );
    }
    let mut hop_of_consumer: HashMap<usize, usize> = HashMap::default();
    for (h, hop) in a.hops.iter().enumerate() {
        let Some(destination) = hop.destination.as_deref() else { continue };
        let system = hop.system.as_deref();
        let target = destination_node(destination);
        let dead = CellCounts { dead_letters: hop.dead_letter as i64, ..CellCounts::default() };
        // Moved by the broker (as in analysis::find_dead_letters): from the queue it was
        // rejected in, if known; else sent by its producer.
        let moved = hop.source_destination.is_some() || hop.producer.is_none();
        let published = match (moved, hop.producer, hop.source_destination.as_deref()) {
            (false, Some(p), _) => {
                let producer = spans[p];
                let counts = CellCounts { n: 1, errors: producer.error as i64, ..dead };
                add(
                    hop.time,
                    EdgeKind::Publish,
                    svc(p),
                    target.clone(),
                    system,
                    Some(producer.end - producer.start),
                    counts,
                );
                true
            }
            (true, _, Some(source)) => {
                let counts = CellCounts { n: 1, ..dead };
                add(hop.time, EdgeKind::Publish, destination_node(source), target.clone(), system, None, counts);
                true
            }
            _ => false,
        };
        // One delivery per consuming service: its first consumer span; a redelivery
        // to it is a retry (below), another service taking it is a fan-out.
        let mut by_service: BTreeMap<&str, (i64, bool)> = BTreeMap::new();
        for c in &hop.consumers {
            hop_of_consumer.entry(*c).or_insert(h);
            let s = spans[*c];
            let entry = by_service.entry(&s.service).or_insert((s.start, false));
            entry.0 = entry.0.min(s.start);
            entry.1 |= s.error;
        }
        for (i, (service, (first, error))) in by_service.into_iter().enumerate() {
            let wait = hop.wait_from.filter(|_| !hop.retry).map(|from| (first - from).max(0));
            add(first, EdgeKind::Consume, target.clone(), service_node(service), system, wait, one(error));
            if i == 0 && !published && hop.dead_letter {
                add(first, EdgeKind::Consume, target.clone(), service_node(service), system, None, dead);
            }
        }
    }
    for r in &a.retries {
        let retried = CellCounts { retries: 1, ..CellCounts::default() };
        if let Some(hop) = hop_of_consumer.get(&r.span).map(|h| &a.hops[*h]) {
            let Some(destination) = hop.destination.as_deref() else { continue };
            let (source, target) = (destination_node(destination), service_node(&r.service));
            add(r.time, EdgeKind::Consume, source, target, hop.system.as_deref(), None, retried);
        } else if let Some(c) = a.calls.iter().find(|c| c.client == r.span) {
            add(r.time, EdgeKind::Call, svc(c.client), svc(c.server), None, None, retried);
        }
    }
    cells
}

/// A cell as `flows.edges` stores it: `[slot, kind, source, target, system, bucket, n,
/// errors, retries, dead_letters]`, the slot counted in slots from the one the flow starts
/// in (mostly 0: the 19 digits of a time were a quarter of the column, written for every
/// cell of every flow). An array per cell keeps the column small, and puts
/// `"kind","source","target"` side by side, which is how the edge page finds the flows
/// that crossed an edge (see [`edge_needle`]).
/// Written from borrowed strings (`&str`), read into owned ones.
#[derive(Serialize, Deserialize)]
struct StoredCell<S>(i64, EdgeKind, S, S, Option<S>, Option<i16>, i64, i64, i64, i64);

/// `flows.edges` for the cells of a flow starting at `flow_start`.
pub fn cells_json(cells: &Cells, flow_start: i64) -> String {
    let first = slot_of(flow_start);
    let stored: Vec<StoredCell<&str>> = cells
        .iter()
        .map(|(k, c)| {
            StoredCell(
                (k.slot - first) / SLOT_NS,
                k.kind,
                k.source.as_str(),
                k.target.as_str(),
                k.system.as_deref(),
                k.bucket,
                c.n,
                c.errors,
                c.retries,
                c.dead_letters,
            )
        })
        .collect();
    serde_json::to_string(&stored).expect("cells serialize")
}

/// Reads `flows.edges` of a flow starting at `flow_start`; a missing or unreadable value
/// (a flow written before migration 014) has no cells.
pub fn parse_cells(json: Option<&str>, flow_start: i64) -> Cells {
    let first = slot_of(flow_start);
    let stored: Vec<StoredCell<String>> = json.and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
    stored
        .into_iter()
        .filter_map(|StoredCell(slot, kind, source, target, system, bucket, n, errors, retries, dead_letters)| {
            // Older versions stored the slot's time itself (a multiple of a slot, never
            // within one of zero for a real time); an offset is never that large. An
            // offset no time can have (edited by hand?) is no cell.
            let slot = if slot.abs() >= SLOT_NS { Some(slot) } else { first.checked_add(slot.checked_mul(SLOT_NS)?) }?;
            Some((
                CellKey { slot, kind, source, target, system, bucket },
                CellCounts { n, errors, retries, dead_letters },
            ))
        })
        .collect()
}

/// The text `flows.edges` contains for every flow that crossed the edge.
pub fn edge_needle(kind: EdgeKind, source: &str, target: &str) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
    format!(",{},{},{},", quoted(kind.as_str()), quoted(source), quoted(target))
}

/// The change a stitching round makes to `flow_edge_slots`: cells added and subtracted,
/// by chain and commit.
#[derive(Debug, Default)]
pub struct EdgeChanges(HashMap<(String, i64), HashMap<CellKey, CellCounts>>);

impl EdgeChanges {
    /// Adds (`sign` 1) or subtracts (-1) a flow's cells.
    pub fn apply(&mut self, chain: &str, commit_seq: i64, cells: Cells, sign: i64) {
        let changes = self.0.entry((chain.to_owned(), commit_seq)).or_default();
        for (key, counts) in cells {
            changes.entry(key).or_default().add(&counts, sign);
        }
    }

    /// The rows to append: every change that does not cancel out.
    pub fn rows(&self) -> impl Iterator<Item = (&str, i64, &CellKey, &CellCounts)> {
        self.0.iter().flat_map(|((chain, seq), cells)| {
            cells.iter().filter(|(_, c)| !c.is_zero()).map(move |(key, c)| (chain.as_str(), *seq, key, c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::analysis::tests::{msg, sp, with};
    use crate::flows::analysis::{analyze, DestinationPatterns, SpanKind};

    #[test]
    fn buckets_and_quantiles() {
        for ms in [0.01, 0.5, 1.0, 3.7, 120.0, 9_000.0] {
            let b = latency_bucket((ms * 1e6) as i64);
            let back = bucket_ms(b);
            assert!((back - ms).abs() / ms < 0.045, "{ms} ms -> bucket {b} -> {back}");
        }
        assert_eq!(bucket_ms(latency_bucket(0)), 0.0);
        assert_eq!(latency_bucket(i64::MAX), MAX_BUCKET);
        assert_eq!(latency_bucket(-5), MIN_BUCKET);
        // 100 values: 1..=100 ms, p95 is 95 ms.
        let buckets: Vec<(i16, i64)> = (1..=100).map(|ms| (latency_bucket(ms * 1_000_000), 1)).collect();
        let p95 = quantile_ms(&buckets, 0.95).unwrap();
        assert!((p95 - 95.0).abs() / 95.0 < 0.045, "{p95}");
        assert_eq!(quantile_ms(&[], 0.95), None);
        // A bucket's flows are spread over it: 100 flows of about 10 ms do not share one p50.
        let b = latency_bucket(10_000_000);
        let (p05, p50, p95) =
            (quantile_ms(&[(b, 100)], 0.05), quantile_ms(&[(b, 100)], 0.5), quantile_ms(&[(b, 100)], 0.95));
        assert!(p05 < p50 && p50 < p95, "{p05:?} {p50:?} {p95:?}");
        assert!(p95.unwrap() <= 2f64.powf(b as f64 / 8.0) + 1e-9);
        // Counts of one bucket in several rows add up; subtractions cancel additions.
        assert_eq!(quantile_ms(&[(b, 60), (b + 8, 50), (b, 40), (b + 8, -50)], 1.0), quantile_ms(&[(b, 100)], 1.0));
        assert_eq!(quantile_ms(&[(MIN_BUCKET, 10)], 0.5), Some(0.0));
        assert_eq!(quantile_ms(&[(3, 0), (4, -2)], 0.95), None);
    }

    /// A checkout: web calls api (20 ms); api publishes to orders.q (2 ms); worker takes
    /// it 30 ms later and fails; takes it again (a redelivery); the broker then moves it
    /// to orders.dlq, where auditor consumes it.
    fn checkout() -> Vec<SpanFacts> {
        use SpanKind::*;
        let t = 1_700_000_000_000; // ms
        let m1 = |s: SpanFacts| with(s, |s| s.message_id = Some("m1".into()));
        vec![
            sp("t1", "root", None, "web", "POST /orders", Server, t, t + 40),
            sp("t1", "c", Some("root"), "web", "GET", Client, t + 1, t + 21),
            sp("t1", "s", Some("c"), "api", "GET", Server, t + 2, t + 20),
            m1(msg(sp("t1", "p", Some("s"), "api", "send", Producer, t + 18, t + 20), "send", "orders.q")),
            with(
                m1(msg(sp("t1", "w1", Some("p"), "worker", "take", Consumer, t + 52, t + 60), "process", "orders.q")),
                |s| s.error = true,
            ),
            m1(msg(sp("t1", "w2", Some("p"), "worker", "take", Consumer, t + 100, t + 110), "process", "orders.q")),
            with(
                m1(msg(
                    sp("t1", "d1", Some("p"), "auditor", "take", Consumer, t + 200, t + 201),
                    "process",
                    "orders.dlq",
                )),
                |s| s.dead_letter_source = Some("orders.q".into()),
            ),
        ]
    }

    #[test]
    fn a_flow_gives_its_calls_publishes_consumptions_retries_and_dead_letters() {
        let spans = checkout();
        let refs: Vec<&SpanFacts> = spans.iter().collect();
        let a = analyze(&refs, &DestinationPatterns::default());
        let cells = flow_cells(&refs, &a);
        let total = |kind: EdgeKind, source: &str, target: &str| {
            let mut sum = CellCounts::default();
            let mut latencies = Vec::new();
            for (k, c) in cells.iter().filter(|(k, _)| k.kind == kind && k.source == source && k.target == target) {
                sum.add(c, 1);
                latencies.extend(k.bucket.map(bucket_ms));
            }
            (sum, latencies)
        };
        let entry = total(EdgeKind::Entry, "", "service:web");
        assert_eq!(entry.0.n, 1);
        let call = total(EdgeKind::Call, "service:web", "service:api");
        assert_eq!((call.0.n, call.0.errors), (1, 0));
        assert!((call.1[0] - 20.0).abs() < 1.0, "{:?}", call.1);
        let publish = total(EdgeKind::Publish, "service:api", "destination:orders.q");
        assert_eq!(publish.0.n, 1);
        assert!((publish.1[0] - 2.0).abs() < 0.1, "{:?}", publish.1);
        let consume = total(EdgeKind::Consume, "destination:orders.q", "service:worker");
        assert_eq!((consume.0.n, consume.0.errors, consume.0.retries), (1, 1, 1));
        assert!((consume.1[0] - 32.0).abs() < 1.5, "queue wait from publish end to first take: {:?}", consume.1);
        let moved = total(EdgeKind::Publish, "destination:orders.q", "destination:orders.dlq");
        assert_eq!((moved.0.n, moved.0.dead_letters), (1, 1));
        assert!(moved.1.is_empty(), "the broker's move has no latency of its own");
        let audited = total(EdgeKind::Consume, "destination:orders.dlq", "service:auditor");
        assert_eq!(audited.0.n, 1);
        assert!(cells.keys().all(|k| k.slot % SLOT_NS == 0));
    }

    #[test]
    fn stored_cells_read_back_and_cancel() {
        let spans = checkout();
        let refs: Vec<&SpanFacts> = spans.iter().collect();
        let cells = flow_cells(&refs, &analyze(&refs, &DestinationPatterns::default()));
        let start = spans.iter().map(|s| s.start).min().unwrap();
        let json = cells_json(&cells, start);
        assert_eq!(parse_cells(Some(&json), start), cells);
        assert!(json.starts_with("[[0,"), "slots from the flow's first: {json}");
        assert!(json.contains(&edge_needle(EdgeKind::Call, "service:web", "service:api")));
        assert!(!json.contains(&edge_needle(EdgeKind::Call, "service:api", "service:web")));
        assert!(parse_cells(None, start).is_empty());
        assert!(parse_cells(Some("not json"), start).is_empty());
        let beyond = r#"[[59999999999,"entry","","service:web",null,null,1,0,0,0]]"#;
        assert!(parse_cells(Some(beyond), start).is_empty(), "an offset past any time is no cell");
        // As older versions stored them, the slot's time itself.
        let absolute = |slot: i64| format!(r#"[[{slot},"entry","","service:web",null,null,1,0,0,0]]"#);
        for slot in [slot_of(start), slot_of(start) + 3 * SLOT_NS] {
            let old = parse_cells(Some(&absolute(slot)), start);
            assert_eq!(old.keys().map(|k| k.slot).collect::<Vec<_>>(), vec![slot]);
            assert_eq!(parse_cells(Some(&cells_json(&old, start)), start), old);
        }
        // A cell in a later slot than the flow's first.
        let later: Cells =
            cells.iter().map(|(k, c)| (CellKey { slot: k.slot + 2 * SLOT_NS, ..k.clone() }, *c)).collect();
        assert_eq!(parse_cells(Some(&cells_json(&later, start)), start), later);

        let mut changes = EdgeChanges::default();
        changes.apply("web GET", 7, cells.clone(), 1);
        changes.apply("web GET", 7, cells.clone(), -1);
        assert_eq!(changes.rows().count(), 0, "a flow rewritten unchanged changes nothing");
        let mut changes = EdgeChanges::default();
        changes.apply("web GET", 7, cells.clone(), -1);
        changes.apply("web GET", 9, cells.clone(), 1);
        assert_eq!(changes.rows().count(), 2 * cells.len());
    }
}
