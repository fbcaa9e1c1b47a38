//! OTLP ingest end to end: real listeners on loopback, real clients, a real DuckDB file.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

const SPANS: &str = "SELECT count(*) FROM spans";

async fn post(url: &str, content_type: &str, body: Vec<u8>, gzip_it: bool) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).header("content-type", content_type);
    let body = if gzip_it {
        req = req.header("content-encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    req.body(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_of_all_signals_plain_and_gzip() {
    let server = TestServer::start().await;
    for (seed, compressed) in [(1u8, false), (2u8, true)] {
        let mut traces_client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
        let mut metrics_client = MetricsServiceClient::connect(server.grpc_url()).await.unwrap();
        let mut logs_client = LogsServiceClient::connect(server.grpc_url()).await.unwrap();
        if compressed {
            traces_client =
                traces_client.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
            metrics_client = metrics_client.send_compressed(CompressionEncoding::Gzip);
            logs_client = logs_client.send_compressed(CompressionEncoding::Gzip);
        }
        let spans = (0..3).map(|i| span(seed, i, "GET /orders")).collect();
        let resp = traces_client.export(traces("checkout", spans)).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
        let resp =
            metrics_client.export(gauge("broker", "messaging.queue.depth", &[1.0, 2.0])).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
        let resp = logs_client.export(logs("checkout", &["order placed"])).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
    }
    assert_eq!(server.count(SPANS).await, 6);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE service_name = 'checkout' AND kind = 'SERVER'").await, 6);
    assert_eq!(server.count("SELECT count(*) FROM metric_points WHERE destination = 'orders' AND value > 0").await, 4);
    assert_eq!(
        server.count("SELECT count(*) FROM logs WHERE correlation_id = 'corr-1' AND body = 'order placed'").await,
        2
    );
    let (db, _dir) = server.stop().await;
    // The file alone, opened like a user's duckdb client would, has everything.
    assert_eq!(count_in_file(&db, SPANS), 6);
    assert_eq!(count_in_file(&db, "SELECT count(*) FROM logs"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_of_all_signals_plain_and_gzip() {
    let server = TestServer::start().await;
    for (seed, gz) in [(3u8, false), (4u8, true)] {
        let body = traces("checkout", vec![span(seed, 0, "a"), span(seed, 1, "b")]).encode_to_vec();
        let resp = post(&server.http_url("/v1/traces"), "application/x-protobuf", body, gz).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
        let decoded = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
        assert_eq!(decoded.partial_success, None);
        let body = gauge("broker", "rabbitmq.message.current", &[5.0]).encode_to_vec();
        assert_eq!(post(&server.http_url("/v1/metrics"), "application/x-protobuf", body, gz).await.status(), 200);
        let body = logs("checkout", &["a", "b"]).encode_to_vec();
        assert_eq!(post(&server.http_url("/v1/logs"), "application/x-protobuf", body, gz).await.status(), 200);
    }
    assert_eq!(server.count(SPANS).await, 4);
    assert_eq!(
        server.count("SELECT count(*) FROM metric_points WHERE metric_name = 'rabbitmq.message.current'").await,
        2
    );
    assert_eq!(server.count("SELECT count(*) FROM logs").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_export_of_the_published_examples() {
    let server = TestServer::start().await;
    for (path, file) in [("/v1/traces", "trace.json"), ("/v1/metrics", "metrics.json"), ("/v1/logs", "logs.json")] {
        for gz in [false, true] {
            let body = std::fs::read(fixture(&format!("otlp-examples/{file}"))).unwrap();
            let resp = post(&server.http_url(path), "application/json", body, gz).await;
            assert_eq!(resp.status(), 200, "{file}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let json: serde_json::Value = resp.json().await.unwrap();
            assert!(json.get("partialSuccess").is_none(), "{file}: {json}");
        }
    }
    // Upper-case hex ids in the example are stored as lower-case hex.
    assert_eq!(
        server.count("SELECT count(*) FROM spans WHERE trace_id = '5b8efff798038103d269b633813fc60c' AND span_id = 'eee19b7ec3c1b174' AND parent_span_id = 'eee19b7ec3c1b173'").await,
        2
    );
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE start_unix_nano = 1544712660000000000").await, 2);
    // Counter, gauge and histogram: every point kept, histograms with their counts.
    assert!(server.count("SELECT count(*) FROM metric_points WHERE metric_type = 'histogram' AND count > 0 AND buckets IS NOT NULL").await >= 2);
    assert!(server.count("SELECT count(DISTINCT metric_type) FROM metric_points").await >= 3);
    assert!(server.count("SELECT count(*) FROM logs").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_accepts_int64_strings_and_lowercase_hex() {
    let server = TestServer::start().await;
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": "b7ad6b7169203331",
                "name": "GET /x",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000100000000",
                "attributes": [{"key": "retries", "value": {"intValue": "3"}}],
                "status": {"code": 2, "message": "boom"},
                "someFutureField": {"ignored": true}
            }]}]
        }]
    });
    let resp = post(&server.http_url("/v1/traces"), "application/json", body.to_string().into_bytes(), false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        server.count("SELECT count(*) FROM spans WHERE trace_id = '0af7651916cd43dd8448eb211c80319c' AND end_unix_nano - start_unix_nano = 100000000 AND status_code = 'ERROR' AND attributes = '{\"retries\":3}'").await,
        1
    );
}

/// Sends a bad request, checks the status, and checks nothing stored was touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_input_gets_the_documented_status_and_stored_rows_stay() {
    let server = TestServer::start_with(|c| c.max_request_bytes = 64 * 1024).await;
    let good = traces("checkout", (0..5).map(|i| span(7, i, "ok")).collect()).encode_to_vec();
    assert_eq!(post(&server.http_url("/v1/traces"), "application/x-protobuf", good, false).await.status(), 200);
    assert_eq!(server.count(SPANS).await, 5);

    let big = vec![b'x'; 70 * 1024];
    let mut bomb = vec![0u8; 1024 * 1024];
    bomb[0] = 1;
    let cases: Vec<(&str, &str, Vec<u8>, Option<&str>, u16, &str)> = vec![
        ("/v1/traces", "application/x-protobuf", vec![0xff, 0xff, 0xff, 0xff], None, 400, "cannot decode"),
        ("/v1/traces", "application/json", b"{\"resourceSpans\": [".to_vec(), None, 400, "cannot decode"),
        (
            "/v1/traces",
            "application/json",
            b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}".to_vec(),
            None,
            400,
            "cannot decode",
        ),
        ("/v1/logs", "application/x-protobuf", vec![0x0a, 0x05, 0x01], None, 400, "cannot decode"),
        ("/v1/metrics", "text/plain", b"hello".to_vec(), None, 415, "Content-Type"),
        ("/v1/traces", "application/x-protobuf", big, None, 413, "limit"),
        ("/v1/traces", "application/x-protobuf", b"not gzip at all".to_vec(), Some("gzip"), 400, "gzip"),
        ("/v1/traces", "application/x-protobuf", gzip(&bomb), Some("gzip"), 413, "decompressed"),
        ("/v1/traces", "application/x-protobuf", vec![], Some("br"), 415, "Content-Encoding"),
    ];
    for (path, ct, body, encoding, status, needle) in cases {
        let mut req = reqwest::Client::new().post(server.http_url(path)).header("content-type", ct);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let resp = req.body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} {ct} {needle}");
        let is_proto = resp.headers()["content-type"] == "application/x-protobuf";
        let bytes = resp.bytes().await.unwrap();
        let message = if is_proto {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["message"].as_str().unwrap().to_owned()
        };
        assert!(message.contains(needle), "{status}: {message:?} lacks {needle:?}");
    }
    assert_eq!(server.count(SPANS).await, 5, "stored spans untouched by bad requests");
    assert_eq!(server.count("SELECT count(*) FROM logs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_items_are_rejected_with_partial_success_and_the_rest_stored() {
    let server = TestServer::start().await;
    let mut bad_trace = span(8, 1, "bad");
    bad_trace.trace_id = vec![1; 15];
    let mut no_span_id = span(8, 2, "bad");
    no_span_id.span_id.clear();
    let body = traces("checkout", vec![span(8, 0, "good"), bad_trace, no_span_id, span(8, 3, "good")]).encode_to_vec();
    let resp = post(&server.http_url("/v1/traces"), "application/x-protobuf", body, false).await;
    assert_eq!(resp.status(), 200);
    let partial = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(partial.error_message.contains("trace_id must be 16 bytes"), "{}", partial.error_message);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'good'").await, 2);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'bad'").await, 0);

    // A metric whose data the JSON decoder could not read arrives without data: rejected.
    let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "mystery", "exoticHistogram": {"dataPoints": [{}]}},
        {"name": "queue.depth", "gauge": {"dataPoints": [{"timeUnixNano": "1700000000000000000", "asDouble": 4}]}}
    ]}]}]});
    let resp = post(&server.http_url("/v1/metrics"), "application/json", body.to_string().into_bytes(), false).await;
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    // int64 as a JSON number or string: OTLP/JSON readers accept both.
    let rejected = &json["partialSuccess"]["rejectedDataPoints"];
    assert!(rejected == 1 || rejected == "1", "{json}");
    assert!(json["partialSuccess"]["errorMessage"].as_str().unwrap().contains("mystery"));
    assert_eq!(
        server.count("SELECT count(*) FROM metric_points WHERE metric_name = 'queue.depth' AND value = 4").await,
        1
    );

    // The same over gRPC.
    let mut client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    let mut bad = span(8, 9, "bad");
    bad.parent_span_id = vec![1, 2, 3];
    let resp = client.export(traces("checkout", vec![bad, span(8, 10, "good")])).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'good'").await, 3);
}

