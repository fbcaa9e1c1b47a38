//! Queue backlog per destination: a depth series (from broker metrics when there are any,
//! else estimated as messages sent minus messages consumed), rates, drain time and trend.

use std::collections::BTreeMap;

use serde::Serialize;

use super::analysis::QueueAlias;

/// Broker metrics that report a queue's depth, best first for a destination that has
/// several (Kafka exporters report both per-partition lag and its sum).
pub const DEPTH_METRICS: &[&str] = &[
    "messaging.queue.depth",
    "rabbitmq.message.current",
    "kafka.consumer_group.lag_sum",
    "kafka.consumer_group.lag",
    "ApproximateNumberOfMessagesVisible",
    "aws.sqs.approximate_number_of_messages_visible",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueStatus {
    Ok,
    Growing,
    Stalled,
    Draining,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Ok => "ok",
            QueueStatus::Growing => "growing",
            QueueStatus::Stalled => "stalled",
            QueueStatus::Draining => "draining",
        }
    }
}

/// One broker metric point, already summed over the labels of one timestamp (RabbitMQ's
/// ready + unacknowledged, Kafka's partitions).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthPoint {
    pub metric: String,
    pub time: i64,
    pub depth: f64,
}

/// Picks the preferred metric and keeps the last value per bucket: `[bucket_start, depth]`.
pub fn series_from_metrics(points: &[DepthPoint], from: i64, bucket: i64) -> Vec<(i64, f64)> {
    let Some(metric) = DEPTH_METRICS.iter().find(|m| points.iter().any(|p| p.metric == **m)) else {
        return Vec::new();
    };
    let mut chosen: Vec<&DepthPoint> = points.iter().filter(|p| p.metric == *metric).collect();
    chosen.sort_by_key(|p| p.time);
    let mut series: Vec<(i64, f64)> = Vec::new();
    for p in chosen {
        let b = from + (p.time - from).div_euclid(bucket) * bucket;
        match series.last_mut() {
            Some(last) if last.0 == b => last.1 = p.depth,
            _ => series.push((b, p.depth)),
        }
    }
    series
}

/// Depth estimated from spans: what was in the queue before the range, plus sends minus
/// consumes bucket by bucket, never below zero. `flows` holds `(bucket_start, sent,
/// consumed)` sorted by bucket.
pub fn series_from_spans(before: i64, flows: &[(i64, i64, i64)]) -> Vec<(i64, f64)> {
    let mut depth = before.max(0);
    flows
        .iter()
        .map(|(b, sent, consumed)| {
            depth = (depth + sent - consumed).max(0);
            (*b, depth as f64)
        })
        .collect()
}

/// Least-squares slope of the series, in depth units per second.
pub fn slope_per_second(series: &[(i64, f64)]) -> f64 {
    if series.len() < 2 {
        return 0.0;
    }
    let n = series.len() as f64;
    let xs: Vec<f64> = series.iter().map(|(t, _)| (*t - series[0].0) as f64 / 1e9).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = series.iter().map(|(_, d)| d).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, (_, y)) in xs.iter().zip(series) {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub status: QueueStatus,
    /// Seconds until empty at the current rates; `None` while it is not shrinking.
    pub drain_seconds: Option<f64>,
    pub slope_per_second: f64,
}

/// Judges the recent part of a depth series. `consumed_recently` says whether anything was
/// consumed in that window (None when unknown, e.g. metrics without consumer spans).
pub fn trend(recent: &[(i64, f64)], consumed_recently: Option<bool>) -> Trend {
    let depth = recent.last().map_or(0.0, |(_, d)| *d);
    let slope = slope_per_second(recent);
    let first = recent.first().map_or(0.0, |(_, d)| *d);
    // A change of a few messages (or under 10% of the depth) over the window is noise:
    // small queues flicker between 0 and 2 all day.
    let threshold = (first.max(depth) * 0.1).max(3.0);
    let change = depth - first;
    let status = if depth > 0.0 && consumed_recently == Some(false) {
        QueueStatus::Stalled
    } else if change >= threshold && slope > 0.0 {
        QueueStatus::Growing
    } else if -change >= threshold && slope < 0.0 && depth > 0.0 {
        QueueStatus::Draining
    } else {
        QueueStatus::Ok
    };
    let drain_seconds = if depth <= 0.0 {
        Some(0.0)
    } else if slope < 0.0 {
        Some(depth / -slope)
    } else {
        None
    };
    Trend { status, drain_seconds, slope_per_second: slope }
}

