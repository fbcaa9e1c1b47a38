//! `flowscope bench growth`: how flowscope's costs change as the stored data grows. At
//! each step the file is filled up to the step's size (through the fast path), its
//! new spans stitched, and then a fresh server process is started on it and measured as
//! a user meets it after a restart: time to ready, time until a new flow is stitched,
//! idle memory, page latency, and a sustained ingest (rate and peak memory).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use prost::Message;
use serde_json::{json, Value};

use super::process::{self, RssPeak, ServerProcess};
use super::{drive, fill, percentile, tempfile_dir, templates, BenchError};
use crate::text::now_nanos;

#[derive(Debug, Clone, Args)]
pub struct GrowthArgs {
    /// Stored spans to measure at, in increasing order, e.g. 1M,5M,20M
    #[arg(long, value_delimiter = ',', default_value = "1M,5M,20M", value_parser = parse_count)]
    pub steps: Vec<usize>,
    /// Seconds of ingest at each step
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Requests per page at each step (the first, right after the restart, reads from a
    /// cold cache: it is also reported on its own, as `<page>_first_ms`)
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fill and keep the database here; a file that exists is measured from what it
    /// holds (steps it already exceeds are measured once, at its size)
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// `5M`, `500k` or a plain count.
fn parse_count(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, scale) = match t.strip_suffix('m') {
        Some(n) => (n, 1_000_000.0),
        None => match t.strip_suffix('k') {
            Some(n) => (n, 1_000.0),
            None => (t.as_str(), 1.0),
        },
    };
    number.parse::<f64>().map(|n| (n * scale) as usize).map_err(|_| format!("{text:?}: write a count such as 5M"))
}

pub async fn growth(args: &GrowthArgs) -> Result<Value, BenchError> {
    let dir = tempfile_dir()?;
    let db = args.db.clone().unwrap_or_else(|| dir.join("growth.duckdb"));
    let binary = std::env::current_exe()?;
    let mut stored = if db.exists() { super::stored_spans(&db)? } else { 0 };
    let mut steps = Vec::new();
    let mut measured_at = None;
    // One sequence of copy numbers through every step's ingest: a step that started it
    // again re-sent the previous step's traces, which then joined their stored flows.
    // The file holds a copy per ~1,000 spans (fills and earlier runs' ingests): each
    // step's ingest starts past a copy per 100 spans stored, counted after the fill, so
    // it never sends one of their ids again. Counted before the fill, a fresh file's
    // ingest re-used the fill's copy numbers, and its checkouts joined flows stored hours
    // before.
    let nonce = Arc::new(AtomicU32::new(1));
    for &size in &args.steps {
        if size > stored {
            let started = Instant::now();
            stored += fill(&db, stored, size - stored).await?;
            println!("filled to {stored} spans in {:.1} s", started.elapsed().as_secs_f64());
            // The new spans are stitched once, as they would have been on arrival.
            let started = Instant::now();
            let mut config = crate::config::Config::with_db(db.clone());
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
            (config.otlp_grpc, config.otlp_http, config.ui) = (any, any, any);
            let running = crate::server::start(config).await.map_err(|e| BenchError::Server(e.to_string()))?;
            running.wait_stitched().await;
            running.shutdown().await;
            println!("stitched in {:.1} s", started.elapsed().as_secs_f64());
        }
        if measured_at == Some(stored) {
            continue;
        }
        measured_at = Some(stored);
        nonce.fetch_max(u32::try_from(stored / 100).unwrap_or(u32::MAX / 2) + 1, Ordering::Relaxed);
        let step = measure(&binary, &db, stored, args, &nonce).await?;
        println!("{step}");
        steps.push(step);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({ "steps": steps }))
}

/// Restarts a server process on the file and measures it.
async fn measure(
    binary: &std::path::Path,
    db: &std::path::Path,
    stored: usize,
    args: &GrowthArgs,
    nonce: &Arc<AtomicU32>,
) -> Result<Value, BenchError> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    // `spawn` returns once the server logs its listeners, i.e. is ready.
    let server = ServerProcess::spawn(binary, db, &[])?;
    let ready_s = started.elapsed().as_secs_f64();
    let rss = RssPeak::watch(&server);
    let trace = new_flow(&client, &server).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let url = format!("http://{}/api/flows/{trace}", server.ui);
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Server("a new flow was not stitched within 10 minutes".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_flow_s = started.elapsed().as_secs_f64();
    // Whether the join filter saved at the last stop was taken back, or is being built
    // from the file (which slows every page at 20 M for its ~15 s).
    let restored = process::metric(&client, server.ui, "flowscope_stitcher_join_filter_restored").await? > 0.0;
    let idle_rss = server.rss_bytes();
    let start_peak = rss.take().max(idle_rss);

    let range = "last=7h";
    let listed: Option<Value> = match client.get(format!("http://{}/api/flows?{range}&limit=1", server.ui)).send().await
    {
        Ok(resp) => resp.json().await.ok(),
        Err(_) => None,
    };
    let some_flow = listed.and_then(|v| v["flows"][0]["flow_id"].as_str().map(String::from)).unwrap_or_default();
    let pages = [
        ("overview_page", format!("/?{range}")),
        ("chain_page", format!("/chains/checkout%20POST%20%2Forders?{range}")),
        ("flow_page", format!("/flows/{some_flow}?{range}")),
        ("search_page", format!("/search?q={some_flow}")),
    ];
    let mut report = json!({
        "stored_spans": stored,
        "ready_s": round2(ready_s),
        "new_flow_stitched_s": round2(new_flow_s),
        "idle_rss_bytes": idle_rss,
        "peak_rss_start_bytes": start_peak,
        "join_filter_restored": restored,
    });
    for (name, path) in pages {
        let mut ms = Vec::new();
        let mut status = 0;
        for _ in 0..args.requests.max(1) {
            let t = Instant::now();
            let resp = client
                .get(format!("http://{}{path}", server.ui))
                .send()
                .await
                .map_err(|e| BenchError::Server(e.to_string()))?;
            status = resp.status().as_u16();
            let _ = resp.bytes().await;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        report[format!("{name}_first_ms")] = json!(round2(ms[0]));
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        report[format!("{name}_p95_ms")] = json!(round2(percentile(&ms, 0.95)));
        report[format!("{name}_status")] = json!(status);
    }

    report["peak_rss_pages_bytes"] = json!(rss.take());

    let committed = "flowscope_committed_items_total{signal=\"traces\"}";
    let load_templates = templates(8, 1000, now_nanos() - 60_000_000_000);
    let c0 = process::metric(&client, server.ui, committed).await?;
    let t0 = Instant::now();
    drive(&server, load_templates, 8, Duration::from_secs(args.seconds), true, nonce).await;
    let c1 = process::metric(&client, server.ui, committed).await?;
    let lag = process::metric(&client, server.ui, "flowscope_stitch_lag_seconds").await?;
    report["ingest_spans_per_s"] = json!(((c1 - c0) / t0.elapsed().as_secs_f64()).round());
    report["stitch_lag_after_ingest_s"] = json!(round2(lag));
    report["peak_rss_ingest_bytes"] = json!(rss.take());
    report["peak_rss_bytes"] = json!(server.peak_rss_bytes());
    report["rss_after_ingest_bytes"] = json!(server.rss_bytes());
    // Where the memory is at the end of the ingest: DuckDB's own accounting by tag, and
    // what the stitcher holds.
    let metrics = process::get_text(&client, server.ui, "/metrics").await?;
    let mut memory = serde_json::Map::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let wanted = name.starts_with("flowscope_duckdb_memory_bytes")
            || name.starts_with("flowscope_stitcher_")
            || name == "flowscope_write_queue_bytes"
            || name == "flowscope_stitch_feed_rows";
        if let (true, Ok(v)) = (wanted, value.parse::<f64>()) {
            if v != 0.0 {
                memory.insert(name.replace("flowscope_duckdb_memory_bytes", "duckdb"), json!(v));
            }
        }
    }
    report["memory_after_ingest"] = Value::Object(memory);
    // Stopped only once caught up, so the next step (or run, on a kept file) starts from
    // a stitched file, as the fill's steps do.
    let caught_up = Instant::now();
    let deadline = caught_up + Duration::from_secs(900);
    while process::metric(&client, server.ui, "flowscope_stitch_lag_seconds").await? > 0.0 {
        if Instant::now() > deadline {
            return Err(BenchError::Server("the ingest was not stitched within 15 minutes".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report["caught_up_after_ingest_s"] = json!(round2(caught_up.elapsed().as_secs_f64()));
    server.stop()?;
    report["file_bytes"] = json!(std::fs::metadata(db).map(|m| m.len()).unwrap_or(0));
    Ok(report)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Sends one small flow (a client span and its server span, a new trace id) over
/// OTLP/HTTP; returns its trace id.
async fn new_flow(client: &reqwest::Client, server: &ServerProcess) -> Result<String, BenchError> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let now = now_nanos() as u64;
    let mut trace_id = now.to_be_bytes().to_vec();
    trace_id.extend_from_slice(&[0x6e; 8]);
    let root = Span {
        trace_id: trace_id.clone(),
        span_id: vec![1; 8],
        name: "GET /growth".into(),
        kind: 2,
        start_time_unix_nano: now - 5_000_000,
        end_time_unix_nano: now,
        ..Default::default()
    };
    let service = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("growth-probe".into())) }),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![service], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![root], ..Default::default() }],
            ..Default::default()
        }],
    };
    let resp = client
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .map_err(|e| BenchError::Server(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(BenchError::Server(format!("new flow refused: {}", resp.status())));
    }
    Ok(hex::encode(trace_id))
}
