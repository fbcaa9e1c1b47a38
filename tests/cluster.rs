//! A cluster on a real PostgreSQL catalog and the real DuckLake extension: receivers
//! append what they take in to the lake, the elected stitcher copies it into its file and
//! stitches it there. The recorded traffic, each request's services spread over different
//! receivers (logs and metrics to a third), must make exactly the flows one process makes
//! of it, also when the active stitcher stops part-way and the standby takes over.

mod common;

use std::time::Duration;

use common::postgres::{lake_extensions, Postgres};
use common::*;
use flowscope::lake::{LakeConfig, Roles};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const FIXTURES: [&str; 4] =
    ["recorded/kafka-confluent", "recorded/sqs-boto3", "recorded/pika-dlx", "recorded/aio-pika-rpc"];

/// The fixtures' request bodies, in order, as (signal, body).
fn recorded_requests() -> Vec<(String, Vec<u8>)> {
    let mut requests = Vec::new();
    for fixture in FIXTURES {
        let mut files: Vec<_> = std::fs::read_dir(common::fixture(fixture))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pb"))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let signal = ["traces", "metrics", "logs"].into_iter().find(|s| name.ends_with(&format!("-v1-{s}.pb")));
            requests.push((signal.unwrap().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    requests
}

/// A node of the cluster on `pg`'s database `lake`, with `roles`.
async fn node(pg: &Postgres, data: &std::path::Path, roles: Roles) -> TestServer {
    let lake = LakeConfig {
        catalog: pg.conninfo("lake"),
        data_path: data.display().to_string(),
        extensions: lake_extensions(),
        commit_every: Duration::from_millis(20),
    };
    TestServer::start_with(move |c| {
        c.lake = Some(lake);
        c.roles = roles;
        c.stitch.quiet_period = Duration::from_millis(200);
    })
    .await
}

const RECEIVER: Roles = Roles { receiver: true, stitcher: false };
const STITCHER: Roles = Roles { receiver: false, stitcher: true };

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

    let pg = Postgres::start();
    pg.create_database("lake");
    let data = tempfile::tempdir().unwrap();
    let stitcher = node(&pg, data.path(), STITCHER).await;
    assert!(stitcher.running().otlp_http.is_none(), "a node without the receiver role takes no OTLP");
    let receivers = vec![
        node(&pg, data.path(), RECEIVER).await,
        node(&pg, data.path(), RECEIVER).await,
        node(&pg, data.path(), RECEIVER).await,
    ];
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
    let pg = Postgres::start();
    pg.create_database("lake");
    let data = tempfile::tempdir().unwrap();
    let first = node(&pg, data.path(), STITCHER).await;
    let receivers = vec![
        node(&pg, data.path(), RECEIVER).await,
        node(&pg, data.path(), RECEIVER).await,
        node(&pg, data.path(), RECEIVER).await,
    ];
    let requests = recorded_requests();
    let half = requests.len() / 2;
    for (signal, body) in &requests[..half] {
        send_spread(&receivers, signal, body).await;
    }
    caught_up(&first).await;
    let standby = node(&pg, data.path(), STITCHER).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pulled(&standby).await, -1, "only the elected stitcher pulls");
    assert!(metrics(&first).await.contains("\nflowscope_stitcher_leader 1\n"));
    assert!(metrics(&standby).await.contains("\nflowscope_stitcher_leader 0\n"));
    assert_eq!(get(&standby, "/readyz").await, "ready (stitcher, standby stitcher)\n");
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
    let (db, _dir) = standby.stop().await;
    let cluster = flow_tables(&db);
    assert!(cluster == expected, "standby's flows against one process:\n{}", differences(&expected, &cluster));
}
