//! Flow metrics in the user's own Prometheus: a real Prometheus (Debian's `prometheus`,
//! installed by `scripts/test`) scrapes `/metrics/flows` of a flowscope fed with the demo
//! scenarios, and its HTTP API must tell what flowscope's own API tells.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use flowscope::demo::scenarios::{self, Builder, Delivery, MS};
use flowscope::web::api::now_nanos;
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

/// Ends the Prometheus process when the test ends, however it ends.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
        "Debian's prometheus package is missing: `scripts/test` installs it, or run `sudo apt-get install prometheus`",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: flowscope\n    metrics_path: /metrics/flows\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let prometheus = Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    let ready = format!("{}/-/ready", prometheus.url);
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("prometheus becomes ready");
    prometheus
}

/// The value of an instant query with one result, once it has one.
async fn query(prometheus: &Prometheus, promql: &str) -> Option<f64> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    resp["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls a query until `accept` holds (bounded).
async fn eventually(prometheus: &Prometheus, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(v) = query(prometheus, promql).await.filter(|v| accept(*v)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{promql} never met the condition within 60 s"))
}

async fn send_depth(server: &TestServer, queue: &str, depth: f64) {
    let body = flowscope::demo::depth_metric(
        "mailer",
        "messaging.queue.depth",
        ("messaging.destination.name", queue),
        &[("messaging.system", "rabbitmq")],
        now_nanos(),
        depth,
    )
    .encode_to_vec();
    assert_eq!(server.post_protobuf("/v1/metrics", body).await, 200);
}

/// Checkouts sent by [`send_demo_flows`]: enough that one slow poison flow is not the p99.
const CHECKOUTS: i64 = 200;

/// Sends the demo's checkouts (one poison) and refunds (one dead-lettered in the broker).
/// Returns the dead letters sent.
async fn send_demo_flows(server: &TestServer) -> usize {
    let mut rng = StdRng::seed_from_u64(7);
    let mut b = Builder::new(&mut rng);
    let t0 = now_nanos() - 60_000 * MS;
    for k in 0..CHECKOUTS {
        scenarios::checkout(&mut b, t0 + k * 100 * MS, k == 5);
    }
    scenarios::refund(&mut b, t0 + 4_000 * MS, Delivery::Redelivered(1));
    scenarios::refund(&mut b, t0 + 5_000 * MS, Delivery::DeadLettered);
    let (traces, logs) = flowscope::demo::to_requests(std::mem::take(&mut b.out));
    assert_eq!(server.post_protobuf("/v1/traces", traces.encode_to_vec()).await, 200);
    assert_eq!(server.post_protobuf("/v1/logs", logs.encode_to_vec()).await, 200);
    2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_chain_latency_dead_letters_and_queue_depth() {
    let server = TestServer::start_with(|c| c.stitch.quiet_period = Duration::from_millis(500)).await;
    let dead_letters_sent = send_demo_flows(&server).await;
    send_depth(&server, "emails", 10.0).await;
    server.running().wait_stitched().await;
    let prometheus = start_prometheus(server.running().ui).await;

    // Dead letters: both, the one published to orders.DLT and the one RabbitMQ moved.
    let dead = eventually(&prometheus, "sum(flowscope_dead_letters_total)", |v| v >= dead_letters_sent as f64).await;
    assert_eq!(dead, dead_letters_sent as f64);

    // p99 of the checkout chain: within the bucket that holds flowscope's own p99.
    let chain = "checkout POST /orders";
    let prom_p99 = eventually(
        &prometheus,
        &format!(
            "histogram_quantile(0.99, sum by (le) (flowscope_chain_duration_seconds_bucket{{chain=\"{chain}\"}}))"
        ),
        |v| v.is_finite() && v > 0.0,
    )
    .await;
    let chains: Value =
        reqwest::get(server.ui_url("/api/chains?from=0&to=9000000000000000000")).await.unwrap().json().await.unwrap();
    let own_p99 =
        chains["chains"].as_array().unwrap().iter().find(|c| c["chain"] == chain).unwrap()["p99_ms"].as_f64().unwrap()
            / 1000.0;
    let bucket_of = |v: f64| flowscope::flows::rollup::LATENCY_BUCKETS.iter().position(|le| v <= *le + 1e-9);
    let exported = reqwest::get(server.ui_url("/metrics/flows")).await.unwrap().text().await.unwrap();
    assert_eq!(
        bucket_of(prom_p99),
        bucket_of(own_p99),
        "Prometheus p99 {prom_p99} s vs flowscope's {own_p99} s; {chains}\n{exported}"
    );
    let flows = eventually(&prometheus, &format!("sum(flowscope_chain_flows_total{{chain=\"{chain}\"}})"), |v| {
        v >= CHECKOUTS as f64
    })
    .await;
    assert_eq!(flows, CHECKOUTS as f64);

    // The slowed e-mail queue backs up: its depth series rises.
    for depth in [20.0, 30.0, 40.0, 50.0] {
        send_depth(&server, "emails", depth).await;
        eventually(&prometheus, "flowscope_queue_depth{destination=\"emails\"}", |v| v >= depth).await;
    }
    let rise = eventually(
        &prometheus,
        "max_over_time(flowscope_queue_depth{destination=\"emails\"}[5m]) - min_over_time(flowscope_queue_depth{destination=\"emails\"}[5m])",
        |v| v > 0.0,
    )
    .await;
    assert!(rise >= 40.0, "rose by {rise}");
}

/// Every counter and histogram series of one scrape.
async fn scrape(server: &TestServer) -> std::collections::BTreeMap<String, f64> {
    let text = reqwest::get(server.ui_url("/metrics/flows")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("flowscope_queue_depth"))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_counters_never_decrease_across_scrapes_and_restarts() {
    let server = TestServer::start_with(|c| c.stitch.quiet_period = Duration::from_millis(200)).await;
    send_demo_flows(&server).await;
    server.running().wait_stitched().await;
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let s = scrape(&server).await;
            if s.keys().any(|k| k.starts_with("flowscope_dead_letters_total")) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("settled flows are exported");
    let (_, dir) = server.stop().await;
    let server = TestServer::start_in(dir, |c| c.stitch.quiet_period = Duration::from_millis(200)).await;
    server.running().wait_stitched().await;
    // The restarted stitcher replays every stored span; nothing is counted twice.
    let second = scrape(&server).await;
    for (series, v) in &first {
        assert_eq!(second.get(series), Some(v), "{series} changed across a restart with no new data");
    }
}
