//! `flowscope bench sustained`: the highest rate a server takes for good. It offers an
//! increasing rate in steps (each at least a minute) until a step fails: the stitch lag
//! reaches 10 s, a request is refused, or answers come too slowly for the clients to send
//! on schedule.
//! The last rate that passed is then held on a fresh server for five minutes; figures at
//! that rate (CPU per thread, peak RSS, export latency) are the report's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::process::{self, Answer, Exporter, RssPeak, ServerProcess};
use super::workload::Template;
use super::{percentile, tempfile_dir, templates, BenchError};
use crate::text::now_nanos;

#[derive(Debug, Clone, Args)]
pub struct SustainedArgs {
    /// First rate offered, spans/s
    #[arg(long, default_value_t = 10_000)]
    pub start: u64,
    /// How much each step adds, spans/s
    #[arg(long, default_value_t = 10_000)]
    pub step: u64,
    /// Highest rate offered, spans/s
    #[arg(long, default_value_t = 200_000)]
    pub max: u64,
    /// How long each step lasts
    #[arg(long, default_value_t = 60)]
    pub step_seconds: u64,
    /// How long the best rate must hold on a fresh server
    #[arg(long, default_value_t = 300)]
    pub hold_seconds: u64,
    /// Concurrent client connections (half gRPC, half HTTP), each sending one request at a
    /// time as an exporter does: enough that their waits for commits do not cap the rate
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Spans per export request
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A step passes while the lag stays under this.
const MAX_LAG_S: f64 = 10.0;
/// ... and the clients' requests, each sent on its schedule once the one before was
/// answered, all end within this of the step's end (the data no later than the lag
/// allows).
const SCHEDULE_GRACE: Duration = Duration::from_secs(10);

/// What one step (or the hold) saw.
struct Step {
    offered: u64,
    committed_per_s: f64,
    max_lag_s: f64,
    refused: u64,
    failed: u64,
    /// Whether the server answered fast enough for every request to go on schedule.
    kept_up: bool,
    latencies_ms: Vec<f64>,
    cpu_s: f64,
    seconds: f64,
}

impl Step {
    fn passed(&self) -> bool {
        self.max_lag_s < MAX_LAG_S && self.refused == 0 && self.failed == 0 && self.kept_up
    }

    /// One line: the figures a step passes or fails by, and the verdict.
    fn summary(&self) -> String {
        format!(
            "{:.0} committed, lag up to {:.1} s, {} refused, {} failed, {}, export p99 {:.0} ms, {:.2} cores -> {}",
            self.committed_per_s,
            self.max_lag_s,
            self.refused,
            self.failed,
            if self.kept_up { "sent on schedule" } else { "answers too slow to send on schedule" },
            percentile(&self.latencies_ms, 0.99),
            self.cpu_s / self.seconds,
            if self.passed() { "passed" } else { "failed" }
        )
    }

