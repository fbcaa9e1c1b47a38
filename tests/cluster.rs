//! A cluster on a real PostgreSQL catalog and the real DuckLake extension: receivers
//! append what they take in to the lake; stitchers and query nodes copy it into their
//! files and stitch it there. The recorded traffic and the demo's, each request's
//! services spread over different receivers (logs and metrics to a third), must make
//! exactly the flows one process makes of it, on the active stitcher, a standby and a
//! query node, also when the active stitcher stops part-way and the standby takes over,
//! and when nodes in processes of their own are killed with `kill -9`. The lake's
//! retention and upkeep complete while receivers append.

mod common;

use std::time::Duration;

use common::postgres::{lake_extensions, Postgres};
use common::process::Node;
use common::*;
use flowscope::bench::cluster::files_under;
use flowscope::config::Config;
use flowscope::lake::upkeep::UpkeepConfig;
use flowscope::lake::{LakeConfig, Roles};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const FIXTURES: [&str; 4] =
    ["recorded/kafka-confluent", "recorded/sqs-boto3", "recorded/pika-dlx", "recorded/aio-pika-rpc"];

/// The traffic every test sends, in order, as (signal, body): the fixtures' request
/// bodies, then the demo's scenarios.
fn recorded_requests() -> Vec<(String, Vec<u8>)> {
    let recorded = FIXTURES.iter().flat_map(|f| recorded_bodies(f)).map(|(_, s, body)| (s.to_string(), body));
    recorded.chain(demo_requests()).collect()
}

/// The demo's scenarios from a fixed seed and start, so every run sends the same bytes:
/// HTTP, gRPC, Kafka with a retry topic, RabbitMQ with a dead letter and a redelivery, a
/// batch consumer, request-reply, correlation-only logs.
fn demo_requests() -> Vec<(String, Vec<u8>)> {
    use flowscope::demo::scenarios::{self, Builder, Delivery, MS};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(34);
    let mut b = Builder::new(&mut rng);
    let t0 = 1_796_000_000_000 * 1_000_000; // 2026-11-30
    for n in 0..4 {
        scenarios::checkout(&mut b, t0 + n * 20_000 * MS, n == 2);
    }
    scenarios::quote(&mut b, t0 + 5_000 * MS);
    scenarios::shipping(&mut b, t0 + 6_000 * MS);
    scenarios::analytics_batch(&mut b, t0 + 7_000 * MS, 4);
    scenarios::refund(&mut b, t0 + 8_000 * MS, Delivery::DeadLettered);
    scenarios::refund(&mut b, t0 + 9_000 * MS, Delivery::Redelivered(1));
    scenarios::fulfilment_retry(&mut b, t0 + 10_000 * MS);
    let (traces, logs) = flowscope::demo::to_requests(std::mem::take(&mut b.out));
    vec![("traces".into(), traces.encode_to_vec()), ("logs".into(), logs.encode_to_vec())]
}

/// A lake for one test's nodes: a PostgreSQL catalog and a data directory.
struct Lake {
    pg: Postgres,
    data: tempfile::TempDir,
}

impl Lake {
    fn start() -> Lake {
        let pg = Postgres::start().expect("PostgreSQL starts");
        pg.create_database("lake").unwrap();
        Lake { pg, data: tempfile::tempdir().unwrap() }
    }

    fn catalog(&self) -> String {
        self.pg.conninfo("lake")
    }
}

/// A node of the cluster on `lake`, with `roles`.
async fn node(lake: &Lake, roles: Roles) -> TestServer {
    node_with(lake, roles, |_| {}).await
}

/// A node whose settings `tweak` changes last.
async fn node_with(lake: &Lake, roles: Roles, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let lake = LakeConfig {
        catalog: lake.catalog(),
        data_path: lake.data.path().display().to_string(),
        extensions: lake_extensions(),
        commit_every: Duration::from_millis(20),
        upkeep: UpkeepConfig::default(),
    };
    TestServer::start_with(move |c| {
        c.lake = Some(lake);
        c.roles = roles;
        c.stitch.quiet_period = Duration::from_millis(200);
        tweak(c);
    })
    .await
}

