//! `flowscope demo`: realistic OTLP sent over the network to a running flowscope. Every
//! second it emits checkouts (HTTP -> gRPC -> Kafka -> RabbitMQ, with an occasional poison
//! message dead-lettered after retries), request-reply quotes joined only by correlation
//! id, shipments with no propagated context, analytics batches consumed through links, and
//! an `emails` queue whose consumer slows down (backlog grows) and recovers (it drains),
//! plus broker depth metrics and log records carrying correlation ids. It doubles as a
//! load generator (`--rate`).

pub mod scenarios;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::text::now_nanos;
use scenarios::{Builder, Emission, Pending, MS};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// OTLP/HTTP endpoint of the flowscope to feed
    #[arg(long, default_value = "http://127.0.0.1:4318", env = "FLOWSCOPE_DEMO_TARGET")]
    pub target: String,
    /// Checkout flows per second (the other scenarios scale with it)
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// Stop after this many seconds (0: run until interrupted)
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Seed for the random ids and timings (default: the clock, so two runs never share ids)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bearer token, when flowscope requires one
    #[arg(long, env = "FLOWSCOPE_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot reach {target}: {source}")]
    Send { target: String, source: reqwest::Error },
    #[error("{target} refused the export with HTTP {status}: {body}")]
    Refused { target: String, status: u16, body: String },
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", service),
            kv("deployment.environment.name", "demo"),
            kv("telemetry.sdk.language", "rust"),
        ],
        ..Default::default()
    })
}

/// The emission as one OTLP request per signal, spans and logs grouped by service.
pub fn to_requests(e: Emission) -> (ExportTraceServiceRequest, ExportLogsServiceRequest) {
    let mut spans: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (service, span) in e.spans {
        spans.entry(service).or_default().push(span);
    }
    let mut logs: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (service, log) in e.logs {
        logs.entry(service).or_default().push(log);
    }
    let traces = ExportTraceServiceRequest {
        resource_spans: spans
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: resource(&service),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: logs
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: resource(&service),
                scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    };
    (traces, logs)
}