/// (system, destination): how the queue pages key a queue.
pub type QueueKey = (String, String);

/// One queue, one name: maps the other names a queue is seen under (an exchange that
/// feeds it) to the queue. An alias feeding several queues (a fanout exchange) stays
/// an entry of its own, since its messages cannot be split between them. Aliases with
/// system `""` (from the config file) apply to every system.
#[derive(Debug, Default, Clone)]
pub struct QueueNames {
    queue_of: BTreeMap<QueueKey, String>,
}

impl QueueNames {
    pub fn new(aliases: &[QueueAlias]) -> QueueNames {
        let mut targets: BTreeMap<QueueKey, Vec<&str>> = BTreeMap::new();
        for a in aliases.iter().filter(|a| a.alias != a.queue) {
            targets.entry((a.system.clone(), a.alias.clone())).or_default().push(&a.queue);
        }
        let queue_of = targets
            .into_iter()
            .filter_map(|(key, mut queues)| {
                queues.sort_unstable();
                queues.dedup();
                (queues.len() == 1).then(|| (key, queues[0].to_owned()))
            })
            .collect();
        QueueNames { queue_of }
    }

    /// The queue a name stands for (itself unless it is an alias).
    pub fn canonical(&self, key: &QueueKey) -> QueueKey {
        let (system, name) = key;
        let queue = self.queue_of.get(key).or_else(|| self.queue_of.get(&(String::new(), name.clone())));
        match queue {
            Some(q) => (system.clone(), q.clone()),
            None => key.clone(),
        }
    }

