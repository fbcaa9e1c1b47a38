//! `flowscope bench cluster`: a cluster of processes on one machine, a real PostgreSQL
//! catalog and a DuckLake data directory, for each receiver count asked: N receivers, the
//! stitcher and a query node, each a process of its own. The load goes to the receivers;
//! the figures are what a cluster costs against one process (ingest rate, lake commits,
//! files before and after upkeep, stitch lag, pages on the query node). On one machine
//! the nodes share its cores, so more receivers show overheads, not a speed-up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::pages::{page_endpoints, time_pages};
use super::postgres::Postgres;
use super::process::{self, ServerProcess};
use super::{drive_all, tempfile_dir, templates, watch_lag, BenchError};
use crate::text::now_nanos;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Receiver counts to measure, a fresh cluster each
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub receivers: Vec<usize>,
    /// How long to send to each cluster
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Client connections, dealt out over the receivers (half gRPC, half HTTP)
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Spans per export request
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// How often the stitcher keeps the lake (it runs once more after the load)
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub upkeep_every: Duration,
    /// Requests per page on the query node
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Where the PyPI packages duckdb-extension-ducklake, -postgres-scanner and -parquet
    /// are installed
    #[arg(long, env = "FLOWSCOPE_LAKE_EXTENSIONS", value_name = "DIR")]
    pub lake_extensions: PathBuf,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Most receivers one run starts.
const MAX_RECEIVERS: usize = 16;

/// How long the stitcher and the query node may take to catch up after the load, and the
/// lake's upkeep to run once more.
const SETTLE: Duration = Duration::from_secs(600);

pub async fn cluster(args: &ClusterArgs) -> Result<Value, BenchError> {
    if args.receivers.is_empty() || args.receivers.iter().any(|&n| n == 0 || n > MAX_RECEIVERS) {
        return Err(BenchError::Server(format!("--receivers takes counts from 1 to {MAX_RECEIVERS}")));
    }
    let pg = Postgres::start()?;
    let mut report = serde_json::Map::new();
    for (i, &n) in args.receivers.iter().enumerate() {
        println!("cluster with {n} receiver(s): sending for {} s", args.seconds);
        let catalog = format!("lake_{i}_{n}");
        pg.create_database(&catalog)?;
        report.insert(format!("receivers_{n}"), one_cluster(args, &pg.conninfo(&catalog), n).await?);
    }
    Ok(Value::Object(report))
}

/// The nodes of one cluster.
struct Nodes {
    receivers: Vec<ServerProcess>,
    stitcher: ServerProcess,
    query: ServerProcess,
}

impl Nodes {
    fn start(
        args: &ClusterArgs,
        catalog: &str,
        data: &Path,
        dir: &Path,
        receivers: usize,
    ) -> Result<Nodes, BenchError> {
        let exe = std::env::current_exe()?;
        let (data, extensions) = (data.display().to_string(), args.lake_extensions.display().to_string());
        let upkeep = format!("{}ms", args.upkeep_every.as_millis());
        let node = |name: String, role: &str| {
            let flags = [
                "--lake",
                catalog,
                "--lake-data",
                &data,
                "--lake-extensions",
                &extensions,
                "--lake-upkeep-every",
                &upkeep,
                // Every snapshot before the last copied one expires at upkeep, so the files
                // after it are what merging leaves.
                "--lake-keep-snapshots",
                "0s",
                "--role",
                role,
            ];
            ServerProcess::spawn_node(&exe, &dir.join(format!("{name}.duckdb")), &flags, role == "receiver")
        };
        Ok(Nodes {
            stitcher: node("stitcher".into(), "stitcher")?,
            query: node("query".into(), "query")?,
            receivers: (0..receivers).map(|i| node(format!("receiver-{i}"), "receiver")).collect::<Result<_, _>>()?,
        })
    }

    fn stop(self) -> Result<(), BenchError> {
        for r in self.receivers {
            r.stop()?;
        }
        self.query.stop()?;
        self.stitcher.stop()
    }
}

/// A metric summed over `nodes`.
async fn total(client: &reqwest::Client, nodes: &[ServerProcess], series: &str) -> Result<f64, BenchError> {
    let mut sum = 0.0;
    for n in nodes {
        sum += process::metric(client, n.ui, series).await?;
    }
    Ok(sum)
}