/// Upkeep every `every`, keeping no snapshot older than the last copied.
fn upkeep_every(c: &mut Config, every: Duration) {
    c.lake.as_mut().unwrap().upkeep = UpkeepConfig { every, keep: Duration::ZERO };
}

/// Three receiver nodes: two take the spans, the third logs and metrics.
async fn three_receivers(lake: &Lake) -> Vec<TestServer> {
    vec![node(lake, RECEIVER).await, node(lake, RECEIVER).await, node(lake, RECEIVER).await]
}

const RECEIVER: Roles = Roles { receiver: true, stitcher: false, query: false };
const STITCHER: Roles = Roles { receiver: false, stitcher: true, query: false };
const QUERY: Roles = Roles { receiver: false, stitcher: false, query: true };

/// Sends a request to the receivers: a trace request's resources (services) dealt out
/// over the first two, logs and metrics to the third. Every part must be accepted.
async fn send_spread(receivers: &[TestServer], signal: &str, body: &[u8]) {
    if signal != "traces" {
        assert_eq!(receivers[2].post_protobuf(&format!("/v1/{signal}"), body.to_vec()).await, 200);
        return;
    }
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    for (i, part) in request.resource_spans.into_iter().enumerate() {
        let one = ExportTraceServiceRequest { resource_spans: vec![part] };
        assert_eq!(receivers[i % 2].post_protobuf("/v1/traces", one.encode_to_vec()).await, 200);
    }
}

/// The lake snapshot a stitcher node has copied into its file (-1: none).
async fn pulled(stitcher: &TestServer) -> i64 {
    stitcher.count("SELECT coalesce(max(value), -1) FROM stitch_state WHERE name = 'lake_snapshot'").await
}