/// A message whose field 1 (resource_spans) holds bytes that are no ResourceSpans.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    junk: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_gets_invalid_argument_and_stored_rows_stay() {
    let server = TestServer::start().await;
    let mut client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    client.export(traces("checkout", vec![span(10, 0, "ok")])).await.unwrap();

    let channel = tonic::transport::Channel::from_shared(server.grpc_url()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let codec = tonic_prost::ProstCodec::<Garbage, ExportTraceServiceResponse>::default();
    let status =
        grpc.unary(tonic::Request::new(Garbage { junk: vec![0xff, 0xff, 0xff] }), path, codec).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cannot decode"), "{}", status.message());
    assert_eq!(server.count(SPANS).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refuses_with_retryable_errors_and_keeps_every_acknowledged_span() {
    // A queue of a few KiB and a long flush interval: few requests fit at a time.
    let server = TestServer::start_with(|c| {
        c.writer.queue_capacity_bytes = 8 * 1024;
        c.writer.flush_interval = std::time::Duration::from_millis(300);
        c.writer.linger = std::time::Duration::from_millis(300);
    })
    .await;
    let client = reqwest::Client::new();
    let mut http_requests = Vec::new();
    for seed in 20u8..40 {
        let body = traces("load", vec![span(seed, 0, "x"), span(seed, 1, "x")]).encode_to_vec();
        let req =
            client.post(server.http_url("/v1/traces")).header("content-type", "application/x-protobuf").body(body);
        http_requests.push(async move { (seed, req.send().await.unwrap()) });
    }
    let mut grpc_requests = Vec::new();
    for seed in 40u8..60 {
        let url = server.grpc_url();
        grpc_requests.push(async move {
            let mut c = TraceServiceClient::connect(url).await.unwrap();
            (seed, c.export(traces("load", vec![span(seed, 0, "x"), span(seed, 1, "x")])).await)
        });
    }
    let (http_results, grpc_results) =
        tokio::join!(futures::future::join_all(http_requests), futures::future::join_all(grpc_requests));

    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for (seed, resp) in http_results {
        match resp.status().as_u16() {
            200 => acknowledged.push(seed),
            503 => {
                assert_eq!(resp.headers()["retry-after"], "1");
                refused.push(seed);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    for (seed, result) in grpc_results {
        match result {
            Ok(_) => acknowledged.push(seed),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                refused.push(seed);
            }
        }
    }
    assert!(!refused.is_empty(), "a 6-row queue must refuse some of 40 concurrent requests");
    assert!(!acknowledged.is_empty());
    let metrics = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
    let by_cause = format!("flowscope_refusals_total{{cause=\"write_queue_full\"}} {}\n", refused.len());
    assert!(metrics.contains(&by_cause), "every refusal was the full queue's: {metrics}");
    let (db, _dir) = server.stop().await;
    let conn = duckdb::Connection::open(&db).unwrap();
    for seed in acknowledged {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_hex(seed)], |r| r.get(0)).unwrap();
        assert_eq!(n, 2, "acknowledged request {seed} must be stored");
    }
    for seed in refused {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_hex(seed)], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "refused request {seed} must not be half-stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_held_back_while_flows_are_too_far_behind() {
    // The stitcher's first round runs at start; then it sleeps, so the lag it reports is
    // the test's to set.
    let server = TestServer::start_with(|c| {
        c.stitch.interval = std::time::Duration::from_secs(3600);
        c.writer.max_stitch_lag = Some(std::time::Duration::from_secs(30));
    })
    .await;
    server.running().wait_stitched().await;
    let stats = server.running().ingest.writer().stats().clone();
    let metrics = || async { reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap() };
    let body = |seed| traces("held", vec![span(seed, 0, "x")]).encode_to_vec();
    let client = reqwest::Client::new();
    let post = |seed| {
        client.post(server.http_url("/v1/traces")).header("content-type", "application/x-protobuf").body(body(seed))
    };

    stats.report_stitch_lag(std::time::Duration::from_secs(29));
    assert_eq!(post(1).send().await.unwrap().status().as_u16(), 200, "29 s behind is within the limit");

    stats.report_stitch_lag(std::time::Duration::from_secs(45));
    let refused = post(2).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = refused.text().await.unwrap();
    assert!(message.contains("flows are 45 s behind"), "{message}");
    let mut grpc = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    let status = grpc.export(traces("held", vec![span(3, 0, "x")])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let held_back = metrics().await;
    assert!(held_back.contains("flowscope_ingest_held_back 1"));
    assert!(held_back.contains("flowscope_refusals_total{cause=\"stitching_behind\"} 2\n"), "{held_back}");
    assert!(held_back.contains("flowscope_refusals_total{cause=\"write_queue_full\"} 0\n"), "{held_back}");
    // Metric points are not stitched: they are taken meanwhile.
    let mut metrics_client = MetricsServiceClient::connect(server.grpc_url()).await.unwrap();
    metrics_client.export(gauge("broker", "queue.depth", &[3.0])).await.expect("metrics are not held back");

    stats.report_stitch_lag(std::time::Duration::ZERO);
    assert_eq!(post(2).send().await.unwrap().status().as_u16(), 200, "caught up: the retry is taken");
    assert!(metrics().await.contains("flowscope_ingest_held_back 0"));
    let (db, _dir) = server.stop().await;
    let stored = |seed| {
        duckdb::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_hex(seed)], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!((stored(1), stored(2), stored(3)), (1, 1, 0), "refused requests store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_aio_pika_export_is_stored_with_normalised_messaging_columns() {
    let server = TestServer::start().await;
    replay_recorded(&server, "recorded/aio-pika-rpc").await;
    assert_eq!(server.count(SPANS).await, 40);
    assert_eq!(server.count("SELECT count(DISTINCT trace_id) FROM spans").await, 16);
    // ",pricing.requests" on sends and "pricing.requests" on receives name one queue.
    assert_eq!(server.count("SELECT count(DISTINCT kind) FROM spans WHERE destination = 'pricing.requests'").await, 2);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE destination LIKE ',%'").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE correlation_id IS NOT NULL").await, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_self_metrics() {
    let server = TestServer::start().await;
    let body = traces("checkout", vec![span(11, 0, "a")]).encode_to_vec();
    assert_eq!(post(&server.http_url("/v1/traces"), "application/x-protobuf", body, false).await.status(), 200);
    let get = |p: &str| reqwest::get(server.ui_url(p));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("flowscope_committed_items_total{signal=\"traces\"} 1"), "{metrics}");
    assert!(metrics.contains("flowscope_write_queue_bytes 0"));
    assert!(metrics.contains("flowscope_commit_duration_seconds_count 1"));
    for stage in ["writer", "stitcher", "alert evaluator"] {
        assert!(metrics.contains(&format!("flowscope_stage_up{{stage=\"{stage}\"}} 1")), "{stage}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_ingest_when_configured() {
    let server = TestServer::start_with(|c| c.auth_token = Some("s3cret".into())).await;
    let body = traces("checkout", vec![span(12, 0, "a")]).encode_to_vec();
    let client = reqwest::Client::new();
    let send = |token: Option<&str>| {
        let mut req = client
            .post(server.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(send(Some("s3cret")).await.unwrap().status(), 200);
    let mut grpc = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    let status = grpc.export(ExportTraceServiceRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(reqwest::get(server.ui_url("/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(server.ui_url("/metrics")).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_goes_by_received_time_and_flows_leave_with_their_spans() {
    let hour = std::time::Duration::from_secs(3600);
    let server = TestServer::start_with(|c| c.retention = hour).await;
    let sweep = || flowscope::store::retention::sweep(&server.running().store, hour);
    // Dated 1970 and next year, but received now: both are young.
    let mut ancient = span(30, 0, "ancient");
    ancient.start_time_unix_nano = 1_000;
    ancient.end_time_unix_nano = 2_000;
    let mut future = span(31, 0, "future");
    let year = 365 * 86_400 * 1_000_000_000u64;
    future.start_time_unix_nano += year;
    future.end_time_unix_nano += year;
    let body = traces("checkout", vec![ancient, future]).encode_to_vec();
    assert_eq!(post(&server.http_url("/v1/traces"), "application/x-protobuf", body, false).await.status(), 200);
    server.running().wait_stitched().await;
    sweep().await.unwrap();
    assert_eq!(server.count(SPANS).await, 2, "data received just now is kept, whatever its timestamps");
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 2);

    // Those two were received two hours ago; a third span arrives now.
    server
        .running()
        .store
        .read(|c| Ok(c.execute_batch("UPDATE commits SET committed_unix_nano = committed_unix_nano - 7200000000000")?))
        .await
        .unwrap();
    let body = traces("checkout", vec![span(32, 0, "recent")]).encode_to_vec();
    assert_eq!(post(&server.http_url("/v1/traces"), "application/x-protobuf", body, false).await.status(), 200);
    server.running().wait_stitched().await;
    assert!(sweep().await.unwrap() >= 4);
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE name = 'recent'").await, 1);
    assert_eq!(server.count(SPANS).await, 1);
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 1, "the old spans' flows left with them");
    assert_eq!(server.count("SELECT count(*) FROM flow_traces").await, 1);
}