/// A depth gauge as a broker exporter would send it.
pub fn depth_metric(
    service: &str,
    metric: &str,
    queue_attr: (&str, &str),
    extra: &[(&str, &str)],
    time: i64,
    depth: f64,
) -> ExportMetricsServiceRequest {
    let mut attributes: Vec<KeyValue> = extra.iter().map(|(k, v)| kv(k, v)).collect();
    let mut res = resource(service).expect("resource");
    if queue_attr.0 == "rabbitmq.queue.name" {
        res.attributes.push(kv(queue_attr.0, queue_attr.1));
    } else {
        attributes.push(kv(queue_attr.0, queue_attr.1));
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(res),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: metric.into(),
                    unit: "{messages}".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: time as u64,
                            value: Some(number_data_point::Value::AsDouble(depth)),
                            attributes,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Posts one protobuf export, retrying (with the server's Retry-After) while it is busy.
pub async fn post(
    client: &reqwest::Client,
    target: &str,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<(), DemoError> {
    let url = format!("{}{path}", target.trim_end_matches('/'));
    for attempt in 0.. {
        let mut req = client.post(&url).header("content-type", "application/x-protobuf").body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|source| DemoError::Send { target: url.clone(), source })?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        if (status == 503 || status == 429) && attempt < 20 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1u64);
            tokio::time::sleep(Duration::from_millis(wait * 1000 / 4 + 50 * attempt)).await;
            continue;
        }
        let body = resp.text().await.unwrap_or_default();
        return Err(DemoError::Refused { target: url, status, body });
    }
    unreachable!("the loop returns")
}

/// How fast the mailer works in each part of a five-minute cycle: normal, slowed down
/// (backlog grows), recovered (backlog drains).
fn emails_rates(elapsed_s: u64) -> (usize, usize) {
    match elapsed_s % 300 {
        0..60 => (4, 4),
        60..180 => (4, 1),
        _ => (2, 6),
    }
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let client = reqwest::Client::new();
    let token = args.token.as_deref();
    let mut rng = StdRng::seed_from_u64(args.seed.unwrap_or_else(|| now_nanos() as u64));
    let mut pending = Pending::new();
    let started = Instant::now();
    let tick = Duration::from_secs(1);
    let mut carry = 0.0;
    let (mut flows, mut spans) = (0u64, 0u64);
    println!(
        "flowscope demo: sending to {} at {} checkouts/s; open the dashboard and watch it fill",
        args.target, args.rate
    );
    for n in 0u64.. {
        if args.duration > 0 && started.elapsed().as_secs() >= args.duration {
            break;
        }
        let tick_start = Instant::now();
        // Scenarios happen in the last two seconds, so their spans have all ended.
        let t0 = now_nanos() - 2_000 * MS;
        let mut b = Builder::new(&mut rng);
        carry += args.rate;
        let checkouts = carry as usize;
        carry -= checkouts as f64;
        for k in 0..checkouts {
            let poison = (n as usize * 31 + k) % 25 == 0;
            let at = t0 + (k as i64 * 900 / checkouts.max(1) as i64) * MS;
            scenarios::checkout(&mut b, at, poison);
        }
        for k in 0..(checkouts / 2).max(1) {
            scenarios::quote(&mut b, t0 + k as i64 * 150 * MS);
        }
        if n % 2 == 0 {
            scenarios::shipping(&mut b, t0 + 300 * MS);
        }
        if n % 4 == 1 {
            scenarios::fulfilment_retry(&mut b, t0 + 400 * MS);
        }
        // Refunds over RabbitMQ: most go through, some are redelivered, a few die in
        // the broker's dead-letter exchange.
        let refund = match n % 12 {
            3 | 8 => scenarios::Delivery::Redelivered(1 + (n % 24 == 8) as usize),
            11 => scenarios::Delivery::DeadLettered,
            _ => scenarios::Delivery::Ok,
        };
        scenarios::refund(&mut b, t0 + 200 * MS, refund);
        if n % 5 == 0 {
            scenarios::analytics_batch(&mut b, t0 + 100 * MS, 5);
        }
        let (sent, consumed) = emails_rates(started.elapsed().as_secs());
        scenarios::emails_tick(&mut b, t0, 1000 * MS, sent, consumed, &mut pending);
        flows += (checkouts + (checkouts / 2).max(1)) as u64 + sent as u64 + 1;
        spans += b.out.spans.len() as u64;
        let (traces, logs) = to_requests(std::mem::take(&mut b.out));
        post(&client, &args.target, "/v1/traces", traces.encode_to_vec(), token).await?;
        post(&client, &args.target, "/v1/logs", logs.encode_to_vec(), token).await?;
        let now = now_nanos();
        let payments_ready = rng.random_range(0..2) as f64;
        for metrics in [
            depth_metric(
                "rabbitmq",
                "rabbitmq.message.current",
                ("rabbitmq.queue.name", "payments"),
                &[("state", "ready")],
                now,
                payments_ready,
            ),
            depth_metric(
                "rabbitmq",
                "rabbitmq.message.current",
                ("rabbitmq.queue.name", "payments"),
                &[("state", "unacknowledged")],
                now,
                1.0,
            ),
            depth_metric(
                "rabbitmq",
                "rabbitmq.message.current",
                ("rabbitmq.queue.name", "refunds.q"),
                &[("state", "ready")],
                now,
                rng.random_range(0..3) as f64,
            ),
            depth_metric(
                "mailer",
                "messaging.queue.depth",
                ("messaging.destination.name", "emails"),
                &[("messaging.system", "rabbitmq")],
                now,
                pending.len() as f64,
            ),
        ] {
            post(&client, &args.target, "/v1/metrics", metrics.encode_to_vec(), token).await?;
        }
        if n % 10 == 0 {
            println!("sent {flows} flows, {spans} spans; emails backlog {}", pending.len());
        }
        tokio::time::sleep(tick.saturating_sub(tick_start.elapsed())).await;
    }
    println!("done: sent {flows} flows, {spans} spans");
    Ok(())
}
