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

/// A range cut into buckets of `width` ns for a queue's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub from: i64,
    pub to: i64,
    pub width: i64,
}

/// The trailing part of the range the trend and rates are judged on, in buckets.
const RECENT_BUCKETS: i64 = 10;

/// One queue as the queue page shows it, from its depth metrics (if any) and its span
/// counts per bucket (`(bucket index, sent, consumed)`; negative indexes are before the
/// range and only seed the span-estimated depth). `None` when there is nothing to draw.
pub fn queue_view(
    (system, destination): QueueKey,
    aliases: Vec<String>,
    depth_points: &[DepthPoint],
    counted: &[(i64, i64, i64)],
    range: Buckets,
) -> Option<QueueView> {
    let before: i64 = counted.iter().filter(|(b, _, _)| *b < 0).map(|(_, s, c)| s - c).sum();
    let in_range: Vec<(i64, i64, i64)> =
        counted.iter().filter(|(b, _, _)| *b >= 0).map(|(b, s, c)| (range.from + b * range.width, *s, *c)).collect();
    let recent_from = range.to - range.width * RECENT_BUCKETS;
    let recent = in_range.iter().filter(|(t, _, _)| *t >= recent_from);
    let (recent_sent, recent_consumed) = recent.fold((0, 0), |(s, c), (_, sent, consumed)| (s + sent, c + consumed));
    let window_s = (range.width * RECENT_BUCKETS) as f64 / 1e9;
    let metric_series = series_from_metrics(depth_points, range.from, range.width);
    let (series, source) = if metric_series.is_empty() {
        (series_from_spans(before, &in_range), "spans")
    } else {
        (metric_series, "metrics")
    };
    if series.is_empty() {
        return None;
    }
    let has_spans = !in_range.is_empty() || before != 0;
    let recent: Vec<(i64, f64)> = series.iter().copied().filter(|(t, _)| *t >= recent_from).collect();
    let recent = if recent.len() >= 2 { recent } else { series.iter().rev().take(2).rev().copied().collect() };
    let t = trend(&recent, has_spans.then_some(recent_consumed > 0));
    Some(QueueView {
        aliases,
        system,
        destination,
        depth: series.last().map_or(0.0, |(_, d)| *d),
        depth_source: source,
        publish_rate: recent_sent as f64 / window_s,
        consume_rate: recent_consumed as f64 / window_s,
        drain_seconds: t.drain_seconds,
        growth_per_minute: t.slope_per_second * 60.0,
        status: t.status,
        series,
    })
}

/// Trouble first: stalled, growing, draining, then the rest; by name within each.
pub fn trouble_first(queues: &mut [QueueView]) {
    let rank = |s: QueueStatus| match s {
        QueueStatus::Stalled => 0,
        QueueStatus::Growing => 1,
        QueueStatus::Draining => 2,
        QueueStatus::Ok => 3,
    };
    queues.sort_by(|a, b| rank(a.status).cmp(&rank(b.status)).then(a.destination.cmp(&b.destination)));
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
        self.aliases_where(queue, |s| s == system || s.is_empty())
    }

    /// The names merged into a queue of this name in any system.
    pub fn aliases_of_any_system(&self, queue: &str) -> Vec<String> {
        self.aliases_where(queue, |_| true)
    }

    fn aliases_where(&self, queue: &str, system: impl Fn(&str) -> bool) -> Vec<String> {
        let mut names: Vec<String> = self
            .queue_of
            .iter()
            .filter(|((s, _), q)| system(s) && q.as_str() == queue)
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

    #[test]
    fn queue_views_from_spans_or_metrics() {
        const S: i64 = 1_000_000_000;
        let range = Buckets { from: 0, to: 100 * S, width: 5 * S };
        let key = || ("rabbitmq".to_string(), "emails.q".to_string());
        // (name, depth metrics, span counts, status, depth, source, publish rate, consume rate)
        let steady: Vec<(i64, i64, i64)> = (0..20).map(|b| (b, 10, 10)).collect();
        let growing: Vec<(i64, i64, i64)> = (0..20).map(|b| (b, 10, 5)).collect();
        let stalled: Vec<(i64, i64, i64)> = [(-1, 8, 0)].into_iter().chain((0..20).map(|b| (b, 1, 0))).collect();
        let metric = |t: i64, depth: f64| DepthPoint { metric: "messaging.queue.depth".into(), time: t * S, depth };
        let draining: Vec<DepthPoint> = (0..20).map(|i| metric(i * 5, 400.0 - 20.0 * i as f64)).collect();
        let cases: Vec<(&str, Vec<DepthPoint>, Vec<(i64, i64, i64)>, QueueStatus, f64, &str, f64, f64)> = vec![
            ("steady", vec![], steady, QueueStatus::Ok, 0.0, "spans", 2.0, 2.0),
            ("growing", vec![], growing, QueueStatus::Growing, 100.0, "spans", 2.0, 1.0),
            ("stalled", vec![], stalled, QueueStatus::Stalled, 28.0, "spans", 0.2, 0.0),
            ("draining by metrics", draining, vec![], QueueStatus::Draining, 20.0, "metrics", 0.0, 0.0),
        ];
        for (name, points, counted, status, depth, source, publish, consume) in cases {
            let q = queue_view(key(), vec![], &points, &counted, range).expect(name);
            assert_eq!(q.status, status, "{name}");
            assert_eq!((q.depth, q.depth_source), (depth, source), "{name}");
            assert!(
                (q.publish_rate - publish).abs() < 1e-9 && (q.consume_rate - consume).abs() < 1e-9,
                "{name}: {q:?}"
            );
        }
        assert_eq!(queue_view(key(), vec![], &[], &[], range), None, "nothing to draw");

        let mut queues: Vec<QueueView> = ["b", "a", "c"]
            .iter()
            .zip([QueueStatus::Ok, QueueStatus::Ok, QueueStatus::Stalled])
            .map(|(name, status)| {
                let mut q = queue_view(key(), vec![], &[], &[(0, 1, 1)], range).unwrap();
                q.destination = name.to_string();
                q.status = status;
                q
            })
            .collect();
        trouble_first(&mut queues);
        assert_eq!(queues.iter().map(|q| q.destination.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
    }
}
