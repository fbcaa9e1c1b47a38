//! Shared helpers for the integration tests: a real flowscope on loopback ports with a
//! fresh DuckDB file, and builders for OTLP requests.
#![allow(dead_code)]

pub mod postgres;
pub mod process;

use std::path::PathBuf;

use flowscope::config::{Config, ServeArgs};
use flowscope::server::{self, Running};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub struct TestServer {
    pub running: Option<Running>,
    pub db: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts flowscope on 127.0.0.1 port 0 for every listener, with a short flush interval
    /// so tests do not wait the production 200 ms per request.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// Starts on the database in `dir` (a restart, when `dir` came from [`TestServer::stop`]).
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_args(dir, |_| {}, tweak).await
    }

    /// [`TestServer::start_in`] with command-line settings (`--memory-limit` and the like,
    /// which other settings are derived from) as well.
    pub async fn start_with_args(
        dir: tempfile::TempDir,
        args: impl FnOnce(&mut ServeArgs),
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let db = dir.path().join("data/flowscope.duckdb");
        let mut serve = ServeArgs { db: Some(db.clone()), ..Default::default() };
        args(&mut serve);
        let mut config = Config::from_args(serve).expect("valid settings");
        let any = "127.0.0.1:0".parse().unwrap();
        config.otlp_grpc = any;
        config.otlp_http = any;
        config.ui = any;
        config.writer.flush_interval = std::time::Duration::from_millis(20);
        tweak(&mut config);
        let running = server::start(config).await.expect("server starts");
        TestServer { running: Some(running), db, _dir: dir }
    }

    /// Waits until everything received is stitched (a minute at most).
    pub async fn stitched(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.running().wait_stitched())
            .await
            .expect("stitching catches up");
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().otlp_http.expect("a single process takes OTLP"))
    }

    pub fn ui_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().ui)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running().otlp_grpc.expect("a single process takes OTLP"))
    }

    /// POSTs a protobuf OTLP body to the OTLP/HTTP listener; returns the status code.
    pub async fn post_protobuf(&self, path: &str, body: Vec<u8>) -> u16 {
        post_protobuf_to(&self.http_url(path), body).await
    }

    /// GETs an API path of the UI listener; panics unless it answers 200 with JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = reqwest::get(self.ui_url(path)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    /// Runs a COUNT(*)-style query against the live store.
    pub async fn count(&self, sql: impl Into<String>) -> i64 {
        let sql = sql.into();
        self.running().store.read(move |c| Ok(c.query_row(&sql, [], |r| r.get::<_, i64>(0))?)).await.unwrap()
    }

    /// Shuts down gracefully and returns the database path, now free to open directly.
    pub async fn stop(mut self) -> (PathBuf, tempfile::TempDir) {
        self.running.take().unwrap().shutdown().await;
        (self.db.clone(), self._dir)
    }
}

/// Every flow table as sorted text lines, without what depends on when rounds ran
/// (`updated_unix_nano`, `last_commit_seq`).
pub const FLOW_TABLES: &str = "
SELECT string_agg(line, chr(10) ORDER BY line) FROM (
  SELECT concat_ws('|', 'flow', flow_id, chain, root_service, root_name, path, services, start_unix_nano,
         end_unix_nano, span_count, trace_count, error, hops, retries, dead_letters, round(queue_wait_ms, 6),
         round(service_ms, 6), round(retry_delay_ms, 6), truncated, steps, edges) AS line FROM flows
  UNION ALL SELECT concat_ws('|', 'trace', flow_id, trace_id) FROM flow_traces
  UNION ALL SELECT concat_ws('|', 'hop', flow_id, destination, producer_span_id, consumer_span_ids,
         round(queue_wait_ms, 6), retry) FROM flow_hops
  UNION ALL SELECT concat_ws('|', 'retry', flow_id, time_unix_nano, service, destination, span_id, attempt,
         round(delay_ms, 6), previous_span_id) FROM flow_retries
  UNION ALL SELECT concat_ws('|', 'dead', flow_id, time_unix_nano, destination, source_destination, error)
         FROM flow_dead_letters
)";

/// The lines only one of two table dumps has.
pub fn differences(one: &str, other: &str) -> String {
    let (a, b): (std::collections::BTreeSet<&str>, std::collections::BTreeSet<&str>) =
        (one.lines().collect(), other.lines().collect());
    let only = |x: &std::collections::BTreeSet<&str>, y: &std::collections::BTreeSet<&str>, sign: char| {
        x.difference(y).map(|l| format!("{sign} {l}")).collect::<Vec<_>>().join("\n")
    };
    format!("{}\n{}", only(&a, &b, '-'), only(&b, &a, '+'))
}

/// The flow tables of a stopped server's file, as [`FLOW_TABLES`] lists them.
pub fn flow_tables(db: &std::path::Path) -> String {
    let conn = duckdb::Connection::open(db).unwrap();
    conn.query_row(FLOW_TABLES, [], |r| r.get::<_, Option<String>>(0)).unwrap().unwrap_or_default()
}

/// POSTs a protobuf OTLP body to `url`; returns the status code.
pub async fn post_protobuf_to(url: &str, body: Vec<u8>) -> u16 {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

/// Opens the database file the way a user's duckdb client would, and counts.
pub fn count_in_file(db: &std::path::Path, sql: &str) -> i64 {
    let conn = duckdb::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::IntValue(value)) }), ..Default::default() }
}

pub fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() })
}

/// A minute ago: test data must be recent, or retention (7 days) deletes it on restart.
pub fn recent_nanos() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    now - 60_000_000_000
}