/// Waits until `stitcher` has copied every lake snapshot and stitched it.
async fn caught_up(stitcher: &TestServer) {
    let latest = stitcher.count("SELECT id FROM lake.current_snapshot()").await;
    tokio::time::timeout(Duration::from_secs(60), async {
        while pulled(stitcher).await < latest {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the stitcher copies the lake's snapshots");
    stitcher.stitched().await;
}

async fn get(node: &TestServer, path: &str) -> String {
    reqwest::get(node.ui_url(path)).await.unwrap().text().await.unwrap()
}

async fn metrics(node: &TestServer) -> String {
    get(node, "/metrics").await
}

/// A series of an in-process node's `/metrics`.
async fn metric(node: &TestServer, series: &str) -> f64 {
    let text = metrics(node).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits until the stitcher's upkeep has run twice more (so once wholly after now), and
/// checks that no run failed.
async fn upkeep_runs_twice_more(stitcher: &TestServer) {
    let runs = metric(stitcher, "flowscope_lake_upkeep_runs_total").await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while metric(stitcher, "flowscope_lake_upkeep_runs_total").await < runs + 2.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("upkeep runs");
    assert_eq!(metric(stitcher, "flowscope_lake_upkeep_failures_total").await, 0.0);
}

/// What one process makes of the same traffic.
async fn one_process() -> String {
    let server = TestServer::start_with(|c| c.stitch.quiet_period = Duration::from_millis(200)).await;
    for (signal, body) in recorded_requests() {
        assert_eq!(server.post_protobuf(&format!("/v1/{signal}"), body).await, 200);
    }
    server.stitched().await;
    let (db, _dir) = server.stop().await;
    flow_tables(&db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_spread_over_receivers_make_the_flows_of_one_process() {
    let expected = one_process().await;
    assert!(expected.lines().filter(|l| l.starts_with("flow|")).count() > 20, "the fixtures make flows");

    let lake = Lake::start();
    let stitcher = node(&lake, STITCHER).await;
    assert!(stitcher.running().otlp_http.is_none(), "a node without the receiver role takes no OTLP");
    let receivers = three_receivers(&lake).await;
    let requests = recorded_requests();
    let spans_sent: usize = requests
        .iter()
        .filter(|(s, _)| s == "traces")
        .map(|(_, b)| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
        .map(|r| r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>())
        .sum();
    for (signal, body) in &requests {
        send_spread(&receivers, signal, body).await;
    }
    // Acknowledged means in the lake: every span is there before anything is stitched.
    assert_eq!(receivers[0].count("SELECT count(*) FROM lake.spans").await, spans_sent as i64);
    assert_eq!(receivers[0].count("SELECT count(*) FROM spans").await, 0, "a receiver keeps nothing locally");

    caught_up(&stitcher).await;
    for r in receivers {
        r.stop().await;
    }
    let (db, _dir) = stitcher.stop().await;
    let cluster = flow_tables(&db);
    assert!(cluster == expected, "cluster against one process:\n{}", differences(&expected, &cluster));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_stitcher_takes_over_and_makes_the_same_flows() {
    let expected = one_process().await;
    let lake = Lake::start();
    let first = node(&lake, STITCHER).await;
    let receivers = three_receivers(&lake).await;
    let requests = recorded_requests();
    let half = requests.len() / 2;
    for (signal, body) in &requests[..half] {
        send_spread(&receivers, signal, body).await;
    }
    caught_up(&first).await;
    let standby = node(&lake, STITCHER).await;
    let query = node(&lake, QUERY).await;
    // The standby and the query node follow the lake: their flows are made before any
    // takeover, and are the active stitcher's.
    caught_up(&standby).await;
    caught_up(&query).await;
    let active_flows = first.get_json("/api/flows?from=0&to=9000000000000000000&limit=500").await;
    assert!(active_flows["flows"].as_array().is_some_and(|f| !f.is_empty()), "{active_flows}");
    assert_eq!(
        query.get_json("/api/flows?from=0&to=9000000000000000000&limit=500").await,
        active_flows,
        "the query node serves the same flows"
    );
    assert!(metrics(&first).await.contains("\nflowscope_stitcher_leader 1\n"));
    assert!(metrics(&standby).await.contains("\nflowscope_stitcher_leader 0\n"));
    assert!(metrics(&query).await.contains("\nflowscope_stitcher_leader 0\n"));
    assert!(metrics(&query).await.contains("\nflowscope_cluster_role{role=\"query\"} 1\n"));
    assert_eq!(get(&standby, "/readyz").await, "ready (stitcher, standby stitcher)\n");
    assert_eq!(get(&query, "/readyz").await, "ready (query)\n");
    assert_eq!(get(&receivers[0], "/readyz").await, "ready (receiver)\n");

    // The leader goes; the standby takes the lock within seconds and pulls everything.
    first.stop().await;
    for (signal, body) in &requests[half..] {
        send_spread(&receivers, signal, body).await;
    }
    let started = std::time::Instant::now();
    caught_up(&standby).await;
    assert!(started.elapsed() < Duration::from_secs(30), "the standby took over in {:?}", started.elapsed());
    for r in receivers {
        r.stop().await;
    }
    caught_up(&query).await;
    let (db, _dir) = standby.stop().await;
    let cluster = flow_tables(&db);
    assert!(cluster == expected, "standby's flows against one process:\n{}", differences(&expected, &cluster));
    let (db, _dir) = query.stop().await;
    let queried = flow_tables(&db);
    assert!(queried == expected, "the query node's flows against one process:\n{}", differences(&expected, &queried));
}

/// A cluster node in a process of its own.
fn spawn_node(lake: &Lake, dir: &std::path::Path, name: &str, role: &str) -> Node {
    let args: Vec<String> = [
        "--lake",
        &lake.catalog(),
        "--lake-data",
        &lake.data.path().display().to_string(),
        "--lake-extensions",
        &lake_extensions().display().to_string(),
        "--lake-commit-every",
        "20ms",
        "--settle-after",
        "200ms",
        "--role",
        role,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Node::spawn(&dir.join(format!("{name}.duckdb")), &args, role == "receiver")
}

/// Sends a request spread over the receiver processes, as [`send_spread`] does.
async fn send_spread_to(receivers: &[&Node], signal: &str, body: &[u8]) {
    let parts: Vec<(usize, Vec<u8>)> = match signal {
        "traces" => ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
            .into_iter()
            .enumerate()
            .map(|(i, part)| (i % 2, ExportTraceServiceRequest { resource_spans: vec![part] }.encode_to_vec()))
            .collect(),
        _ => vec![(2, body.to_vec())],
    };
    for (to, part) in parts {
        let url = receivers[to].otlp_url(&format!("/v1/{signal}"));
        assert_eq!(post_protobuf_to(&url, part).await, 200);
    }
}

/// Waits until the node has copied lake snapshot `latest` and stitched all it copied.
async fn metrics_caught_up(node: &Node, latest: i64) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let pulled = node.metric("flowscope_lake_snapshot_pulled").await.unwrap_or(-1.0);
            let committed = node.metric("flowscope_last_commit_seq").await.unwrap_or(f64::MAX);
            let stitched = node.metric("flowscope_stitched_commit_seq").await.unwrap_or(-1.0);
            if pulled >= latest as f64 && stitched >= committed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the node copies every snapshot and stitches it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_active_stitcher_and_of_a_receiver_loses_nothing() {
    let expected = one_process().await;
    let lake = Lake::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let active = spawn_node(&lake, dir, "stitcher-a", "stitcher");
    let standby = spawn_node(&lake, dir, "stitcher-b", "stitcher");
    let r1 = spawn_node(&lake, dir, "receiver-1", "receiver");
    let r2 = spawn_node(&lake, dir, "receiver-2", "receiver");
    let doomed = spawn_node(&lake, dir, "receiver-3", "receiver");
    let query = spawn_node(&lake, dir, "query", "query");
    // In this process: the test's window on the lake.
    let observer = node(&lake, RECEIVER).await;
    let requests = recorded_requests();
    let (third, two_thirds) = (requests.len() / 3, requests.len() * 2 / 3);

    for (signal, body) in &requests[..third] {
        send_spread_to(&[&r1, &r2, &doomed], signal, body).await;
    }
    // A receiver killed right after acknowledging: what it acknowledged is in the lake.
    doomed.kill();
    let r3 = spawn_node(&lake, dir, "receiver-3b", "receiver");
    let (leader, other) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if active.metric("flowscope_stitcher_leader").await == Some(1.0) {
                return (active, standby);
            }
            if standby.metric("flowscope_stitcher_leader").await == Some(1.0) {
                return (standby, active);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("one of the two stitchers is elected");
    assert!(leader.metric("flowscope_lake_pulls_total").await.unwrap() > 0.0, "the active stitcher has been copying");
    for (signal, body) in &requests[third..two_thirds] {
        send_spread_to(&[&r1, &r2, &r3], signal, body).await;
    }
    // The active stitcher dies in the middle of the stream; the standby takes over.
    leader.kill();
    for (signal, body) in &requests[two_thirds..] {
        send_spread_to(&[&r1, &r2, &r3], signal, body).await;
    }
    let latest = observer.count("SELECT id FROM lake.current_snapshot()").await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), async {
        while other.metric("flowscope_stitcher_leader").await != Some(1.0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the standby takes over within seconds");
    let took_over = started.elapsed();
    assert_eq!(other.metric("flowscope_lake_pull_failures_total").await, Some(0.0));
    metrics_caught_up(&other, latest).await;
    metrics_caught_up(&query, latest).await;
    let (db, query_db) = (other.db.clone(), query.db.clone());
    for node in [r1, r2, r3, other, query] {
        node.stop();
    }
    let cluster = flow_tables(&db);
    assert!(cluster == expected, "after kill -9, against one process:\n{}", differences(&expected, &cluster));
    let queried = flow_tables(&query_db);
    assert!(queried == expected, "the query node's flows against one process:\n{}", differences(&expected, &queried));
    assert!(took_over < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upkeep_keeps_the_lake_small_while_receivers_append_and_a_new_stitcher_copies_it_whole() {
    let expected = one_process().await;
    let lake = Lake::start();
    let first = node_with(&lake, STITCHER, |c| upkeep_every(c, Duration::from_millis(200))).await;
    let receivers = three_receivers(&lake).await;
    for (signal, body) in &recorded_requests() {
        send_spread(&receivers, signal, body).await;
    }
    caught_up(&first).await;
    let mut commits = 0.0;
    for r in &receivers {
        commits += metric(r, "flowscope_commit_duration_seconds_count").await;
    }
    // Upkeep ran while the receivers appended; once more after the last copy, and the
    // snapshots before it are gone.
    upkeep_runs_twice_more(&first).await;
    let kept = receivers[0].count("SELECT count(*) FROM lake.snapshots()").await;
    assert!(commits > 100.0 && kept <= 5, "{commits} commits, {kept} snapshots kept");
    assert!(metric(&first, "flowscope_lake_snapshots_expired_total").await >= commits - 5.0);
    let parquet = files_under(lake.data.path());
    let listed = receivers[0].count("SELECT count(*) FROM ducklake_list_files('lake', 'spans')").await;
    assert!(parquet <= 20, "{parquet} data files left ({listed} of spans)");

    // A stitcher on an empty file, once the history is expired, copies the lake whole.
    let second = node(&lake, STITCHER).await;
    first.stop().await;
    caught_up(&second).await;
    for r in receivers {
        r.stop().await;
    }
    let (db, _dir) = second.stop().await;
    let cluster = flow_tables(&db);
    assert!(
        cluster == expected,
        "a stitcher copying the lake whole, against one process:\n{}",
        differences(&expected, &cluster)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lake_retention_deletes_old_rows_while_receivers_append() {
    let lake = Lake::start();
    let retention = Duration::from_secs(2);
    let stitcher = node_with(&lake, STITCHER, |c| {
        upkeep_every(c, Duration::from_millis(300));
        c.retention = retention;
        c.retention_sweep_every = Duration::from_millis(300);
    })
    .await;
    let receivers = three_receivers(&lake).await;
    let requests = recorded_requests();
    // Receivers append for a while; every request is accepted although retention deletes
    // from the same tables meanwhile (without the gate, DuckLake refuses such a DELETE).
    let appending = std::time::Instant::now();
    let mut sent = 0;
    while appending.elapsed() < Duration::from_secs(8) {
        for (signal, body) in &requests {
            send_spread(&receivers, signal, body).await;
        }
        sent += 1;
    }
    assert!(metric(&stitcher, "flowscope_lake_rows_expired_total").await > 0.0, "retention ran while appending");
    // Once the last rows are older than the retention age, the lake's raw tables empty.
    tokio::time::timeout(Duration::from_secs(60), async {
        while receivers[0].count("SELECT count(*) FROM lake.spans").await
            + receivers[0].count("SELECT count(*) FROM lake.logs").await
            > 0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("retention empties the lake's raw tables");
    upkeep_runs_twice_more(&stitcher).await;
    let mut commits = 0.0;
    for r in &receivers {
        assert_eq!(metric(r, "flowscope_failed_commits_total").await, 0.0);
        commits += metric(r, "flowscope_commit_duration_seconds_count").await;
    }
    let parquet = files_under(lake.data.path());
    assert!(commits > 100.0 && parquet <= 20, "{sent} rounds, {commits} commits, {parquet} data files left");
}
