//! Hostile and careless input against a real server on loopback with a real DuckDB file:
//! after each, the server is alive, a normal producer/consumer pair sent afterwards becomes
//! one flow, pages answer, and every stored row is still there.

mod common;

use std::time::Duration;

use common::*;
use flowscope::alerts::notify::WebhookConfig;

use prost::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A producer in one trace and its consumer in another, joined by a link: one flow.
fn producer_consumer_pair(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let mut send = span(seed, 1, "orders send");
    send.kind = 4;
    send.attributes = vec![kv("messaging.system", "kafka"), kv("messaging.destination.name", "orders")];
    let mut process = span(seed.wrapping_add(100), 2, "orders process");
    process.kind = 5;
    process.attributes = vec![
        kv("messaging.system", "kafka"),
        kv("messaging.operation.type", "process"),
        kv("messaging.destination.name", "orders"),
    ];
    process.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
        trace_id: send.trace_id.clone(),
        span_id: send.span_id.clone(),
        ..Default::default()
    }];
    (traces("api", vec![send]).encode_to_vec(), traces("worker", vec![process]).encode_to_vec())
}

/// Every server here runs with this `--memory-limit`; the whole test process (server and
/// client) must stay within 1.5 times it ([`RSS_LIMIT`]), whatever the input.
const MEMORY_LIMIT: u64 = 512 << 20;
const RSS_LIMIT: u64 = MEMORY_LIMIT / 2 * 3;

/// These tests run one at a time, so that each one's peak memory is its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server with [`MEMORY_LIMIT`], the only one of these tests running; the peak RSS is
/// measured from its start.
struct Hardened {
    server: TestServer,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for Hardened {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Hardened {
    async fn stop(self) -> (std::path::PathBuf, tempfile::TempDir) {
        self.server.stop().await
    }
}

async fn hardened(tweak: impl FnOnce(&mut flowscope::config::Config)) -> Hardened {
    hardened_in(tempfile::tempdir().unwrap(), tweak).await
}

async fn hardened_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut flowscope::config::Config)) -> Hardened {
    let turn = ONE_AT_A_TIME.lock().await;
    // Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak RSS can be reset");
    let server = TestServer::start_with_args(dir, |a| a.memory_limit = Some(MEMORY_LIMIT), tweak).await;
    Hardened { server, _turn: turn }
}