/// A span with a distinct trace id derived from `seed`.
pub fn span(seed: u8, index: u8, name: &str) -> Span {
    let base = recent_nanos();
    Span {
        trace_id: trace_id(seed),
        span_id: vec![seed, index, 1, 1, 1, 1, 1, 1],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: base + index as u64 * 1_000_000,
        end_time_unix_nano: base + index as u64 * 1_000_000 + 500_000,
        attributes: vec![kv("http.route", "/orders"), kv_int("http.response.status_code", 200)],
        ..Default::default()
    }
}

pub fn trace_id(seed: u8) -> Vec<u8> {
    let mut id = vec![0xa0; 16];
    id[0] = seed;
    id[15] = seed;
    id
}

pub fn trace_hex(seed: u8) -> String {
    hex::encode(trace_id(seed))
}

/// One export request of spans, each with the service that emitted it (a resource each).
pub fn spans_request(spans: &[(String, Span)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: spans
            .iter()
            .map(|(service, span)| ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans { spans: vec![span.clone()], ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

pub fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

pub fn gauge(service: &str, name: &str, values: &[f64]) -> ExportMetricsServiceRequest {
    let points = values
        .iter()
        .enumerate()
        .map(|(i, v)| NumberDataPoint {
            time_unix_nano: recent_nanos() + i as u64,
            value: Some(number_data_point::Value::AsDouble(*v)),
            attributes: vec![kv("messaging.destination.name", "orders")],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Gauge(Gauge { data_points: points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn logs(service: &str, bodies: &[&str]) -> ExportLogsServiceRequest {
    let records = bodies
        .iter()
        .map(|b| LogRecord {
            time_unix_nano: recent_nanos(),
            severity_number: 9,
            body: Some(AnyValue { value: Some(Value::StringValue((*b).into())) }),
            attributes: vec![kv("correlation_id", "corr-1")],
            trace_id: trace_id(9),
            span_id: vec![9; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A file of the test fixtures in `tests/fixtures`. The clone's directory is read when the
/// test runs (cargo sets it): a test binary built in another clone sharing the target
/// directory, and not rebuilt because the sources are the same, would otherwise look in
/// the clone it was compiled in. A path that would leave the fixtures folder panics.
pub fn fixture(rel: &str) -> PathBuf {
    assert!(
        std::path::Path::new(rel).components().all(|c| matches!(c, std::path::Component::Normal(_))),
        "fixture paths stay inside tests/fixtures: {rel}"
    );
    let clone =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    clone.join("tests/fixtures").join(rel)
}

/// Replays a recorded fixture directory: every `NNNN-v1-{traces,metrics,logs}.pb` body,
/// in file-name order, to its OTLP/HTTP endpoint; each must be accepted.
pub async fn replay_recorded(server: &TestServer, rel: &str) {
    replay_recorded_shifted(server, rel, 0).await
}

/// Like [`replay_recorded`], with every timestamp moved by `shift_ns` (to replay a
/// recording as if it happened now, for rules that look at the last minutes).
pub async fn replay_recorded_shifted(server: &TestServer, rel: &str, shift_ns: i64) {
    for (name, signal, body) in recorded_bodies(rel) {
        let body = shift_times(signal, &body, shift_ns);
        let status = server.post_protobuf(&format!("/v1/{signal}"), body).await;
        assert_eq!(status, 200, "{name}");
    }
}

/// A recorded fixture's `NNNN-v1-{traces,metrics,logs}.pb` bodies in file-name order, as
/// (file name, signal, body).
pub fn recorded_bodies(rel: &str) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture(rel))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let signal =
                ["traces", "metrics", "logs"].into_iter().find(|s| name.ends_with(&format!("-v1-{s}.pb"))).unwrap();
            (name, signal, std::fs::read(&f).unwrap())
        })
        .collect()
}

/// The OTLP body with every timestamp moved by `shift_ns`.
pub fn shift_times(signal: &str, body: &[u8], shift_ns: i64) -> Vec<u8> {
    use prost::Message;
    if shift_ns == 0 {
        return body.to_vec();
    }
    let t = |v: &mut u64| {
        if *v != 0 {
            *v = (*v as i64 + shift_ns) as u64;
        }
    };
    match signal {
        "traces" => {
            let mut r = ExportTraceServiceRequest::decode(body).unwrap();
            for s in r.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
                t(&mut s.start_time_unix_nano);
                t(&mut s.end_time_unix_nano);
                s.events.iter_mut().for_each(|e| t(&mut e.time_unix_nano));
            }
            r.encode_to_vec()
        }
        "logs" => {
            let mut r = ExportLogsServiceRequest::decode(body).unwrap();
            for l in r.resource_logs.iter_mut().flat_map(|r| &mut r.scope_logs).flat_map(|s| &mut s.log_records) {
                t(&mut l.time_unix_nano);
                t(&mut l.observed_time_unix_nano);
            }
            r.encode_to_vec()
        }
        _ => {
            let mut r = ExportMetricsServiceRequest::decode(body).unwrap();
            for m in r.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics) {
                let points: Vec<&mut NumberDataPoint> = match &mut m.data {
                    Some(Data::Gauge(g)) => g.data_points.iter_mut().collect(),
                    Some(Data::Sum(s)) => s.data_points.iter_mut().collect(),
                    _ => Vec::new(),
                };
                for p in points {
                    t(&mut p.time_unix_nano);
                    t(&mut p.start_time_unix_nano);
                }
            }
            r.encode_to_vec()
        }
    }
}

/// When the pika-dlx recording started (its first span), unix nanoseconds.
pub const PIKA_DLX_RECORDED_AT: i64 = 1_795_380_661_000_000_000;
