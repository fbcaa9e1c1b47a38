//! The flow map as the API serves it: services and destinations, and the calls, publishes
//! and consumptions between them with their figures over a range. Built from the sums the
//! stitcher keeps per edge and minute ([`super::edges`]); a pure function of those rows,
//! the stored queue aliases and the queues' backlog status.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::backlog::{QueueKey, QueueNames, QueueStatus};
use super::edges::{self, CellCounts, EdgeKind};

/// Most nodes a map shows: past it, the busiest edges are kept (a map of hundreds of
/// nodes is unreadable and slow to lay out); `omitted_edges` says how many were left off.
pub const MAX_NODES: usize = 120;
/// Most edges a map shows, busiest first: the layout's crossing reduction is quadratic in
/// the edges between two ranks.
pub const MAX_EDGES: usize = 250;

/// One edge's sums over a range, per latency bucket, as read from `flow_edge_slots`.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSlotSum {
    pub kind: EdgeKind,
    pub source: String,
    pub target: String,
    pub system: Option<String>,
    pub bucket: Option<i16>,
    pub counts: CellCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Service,
    Destination,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapNode {
    /// `service:NAME` or `destination:NAME`.
    pub id: String,
    pub kind: NodeKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// A destination's backlog status, as on the queue page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<QueueStatus>,
    /// Flows started in this service over the range.
    pub flows_started: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapEdge {
    pub from: String,
    pub to: String,
    /// `call`, `publish` or `consume`.
    pub kind: &'static str,
    /// Calls, messages or deliveries in the range.
    pub count: i64,
    pub rate_per_s: f64,
    /// Call duration, publish duration, or for a consumption the queue wait; `None` when
    /// none was measured (a broker moving a message to a dead-letter queue).
    pub p95_ms: Option<f64>,
    pub error_share: f64,
    pub retries: i64,
    pub dead_letters: i64,
}

impl MapEdge {
    /// Something a user should look at: errors, dead letters or retries.
    pub fn troubled(&self) -> bool {
        self.error_share > 0.0 || self.dead_letters > 0 || self.retries > 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct FlowMap {
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
    /// Edges left off to keep the map within [`MAX_NODES`] and [`MAX_EDGES`].
    pub omitted_edges: usize,
}

/// Where an edge's sums accumulate while rows are merged.
#[derive(Default)]
struct EdgeSum {
    counts: CellCounts,
    buckets: Vec<(i16, i64)>,
}

/// Builds the map of a range from its edge sums. Destinations seen under several names
/// (an exchange feeding a queue) become one node, as on the queue page; `statuses` are
/// the queues' backlog status by (system, name).
pub fn build(
    rows: Vec<EdgeSlotSum>,
    names: &QueueNames,
    statuses: &BTreeMap<QueueKey, QueueStatus>,
    range_seconds: f64,
) -> FlowMap {
    let mut systems: BTreeMap<String, String> = BTreeMap::new();
    let mut canonical = |node: &str, system: &Option<String>| -> String {
        let Some(name) = node.strip_prefix("destination:") else { return node.to_owned() };
        let system = system.clone().unwrap_or_default();
        let (system, name) = names.canonical(&(system, name.to_owned()));
        let id = edges::destination_node(&name);
        if !system.is_empty() {
            systems.entry(id.clone()).or_insert(system);
        }
        id
    };
    let mut entries: BTreeMap<String, i64> = BTreeMap::new();
    let mut sums: BTreeMap<(String, String, EdgeKind), EdgeSum> = BTreeMap::new();
    for row in rows {
        let target = canonical(&row.target, &row.system);
        if row.kind == EdgeKind::Entry {
            *entries.entry(target).or_default() += row.counts.n;
            continue;
        }
        let source = canonical(&row.source, &row.system);
        if source == target {
            continue;
        }
        let sum = sums.entry((source, target, row.kind)).or_default();
        sum.counts.n += row.counts.n;
        sum.counts.errors += row.counts.errors;
        sum.counts.retries += row.counts.retries;
        sum.counts.dead_letters += row.counts.dead_letters;
        if let Some(b) = row.bucket {
            sum.buckets.push((b, row.counts.n));
        }
    }
    let mut all: Vec<MapEdge> = sums
        .into_iter()
        .filter(|(_, s)| s.counts.n > 0 || s.counts.retries > 0 || s.counts.dead_letters > 0)
        .map(|((from, to, kind), s)| MapEdge {
            from,
            to,
            kind: kind.as_str(),
            count: s.counts.n,
            rate_per_s: s.counts.n as f64 / range_seconds.max(1e-9),
            p95_ms: edges::quantile_ms(&s.buckets, 0.95),
            error_share: if s.counts.n > 0 { s.counts.errors as f64 / s.counts.n as f64 } else { 0.0 },
            retries: s.counts.retries,
            dead_letters: s.counts.dead_letters,
        })
        .collect();
    // The busiest edges first, to keep within the node cap; then back in a stable order.
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind))));
    let mut shown: BTreeSet<String> = entries.keys().take(MAX_NODES).cloned().collect();
    let mut kept = Vec::new();
    let mut omitted_edges = 0;
    for e in all {
        let new = [&e.from, &e.to].into_iter().filter(|n| !shown.contains(*n)).count();
        if shown.len() + new > MAX_NODES || kept.len() >= MAX_EDGES {
            omitted_edges += 1;
            continue;
        }
        shown.insert(e.from.clone());
        shown.insert(e.to.clone());
        kept.push(e);
    }
    kept.sort_by(|a, b| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind)));
    let status_of = |system: Option<&String>, name: &str| {
        let exact = system.and_then(|s| statuses.get(&(s.clone(), name.to_owned())));
        exact.or_else(|| statuses.iter().find(|((_, n), _)| n == name).map(|(_, s)| s)).copied()
    };
    let nodes = shown
        .into_iter()
        .map(|id| match id.strip_prefix("destination:") {
            Some(name) => {
                let system = systems.get(&id).cloned();
                MapNode {
                    kind: NodeKind::Destination,
                    name: name.to_owned(),
                    status: status_of(system.as_ref(), name),
                    system,
                    flows_started: 0,
                    id,
                }
            }
            None => MapNode {
                kind: NodeKind::Service,
                name: id.strip_prefix("service:").unwrap_or(&id).to_owned(),
                system: None,
                status: None,
                flows_started: entries.get(&id).copied().unwrap_or(0),
                id,
            },
        })
        .collect();
    FlowMap { nodes, edges: kept, omitted_edges }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::analysis::QueueAlias;

    fn row(kind: EdgeKind, source: &str, target: &str, system: Option<&str>, ms: Option<f64>, n: i64) -> EdgeSlotSum {
        EdgeSlotSum {
            kind,
            source: source.into(),
            target: target.into(),
            system: system.map(Into::into),
            bucket: ms.map(|ms| edges::latency_bucket((ms * 1e6) as i64)),
            counts: CellCounts { n, ..CellCounts::default() },
        }
    }

    #[test]
    fn aliases_merge_into_one_node_with_figures_and_status() {
        let mut failed =
            row(EdgeKind::Consume, "destination:payments.q", "service:payments", Some("rabbitmq"), None, 0);
        failed.counts = CellCounts { n: 0, errors: 1, retries: 2, dead_letters: 0 };
        let mut moved =
            row(EdgeKind::Publish, "destination:payments.q", "destination:payments.dlq", Some("rabbitmq"), None, 1);
        moved.counts.dead_letters = 1;
        let rows = vec![
            row(EdgeKind::Entry, "", "service:orders", None, None, 10),
            row(EdgeKind::Call, "service:orders", "service:stock", None, Some(10.0), 9),
            row(EdgeKind::Call, "service:orders", "service:stock", None, Some(100.0), 1),
            // Published to the exchange, consumed from the queue it feeds.
            row(EdgeKind::Publish, "service:orders", "destination:orders", Some("rabbitmq"), Some(1.0), 10),
            row(EdgeKind::Consume, "destination:payments.q", "service:payments", Some("rabbitmq"), Some(50.0), 10),
            failed,
            moved,
        ];
        let names = QueueNames::new(&[QueueAlias {
            system: "rabbitmq".into(),
            alias: "orders".into(),
            queue: "payments.q".into(),
        }]);
        let statuses = BTreeMap::from([(("rabbitmq".to_string(), "payments.q".to_string()), QueueStatus::Growing)]);
        let map = build(rows, &names, &statuses, 100.0);
        let ids: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "destination:payments.dlq",
                "destination:payments.q",
                "service:orders",
                "service:payments",
                "service:stock"
            ]
        );
        let queue = &map.nodes[1];
        assert_eq!(
            (queue.kind, queue.system.as_deref(), queue.status),
            (NodeKind::Destination, Some("rabbitmq"), Some(QueueStatus::Growing))
        );
        assert_eq!(map.nodes[2].flows_started, 10);
        let edge = |from: &str, to: &str| map.edges.iter().find(|e| e.from == from && e.to == to).unwrap();
        let call = edge("service:orders", "service:stock");
        assert_eq!((call.kind, call.count, call.rate_per_s), ("call", 10, 0.1));
        assert!((call.p95_ms.unwrap() - 100.0).abs() < 5.0, "the slowest of ten is the p95: {call:?}");
        let publish = edge("service:orders", "destination:payments.q");
        assert_eq!(publish.kind, "publish");
        let consume = edge("destination:payments.q", "service:payments");
        assert_eq!((consume.count, consume.retries, consume.error_share), (10, 2, 0.1));
        assert!(consume.troubled());
        let dead = edge("destination:payments.q", "destination:payments.dlq");
        assert_eq!((dead.dead_letters, dead.p95_ms), (1, None));
        assert!(!call.troubled());
    }

    #[test]
    fn the_busiest_edges_are_kept_within_the_node_cap() {
        let rows: Vec<EdgeSlotSum> = (0..MAX_NODES as i64)
            .map(|i| row(EdgeKind::Call, "service:hub", &format!("service:s{i:03}"), None, Some(1.0), i + 1))
            .collect();
        let map = build(rows, &QueueNames::default(), &BTreeMap::new(), 60.0);
        assert_eq!(map.nodes.len(), MAX_NODES);
        assert_eq!(map.omitted_edges, 1);
        assert!(map.edges.iter().all(|e| e.to != "service:s000"), "the quietest edge goes");

        // Every service calling every other: few nodes, too many edges.
        let mesh: Vec<EdgeSlotSum> = (0..30)
            .flat_map(|a| (0..30).filter(move |b| *b != a).map(move |b| (a, b)))
            .map(|(a, b)| row(EdgeKind::Call, &format!("service:s{a}"), &format!("service:s{b}"), None, Some(1.0), 1))
            .collect();
        let map = build(mesh, &QueueNames::default(), &BTreeMap::new(), 60.0);
        assert_eq!((map.edges.len(), map.omitted_edges), (MAX_EDGES, 30 * 29 - MAX_EDGES));
    }
}