    /// The names merged into a queue's entry.
    pub fn aliases_of(&self, system: &str, queue: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .queue_of
            .iter()
            .filter(|((s, _), q)| (s == system || s.is_empty()) && q.as_str() == queue)
            .map(|((_, alias), _)| alias.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn merge_points(&self, points: BTreeMap<QueueKey, Vec<DepthPoint>>) -> BTreeMap<QueueKey, Vec<DepthPoint>> {
        let mut out: BTreeMap<QueueKey, Vec<DepthPoint>> = BTreeMap::new();
        for (key, p) in points {
            out.entry(self.canonical(&key)).or_default().extend(p);
        }
        for p in out.values_mut() {
            p.sort_by_key(|d| d.time);
        }
        out
    }

    /// Sums (bucket, sent, consumed) counts of every name of a queue, bucket by bucket.
    pub fn merge_counts(
        &self,
        counts: BTreeMap<QueueKey, Vec<(i64, i64, i64)>>,
    ) -> BTreeMap<QueueKey, Vec<(i64, i64, i64)>> {
        let mut out: BTreeMap<QueueKey, BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
        for (key, buckets) in counts {
            let merged = out.entry(self.canonical(&key)).or_default();
            for (b, sent, consumed) in buckets {
                let e = merged.entry(b).or_default();
                e.0 += sent;
                e.1 += consumed;
            }
        }
        out.into_iter().map(|(k, b)| (k, b.into_iter().map(|(b, (s, c))| (b, s, c)).collect())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn alias(system: &str, alias: &str, queue: &str) -> QueueAlias {
        QueueAlias { system: system.into(), alias: alias.into(), queue: queue.into() }
    }

    fn key(system: &str, name: &str) -> QueueKey {
        (system.into(), name.into())
    }

    #[test]
    fn queue_names_merge_an_exchange_into_the_one_queue_it_feeds() {
        let names = QueueNames::new(&[
            alias("rabbitmq", "orders", "payments.q"),
            // A fanout exchange feeds two queues: it keeps its own entry.
            alias("rabbitmq", "events", "audit.q"),
            alias("rabbitmq", "events", "search.q"),
            // From the config file: any system.
            alias("", "payments", "emails.q"),
        ]);
        let cases = [
            (key("rabbitmq", "orders"), key("rabbitmq", "payments.q")),
            (key("rabbitmq", "payments.q"), key("rabbitmq", "payments.q")),
            (key("kafka", "orders"), key("kafka", "orders")),
            (key("rabbitmq", "events"), key("rabbitmq", "events")),
            (key("rabbitmq", "payments"), key("rabbitmq", "emails.q")),
        ];
        for (name, want) in cases {
            assert_eq!(names.canonical(&name), want, "{name:?}");
        }
        assert_eq!(names.aliases_of("rabbitmq", "payments.q"), vec!["orders".to_string()]);
        assert_eq!(names.aliases_of("rabbitmq", "emails.q"), vec!["payments".to_string()]);
        assert!(names.aliases_of("rabbitmq", "audit.q").is_empty());

        let counts = BTreeMap::from([
            (key("rabbitmq", "orders"), vec![(0, 5, 0), (1, 2, 0)]),
            (key("rabbitmq", "payments.q"), vec![(0, 0, 4), (2, 0, 3)]),
        ]);
        let merged = names.merge_counts(counts);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[&key("rabbitmq", "payments.q")], vec![(0, 5, 4), (1, 2, 0), (2, 0, 3)]);

        let point = |t: i64| DepthPoint { metric: "rabbitmq.message.current".into(), time: t, depth: 1.0 };
        let points = BTreeMap::from([
            (key("rabbitmq", "payments.q"), vec![point(3)]),
            (key("rabbitmq", "orders"), vec![point(1)]),
        ]);
        let merged = names.merge_points(points);
        assert_eq!(merged[&key("rabbitmq", "payments.q")].iter().map(|p| p.time).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn metrics_series_prefers_one_metric_and_keeps_the_last_value_per_bucket() {
        let p = |metric: &str, t: i64, d: f64| DepthPoint { metric: metric.into(), time: t * S, depth: d };
        let points = vec![
            p("kafka.consumer_group.lag", 1, 100.0),
            p("kafka.consumer_group.lag_sum", 1, 7.0),
            p("kafka.consumer_group.lag_sum", 3, 9.0),
            p("kafka.consumer_group.lag_sum", 12, 4.0),
        ];
        assert_eq!(series_from_metrics(&points, 0, 10 * S), vec![(0, 9.0), (10 * S, 4.0)]);
        assert!(series_from_metrics(&[p("cpu", 1, 1.0)], 0, S).is_empty());
    }

    #[test]
    fn spans_series_accumulates_and_never_goes_negative() {
        assert_eq!(series_from_spans(2, &[(0, 3, 1), (10, 0, 10), (20, 5, 0)]), vec![(0, 4.0), (10, 0.0), (20, 5.0)]);
    }

    #[test]
    fn trend_statuses() {
        let series = |ds: &[f64]| ds.iter().enumerate().map(|(i, d)| (i as i64 * 10 * S, *d)).collect::<Vec<_>>();
        let table = [
            (series(&[0.0, 0.0, 0.0]), Some(true), QueueStatus::Ok, Some(0.0)),
            (series(&[10.0, 20.0, 30.0]), Some(true), QueueStatus::Growing, None),
            (series(&[30.0, 20.0, 10.0]), Some(true), QueueStatus::Draining, Some(10.0)),
            (series(&[5.0, 5.0, 5.0]), Some(false), QueueStatus::Stalled, None),
            (series(&[100.0, 101.0, 100.5]), None, QueueStatus::Ok, None),
            (series(&[1.0, 3.0, 2.0]), None, QueueStatus::Ok, None),
            (series(&[0.0, 0.0, 0.0]), Some(false), QueueStatus::Ok, Some(0.0)),
        ];
        for (s, consumed, want, drain) in table {
            let t = trend(&s, consumed);
            assert_eq!(t.status, want, "{s:?}");
            match (t.drain_seconds, drain) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{a} vs {b}"),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{s:?}: {a:?}"),
            }
        }
    }
}