/// Waits (at most [`SETTLE`]) until `done` holds; how long it took.
async fn settle<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) -> Result<f64, BenchError> {
    let started = Instant::now();
    while !done().await {
        if started.elapsed() > SETTLE {
            return Err(BenchError::Server(format!("{what} did not happen within {} s", SETTLE.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Whether a following node has copied lake snapshot `latest` and stitched all it copied.
async fn caught_up(client: &reqwest::Client, node: &ServerProcess, latest: f64) -> bool {
    let get = |series| process::metric(client, node.ui, series);
    match (get("flowscope_lake_snapshot_pulled").await, get("flowscope_last_commit_seq").await) {
        (Ok(pulled), Ok(last)) => {
            pulled >= latest && get("flowscope_stitched_commit_seq").await.is_ok_and(|stitched| stitched >= last)
        }
        _ => false,
    }
}

/// Files under `dir`, however deep (0 for one that cannot be read).
pub fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { files_under(&e.path()) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

async fn one_cluster(args: &ClusterArgs, catalog: &str, receivers: usize) -> Result<Value, BenchError> {
    let dir = tempfile_dir()?;
    let data = dir.join("lake-data");
    std::fs::create_dir_all(&data)?;
    let nodes = Nodes::start(args, catalog, &data, &dir, receivers)?;
    let client = reqwest::Client::new();
    settle("the stitcher's election", || async {
        process::metric(&client, nodes.stitcher.ui, "flowscope_stitcher_leader").await.is_ok_and(|v| v == 1.0)
    })
    .await?;

    let templates = templates(8, args.batch, now_nanos() - 60_000_000_000);
    let nonce = Arc::new(AtomicU32::new(1));
    let seconds = Duration::from_secs(args.seconds);
    let committed = "flowscope_committed_items_total{signal=\"traces\"}";
    let (cpu0, t0) = (cpu(&nodes), Instant::now());
    let stitcher_lag = tokio::spawn(watch_lag(client.clone(), nodes.stitcher.ui, t0 + seconds));
    let query_lag = tokio::spawn(watch_lag(client.clone(), nodes.query.ui, t0 + seconds));
    let targets: Vec<&ServerProcess> = nodes.receivers.iter().collect();
    let load = drive_all(&targets, templates, args.connections, seconds, true, &nonce).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu(&nodes);
    let spans = total(&client, &nodes.receivers, committed).await?;
    let commits = total(&client, &nodes.receivers, "flowscope_commit_duration_seconds_count").await?;
    let failed_commits = total(&client, &nodes.receivers, "flowscope_failed_commits_total").await?;
    let (stitcher_lag, query_lag) = (stitcher_lag.await.unwrap_or_default(), query_lag.await.unwrap_or_default());
    let files_before = files_under(&data);

    // Every request was answered after its lake commit, so a pull starting now sees the
    // last snapshot; the stitcher pulls every half second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let latest = process::metric(&client, nodes.stitcher.ui, "flowscope_lake_snapshot_latest").await?;
    let stitcher_caught_up_s =
        settle("the stitcher's catching up", || caught_up(&client, &nodes.stitcher, latest)).await?;
    let query_caught_up_s = settle("the query node's catching up", || caught_up(&client, &nodes.query, latest)).await?;
    let runs = process::metric(&client, nodes.stitcher.ui, "flowscope_lake_upkeep_runs_total").await?;
    settle("an upkeep run after the load", || async {
        process::metric(&client, nodes.stitcher.ui, "flowscope_lake_upkeep_runs_total").await.is_ok_and(|r| r > runs)
    })
    .await?;
    let files_after = files_under(&data);
    let upkeep_failures = process::metric(&client, nodes.stitcher.ui, "flowscope_lake_upkeep_failures_total").await?;

    let endpoints = page_endpoints(&client, nodes.query.ui, "last=1h").await;
    let pages = time_pages(&client, nodes.query.ui, &endpoints, args.requests).await?;
    let worst_p95 = pages.values().filter_map(|v| v["p95_ms"].as_f64()).fold(0.0, f64::max);
    let flows_query = process::get_text(&client, nodes.query.ui, "/api/flows?last=1h&limit=10000").await?;
    let flows_stitcher = process::get_text(&client, nodes.stitcher.ui, "/api/flows?last=1h&limit=10000").await?;
    nodes.stop()?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut lat = std::mem::take(&mut *load.latencies_ms.lock());
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let max_lag = |periods: &[(f64, f64)]| periods.iter().map(|(_, max)| *max).fold(0.0, f64::max);
    Ok(json!({
        "committed_spans_per_s": (spans / elapsed).round(),
        "lake_commits_per_s": round(commits / elapsed, 2),
        "lake_commits_failed": failed_commits,
        "requests_ok": load.ok.load(Ordering::Relaxed),
        "requests_refused": load.refused.load(Ordering::Relaxed),
        "requests_failed": load.failed.load(Ordering::Relaxed),
        "export_p50_ms": round(super::percentile(&lat, 0.5), 1),
        "export_p99_ms": round(super::percentile(&lat, 0.99), 1),
        "stitch_lag_s_max": max_lag(&stitcher_lag),
        "query_node_lag_s_max": max_lag(&query_lag),
        "stitcher_caught_up_after_load_s": round(stitcher_caught_up_s, 1),
        "query_node_caught_up_after_load_s": round(query_caught_up_s, 1),
        "lake_files_before_upkeep": files_before,
        "lake_files_after_upkeep": files_after,
        "lake_upkeep_failures": upkeep_failures,
        "query_node_page_p95_ms_worst": worst_p95,
        "query_node_pages": pages,
        "query_node_flows_equal_stitcher": flows_query == flows_stitcher,
        "cpu_s": {
            "receivers": round(cpu1.0 - cpu0.0, 1),
            "stitcher": round(cpu1.1 - cpu0.1, 1),
            "query_node": round(cpu1.2 - cpu0.2, 1),
        },
        "seconds": round(elapsed, 1),
    }))
}

/// CPU seconds so far of the receivers together, the stitcher and the query node.
fn cpu(nodes: &Nodes) -> (f64, f64, f64) {
    (
        nodes.receivers.iter().map(ServerProcess::cpu_seconds).sum(),
        nodes.stitcher.cpu_seconds(),
        nodes.query.cpu_seconds(),
    )
}
