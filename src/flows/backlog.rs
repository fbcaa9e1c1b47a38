//! Queue backlog per destination: a depth series (from broker metrics when there are any,
//! else estimated as messages sent minus messages consumed), rates, drain time and trend.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

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
