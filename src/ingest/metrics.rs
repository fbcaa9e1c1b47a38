//! Metric data points into `metric_points` rows, one row per point whatever the metric
//! type. Broker metrics (queue depth, consumer lag) get their queue or topic extracted into
//! `destination` so backlog charts need no JSON parsing.

use std::fmt::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point, Metric,
};

use super::attributes::{self, write_json_object};
use super::{nanos, Flattened, RequestResources, ResourceContext};
use crate::store::tables::MetricPointRows;

/// Where brokers and their exporters put the queue or topic a metric is about.
const DESTINATION_POINT_KEYS: &[&str] =
    &["messaging.destination.name", "messaging.destination", "topic", "QueueName", "queue", "aws.sqs.queue.name"];
const DESTINATION_RESOURCE_KEYS: &[&str] = &["rabbitmq.queue.name", "messaging.destination.name"];

pub(crate) fn flatten(req: &ExportMetricsServiceRequest) -> Flattened {
    let mut out = Flattened::default();
    let mut rows = MetricPointRows::new();
    let mut resources = RequestResources::default();
    for rm in &req.resource_metrics {
        let resource = ResourceContext::new(rm.resource.as_ref());
        let accepted_before = out.accepted;
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                flatten_metric(&mut rows, &mut out, &resource, metric);
            }
        }
        // Stored only when a row of this request refers to it.
        if out.accepted > accepted_before {
            resources.add(&resource);
        }
    }
    out.batches.extend(rows.finish());
    out.batches.extend(resources.finish());
    out
}

/// The fields every point type shares.
struct Point<'a> {
    time: u64,
    start: u64,
    attributes: &'a [KeyValue],
}

fn flatten_metric(rows: &mut MetricPointRows, out: &mut Flattened, resource: &ResourceContext<'_>, metric: &Metric) {
    let name = attributes::bounded(&metric.name);
    let Some(data) = metric.data.as_ref() else {
        // Also what the JSON decoder leaves when a metric's data failed to decode.
        out.reject(|| format!("metric {name:?} has no data points of a known type"));
        return;
    };
    match data {
        Data::Gauge(g) => {
            for dp in &g.data_points {
                let point =
                    Point { time: dp.time_unix_nano, start: dp.start_time_unix_nano, attributes: &dp.attributes };
                let Some(value) = dp.value.map(number) else {
                    out.reject(|| format!("gauge {name:?} has a data point without a value"));
                    continue;
                };
                push(rows, out, resource, metric, "gauge", &point, |r| r.value.append_value(value));
            }
        }
        Data::Sum(s) => {
            for dp in &s.data_points {
                let point =
                    Point { time: dp.time_unix_nano, start: dp.start_time_unix_nano, attributes: &dp.attributes };
                let Some(value) = dp.value.map(number) else {
                    out.reject(|| format!("sum {name:?} has a data point without a value"));
                    continue;
                };
                push(rows, out, resource, metric, "sum", &point, |r| {
                    r.value.append_value(value);
                    r.is_monotonic.append_value(s.is_monotonic);
                    r.temporality.append_option(temporality(s.aggregation_temporality));
                });
            }
        }
        Data::Histogram(h) => {
            for dp in &h.data_points {
                let point =
                    Point { time: dp.time_unix_nano, start: dp.start_time_unix_nano, attributes: &dp.attributes };
                push(rows, out, resource, metric, "histogram", &point, |r| {
                    r.count.append_value(dp.count as i64);
                    r.sum.append_option(dp.sum);
                    r.min.append_option(dp.min);
                    r.max.append_option(dp.max);
                    let _ =
                        write!(r.buckets, "{{\"bounds\":{:?},\"counts\":{:?}}}", dp.explicit_bounds, dp.bucket_counts);
                    r.buckets.append_value("");
                    r.temporality.append_option(temporality(h.aggregation_temporality));
                });
            }
        }
        Data::ExponentialHistogram(h) => {
            for dp in &h.data_points {
                let point =
                    Point { time: dp.time_unix_nano, start: dp.start_time_unix_nano, attributes: &dp.attributes };
                push(rows, out, resource, metric, "exponential_histogram", &point, |r| {
                    r.count.append_value(dp.count as i64);
                    r.sum.append_option(dp.sum);
                    r.min.append_option(dp.min);
                    r.max.append_option(dp.max);
                    let buckets = |b: &Option<Buckets>| match b {
                        Some(b) => format!("{{\"offset\":{},\"counts\":{:?}}}", b.offset, b.bucket_counts),
                        None => "null".to_owned(),
                    };
                    let _ = write!(
                        r.buckets,
                        "{{\"scale\":{},\"zero_count\":{},\"positive\":{},\"negative\":{}}}",
                        dp.scale,
                        dp.zero_count,
                        buckets(&dp.positive),
                        buckets(&dp.negative)
                    );
                    r.buckets.append_value("");
                    r.temporality.append_option(temporality(h.aggregation_temporality));
                });
            }
        }
        Data::Summary(s) => {
            for dp in &s.data_points {
                let point =
                    Point { time: dp.time_unix_nano, start: dp.start_time_unix_nano, attributes: &dp.attributes };
                push(rows, out, resource, metric, "summary", &point, |r| {
                    r.count.append_value(dp.count as i64);
                    r.sum.append_value(dp.sum);
                    let quantiles: Vec<[f64; 2]> = dp.quantile_values.iter().map(|q| [q.quantile, q.value]).collect();
                    let _ = write!(r.buckets, "{{\"quantiles\":{quantiles:?}}}");
                    r.buckets.append_value("");
                });
            }
        }
    }
}