/// The server still stitches: a fresh pair becomes one flow of two traces, pages answer,
/// and the process's peak memory stayed within [`RSS_LIMIT`].
async fn still_healthy(server: &TestServer, seed: u8) {
    let (p, c) = producer_consumer_pair(seed);
    assert_eq!(server.post_protobuf("/v1/traces", p).await, 200);
    assert_eq!(server.post_protobuf("/v1/traces", c).await, 200);
    tokio::time::timeout(Duration::from_secs(20), server.running().wait_stitched()).await.expect("stitching goes on");
    let flow: Value =
        reqwest::get(server.ui_url(&format!("/api/flows/{}", trace_hex(seed)))).await.unwrap().json().await.unwrap();
    assert_eq!(flow["trace_ids"].as_array().map(|t| t.len()), Some(2), "{flow}");
    for page in ["/", "/queues", "/retries", "/dead-letters", "/alerts"] {
        assert_eq!(reqwest::get(server.ui_url(page)).await.unwrap().status(), 200, "{page}");
    }
    let peak = peak_rss();
    assert!(peak <= RSS_LIMIT, "peak RSS {} MiB, over 1.5 x --memory-limit", peak >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_cycles_neither_hang_nor_stop_stitching() {
    let server = hardened(|_| {}).await;
    // A span that is its own parent, sent to a dead-letter queue; two spans that are each
    // other's parent.
    let mut own = span(1, 1, "orders.DLT send");
    own.kind = 4;
    own.parent_span_id = own.span_id.clone();
    own.attributes = vec![kv("messaging.system", "kafka"), kv("messaging.destination.name", "orders.DLT")];
    own.status = Some(opentelemetry_proto::tonic::trace::v1::Status { code: 2, message: "boom".into() });
    let mut a = span(2, 1, "a");
    let mut b = span(2, 2, "b");
    a.parent_span_id = b.span_id.clone();
    b.parent_span_id = a.span_id.clone();
    assert_eq!(server.post_protobuf("/v1/traces", traces("svc", vec![own, a, b]).encode_to_vec()).await, 200);
    still_healthy(&server, 10).await;
    // The looped spans are stored and shown.
    let flow: Value =
        reqwest::get(server.ui_url(&format!("/api/flows/{}", trace_hex(2)))).await.unwrap().json().await.unwrap();
    assert_eq!(flow["spans"].as_array().unwrap().len(), 2, "{flow}");
    assert_eq!(server.count("SELECT count(*) FROM spans").await, 5);
    // And shutdown does not hang on them.
    tokio::time::timeout(Duration::from_secs(30), server.stop()).await.expect("shutdown finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_ranges_and_parameters_get_400_with_a_message() {
    let server = hardened(|_| {}).await;
    let s = 1_700_000_000_000_000_000i64;
    for path in [
        format!("/chains/x?from={s}&to={}", s + 256),
        format!("/queues?from={s}&to={}", s + 256),
        format!("/api/queues?from={}&to={s}", s + 1),
        format!("/api/chains?from={s}&to={s}"),
        "/api/retries?from=-9000000000000000000&to=9000000000000000000&bucket=1".to_string(),
        format!("/api/retries?from={s}&to={}&bucket=1", s + 3_600_000_000_000),
    ] {
        let resp = tokio::time::timeout(Duration::from_secs(10), reqwest::get(server.ui_url(&path)))
            .await
            .expect("answered at once")
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert!(!resp.text().await.unwrap().is_empty(), "{path}: a message");
    }
    let client = reqwest::Client::new();
    for (seconds, field) in
        [(json!(1e19), "params.seconds"), (json!(1e20), "params.seconds"), (json!(1e308), "params.seconds")]
    {
        let rule = json!({"name": "stalled", "kind": "consumer_stalled", "scope": "*", "params": {"seconds": seconds}});
        let resp = client.post(server.ui_url("/api/alert-rules")).json(&rule).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{seconds}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(field), "{body}");
    }
    still_healthy(&server, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_still_served() {
    let server = hardened(|c| c.listen.header_read = Duration::from_millis(500)).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        for addr in [server.running().ui, server.running().otlp_http.unwrap()] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
            slow.push(s);
        }
        // gRPC: silent, and stuck in the HTTP/2 connection preface.
        slow.push(tokio::net::TcpStream::connect(server.running().otlp_grpc.unwrap()).await.unwrap());
        let mut s = tokio::net::TcpStream::connect(server.running().otlp_grpc.unwrap()).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        slow.push(s);
    }
    still_healthy(&server, 12).await;
    // Every connection that never finished its headers is closed by the server.
    for mut s in slow {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the server closes a connection stuck in its headers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_names_get_421_and_webhook_secrets_stay_hidden() {
    let server = hardened(|c| {
        c.allowed_hosts = vec!["flowscope.internal".into()];
        c.alerts.webhooks = vec![WebhookConfig {
            url: "https://hooks.example.com/services/T0/B0/s3cr3t-t0ken".into(),
            bearer_token: None,
            timeout_seconds: 1.0,
            name: None,
        }];
    })
    .await;
    let client = reqwest::Client::new();
    let get = |host: &'static str| client.get(server.ui_url("/api/chains")).header("host", host).send();
    assert_eq!(get("rebound.attacker.example").await.unwrap().status(), 421);
    assert_eq!(get("flowscope.internal:8080").await.unwrap().status(), 200);
    assert_eq!(get("localhost:8080").await.unwrap().status(), 200);
    let page = reqwest::get(server.ui_url("/alerts")).await.unwrap().text().await.unwrap();
    assert!(page.contains("https://hooks.example.com/services/…"), "the receiver is shown, redacted");
    assert!(!page.contains("s3cr3t"), "no secret on the page");
    still_healthy(&server, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_resource_attribute_is_stored_once_per_request_not_per_span() {
    let server = hardened(|_| {}).await;
    let big = "x".repeat(64 * 1024);
    for request in 0..6u8 {
        let spans: Vec<_> = (0..12_000u32)
            .map(|i| {
                let mut s = span(request.wrapping_add(50), 0, "tiny");
                s.span_id = [&i.to_be_bytes()[..], &[request, 1, 1, 1]].concat();
                s.attributes.clear();
                s
            })
            .collect();
        let mut req = traces("bloat", spans);
        req.resource_spans[0].resource.as_mut().unwrap().attributes.push(kv("huge", &big));
        let status = server.post_protobuf("/v1/traces", req.encode_to_vec()).await;
        assert_eq!(status, 200, "request {request}");
    }
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE service_name = 'bloat'").await, 72_000);
    // The 64 KiB attribute is stored six times (once per request), not 72,000 times.
    assert_eq!(server.count("SELECT count(*) FROM resources WHERE length(attributes) > 65536").await, 6);
    still_healthy(&server, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_link_chains_and_giant_flows_stay_bounded() {
    let server = hardened(|c| {
        c.stitch.key_trace_limit = 5; // links may gather 50 traces into one flow
        c.stitch.max_flow_spans = 20;
    })
    .await;
    // 120 traces (seeds 120..240, clear of the pairs `still_healthy` sends), each linking
    // to the one before.
    let mut chain = Vec::new();
    for n in 0..120u8 {
        let mut s = span(n + 120, 0, "hop");
        if n > 0 {
            s.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
                trace_id: trace_id(n + 119),
                span_id: vec![n + 119, 0, 1, 1, 1, 1, 1, 1],
                ..Default::default()
            }];
        }
        chain.push(s);
    }
    assert_eq!(server.post_protobuf("/v1/traces", traces("linker", chain).encode_to_vec()).await, 200);
    // One trace of 60 spans: past the flow span cap.
    let wide: Vec<_> = (0..60u8).map(|i| span(250, i, "wide")).collect();
    assert_eq!(server.post_protobuf("/v1/traces", traces("wide", wide).encode_to_vec()).await, 200);
    still_healthy(&server, 15).await;

    let most_traces = server.count("SELECT max(trace_count) FROM flows WHERE root_service = 'linker'").await;
    assert!(most_traces <= 50, "a flow gathered {most_traces} traces through links");
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE service_name = 'linker'").await, 120, "every span kept");
    let flow: Value =
        reqwest::get(server.ui_url(&format!("/api/flows/{}", trace_hex(250)))).await.unwrap().json().await.unwrap();
    assert_eq!(flow["truncated"], true);
    assert_eq!(flow["spans"].as_array().unwrap().len(), 20);
    assert_eq!(server.count("SELECT count(*) FROM flows WHERE truncated AND root_service = 'wide'").await, 1);
    let page = reqwest::get(server.ui_url(&format!("/flows/{}", trace_hex(250)))).await.unwrap().text().await.unwrap();
    assert!(page.contains("truncated"), "the flow page says so");
}

/// The largest the process's resident memory has been, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_name_shared_by_many_rows_is_cut_once_per_row_not_copied_whole() {
    let server = hardened(|_| {}).await;
    let huge = "s".repeat(64 << 10);
    // 12,000 small spans on one resource whose service.name is 64 KiB: ~700 KB on the wire.
    let spans: Vec<_> = (0..12_000u32)
        .map(|i| {
            let mut s = span(30, 1, &format!("op{}", i % 7));
            s.span_id = (u64::from(i) + 1).to_be_bytes().to_vec();
            if i == 0 {
                s.name = huge.clone();
            }
            s
        })
        .collect();
    let before = peak_rss();
    assert_eq!(server.post_protobuf("/v1/traces", traces(&huge, spans).encode_to_vec()).await, 200);
    // Metric points sharing a 64 KiB metric name, unit and queue name.
    let mut metrics = gauge(&huge, &huge, &[1.0; 2_000]);
    for m in metrics.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics) {
        m.unit = huge.clone();
    }
    assert_eq!(server.post_protobuf("/v1/metrics", metrics.encode_to_vec()).await, 200);
    still_healthy(&server, 31).await;
    assert_eq!(
        server.count("SELECT count(*) FROM spans WHERE strlen(service_name) > 1024 OR strlen(name) > 1024").await,
        0
    );
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE service_name LIKE 'sss%…'").await, 12_000);
    assert_eq!(
        server
            .count("SELECT count(*) FROM metric_points WHERE strlen(metric_name) > 1024 OR strlen(unit) > 1024")
            .await,
        0
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "the request grew the peak RSS by {} MB", grown >> 20);
}

/// An OTLP/HTTP connection that has sent a request's headers, declaring `length` bytes of
/// body, and none of the body.
async fn export_headers_only(server: &TestServer, length: u64) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(server.running().otlp_http.unwrap()).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = hardened(|_| {}).await;
    let mut s = export_headers_only(&server, 1000000000000000).await;
    // Not one byte of the body is sent: the answer comes anyway, at once.
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer)).await.expect("answered at once").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    still_healthy(&server, 40).await;
}

async fn stitching_state(server: &TestServer) -> Value {
    reqwest::get(server.ui_url("/api/stitching")).await.unwrap().json().await.unwrap()
}

/// Whether the pair sent with `seed` was stitched into one flow of two traces.
async fn pair_is_one_flow(server: &TestServer, seed: u8) -> bool {
    let (p, c) = producer_consumer_pair(seed);
    assert_eq!(server.post_protobuf("/v1/traces", p).await, 200);
    assert_eq!(server.post_protobuf("/v1/traces", c).await, 200);
    tokio::time::timeout(Duration::from_secs(30), server.running().wait_stitched()).await.expect("stitching goes on");
    let flow = trace_hex(seed);
    server.count(format!("SELECT count(*) FROM flow_traces WHERE flow_id = '{flow}'::UUID")).await == 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_stitching_every_time_is_set_aside_and_stitching_goes_on() {
    // A file in which writing a flow with a dead letter fails: its table is gone.
    let (_, dir) = hardened(|_| {}).await.stop().await;
    duckdb::Connection::open(dir.path().join("data/flowscope.duckdb"))
        .unwrap()
        .execute_batch("DROP TABLE flow_dead_letters")
        .unwrap();
    let server = hardened_in(dir, |_| {}).await;
    let mut dead = span(50, 1, "orders.DLT send");
    dead.kind = 4;
    dead.attributes = vec![kv("messaging.system", "kafka"), kv("messaging.destination.name", "orders.DLT")];
    assert_eq!(server.post_protobuf("/v1/traces", traces("api", vec![dead]).encode_to_vec()).await, 200);
    let set_aside = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let state = stitching_state(&server).await;
            if state["set_aside_total"].as_u64() == Some(1) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the failing commit is set aside");
    let commit = &set_aside["set_aside_commits"][0];
    assert!(commit["reason"].as_str().unwrap().contains("flow_dead_letters"), "{commit}");
    let metrics = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("flowscope_stitch_commits_set_aside_total 1"), "{metrics}");
    // The commit's span is still stored; later commits are stitched.
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'orders.DLT send'").await, 1);
    assert!(pair_is_one_flow(&server, 51).await);
    // And after a restart: no attempt at the commit again, stitching goes on, the record stays.
    let (_, dir) = server.stop().await;
    let server = hardened_in(dir, |_| {}).await;
    assert!(pair_is_one_flow(&server, 52).await);
    let state = stitching_state(&server).await;
    assert_eq!(state["set_aside_total"], 1, "{state}");
    assert_eq!(state["set_aside_commits"][0]["commit_seq"], commit["commit_seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_at_once_are_admitted_by_bytes_before_they_are_decoded() {
    // A write queue, and so a decode budget, of 8 MiB; bodies of about 3 MiB each.
    let server = hardened(|c| c.writer.queue_capacity_bytes = 8 << 20).await;
    let body = |seed: u8| {
        let spans: Vec<_> = (0..6_000u32)
            .map(|i| {
                let mut s = span(seed, 1, "op");
                s.span_id = (u64::from(i) + 1).to_be_bytes().to_vec();
                s.attributes = vec![kv("payload", &"x".repeat(400))];
                s
            })
            .collect();
        traces("bulk", spans).encode_to_vec()
    };
    let bodies: Vec<Vec<u8>> = (0..16).map(|i| body(60 + i)).collect();
    assert!(bodies[0].len() > 2 << 20, "{} bytes", bodies[0].len());
    let statuses = futures::future::join_all(bodies.into_iter().map(|b| server.post_protobuf("/v1/traces", b))).await;
    let (ok, refused) =
        (statuses.iter().filter(|s| **s == 200).count(), statuses.iter().filter(|s| **s == 503).count());
    assert_eq!(ok + refused, 16, "every request is either taken or refused retryably: {statuses:?}");
    assert!(ok >= 1 && refused >= 1, "some decoded, the rest refused before decoding: {statuses:?}");
    // Nothing acknowledged is lost; nothing refused was stored.
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'op'").await, ok as i64 * 6_000);
    still_healthy(&server, 80).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_that_never_open_a_stream_are_closed() {
    let server = hardened(|c| c.listen.idle = Duration::from_millis(500)).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(server.running().otlp_grpc.unwrap()).await.unwrap();
        // The connection preface and an empty SETTINGS frame: a valid HTTP/2 client that
        // then opens no stream.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        idle.push(s);
    }
    for mut s in idle {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the server closes an HTTP/2 connection with no stream");
    }
    // A real exporter is still served over gRPC.
    let mut client =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            server.grpc_url(),
        )
        .await
        .unwrap();
    client.export(traces("api", vec![span(70, 1, "ping")])).await.unwrap();
    still_healthy(&server, 71).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_the_connections() {
    let server = hardened(|c| {
        c.listen.per_address = 4;
        c.listen.header_read = Duration::from_secs(3);
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(tokio::net::TcpStream::connect(server.running().ui).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The four past the share are closed at once; the four within it wait for their headers.
    let mut closed_at_once = 0;
    for s in &mut open {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut byte)).await {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 4);
    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_healthy(&server, 72).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_in_is_cut_off_by_its_minimum_rate() {
    let server = hardened(|c| c.listen.header_read = Duration::from_millis(500)).await;
    let mut s = export_headers_only(&server, 100000).await;
    // A byte every 200 ms: 100 KB would take 5.5 hours; at 64 KiB/s it has 0.5 s + 1.5 s.
    let started = std::time::Instant::now();
    let trickle = async {
        loop {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut answer = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut answer)).await {
                if n > 0 {
                    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"));
                }
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle).await.expect("cut off well before the request deadline");
    assert!(started.elapsed() >= Duration::from_secs(1), "not before its time");
    still_healthy(&server, 81).await;
}

/// `n` producer spans, each in its own trace and to its own destination `{prefix}{i}`, and
/// a queue-depth point for each.
async fn send_to_many_destinations(server: &TestServer, prefix: &str, n: u32) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let spans: Vec<_> = chunk
            .iter()
            .map(|i| {
                // 150 chains as well.
                let mut s = span(60, 1, &format!("send {}", i % 150));
                s.trace_id[4..8].copy_from_slice(&i.to_be_bytes());
                s.kind = 4;
                s.attributes =
                    vec![kv("messaging.system", "rabbitmq"), kv("messaging.destination.name", &format!("{prefix}{i}"))];
                ("api".to_string(), s)
            })
            .collect();
        assert_eq!(server.post_protobuf("/v1/traces", spans_request(&spans).encode_to_vec()).await, 200);
        let mut depth = gauge("rabbitmq", "messaging.queue.depth", &vec![3.0; chunk.len()]);
        let points = depth.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics);
        for m in points {
            if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) = &mut m.data {
                for (p, i) in g.data_points.iter_mut().zip(chunk) {
                    p.attributes = vec![kv("queue", &format!("{prefix}{i}"))];
                }
            }
        }
        assert_eq!(server.post_protobuf("/v1/metrics", depth.encode_to_vec()).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_destinations_leave_scrapes_pages_and_reads_bounded() {
    let limit = 50;
    let server = hardened(|c| {
        c.stitch.quiet_period = Duration::from_millis(200);
        c.metrics_series_limit = limit;
    })
    .await;
    send_to_many_destinations(&server, "queue-", 10_000).await;
    server.stitched().await;
    // Every published message is exported, the destinations past the limit as `other`.
    let text = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let resp = reqwest::get(server.ui_url("/metrics/flows")).await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 200, "{text}");
            if sum_of(&text, "flowscope_queue_published_total{") == 10_000.0 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("every message is exported");
    for family in ["flowscope_queue_published_total{", "flowscope_queue_depth{", "flowscope_queue_wait_seconds"] {
        let destinations: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| l.split("destination=\"").nth(1)?.split('"').next())
            .collect();
        assert!(destinations.len() <= limit + 1, "{family}: {} destinations", destinations.len());
    }
    let reported = "flowscope_queue_depth{destination=\"other\",system=\"\",source=\"metrics\"}";
    assert_eq!(sum_of(&text, reported), 3.0 * (10_000 - limit) as f64, "the broker-reported depth past the limit");
    // What is remembered of the names stays bounded by the limit too.
    assert!(server.count("SELECT count(*) FROM export_labels").await <= 2 * limit as i64);

    // The queue page lists 100 destinations a page, with links to the others.
    let first = reqwest::get(server.ui_url("/queues?last=1h")).await.unwrap().text().await.unwrap();
    assert_eq!(first.matches("<section class=\"card queue").count(), 100);
    assert!(first.contains("rel=\"next\"") && !first.contains("rel=\"prev\""));
    let beyond = reqwest::get(server.ui_url("/queues?last=1h&page=100000")).await.unwrap().text().await.unwrap();
    assert!(beyond.contains("rel=\"prev\"") && !beyond.contains("rel=\"next\""), "the last page");

    let chains = reqwest::get(server.ui_url("/?last=1h")).await.unwrap().text().await.unwrap();
    assert_eq!(chains.matches("class=\"chain\"").count(), 100);
    assert!(chains.contains("1–100 of 150") && chains.contains("rel=\"next\""));

    // Reads abandoned by their clients are interrupted, and a client flooding pages gets
    // 429s past its share while another is served.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(20)).build().unwrap();
    let abandoned = (0..20).map(|_| impatient.get(server.ui_url("/queues?last=1h")).send());
    for r in futures::future::join_all(abandoned).await {
        assert!(r.is_err() || r.unwrap().status() == 429, "every request was abandoned or refused");
    }
    let statuses: Vec<u16> = futures::future::join_all(
        (0..40).map(|_| async { reqwest::get(server.ui_url("/api/queues?last=1h")).await.unwrap().status().as_u16() }),
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    assert!(statuses.contains(&429), "one client past its share: {statuses:?}");
    let metrics = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
            // This scrape's own read of DuckDB's memory may be the one running.
            if sum_of(&text, "flowscope_store_reads_in_flight ") <= 1.0 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("abandoned reads end");
    assert!(sum_of(&metrics, "flowscope_store_reads_interrupted_total ") > 0.0, "{metrics}");
    still_healthy(&server, 61).await;
}

/// The sum of the values of the series whose line starts with `prefix`.
fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
}
