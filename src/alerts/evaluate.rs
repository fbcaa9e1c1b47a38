//! What each rule kind observes in the data: one observation per queue or chain in the
//! rule's scope, with the value judged and whether it breaches. Pure functions over the
//! same views the pages show.

use std::collections::BTreeMap;

use super::rules::Condition;
use crate::flows::analysis::glob;
use crate::flows::backlog::slope_per_second;
use crate::flows::queries::{DeadLetterCount, QueueView};
use crate::text::{fmt_ms, urlencode};

/// The state of one queue or chain as a rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Labels telling this instance apart (`destination` or `chain`, and `system`).
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub breached: bool,
    /// A sentence for the notification: what was seen against what limit.
    pub description: String,
    /// The page showing the problem, relative to the UI root.
    pub page: String,
}

pub fn in_scope(scope: &str, system: Option<&str>, name: &str, its_system: &str) -> bool {
    glob(scope.as_bytes(), name.as_bytes())
        && system
            .is_none_or(|s| s.eq_ignore_ascii_case(its_system) || s.replace('.', "_").eq_ignore_ascii_case(its_system))
}

fn queue_labels(q: &QueueView) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("destination".to_string(), q.destination.clone())]);
    if !q.system.is_empty() {
        labels.insert("system".into(), q.system.clone());
    }
    labels
}

fn queue_page(q: &QueueView) -> String {
    format!("/queues?last=1h#{}", urlencode(&q.destination))
}

/// Queue-based kinds over queue views computed for the rule's window.
pub fn observe_queues(
    condition: &Condition,
    scope: &str,
    system: Option<&str>,
    queues: &[QueueView],
) -> Vec<Observation> {
    queues
        .iter()
        .filter(|q| in_scope(scope, system, &q.destination, &q.system))
        .filter_map(|q| {
            let (value, breached, description) = match condition {
                Condition::QueueDepth { threshold } => (
                    q.depth,
                    q.depth > *threshold,
                    format!("{} holds {} messages (limit {threshold})", q.destination, q.depth),
                ),
                Condition::BacklogGrowth { min_slope_per_minute, max_drain_seconds, .. } => {
                    let slope = slope_per_second(&q.series) * 60.0;
                    let too_steep = min_slope_per_minute.is_some_and(|m| slope > m);
                    let too_slow =
                        max_drain_seconds.is_some_and(|max| q.depth > 0.0 && q.drain_seconds.is_none_or(|d| d > max));
                    let drain = q
                        .drain_seconds
                        .map_or("not draining".to_string(), |d| format!("drains in {}", fmt_ms(d * 1000.0)));
                    (
                        slope,
                        too_steep || too_slow,
                        format!("{} grows by {slope:.1} messages/min, depth {}, {drain}", q.destination, q.depth),
                    )
                }
                Condition::ConsumerStalled { .. } => {
                    let stalled = q.depth > 0.0 && q.consume_rate == 0.0;
                    (q.depth, stalled, format!("{} holds {} messages and nothing was consumed", q.destination, q.depth))
                }
                _ => return None,
            };
            Some(Observation { labels: queue_labels(q), value, breached, description, page: queue_page(q) })
        })
        .collect()
}

/// Dead letters per dead-letter destination within the rule's window.
pub fn observe_dead_letters(min_count: f64, scope: &str, dead: &[DeadLetterCount]) -> Vec<Observation> {
    dead.iter()
        .filter(|d| in_scope(scope, None, &d.destination, ""))
        .map(|d| {
            let cause = d.latest_error.as_ref().map(|e| format!("; latest error: {e}")).unwrap_or_default();
            Observation {
                labels: BTreeMap::from([("destination".to_string(), d.destination.clone())]),
                value: d.count as f64,
                breached: d.count as f64 >= min_count,
                description: format!("{} dead letters in {}{cause}", d.count, d.destination),
                page: format!("/flows/{}", d.latest_flow_id),
            }
        })
        .collect()
}

