//! `flowscope bench`: ingest throughput, query latency and behaviour under overload,
//! measured against this machine's own limits. Every run is bounded in time and count,
//! talks only to loopback, prints a table, and with `--out FILE` writes JSON so runs can
//! be compared. See BENCHMARKS.md for figures and how to read them.

pub mod append;
pub mod cluster;
pub mod growth;
pub mod pages;
pub mod postgres;
pub mod process;
pub mod sustained;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::ingest::{CorrelationKeys, Encoding, Signal};
use crate::store::Store;
use crate::text::now_nanos;
use pages::{page_endpoints, time_pages};
use process::{Answer, Exporter, ServerProcess};
use workload::Template;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("server: {0}")]
    Server(String),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// Sustained ingest over gRPC and HTTP, against decode and append limits
    Ingest(LoadArgs),
    /// Page and API latency with many spans stored, and stitching throughput
    Query(QueryArgs),
    /// Sending faster than the server commits: memory, refusals, nothing acknowledged lost
    Overload(LoadArgs),
    /// Restart time, memory, page latency and ingest as stored data grows
    Growth(growth::GrowthArgs),
    /// The stitcher alone: every stored flow recomputed (as `flowscope restitch` does),
    /// its CPU per span
    Stitch(StitchArgs),
    /// The highest rate held for minutes with the stitch lag under 10 s and nothing refused
    Sustained(sustained::SustainedArgs),
    /// A cluster on a real PostgreSQL and DuckLake: receivers, a stitcher and a query node
    Cluster(cluster::ClusterArgs),
    /// DuckDB's appender alone, with more or fewer export requests a commit
    Append(append::AppendArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// How long to send
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Concurrent client connections (half gRPC, half HTTP)
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Spans per export request
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Spans to store before timing the pages
    #[arg(long, default_value_t = 10_000_000)]
    pub spans: usize,
    /// Requests per endpoint
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Keep the filled database here (instead of a temporary directory), to inspect it
    /// afterwards; an existing file is not filled again
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StitchArgs {
    /// Spans to store first, when the file does not exist yet
    #[arg(long, default_value_t = 1_000_000)]
    pub spans: usize,
    /// Restitch this file (filled first if it does not exist); it is rewritten in place
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(command: BenchCommand) -> Result<Value, BenchError> {
    let (report, out) = match command {
        BenchCommand::Ingest(a) => (ingest(&a).await?, a.out),
        BenchCommand::Query(a) => (query(&a).await?, a.out),
        BenchCommand::Overload(a) => (overload(&a).await?, a.out),
        BenchCommand::Growth(a) => (growth::growth(&a).await?, a.out),
        BenchCommand::Stitch(a) => (stitch(&a).await?, a.out),
        BenchCommand::Sustained(a) => (sustained::sustained(&a).await?, a.out),
        BenchCommand::Cluster(a) => (cluster::cluster(&a).await?, a.out.clone()),
        BenchCommand::Append(a) => (tokio::task::block_in_place(|| append::run(&a))?, a.out.clone()),
    };
    print_table(&report);
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json"))?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

fn print_table(report: &Value) {
    println!("\n{:<34} value", "figure");
    println!("{}", "-".repeat(60));
    if let Some(obj) = report.as_object() {
        for (k, v) in obj {
            match v {
                Value::Object(inner) => {
                    for (ik, iv) in inner {
                        println!("{:<34} {}", format!("{k}.{ik}"), iv);
                    }
                }
                other => println!("{k:<34} {other}"),
            }
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn templates(count: usize, spans: usize, t0: i64) -> Arc<Vec<Template>> {
    Arc::new((0..count).map(|i| Template::build(i as u64 + 1, t0 + i as i64 * 1_000_000_000, spans)).collect())
}

/// What a load run saw from the client side.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    acked_spans: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
}

/// Sends fresh copies of the templates from `connections` tasks until `duration` passes.
/// `back_off` waits a little after a refusal, as exporters do; without it, the clients
/// hammer the server (overload).
async fn drive(
    server: &ServerProcess,
    templates: Arc<Vec<Template>>,
    connections: usize,
    duration: Duration,
    back_off: bool,
    nonce: &Arc<AtomicU32>,
) -> Arc<Load> {
    drive_all(&[server], templates, connections, duration, back_off, nonce).await
}

/// As [`drive`], the connections dealt out over `servers` in turn.
async fn drive_all(
    servers: &[&ServerProcess],
    templates: Arc<Vec<Template>>,
    connections: usize,
    duration: Duration,
    back_off: bool,
    nonce: &Arc<AtomicU32>,
) -> Arc<Load> {
    let load = Arc::new(Load::default());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (load, nonce, templates) = (Arc::clone(&load), Arc::clone(nonce), Arc::clone(&templates));
        let server = servers[c % servers.len()];
        let (grpc_addr, http_addr) = (server.grpc, server.http);
        tasks.push(tokio::spawn(async move {
            let mut exporter = Exporter::connect(grpc_addr, http_addr, c % 2 == 0).await;
            while Instant::now() < deadline {
                let n = nonce.fetch_add(1, Ordering::Relaxed);
                let t = &templates[n as usize % templates.len()];
                let started = Instant::now();
                let outcome = exporter.export(t.instance(n)).await;
                match outcome {
                    Answer::Taken => {
                        load.ok.fetch_add(1, Ordering::Relaxed);
                        load.acked_spans.fetch_add(t.spans as u64, Ordering::Relaxed);
                        load.latencies_ms.lock().push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    Answer::Refused => {
                        load.refused.fetch_add(1, Ordering::Relaxed);
                        if back_off {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Answer::Failed => {
                        load.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    load
}

/// Samples the server's stitch lag each second until `until`: per 30 s of load, the lag
/// at its end and the most seen in it.
async fn watch_lag(client: reqwest::Client, ui: std::net::SocketAddr, until: Instant) -> Vec<(f64, f64)> {
    let mut periods = Vec::new();
    let (mut last, mut max, mut started) = (0.0f64, 0.0f64, Instant::now());
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = process::metric(&client, ui, "flowscope_stitch_lag_seconds").await.unwrap_or(last);
        max = max.max(last);
        if started.elapsed() >= Duration::from_secs(30) {
            periods.push(((last * 10.0).round() / 10.0, (max * 10.0).round() / 10.0));
            (max, started) = (0.0, Instant::now());
        }
    }
    periods.push(((last * 10.0).round() / 10.0, (max * 10.0).round() / 10.0));
    periods
}

/// Single-threaded protobuf decode rate of the payloads (spans/s).
fn decode_limit(templates: &[Template]) -> f64 {
    let started = Instant::now();
    let mut spans = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        for t in templates {
            spans += workload::decode(&t.bytes);
        }
    }
    spans as f64 / started.elapsed().as_secs_f64()
}

/// Single-threaded DuckDB Appender rate into the same schema (span rows/s, links included
/// in the work), committing every ~100k spans like the writer does under load.
fn append_limit(templates: &[Template]) -> Result<f64, BenchError> {
    let appended = append::append(&append::flattened(templates, templates.len() * 40), 100)?;
    Ok(appended.spans as f64 / appended.seconds)
}

fn tempfile_dir() -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("flowscope-bench-{}-{}", std::process::id(), now_nanos()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn ingest(args: &LoadArgs) -> Result<Value, BenchError> {
    let templates = templates(8, args.batch, now_nanos() - 60_000_000_000);
    let payload_bytes: usize = templates.iter().map(|t| t.bytes.len()).sum();
    let payload_spans: usize = templates.iter().map(|t| t.spans).sum();
    println!(
        "payloads: {} requests of ~{} spans, {:.0} bytes/span",
        templates.len(),
        args.batch,
        payload_bytes as f64 / payload_spans as f64
    );
    let decode = tokio::task::block_in_place(|| decode_limit(&templates));
    println!("decode limit: {decode:.0} spans/s");
    let append = tokio::task::block_in_place(|| append_limit(&templates))?;
    println!("append limit: {append:.0} spans/s");

    let dir = tempfile_dir()?;
    let server = ServerProcess::spawn(&std::env::current_exe()?, &dir.join("ingest.duckdb"), &[])?;
    let client = reqwest::Client::new();
    let committed = "flowscope_committed_items_total{signal=\"traces\"}";
    // Warm-up: a couple of seconds so connections, caches and the stitcher are going.
    // One nonce sequence for warm-up and load: every request carries new traces.
    let nonce = Arc::new(AtomicU32::new(1));
    drive(&server, Arc::clone(&templates), args.connections, Duration::from_secs(2), true, &nonce).await;
    let (c0, cpu0, t0) = (process::metric(&client, server.ui, committed).await?, server.cpu_seconds(), Instant::now());
    let lag = tokio::spawn(watch_lag(client.clone(), server.ui, t0 + Duration::from_secs(args.seconds)));
    let load =
        drive(&server, Arc::clone(&templates), args.connections, Duration::from_secs(args.seconds), true, &nonce).await;
    let lag_every_30s = lag.await.unwrap_or_default();
    let (c1, cpu1, elapsed) =
        (process::metric(&client, server.ui, committed).await?, server.cpu_seconds(), t0.elapsed());
    let stitching: Value = serde_json::from_str(&process::get_text(&client, server.ui, "/api/stitching").await?)
        .map_err(|e| BenchError::Server(format!("/api/stitching: {e}")))?;
    let peak_rss = server.peak_rss_bytes();
    let threads: serde_json::Map<String, Value> =
        server.cpu_by_thread().into_iter().map(|(k, v)| (k, json!((v * 100.0).round() / 100.0))).collect();
    server.stop()?;
    // After the stop's checkpoint: what the file keeps per span, compressed.
    let file_bytes = std::fs::metadata(dir.join("ingest.duckdb")).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);

    let committed_rate = (c1 - c0) / elapsed.as_secs_f64();
    let mut lat = std::mem::take(&mut *load.latencies_ms.lock());
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let limit = decode.min(append);
    let total_committed = c1;
    Ok(json!({
        "committed_spans_per_s": committed_rate.round(),
        "decode_limit_spans_per_s": decode.round(),
        "append_limit_rows_per_s": append.round(),
        "limit_ratio": (committed_rate / limit * 1000.0).round() / 1000.0,
        "export_p50_ms": (percentile(&lat, 0.5) * 10.0).round() / 10.0,
        "export_p99_ms": (percentile(&lat, 0.99) * 10.0).round() / 10.0,
        "server_cpu_s_per_million": ((cpu1 - cpu0) / ((c1 - c0).max(1.0) / 1e6) * 100.0).round() / 100.0,
        "peak_rss_bytes": peak_rss,
        "requests_ok": load.ok.load(Ordering::Relaxed),
        "requests_refused": load.refused.load(Ordering::Relaxed),
        "requests_failed": load.failed.load(Ordering::Relaxed),
        "seconds": elapsed.as_secs_f64(),
        "connections": args.connections,
        "spans_stitched_at_end": stitching["spans_stitched"],
        "flows_written_at_end": stitching["flows_written"],
        "stitch_rounds_at_end": stitching["rounds"],
        "stitch_lag_s_max": lag_every_30s.iter().map(|(_, max)| *max).fold(0.0, f64::max),
        "stitch_lag_s_every_30s": lag_every_30s.iter().map(|(last, _)| *last).collect::<Vec<_>>(),
        "spans_committed_at_end": total_committed,
        "file_bytes_per_span": (file_bytes as f64 / total_committed.max(1.0)).round(),
        "server_cpu_s_by_thread": threads,
    }))
}

async fn overload(args: &LoadArgs) -> Result<Value, BenchError> {
    let templates = templates(8, args.batch, now_nanos() - 60_000_000_000);
    let dir = tempfile_dir()?;
    let db = dir.join("overload.duckdb");
    // A queue smaller than what the clients keep in flight, so it fills and refuses.
    // About half a batch per connection can wait (~500 bytes of Arrow buffers a span).
    let capacity = (args.connections.max(16) * args.batch / 2 * 500).to_string();
    let server = ServerProcess::spawn(&std::env::current_exe()?, &db, &["--queue-bytes", &capacity])?;
    let connections = args.connections.max(16);
    let nonce = Arc::new(AtomicU32::new(1));
    let load =
        drive(&server, Arc::clone(&templates), connections, Duration::from_secs(args.seconds), false, &nonce).await;
    let peak_rss = server.peak_rss_bytes();
    server.stop()?;
    let stored: i64 = {
        let conn = duckdb::Connection::open(&db).map_err(crate::store::StoreError::from)?;
        conn.query_row("SELECT count(*) FROM spans", [], |r| r.get(0)).map_err(crate::store::StoreError::from)?
    };
    let _ = std::fs::remove_dir_all(&dir);
    let acked = load.acked_spans.load(Ordering::Relaxed);
    Ok(json!({
        "seconds": args.seconds,
        "connections": connections,
        "queue_capacity_bytes": capacity,
        "peak_rss_bytes": peak_rss,
        "requests_ok": load.ok.load(Ordering::Relaxed),
        "requests_refused_retryable": load.refused.load(Ordering::Relaxed),
        "requests_failed": load.failed.load(Ordering::Relaxed),
        "acknowledged_spans": acked,
        "stored_spans": stored,
        "acknowledged_spans_lost": (acked as i64 - stored).max(0),
    }))
}

/// Spans per fill request.
const FILL_BATCH: usize = 1000;

/// Adds `spans` spans to the file at `db`, which holds `stored` spans filled before:
/// demo-like flows spread evenly over the last six hours, written through the same
/// flatten-and-append path as ingest, without the network. Returns the spans added.
async fn fill(db: &std::path::Path, stored: usize, spans: usize) -> Result<usize, BenchError> {
    let now = now_nanos();
    let hours6 = 6 * 3_600_000_000_000i64;
    let batch = FILL_BATCH;
    let count = 48usize;
    let spread = Arc::new(
        (0..count)
            .map(|i| Template::build(i as u64 + 100, now - hours6 + i as i64 * (hours6 / count as i64), batch))
            .collect::<Vec<_>>(),
    );
    let store = Store::open(db)?;
    let writer = Arc::new(store.start_writer(crate::store::WriterConfig::default())?);
    let keys = Arc::new(CorrelationKeys::default());
    // Request numbers go on from the previous fill's, so every trace id is new.
    let first = (stored / batch) as u32 + 1;
    let next = Arc::new(AtomicU32::new(first));
    let target = spans;
    let filled_count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (writer, keys, next, spread, filled_count) =
            (Arc::clone(&writer), Arc::clone(&keys), Arc::clone(&next), Arc::clone(&spread), Arc::clone(&filled_count));
        tasks.push(tokio::spawn(async move {
            while (filled_count.load(Ordering::Relaxed) as usize) < target {
                // In time order, as live ingest arrives: the oldest template's copies first.
                let n = next.fetch_add(1, Ordering::Relaxed);
                let k = (n - first) as usize;
                let position = (k * batch * spread.len() / target.max(1)).min(spread.len() - 1);
                let t = &spread[position];
                // Copies spread evenly over the six hours (a few hundred spans a
                // second), not stacked on their template's time.
                let due = (k as i128 * batch as i128 * hours6 as i128 / target.max(1) as i128) as i64;
                let shift = (due - position as i64 * (hours6 / count as i64)).max(0);
                let flat = tokio::task::block_in_place(|| {
                    crate::ingest::flatten(Signal::Traces, Encoding::Protobuf, &t.instance_at(n, shift), &keys)
                })
                .expect("flattens");
                let spans = flat.accepted;
                loop {
                    match writer.write(flat.batches.clone()).await {
                        Ok(_) => break,
                        Err(crate::store::StoreError::Overloaded { .. }) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("fill failed: {e}"),
                    }
                }
                filled_count.fetch_add(spans, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    writer.shutdown().await;
    store.checkpoint()?;
    Ok(filled_count.load(Ordering::Relaxed) as usize)
}

/// How many spans a database file holds.
fn stored_spans(db: &std::path::Path) -> Result<usize, BenchError> {
    let store = Store::open(db)?;
    let spans = store.read_blocking(|c| {
        Ok(c.query_row(include_str!("../../queries/span_count.sql"), [], |r| r.get::<_, i64>(0))?)
    })?;
    Ok(spans.max(0) as usize)
}

async fn query(args: &QueryArgs) -> Result<Value, BenchError> {
    let dir = tempfile_dir()?;
    let db = args.db.clone().unwrap_or_else(|| dir.join("query.duckdb"));
    let refill = !db.exists();
    let fill_started = Instant::now();
    let filled = if refill { fill(&db, 0, args.spans).await? } else { stored_spans(&db)? };
    let fill_s = fill_started.elapsed().as_secs_f64();
    println!("filled {filled} spans in {fill_s:.1} s");

    // Serve it: the stitcher replays every stored span on start; time the catch-up.
    let mut config = crate::config::Config::with_db(db.clone());
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    (config.otlp_grpc, config.otlp_http, config.ui) = (any, any, any);
    let stitch_started = Instant::now();
    let running = crate::server::start(config).await.map_err(|e| BenchError::Server(e.to_string()))?;
    running.wait_stitched().await;
    let stitch_s = stitch_started.elapsed().as_secs_f64();
    println!("stitched {filled} spans in {stitch_s:.1} s");
    // What the stitcher left in DuckDB's buffer pool; the pages are slower with it there
    // than after a restart (BENCHMARKS.md).
    println!("duckdb memory before the pages: {:?}", running.store.duckdb_memory().await?);

    let client = reqwest::Client::new();
    let ui = running.ui;
    let endpoints = page_endpoints(&client, ui, "last=7h").await;
    let timings = time_pages(&client, ui, &endpoints, args.requests).await?;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = json!({
        "spans": filled,
        "stitch_spans_per_s": (filled as f64 / stitch_s).round(),
    });
    if refill {
        report["fill_spans_per_s"] = json!((filled as f64 / fill_s).round());
    }
    for (k, v) in timings {
        report[k] = v;
    }
    Ok(report)
}

/// CPU seconds of `clock` (`CLOCK_PROCESS_CPUTIME_ID` or `CLOCK_THREAD_CPUTIME_ID`).
fn cpu_clock(clock: libc::clockid_t) -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Recomputes every flow of a filled file in this process, on this thread, as
/// `flowscope restitch` does, and reports the stitcher's cost per span. Unlike under
/// `bench ingest`, no writer or client competes for the cores and every round reads its
/// rows from the file; the machine's own speed still varies, so compare runs on one file
/// made back to back.
async fn stitch(args: &StitchArgs) -> Result<Value, BenchError> {
    use crate::flows::restitch::{self, Scope};
    let dir = tempfile_dir()?;
    let db = args.db.clone().unwrap_or_else(|| dir.join("stitch.duckdb"));
    let filled = if db.exists() { stored_spans(&db)? } else { fill(&db, 0, args.spans).await? };
    println!("{filled} spans stored");
    let config = crate::config::Config::with_db(db.clone()).stitch;
    let store = Store::open(&db)?;
    restitch::begin(&store, Scope::All)?;
    let (process0, thread0, started) =
        (cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID), cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID), Instant::now());
    let done = tokio::task::block_in_place(|| restitch::run(&store, config, Duration::from_secs(3600), |_| {}))?;
    let (process_s, thread_s, seconds) = (
        cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID) - process0,
        cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID) - thread0,
        started.elapsed().as_secs_f64(),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    let per_million = |cpu: f64| (cpu / (done.spans_stitched.max(1) as f64 / 1e6) * 100.0).round() / 100.0;
    Ok(json!({
        "spans_stitched": done.spans_stitched,
        "flows_written": done.flows_written,
        "rounds": done.rounds,
        "seconds": (seconds * 100.0).round() / 100.0,
        "spans_per_s": (done.spans_stitched as f64 / seconds).round(),
        "stitcher_thread_cpu_s_per_million": per_million(thread_s),
        "process_cpu_s_per_million": per_million(process_s),
    }))
}