    fn report(&self) -> Value {
        json!({
            "offered_spans_per_s": self.offered,
            "committed_spans_per_s": self.committed_per_s.round(),
            "stitch_lag_s_max": (self.max_lag_s * 10.0).round() / 10.0,
            "requests_refused": self.refused,
            "requests_failed": self.failed,
            "export_p50_ms": (percentile(&self.latencies_ms, 0.5) * 10.0).round() / 10.0,
            "export_p99_ms": (percentile(&self.latencies_ms, 0.99) * 10.0).round() / 10.0,
            "cores_used": (self.cpu_s / self.seconds * 100.0).round() / 100.0,
            "kept_up": self.kept_up,
            "passed": self.passed(),
        })
    }
}

pub async fn sustained(args: &SustainedArgs) -> Result<Value, BenchError> {
    let templates = templates(8, args.batch, now_nanos() - 60_000_000_000);
    let nonce = Arc::new(AtomicU32::new(1));
    let step_time = Duration::from_secs(args.step_seconds.max(1));

    // The ramp: one server, the rate rising until a step fails.
    let dir = tempfile_dir()?;
    let server = ServerProcess::spawn(&std::env::current_exe()?, &dir.join("ramp.duckdb"), &[])?;
    let mut steps = Vec::new();
    let mut best = None;
    let mut rate = args.start.max(1);
    loop {
        let step = offer(&server, &templates, args, rate, step_time, &nonce).await?;
        println!("{rate} spans/s offered: {}", step.summary());
        let passed = step.passed();
        steps.push(step.report());
        if !passed {
            break;
        }
        best = Some(rate);
        rate += args.step.max(1);
        if rate > args.max {
            break;
        }
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);

    // The hold: the best rate on a fresh server for the whole hold; half a step lower
    // once if it does not hold.
    let mut held = None;
    let mut candidate = best;
    for _ in 0..2 {
        let Some(rate) = candidate else { break };
        let dir = tempfile_dir()?;
        let server = ServerProcess::spawn(&std::env::current_exe()?, &dir.join("hold.duckdb"), &[])?;
        let peak = RssPeak::watch(&server);
        let step = offer(&server, &templates, args, rate, Duration::from_secs(args.hold_seconds), &nonce).await?;
        let threads: serde_json::Map<String, Value> =
            server.cpu_by_thread().into_iter().map(|(k, v)| (k, json!((v * 100.0).round() / 100.0))).collect();
        let peak_rss = peak.take();
        server.stop()?;
        let _ = std::fs::remove_dir_all(&dir);
        println!("held {rate} spans/s for {} s: {}", args.hold_seconds, step.summary());
        let mut report = step.report();
        report["peak_rss_bytes"] = json!(peak_rss);
        report["server_cpu_s_by_thread"] = Value::Object(threads);
        let passed = step.passed();
        held = Some(report);
        if passed {
            break;
        }
        candidate = rate.checked_sub(args.step / 2).filter(|r| *r > 0);
    }
    let sustained = held.as_ref().filter(|h| h["passed"] == true).map(|h| h["offered_spans_per_s"].clone());
    Ok(json!({
        "sustained_spans_per_s": sustained.unwrap_or(json!(0)),
        "hold": held.unwrap_or(Value::Null),
        "hold_seconds": args.hold_seconds,
        "step_seconds": args.step_seconds,
        "steps": steps,
        "cores_available": std::thread::available_parallelism().map_or(1, |n| n.get()),
    }))
}

/// Offers `rate` spans/s for `duration`: each connection sends its share of the requests
/// on a fixed schedule, one at a time (a request late because the one before waited goes
/// at once), and the lag is sampled every second.
async fn offer(
    server: &ServerProcess,
    templates: &Arc<Vec<Template>>,
    args: &SustainedArgs,
    rate: u64,
    duration: Duration,
    nonce: &Arc<AtomicU32>,
) -> Result<Step, BenchError> {
    let client = reqwest::Client::new();
    let committed = "flowscope_committed_items_total{signal=\"traces\"}";
    let (c0, cpu0, started) =
        (process::metric(&client, server.ui, committed).await?, server.cpu_seconds(), Instant::now());
    let deadline = started + duration;
    let per_request = templates.iter().map(|t| t.spans).sum::<usize>() as f64 / templates.len() as f64;
    let connections = args.connections.max(1);
    let interval = Duration::from_secs_f64(per_request * connections as f64 / rate as f64);
    // Each connection's share, so that all of them together offer `rate` over `duration`.
    let requests = (duration.as_secs_f64() / interval.as_secs_f64()).round().max(1.0) as usize;
    let (refused, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (templates, nonce, refused, failed, latencies) = (
            Arc::clone(templates),
            Arc::clone(nonce),
            Arc::clone(&refused),
            Arc::clone(&failed),
            Arc::clone(&latencies),
        );
        let (grpc_addr, http_addr) = (server.grpc, server.http);
        tasks.push(tokio::spawn(async move {
            let mut exporter = Exporter::connect(grpc_addr, http_addr, c % 2 == 0).await;
            let first = tokio::time::Instant::now() + interval.mul_f64(c as f64 / connections as f64);
            let mut ticks = tokio::time::interval_at(first, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..requests {
                ticks.tick().await;
                let n = nonce.fetch_add(1, Ordering::Relaxed);
                let body = templates[n as usize % templates.len()].instance(n);
                let sent = Instant::now();
                let outcome = exporter.export(body).await;
                match outcome {
                    Answer::Taken => latencies.lock().push(sent.elapsed().as_secs_f64() * 1000.0),
                    Answer::Refused => _ = refused.fetch_add(1, Ordering::Relaxed),
                    Answer::Failed => _ = failed.fetch_add(1, Ordering::Relaxed),
                }
            }
        }));
    }
    let mut max_lag: f64 = 0.0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lag = process::metric(&client, server.ui, "flowscope_stitch_lag_seconds").await.unwrap_or(0.0);
        max_lag = max_lag.max(lag);
    }
    for t in tasks {
        let _ = t.await;
    }
    let kept_up = Instant::now() <= deadline + SCHEDULE_GRACE;
    let seconds = started.elapsed().as_secs_f64();
    let (c1, cpu1) = (process::metric(&client, server.ui, committed).await?, server.cpu_seconds());
    let mut latencies_ms = std::mem::take(&mut *latencies.lock());
    latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(Step {
        offered: rate,
        committed_per_s: (c1 - c0) / seconds,
        max_lag_s: max_lag,
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        kept_up,
        latencies_ms,
        cpu_s: cpu1 - cpu0,
        seconds,
    })
}