/// The chain quantile against its budget.
pub fn observe_chains(quantile: f64, budget_ms: f64, scope: &str, chains: &[(String, f64)]) -> Vec<Observation> {
    chains
        .iter()
        .filter(|(chain, _)| in_scope(scope, None, chain, ""))
        .map(|(chain, value)| Observation {
            labels: BTreeMap::from([("chain".to_string(), chain.clone())]),
            value: *value,
            breached: *value > budget_ms,
            description: format!(
                "p{} of {chain} is {} (budget {})",
                quantile * 100.0,
                fmt_ms(*value),
                fmt_ms(budget_ms)
            ),
            page: format!("/chains/{}", urlencode(chain)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::backlog::QueueStatus;
    use std::time::Duration;

    const M: i64 = 60_000_000_000;

    fn queue(dest: &str, system: &str, series: &[f64], consume_rate: f64, drain: Option<f64>) -> QueueView {
        QueueView {
            aliases: vec![],
            system: system.into(),
            destination: dest.into(),
            depth: *series.last().unwrap(),
            depth_source: "metrics",
            series: series.iter().enumerate().map(|(i, d)| (i as i64 * M, *d)).collect(),
            publish_rate: 1.0,
            consume_rate,
            drain_seconds: drain,
            growth_per_minute: 0.0,
            status: QueueStatus::Ok,
        }
    }

    #[test]
    fn queue_kinds() {
        let queues = vec![
            queue("payments", "rabbitmq", &[10.0, 20.0, 40.0], 1.0, None),
            queue("orders", "kafka", &[5.0, 5.0, 5.0], 0.0, None),
            queue("emails", "rabbitmq", &[30.0, 20.0, 10.0], 2.0, Some(60.0)),
        ];
        let breached = |c: &Condition, scope: &str, system: Option<&str>| -> Vec<(String, bool)> {
            observe_queues(c, scope, system, &queues)
                .into_iter()
                .map(|o| (o.labels["destination"].clone(), o.breached))
                .collect()
        };
        let s = |v: &[(&str, bool)]| v.iter().map(|(d, b)| (d.to_string(), *b)).collect::<Vec<_>>();
        assert_eq!(
            breached(&Condition::QueueDepth { threshold: 15.0 }, "*", None),
            s(&[("payments", true), ("orders", false), ("emails", false)])
        );
        assert_eq!(breached(&Condition::QueueDepth { threshold: 15.0 }, "pay*", None), s(&[("payments", true)]));
        assert_eq!(breached(&Condition::QueueDepth { threshold: 1.0 }, "*", Some("kafka")), s(&[("orders", true)]));
        let growth = Condition::BacklogGrowth {
            window: Duration::from_secs(120),
            min_slope_per_minute: Some(5.0),
            max_drain_seconds: None,
        };
        assert_eq!(breached(&growth, "*", None), s(&[("payments", true), ("orders", false), ("emails", false)]));
        let drain = Condition::BacklogGrowth {
            window: Duration::from_secs(120),
            min_slope_per_minute: None,
            max_drain_seconds: Some(30.0),
        };
        assert_eq!(breached(&drain, "*", None), s(&[("payments", true), ("orders", true), ("emails", true)]));
        let stalled = Condition::ConsumerStalled { window: Duration::from_secs(60) };
        assert_eq!(breached(&stalled, "*", None), s(&[("payments", false), ("orders", true), ("emails", false)]));
    }

    #[test]
    fn dead_letters_and_chains() {
        let count = |dest: &str, count: i64, t: i64| DeadLetterCount {
            destination: dest.into(),
            count,
            latest_flow_id: format!("flow{t}"),
            latest_error: Some(format!("boom {t}")),
        };
        let obs = observe_dead_letters(
            2.0,
            "*.DLT",
            &[count("orders.DLT", 2, 5), count("other", 1, 4), count("payments.DLT", 1, 3)],
        );
        let got: Vec<(String, f64, bool)> =
            obs.iter().map(|o| (o.labels["destination"].clone(), o.value, o.breached)).collect();
        assert_eq!(got, vec![("orders.DLT".into(), 2.0, true), ("payments.DLT".into(), 1.0, false)]);
        assert!(obs[0].description.contains("boom 5") && obs[0].page == "/flows/flow5");

        let chains = vec![("checkout POST /orders".to_string(), 900.0), ("quote GET /q".to_string(), 100.0)];
        let obs = observe_chains(0.99, 500.0, "checkout*", &chains);
        assert_eq!(obs.len(), 1);
        assert!(obs[0].breached && obs[0].page == "/chains/checkout%20POST%20%2Forders");
    }
}