/// Appends one point: the shared columns here, the type's own through `fill`. Columns a
/// type does not fill get nulls.
fn push(
    rows: &mut MetricPointRows,
    out: &mut Flattened,
    resource: &ResourceContext<'_>,
    metric: &Metric,
    metric_type: &str,
    point: &Point<'_>,
    fill: impl FnOnce(&mut MetricPointRows),
) {
    let Some(time) = nanos(point.time).filter(|t| *t > 0) else {
        out.reject(|| {
            format!("metric {:?} has a data point without a valid time_unix_nano", attributes::bounded(&metric.name))
        });
        return;
    };
    let n = rows.time_unix_nano.len();
    rows.time_unix_nano.append_value(time);
    rows.start_time_unix_nano.append_option(nanos(point.start).filter(|t| *t > 0));
    rows.service_name.append_value(&resource.service_name);
    rows.metric_name.append_value(attributes::bounded(&metric.name));
    rows.unit.append_option((!metric.unit.is_empty()).then(|| attributes::bounded(&metric.unit)));
    rows.metric_type.append_value(metric_type);
    fill(rows);
    // Pad the type-specific columns the type left alone, so every column has n + 1 values.
    pad(&mut rows.value, n);
    pad(&mut rows.count, n);
    pad(&mut rows.sum, n);
    pad(&mut rows.min, n);
    pad(&mut rows.max, n);
    pad(&mut rows.buckets, n);
    pad(&mut rows.is_monotonic, n);
    pad(&mut rows.temporality, n);
    write_json_object(&mut rows.attributes, point.attributes);
    rows.attributes.append_value("");
    rows.resource_id.append_value(resource.id);
    let (system, destination) = broker_of(&metric.name, point.attributes, resource.attributes);
    rows.messaging_system.append_option(system);
    rows.destination.append_option(destination);
    out.accepted += 1;
}

trait NullPad {
    fn len(&self) -> usize;
    fn append_null(&mut self);
}

macro_rules! null_pad {
    ($($t:ty),*) => {$(
        impl NullPad for $t {
            fn len(&self) -> usize { duckdb::arrow::array::ArrayBuilder::len(self) }
            fn append_null(&mut self) { <$t>::append_null(self) }
        }
    )*};
}
null_pad!(
    duckdb::arrow::array::Float64Builder,
    duckdb::arrow::array::Int64Builder,
    duckdb::arrow::array::StringBuilder,
    duckdb::arrow::array::BooleanBuilder
);

fn pad(builder: &mut impl NullPad, n: usize) {
    if builder.len() == n {
        builder.append_null();
    }
}

fn number(v: number_data_point::Value) -> f64 {
    match v {
        number_data_point::Value::AsDouble(d) => d,
        number_data_point::Value::AsInt(i) => i as f64,
    }
}

fn temporality(t: i32) -> Option<&'static str> {
    match t {
        1 => Some("delta"),
        2 => Some("cumulative"),
        _ => None,
    }
}

/// The messaging system and destination a broker metric is about, when it is one.
pub(crate) fn broker_of(name: &str, point: &[KeyValue], resource: &[KeyValue]) -> (Option<String>, Option<String>) {
    let destination = attributes::text_of(point, DESTINATION_POINT_KEYS)
        .or_else(|| attributes::text_of(resource, DESTINATION_RESOURCE_KEYS));
    let system = if name.starts_with("rabbitmq.") {
        Some("rabbitmq".to_owned())
    } else if name.starts_with("kafka.") {
        Some("kafka".to_owned())
    } else if name.starts_with("ApproximateNumberOfMessages") || name.starts_with("aws.sqs.") {
        Some("aws_sqs".to_owned())
    } else {
        attributes::text_of(point, attributes::keys::SYSTEM)
            .or_else(|| attributes::text_of(resource, attributes::keys::SYSTEM))
            .map(|s| attributes::normalize_system(&s))
    };
    (system, destination)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn broker_metrics_name_their_queue() {
        let table: Vec<(&str, Vec<KeyValue>, Vec<KeyValue>, (Option<&str>, Option<&str>))> = vec![
            (
                "rabbitmq.message.current",
                vec![kv("state", "ready")],
                vec![kv("rabbitmq.queue.name", "payments")],
                (Some("rabbitmq"), Some("payments")),
            ),
            (
                "kafka.consumer_group.lag",
                vec![kv("group", "g"), kv("topic", "orders")],
                vec![],
                (Some("kafka"), Some("orders")),
            ),
            (
                "ApproximateNumberOfMessagesVisible",
                vec![kv("QueueName", "jobs")],
                vec![],
                (Some("aws_sqs"), Some("jobs")),
            ),
            (
                "messaging.queue.depth",
                vec![kv("messaging.destination.name", "q"), kv("messaging.system", "aws.sqs")],
                vec![],
                (Some("aws_sqs"), Some("q")),
            ),
            ("http.server.duration", vec![kv("http.route", "/")], vec![], (None, None)),
        ];
        for (name, point, resource, want) in table {
            let (system, dest) = broker_of(name, &point, &resource);
            assert_eq!((system.as_deref(), dest.as_deref()), want, "{name}");
        }
    }
}
