//! Shared helpers for the integration tests: a real flowscope on loopback ports with a
//! fresh DuckDB file, and builders for OTLP requests.
#![allow(dead_code)]

use std::path::PathBuf;

use flowscope::config::Config;
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
        let db = dir.path().join("data/flowscope.duckdb");
        let mut config = Config::with_db(db.clone());
        let any = "127.0.0.1:0".parse().unwrap();
        config.otlp_grpc = any;
        config.otlp_http = any;
        config.ui = any;
        config.writer.flush_interval = std::time::Duration::from_millis(20);
        tweak(&mut config);
        let running = server::start(config).await.expect("server starts");
        TestServer { running: Some(running), db, _dir: dir }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().otlp_http)
    }

    pub fn ui_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().ui)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running().otlp_grpc)
    }

    /// POSTs a protobuf OTLP body to the OTLP/HTTP listener; returns the status code.
    pub async fn post_protobuf(&self, path: &str, body: Vec<u8>) -> u16 {
        let resp = reqwest::Client::new()
            .post(self.http_url(path))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    }

    /// Runs a COUNT(*)-style query against the live store.
    pub async fn count(&self, sql: &'static str) -> i64 {
        self.running().store.read(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?)).await.unwrap()
    }

    /// Shuts down gracefully and returns the database path, now free to open directly.
    pub async fn stop(mut self) -> (PathBuf, tempfile::TempDir) {
        self.running.take().unwrap().shutdown().await;
        (self.db.clone(), self._dir)
    }
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

pub fn shared_fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures").join(rel)
}
