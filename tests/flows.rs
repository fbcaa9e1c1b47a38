//! Flow stitching end to end: the demo's scenarios and recorded real traffic go over real
//! OTLP into a real server, and the JSON API must tell the generator's own truth.

mod common;

use std::time::Duration;

use common::*;
use flowscope::demo::scenarios::{self, Builder, Emission, Expected, Pending, MS};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;

const ALL_TIME: &str = "from=0&to=9000000000000000000";

async fn api(server: &TestServer, path: &str) -> (u16, Value) {
    let resp = reqwest::get(server.ui_url(path)).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn wait_stitched(server: &TestServer) {
    server.stitched().await
}

/// Sends the spans shuffled, one service's spans per request, alternating gRPC and HTTP,
/// so flows are assembled from late and out-of-order pieces.
async fn send_shuffled(server: &TestServer, emission: Emission, seed: u64) {
    let mut spans = emission.spans;
    spans.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut grpc = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    for (n, chunk) in spans.chunks(7).enumerate() {
        let request = spans_request(chunk);
        if n % 2 == 0 {
            grpc.export(request).await.unwrap();
        } else {
            assert_eq!(server.post_protobuf("/v1/traces", request.encode_to_vec()).await, 200);
        }
    }
    let (_, logs) = flowscope::demo::to_requests(Emission { spans: vec![], logs: emission.logs });
    assert_eq!(server.post_protobuf("/v1/logs", logs.encode_to_vec()).await, 200);
}

fn assert_flow(flow: &Value, want: &Expected) {
    assert_eq!(flow["flow_id"], want.flow_id.as_str());
    assert_eq!(flow["chain"], want.chain.as_str(), "{}", flow["flow_id"]);
    let hops: Vec<(String, f64)> = flow["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["producer_span_id"].is_null() && !h["consumer_span_ids"].as_array().unwrap().is_empty())
        .map(|h| (h["destination"].as_str().unwrap().to_owned(), h["queue_wait_ms"].as_f64().unwrap()))
        .collect();
    assert_eq!(hops.len(), want.hops.len(), "hops of {}: {hops:?} vs {:?}", want.chain, want.hops);
    for ((dest, wait), (want_dest, want_wait)) in hops.iter().zip(&want.hops) {
        assert_eq!(dest, want_dest);
        let want_ms = *want_wait as f64 / MS as f64;
        assert!((wait - want_ms).abs() <= 1.0, "{dest}: queue wait {wait} ms, generated {want_ms} ms");
    }
    assert_eq!(flow["retries"].as_u64().unwrap() as usize, want.retries, "retries of {}", want.chain);
    assert_eq!(flow["dead_lettered"].as_bool().unwrap(), want.dead_letters > 0, "dead letters of {}", want.chain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scenarios_become_one_flow_each_with_exact_hops_retries_and_dead_letters() {
    // The stitcher takes new rows from the writer's in-memory feed.
    check_demo_scenarios(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stitching_from_the_file_with_a_one_span_cache_gives_the_same_flows() {
    // No feed: every round reads its rows back from DuckDB; and every trace is evicted
    // after each round, so each late span reloads its flow from the file, found through
    // the sorted runs of join hashes as soon as one job has made them.
    check_demo_scenarios(
        TestServer::start_with(|c| {
            c.writer.feed_capacity_bytes = 0;
            c.stitch.cache_spans = 1;
            c.stitch.join_run_hashes = 1;
        })
        .await,
    )
    .await;
}

/// The demo's scenarios, once each (with their expected flows), two minutes ago: every
/// kind of join (trace id, links, message ids, correlation ids in spans and in logs).
fn demo_emission() -> (Emission, Vec<Expected>) {
    let mut rng = StdRng::seed_from_u64(42);
    let mut b = Builder::new(&mut rng);
    let t0 = flowscope::web::api::now_nanos() - 120_000 * MS;
    let mut expected = vec![
        scenarios::checkout(&mut b, t0, false),
        scenarios::checkout(&mut b, t0 + 10_000 * MS, true),
        scenarios::quote(&mut b, t0 + 20_000 * MS),
        scenarios::shipping(&mut b, t0 + 30_000 * MS),
        scenarios::fulfilment_retry(&mut b, t0 + 35_000 * MS),
    ];
    expected.extend(scenarios::analytics_batch(&mut b, t0 + 40_000 * MS, 4));
    expected.extend([
        scenarios::refund(&mut b, t0 + 50_000 * MS, scenarios::Delivery::Redelivered(2)),
        scenarios::refund(&mut b, t0 + 60_000 * MS, scenarios::Delivery::DeadLettered),
        scenarios::refund(&mut b, t0 + 70_000 * MS, scenarios::Delivery::Ok),
    ]);
    (std::mem::take(&mut b.out), expected)
}

async fn check_demo_scenarios(server: TestServer) {
    let (emission, expected) = demo_emission();
    let sent = emission.spans.clone();
    send_shuffled(&server, emission, 1).await;
    wait_stitched(&server).await;
    let server = check_demo_map(server, &sent, &expected).await;

    let (status, list) = api(&server, &format!("/api/flows?{ALL_TIME}&limit=100")).await;
    assert_eq!(status, 200);
    assert_eq!(list["flows"].as_array().unwrap().len(), expected.len(), "one flow per business operation: {list}");
    for want in &expected {
        let (status, flow) = api(&server, &format!("/api/flows/{}", want.flow_id)).await;
        assert_eq!(status, 200, "{}", want.chain);
        assert_flow(&flow, want);
        if let Some(corr) = &want.correlation_id {
            let (_, found) = api(&server, &format!("/api/search?q={corr}")).await;
            assert_eq!(found["flows"][0]["flow_id"], want.flow_id.as_str(), "search by correlation id {corr}");
        }
    }

    // The normal checkout: five services, both hops, the critical path ends in payments.
    let (_, checkout) = api(&server, &format!("/api/flows/{}", expected[0].flow_id)).await;
    let services: Vec<&str> = checkout["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(services, vec!["billing", "checkout", "inventory", "payments-worker"]);
    assert_eq!(checkout["trace_ids"].as_array().unwrap().len(), 2);
    assert!(checkout["spans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["critical"] == true && s["service"] == "payments-worker"));
    assert!(checkout["spans"].as_array().unwrap().iter().all(|s| s["critical"].is_boolean()));
    let split = checkout["queue_wait_ms"].as_f64().unwrap()
        + checkout["service_ms"].as_f64().unwrap()
        + checkout["retry_delay_ms"].as_f64().unwrap();
    assert!((split - checkout["duration_ms"].as_f64().unwrap()).abs() < 0.01);

    // Search by trace id of a consumer trace and by span id finds the same flow.
    let consumer_trace = checkout["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| *t != expected[0].flow_id.as_str())
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let (_, found) = api(&server, &format!("/api/search?q={consumer_trace}")).await;
    assert_eq!(found["flows"][0]["flow_id"], expected[0].flow_id.as_str());
    let (_, merged) = api(&server, &format!("/api/flows/{consumer_trace}")).await;
    assert_eq!(merged["flow_id"], expected[0].flow_id.as_str(), "any trace id of a flow opens the flow");

    let (_, dead) = api(&server, &format!("/api/dead-letters?{ALL_TIME}")).await;
    let mut dead = dead["dead_letters"].as_array().unwrap().clone();
    dead.sort_by_key(|d| d["destination"].as_str().unwrap().to_owned());
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["destination"], "orders.DLT");
    assert_eq!(dead[0]["source_destination"], "orders");
    assert_eq!(dead[0]["flow_id"], expected[1].flow_id.as_str());
    assert_eq!(dead[0]["error"], "invalid payment amount: -12.00");
    // Moved by the broker: no span published it; x-death names the queue.
    assert_eq!(dead[1]["destination"], "refunds.dead-letter");
    assert_eq!(dead[1]["source_destination"], "refunds.q");
    assert_eq!(dead[1]["flow_id"], expected[expected.len() - 2].flow_id.as_str());
    assert_eq!(dead[1]["error"], "refund exceeds the original payment");

    let (_, chains) = api(&server, &format!("/api/chains?{ALL_TIME}")).await;
    let checkout_chain =
        chains["chains"].as_array().unwrap().iter().find(|c| c["chain"] == "checkout POST /orders").unwrap().clone();
    assert_eq!(checkout_chain["count"], 2);
    assert_eq!(checkout_chain["retries"].as_u64().unwrap() as usize, expected[0].retries + expected[1].retries);
    assert_eq!(checkout_chain["dead_letters"], 1);
    let errors = expected[..2].iter().filter(|e| e.error).count() as f64;
    assert_eq!(checkout_chain["error_rate"].as_f64().unwrap(), errors / 2.0);
    assert!(checkout_chain["p99_ms"].as_f64().unwrap() >= checkout_chain["p50_ms"].as_f64().unwrap());

    let (_, retries) = api(&server, &format!("/api/retries?{ALL_TIME}&bucket=100000000000000000")).await;
    let cells = retries["cells"].as_array().unwrap();
    let billing = cells.iter().find(|c| c["row"] == "service:billing").unwrap();
    assert_eq!(billing["count"], 2);
    assert!(cells.iter().any(|c| c["row"] == "destination:orders" && c["count"] == 2));
    let psp_retries = cells
        .iter()
        .filter(|c| c["row"] == "service:payments-worker")
        .map(|c| c["count"].as_i64().unwrap())
        .sum::<i64>();
    assert_eq!(psp_retries as usize, expected[0].retries);
}

/// The p95 of durations (ns) as the map computes it: the ceil(0.95 n)-th smallest.
fn p95_ms(mut ns: Vec<i64>) -> f64 {
    ns.sort_unstable();
    let rank = ((ns.len() as f64 * 0.95).ceil() as usize).max(1);
    ns[rank - 1] as f64 / 1e6
}

/// Durations of the spans one service sent under one name.
fn durations(sent: &[(String, opentelemetry_proto::tonic::trace::v1::Span)], service: &str, name: &str) -> Vec<i64> {
    sent.iter()
        .filter(|(s, span)| s == service && span.name == name)
        .map(|(_, span)| (span.end_time_unix_nano - span.start_time_unix_nano) as i64)
        .collect()
}

fn map_edge<'a>(map: &'a Value, kind: &str, from: &str, to: &str) -> &'a Value {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["from"] == from && e["to"] == to)
        .unwrap_or_else(|| panic!("no {kind} edge {from} -> {to} in {map}"))
}

fn assert_close(got: f64, want: f64, what: &str) {
    // Latencies are counted in buckets eight to a doubling: within 4.5%.
    assert!((got - want).abs() <= want * 0.045 + 1e-9, "{what}: {got} vs {want} computed from the spans");
}

/// The map of the demo scenarios against figures computed by hand from the spans sent;
/// then the same map after a restart (the stitcher replays and rewrites every flow,
/// subtracting each flow's old cells). Returns the restarted server.
async fn check_demo_map(
    server: TestServer,
    sent: &[(String, opentelemetry_proto::tonic::trace::v1::Span)],
    expected: &[Expected],
) -> TestServer {
    let (status, map) = api(&server, &format!("/api/map?{ALL_TIME}")).await;
    assert_eq!(status, 200, "{map}");
    let nodes: Vec<&str> = map["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    for id in [
        "service:checkout",
        "service:inventory",
        "destination:orders",
        "service:billing",
        "destination:payments",
        "service:payments-worker",
        "destination:orders.DLT",
        "destination:refunds.q",
        "destination:refunds.dead-letter",
        "service:auditor",
        "destination:shipments",
    ] {
        assert!(nodes.contains(&id), "{id} is on the map: {nodes:?}");
    }
    let node = |id: &str| map["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    assert_eq!(node("destination:orders")["kind"], "destination");
    assert_eq!(node("destination:orders")["system"], "kafka");
    assert_eq!(node("service:checkout")["kind"], "service");
    assert_eq!(node("service:checkout")["flows_started"], 2);

    // The synchronous call: client span durations.
    let call = map_edge(&map, "call", "service:checkout", "service:inventory");
    assert_eq!(call["count"], 2);
    assert_close(
        call["p95_ms"].as_f64().unwrap(),
        p95_ms(durations(sent, "checkout", "inventory.Inventory/Reserve")),
        "call p95",
    );
    assert_eq!(call["error_share"], 0.0);
    // The publish: producer span durations.
    let publish = map_edge(&map, "publish", "service:checkout", "destination:orders");
    assert_eq!(publish["count"], 2);
    assert_close(
        publish["p95_ms"].as_f64().unwrap(),
        p95_ms(durations(sent, "checkout", "orders publish")),
        "publish p95",
    );
    // The consumption crosses traces (the consumer is linked): queue waits as generated,
    // the poison message's first delivery failed and it was retried twice.
    let consume = map_edge(&map, "consume", "destination:orders", "service:billing");
    assert_eq!(consume["count"], 2);
    let waits: Vec<i64> = expected[..2].iter().map(|e| e.hops.iter().find(|h| h.0 == "orders").unwrap().1).collect();
    assert_close(consume["p95_ms"].as_f64().unwrap(), p95_ms(waits), "queue wait p95");
    assert_eq!(consume["error_share"], 0.5);
    assert_eq!(consume["retries"], 2);
    // Dead letters: billing publishes the poison order to the DLT; the broker moves the
    // rejected refund from refunds.q to its dead-letter queue, where auditor reads it.
    assert_eq!(map_edge(&map, "publish", "service:billing", "destination:orders.DLT")["dead_letters"], 1);
    let moved = map_edge(&map, "publish", "destination:refunds.q", "destination:refunds.dead-letter");
    assert_eq!((moved["dead_letters"].as_i64(), moved["count"].as_i64()), (Some(1), Some(1)));
    assert_eq!(map_edge(&map, "consume", "destination:refunds.dead-letter", "service:auditor")["count"], 1);
    let refunds = map_edge(&map, "consume", "destination:refunds.q", "service:refunds");
    assert_eq!(refunds["count"], 3, "three refunds, each one delivery to the refunds service");
    assert_eq!(
        refunds["retries"].as_i64().unwrap() as usize,
        expected[expected.len() - 3..].iter().map(|e| e.retries).sum::<usize>()
    );

    // A rate is the count over the range (whole minutes from the one `from` falls in).
    let minute = 60_000_000_000i64;
    let from = (flowscope::web::api::now_nanos() - 10 * minute) / minute * minute;
    let to = from + 20 * minute;
    let (_, ranged) = api(&server, &format!("/api/map?from={from}&to={to}")).await;
    let ranged_call = map_edge(&ranged, "call", "service:checkout", "service:inventory");
    assert!((ranged_call["rate_per_s"].as_f64().unwrap() - 2.0 / 1200.0).abs() < 1e-9, "{ranged_call}");

    // One chain's map has only its own edges.
    let (_, chain_map) = api(&server, &format!("/api/map?{ALL_TIME}&chain=checkout%20POST%20%2Forders")).await;
    let chain_edges = chain_map["edges"].as_array().unwrap();
    assert!(chain_edges.iter().all(|e| !e["from"].as_str().unwrap().contains("refunds")), "{chain_map}");
    assert_eq!(map_edge(&chain_map, "consume", "destination:orders", "service:billing")["count"], 2);

    // The edge page lists the flows that crossed the edge, slowest first.
    let edge_page = reqwest::get(
        server
            .ui_url(&format!("/map/edge?kind=consume&source=destination%3Aorders&target=service%3Abilling&{ALL_TIME}")),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for e in &expected[..2] {
        assert!(edge_page.contains(&format!("/flows/{}", e.flow_id)), "the edge page lists {}", e.chain);
    }
    assert!(!edge_page.contains(&format!("/flows/{}", expected[expected.len() - 3].flow_id)), "and no refund");
    let bad = reqwest::get(server.ui_url("/map/edge?kind=entry&source=x&target=y")).await.unwrap();
    assert_eq!(bad.status(), 400);

    // After a restart the stitcher rewrites every flow: the sums must not move.
    let (_, dir) = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    wait_stitched(&server).await;
    let (_, again) = api(&server, &format!("/api/map?{ALL_TIME}")).await;
    assert_eq!(again, map, "the map after a restart");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_aio_pika_request_reply_is_eight_flows_of_five_spans() {
    let server = TestServer::start().await;
    replay_recorded(&server, "recorded/aio-pika-rpc").await;
    wait_stitched(&server).await;
    let (_, list) = api(&server, &format!("/api/flows?{ALL_TIME}")).await;
    let flows = list["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 8, "{list}");
    let mut errors = 0;
    for f in flows {
        assert_eq!(f["chain"], "quote-api GET /quote");
        assert_eq!(f["span_count"], 5);
        let (_, flow) = api(&server, &format!("/api/flows/{}", f["flow_id"].as_str().unwrap())).await;
        let hops = flow["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 2, "{}", flow["hops"]);
        assert_eq!(hops[0]["destination"], "pricing.requests");
        assert!(hops[1]["destination"].as_str().unwrap().starts_with("amq.gen-"));
        for h in hops {
            assert!(!h["producer_span_id"].is_null() && h["consumer_span_ids"].as_array().unwrap().len() == 1, "{h}");
        }
        if flow["error"] == true {
            errors += 1;
            let root_end = flow["spans"].as_array().unwrap().iter().find(|s| s["name"] == "GET /quote").unwrap()
                ["end_unix_nano"]
                .as_i64()
                .unwrap();
            assert!(
                hops[1]["received_unix_nano"].as_i64().unwrap() > root_end,
                "the late reply lands after the root ended"
            );
        }
    }
    assert_eq!(errors, 1);
    // The map: request and reply make a cycle (quote-api -> pricing.requests -> pricing ->
    // reply queue -> quote-api), drawn from where the flows enter.
    let (_, map) = api(&server, &format!("/api/map?{ALL_TIME}")).await;
    assert_eq!(map_edge(&map, "publish", "service:quote-api", "destination:pricing.requests")["count"], 8);
    assert_eq!(map_edge(&map, "consume", "destination:pricing.requests", "service:pricing")["count"], 8);
    let replies: i64 = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "consume" && e["to"] == "service:quote-api")
        .map(|e| e["count"].as_i64().unwrap())
        .sum();
    assert_eq!(replies, 8, "every reply, each through its own server-named queue: {map}");
    let page = reqwest::get(server.ui_url(&format!("/map?{ALL_TIME}"))).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("data-node=\"service:quote-api\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_pika_dead_letter_exchange_replays_as_expected() {
    let server = TestServer::start().await;
    replay_recorded(&server, "recorded/pika-dlx").await;
    wait_stitched(&server).await;
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture("recorded/pika-dlx/expected.json")).unwrap()).unwrap();
    // Text that is not a trace id, though as long as one, or one no flow has: no flow.
    for q in ["order-not-a-trace-id-of-32-chars", "ffffffffffffffffffffffffffffffff"] {
        let (status, hits) = api(&server, &format!("/api/search?q={q}")).await;
        assert_eq!((status, hits["flows"].as_array().map(Vec::len)), (200, Some(0)), "{q}");
    }
    let mut poison_flows = Vec::new();
    for order in expected["orders"].as_array().unwrap() {
        let (id, kind) = (order["order_id"].as_str().unwrap(), order["kind"].as_str().unwrap());
        let want = &expected["expected"][kind];
        let (_, hits) = api(&server, &format!("/api/search?q={id}")).await;
        let hits = hits["flows"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{id} ({kind}) is one flow: {hits:?}");
        let flow_id = hits[0]["flow_id"].as_str().unwrap();
        let (_, flow) = api(&server, &format!("/api/flows/{flow_id}")).await;
        let mut services: Vec<&str> =
            flow["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let mut want_services: Vec<&str> =
            want["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        services.sort();
        want_services.sort();
        assert_eq!(services, want_services, "{id} ({kind}) services");
        let retries = flow["retries"].as_u64().unwrap();
        match want.get("retries_at_least") {
            Some(n) => assert!(retries >= n.as_u64().unwrap(), "{id} ({kind}) retries {retries}"),
            None => assert_eq!(retries, want["retries"].as_u64().unwrap(), "{id} ({kind}) retries"),
        }
        assert_eq!(flow["dead_lettered"], want["dead_lettered"], "{id} ({kind}) dead lettered");
        if kind == "retry" {
            let attempts: Vec<i64> =
                flow["spans"].as_array().unwrap().iter().filter_map(|s| s["retry_attempt"].as_i64()).collect();
            assert_eq!(attempts, vec![1, 2], "{id}: both attempts are numbered on the timeline");
            assert!(flow["retry_delay_ms"].as_f64().unwrap() > 0.0, "{id}: the wait before the redelivery");
        }
        if kind == "poison" {
            let dead = &flow["dead_letters"][0];
            assert_eq!(dead["destination"], want["dead_letter_destination"], "{id}");
            assert_eq!(dead["source_destination"], "payments.q", "{id}: the queue named by x-death");
            let hop = flow["hops"].as_array().unwrap().iter().find(|h| h["dead_letter"] == true).unwrap().clone();
            assert_eq!(hop["destination"], "orders.dead-letter");
            poison_flows.push(flow_id.to_owned());
        }
    }
    assert_eq!(poison_flows.len(), 2);

    // The dead-letter page: both poison orders, with the payments error.
    let (_, dead) = api(&server, &format!("/api/dead-letters?{ALL_TIME}")).await;
    let dead = dead["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in dead {
        assert!(poison_flows.contains(&d["flow_id"].as_str().unwrap().to_owned()), "{d}");
        assert_eq!(d["error"], "card number failed validation", "{d}");
    }

    // One queue, one name: the exchange `orders` is merged into `payments.q`.
    let (_, queues) = api(&server, &format!("/api/queues?{ALL_TIME}")).await;
    let queues = queues["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["destination"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "payments.q").count(), 1, "{names:?}");
    assert!(!names.contains(&"orders"), "the exchange has no entry of its own: {names:?}");
    let payments = queues.iter().find(|q| q["destination"] == "payments.q").unwrap();
    assert_eq!(payments["aliases"], serde_json::json!(["orders"]));
    assert_eq!(payments["depth_source"], "metrics");
    assert!(payments["publish_rate"].as_f64().unwrap() >= 0.0);

    // The map: one node per queue (the exchange `orders` merged into the queue x-death
    // records name; nothing in the spans names the queue behind `payments`, so that
    // exchange stands for it), the broker's dead-lettering as an edge from payments.q,
    // the redeliveries on the consumption that failed.
    let (_, map) = api(&server, &format!("/api/map?{ALL_TIME}")).await;
    let mut nodes: Vec<&str> = map["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            "destination:orders.dead-letter",
            "destination:payments",
            "destination:payments.q",
            "service:auditor",
            "service:emails",
            "service:inventory",
            "service:payments",
            "service:web"
        ],
        "{map}"
    );
    let orders = expected["orders"].as_array().unwrap();
    let count = |kind: &str| orders.iter().filter(|o| o["kind"] == kind).count() as i64;
    let orders = orders.len() as i64;
    assert_eq!(map_edge(&map, "call", "service:web", "service:inventory")["count"], orders);
    // The broken orders were published without instrumentation: no publish span.
    let published = orders - count("broken");
    assert_eq!(map_edge(&map, "publish", "service:web", "destination:payments.q")["count"], published);
    let delivered = orders - count("poison");
    assert_eq!(map_edge(&map, "publish", "service:payments", "destination:payments")["count"], delivered);
    assert_eq!(map_edge(&map, "consume", "destination:payments", "service:emails")["count"], delivered);
    let consume = map_edge(&map, "consume", "destination:payments.q", "service:payments");
    assert_eq!(consume["count"], orders);
    assert!(consume["retries"].as_i64().unwrap() >= 2, "{consume}");
    let dead = map_edge(&map, "publish", "destination:payments.q", "destination:orders.dead-letter");
    assert_eq!(dead["dead_letters"], 2);
    assert_eq!(map_edge(&map, "consume", "destination:orders.dead-letter", "service:auditor")["count"], 2);
    let payments_node = map["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "destination:payments.q").unwrap();
    assert_eq!(payments_node["system"], "rabbitmq");
    assert!(payments_node["status"].is_string(), "the queue's backlog status: {payments_node}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_attribution_names_the_slowed_email_queue() {
    let server = TestServer::start().await;
    let mut rng = StdRng::seed_from_u64(9);
    let mut b = Builder::new(&mut rng);
    let mut pending = Pending::new();
    // Sign-ups at 3/s; the mailer keeps up for a minute, then takes 1/s: later messages
    // wait ever longer in `emails`.
    let t0 = flowscope::web::api::now_nanos() - 200_000 * MS;
    for tick in 0..120 {
        let consumed = if tick < 60 { 3 } else { 1 };
        scenarios::emails_tick(&mut b, t0 + tick * 1000 * MS, 1000 * MS, 3, consumed, &mut pending);
    }
    send_shuffled(&server, std::mem::take(&mut b.out), 3).await;
    wait_stitched(&server).await;

    let chain = "accounts POST /signup";
    let (status, breakdown) =
        api(&server, &format!("/api/chains/{}/breakdown?{ALL_TIME}", flowscope::text::urlencode(chain))).await;
    assert_eq!(status, 200, "{breakdown}");
    assert_eq!(breakdown["chain"], chain);
    let (tail, typical) = (breakdown["tail_flows"].as_u64().unwrap(), breakdown["typical_flows"].as_u64().unwrap());
    assert!(tail > 0 && typical > 0, "{breakdown}");
    let first = &breakdown["steps"][0];
    assert_eq!((first["kind"].as_str(), first["step"].as_str()), (Some("queue_wait"), Some("emails")), "{breakdown}");
    assert!(first["delta_ms"].as_f64().unwrap() > 1000.0, "{first}");
    // Its example is a tail flow that did wait that long.
    let example = first["example_flow_ids"][0].as_str().unwrap();
    let (_, flow) = api(&server, &format!("/api/flows/{example}")).await;
    assert!(flow["queue_wait_ms"].as_f64().unwrap() >= first["tail_ms"].as_f64().unwrap() - 1.0, "{flow}");
    // The chain page says it in one sentence and draws it.
    let page = reqwest::get(server.ui_url(&format!("/chains/{}?{ALL_TIME}", flowscope::text::urlencode(chain))))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Why the tail is slow") && page.contains("waiting in emails"), "chain page");
    assert!(page.contains(&format!("/flows/{example}")), "the step links to its tail flow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_show_backlog_from_spans_and_from_broker_metrics() {
    let server = TestServer::start().await;
    let mut rng = StdRng::seed_from_u64(3);
    let mut pending = Pending::new();
    let now = flowscope::web::api::now_nanos();
    let start = now - 20 * 60_000 * MS;
    let mut b = Builder::new(&mut rng);
    // 20 one-minute ticks: 10 balanced, then a consumer 4x slower than the producers.
    for tick in 0..20 {
        let (sent, consumed) = if tick < 10 { (4, 4) } else { (4, 1) };
        scenarios::emails_tick(&mut b, start + tick * 60_000 * MS, 60_000 * MS, sent, consumed, &mut pending);
    }
    send_shuffled(&server, std::mem::take(&mut b.out), 9).await;
    // Broker metrics for `payments`: stuck at 12 with nobody consuming (no consumer spans
    // needed: the depth comes from the metric).
    for m in 0..10 {
        let t = now - (10 - m) * 60_000 * MS;
        let body = flowscope::demo::depth_metric(
            "rabbitmq",
            "rabbitmq.message.current",
            ("rabbitmq.queue.name", "payments"),
            &[("state", "ready")],
            t,
            2.0 * m as f64,
        )
        .encode_to_vec();
        assert_eq!(server.post_protobuf("/v1/metrics", body).await, 200);
    }
    wait_stitched(&server).await;
    let (status, queues) = api(&server, "/api/queues?last=20m").await;
    assert_eq!(status, 200);
    let queues = queues["queues"].as_array().unwrap();
    let emails = queues.iter().find(|q| q["destination"] == "emails").expect("emails queue");
    assert_eq!(emails["depth_source"], "spans");
    assert_eq!(emails["status"], "growing", "{emails}");
    assert_eq!(emails["depth"].as_f64().unwrap(), pending.len() as f64);
    assert!(emails["drain_seconds"].is_null());
    assert!(emails["publish_rate"].as_f64().unwrap() > emails["consume_rate"].as_f64().unwrap());
    let payments = queues.iter().find(|q| q["destination"] == "payments").expect("payments queue");
    assert_eq!(payments["depth_source"], "metrics");
    assert_eq!(payments["system"], "rabbitmq");
    assert_eq!(payments["depth"], 18.0);
    assert_eq!(payments["status"], "growing");
    // Growing and stalled queues come first.
    assert!(queues.iter().position(|q| q["destination"] == "emails").unwrap() < 2);
}

/// Every stored flow in full as the API shows it, by flow id.
/// Figures summed from per-minute cells, rounded to 12 significant digits: sums of the
/// same numbers added in another order (flows rewritten in another order) differ in the
/// last bits of a double.
fn sums_compared(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            let rounded = if x == 0.0 { 0.0 } else { format!("{x:.11e}").parse::<f64>().unwrap() };
            serde_json::json!(rounded)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sums_compared).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, sums_compared(v))).collect()),
        other => other,
    }
}

async fn all_flows(server: &TestServer) -> Vec<Value> {
    let (_, list) = api(server, &format!("/api/flows?{ALL_TIME}&limit=1000")).await;
    let mut flows = Vec::new();
    for f in list["flows"].as_array().unwrap() {
        let (status, flow) = api(server, &format!("/api/flows/{}", f["flow_id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
        flows.push(flow);
    }
    flows.sort_by_key(|f| f["flow_id"].as_str().unwrap().to_owned());
    flows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_two_halves_of_the_spans_changes_no_flow() {
    let (emission, expected) = demo_emission();
    let reference = TestServer::start().await;
    send_shuffled(&reference, emission.clone(), 3).await;
    wait_stitched(&reference).await;
    let want = all_flows(&reference).await;
    assert_eq!(want.len(), expected.len());
    let want_map = api(&reference, &format!("/api/map?{ALL_TIME}")).await.1;

    // Half the spans (every other one of a shuffle), a restart, then the rest and the
    // logs: late spans must find their flows in the file by trace id, link, message id
    // and correlation id, since the restarted stitcher holds nothing in memory.
    let mut spans = emission.spans;
    spans.shuffle(&mut StdRng::seed_from_u64(9));
    let (first, second): (Vec<_>, Vec<_>) = spans.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip = |half: Vec<(usize, (String, opentelemetry_proto::tonic::trace::v1::Span))>| {
        half.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    };
    // Every hash goes into a sorted run as soon as written, so that the lookups after the
    // restart read the runs (join_runs.rs) and not only the rows written since.
    let runs_of_one = |c: &mut flowscope::config::Config| c.stitch.join_run_hashes = 1;
    let server = TestServer::start_with(runs_of_one).await;
    send_shuffled(&server, Emission { spans: strip(first), logs: vec![] }, 4).await;
    wait_stitched(&server).await;
    let mut progress = server.running().progress.clone();
    let sorted = progress.wait_for(|p| p.join_runs.runs > 0 && p.join_runs.unsorted == 0);
    let runs =
        tokio::time::timeout(Duration::from_secs(60), sorted).await.expect("runs made").unwrap().join_runs.clone();
    let (_, dir) = server.stop().await;
    let server = TestServer::start_in(dir, runs_of_one).await;
    send_shuffled(&server, Emission { spans: strip(second), logs: emission.logs }, 5).await;
    wait_stitched(&server).await;
    let (_, stitching) = api(&server, "/api/stitching").await;
    let got = all_flows(&server).await;
    let summary = |flows: &[Value]| -> Vec<String> {
        flows
            .iter()
            .map(|f| format!("{} {} {}", f["flow_id"], f["chain"], f["spans"].as_array().unwrap().len()))
            .collect()
    };
    assert_eq!(summary(&got), summary(&want), "{stitching}");
    assert!(runs.hashes > 0 && runs.jobs > 0, "{runs:?}");
    assert!(server.running().progress.borrow().file_lookups > 0, "late spans were looked up");
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got, want, "flow {}", want["flow_id"]);
    }
    assert_eq!(api(&server, &format!("/api/map?{ALL_TIME}")).await.1, want_map, "the map's sums too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restitching_rebuilds_the_same_flows_and_resumes_after_a_stop() {
    use flowscope::flows::restitch::{self, Scope};
    let (emission, expected) = demo_emission();
    let sent_spans = emission.spans.len();
    let server = TestServer::start().await;
    send_shuffled(&server, emission, 6).await;
    wait_stitched(&server).await;
    let want = all_flows(&server).await;
    assert_eq!(want.len(), expected.len());
    let want_map = api(&server, &format!("/api/map?{ALL_TIME}")).await.1;
    let want_chains = api(&server, &format!("/api/chains?{ALL_TIME}")).await.1;
    assert_eq!(want_chains["chains"].as_array().unwrap().len(), 6, "{want_chains}");
    // The slowest flows, read above a floor taken from the chain sums, are the slowest.
    let mut by_duration: Vec<(f64, String)> =
        want.iter().map(|f| (f["duration_ms"].as_f64().unwrap(), f["flow_id"].as_str().unwrap().to_owned())).collect();
    by_duration.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for limit in [1, 3, want.len()] {
        let (_, slowest) = api(&server, &format!("/api/flows?{ALL_TIME}&sort=duration&limit={limit}")).await;
        let ids: Vec<&str> =
            slowest["flows"].as_array().unwrap().iter().map(|f| f["flow_id"].as_str().unwrap()).collect();
        let want_ids: Vec<&str> = by_duration.iter().take(limit).map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, want_ids, "the {limit} slowest");
    }
    let (db, dir) = server.stop().await;

    // `flowscope restitch`, stopped after its first round: the flow tables are emptied
    // and the watermark went back, so what is stored is incomplete...
    let config = flowscope::config::Config::with_db(db.clone());
    let stitch = flowscope::flows::StitchConfig { commits_per_round: 1, ..config.stitch.clone() };
    {
        let store = flowscope::store::Store::open_with(&db, &config.duckdb_settings).unwrap();
        restitch::begin(&store, Scope::All).unwrap();
        let conn = store.connect().unwrap();
        assert_eq!(conn.query_row("SELECT count(*) FROM flows", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
        let mut rounds = 0;
        let interrupted = restitch::run_until(&store, stitch.clone(), |_| {
            rounds += 1;
            rounds < 2
        })
        .unwrap();
        let r = interrupted.restitch.expect("a restitch is under way");
        assert!(r.done(interrupted.stitched_seq) < 1.0, "{interrupted:?}");
    }
    // ...and the next start finishes it in the background, with the same flows as before.
    let server = TestServer::start_in(dir, |_| {}).await;
    wait_stitched(&server).await;
    assert!(server.running().progress.borrow().restitch.is_none());
    let got = all_flows(&server).await;
    assert_eq!(got, want);
    assert_eq!(api(&server, &format!("/api/map?{ALL_TIME}")).await.1, want_map);
    assert_eq!(
        sums_compared(api(&server, &format!("/api/chains?{ALL_TIME}")).await.1),
        sums_compared(want_chains.clone())
    );
    let metrics = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "flowscope_restitch_progress_ratio 1"), "{metrics}");
    let (db, dir) = server.stop().await;

    // `restitch --since`: a time after every commit recomputes nothing; an hour ago
    // rewrites every flow (all arrived since), in place, to the same result.
    {
        let store = flowscope::store::Store::open_with(&db, &config.duckdb_settings).unwrap();
        let future = flowscope::web::api::now_nanos() + 3_600_000_000_000;
        restitch::begin(&store, Scope::Since(future)).unwrap();
        let nothing = restitch::run_until(&store, stitch.clone(), |_| true).unwrap();
        assert_eq!((nothing.spans_stitched, nothing.restitch), (0, None), "{nothing:?}");
        let hour_ago = flowscope::web::api::now_nanos() - 3_600_000_000_000;
        restitch::begin(&store, Scope::Since(hour_ago)).unwrap();
        let redone = restitch::run_until(&store, stitch, |_| true).unwrap();
        assert!(redone.spans_stitched as usize >= sent_spans, "{redone:?}");
        assert_eq!(redone.restitch, None, "finished");
    }
    let server = TestServer::start_in(dir, |_| {}).await;
    wait_stitched(&server).await;
    assert_eq!(all_flows(&server).await, want);
    assert_eq!(api(&server, &format!("/api/map?{ALL_TIME}")).await.1, want_map, "old cells subtracted");
    assert_eq!(
        sums_compared(api(&server, &format!("/api/chains?{ALL_TIME}")).await.1),
        sums_compared(want_chains.clone()),
        "old cells subtracted"
    );
    let (db, dir) = server.stop().await;

    // Migration 017's restitch (in place, from the first commit, run by the next start)
    // on a file whose flows lack the chain cells: the chains come back whole, once.
    {
        let store = flowscope::store::Store::open_with(&db, &config.duckdb_settings).unwrap();
        let conn = store.connect().unwrap();
        use flowscope::flows::edges;
        conn.execute_batch(
            "DELETE FROM flow_edge_slots WHERE kind IN ('flow', 'service_time', 'queue_wait', 'retry_delay')",
        )
        .unwrap();
        let stored: Vec<(String, String, i64)> = conn
            .prepare("SELECT flow_id, edges, start_unix_nano FROM flows")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (flow_id, cells, start) in stored {
            let mut cells = edges::parse_cells(Some(&cells), start);
            cells.retain(|k, _| k.kind.on_map());
            let cells = edges::cells_json(&cells, start);
            conn.execute("UPDATE flows SET edges = ? WHERE flow_id = ?", [cells, flow_id]).unwrap();
        }
        let stripped: i64 =
            conn.query_row("SELECT count(*) FROM flows WHERE edges LIKE '%\"flow\"%'", [], |r| r.get(0)).unwrap();
        assert_eq!(stripped, 0, "the file now looks like one written before migration 017");
        conn.execute_batch(include_str!("../queries/migrations/017_chain_sums.sql")).unwrap();
    }
    let server = TestServer::start_in(dir, |_| {}).await;
    wait_stitched(&server).await;
    assert!(server.running().progress.borrow().restitch.is_none());
    assert_eq!(all_flows(&server).await, want);
    assert_eq!(api(&server, &format!("/api/map?{ALL_TIME}")).await.1, want_map);
    assert_eq!(
        sums_compared(api(&server, &format!("/api/chains?{ALL_TIME}")).await.1),
        sums_compared(want_chains.clone()),
        "restitched in place"
    );
}

/// Sends one flow per id, each a client and a server span of a trace of its own (the id
/// in its first four bytes), in one request.
async fn send_client_server_flows(server: &TestServer, ids: std::ops::Range<u32>) {
    let spans: Vec<_> = ids
        .flat_map(|id| {
            let mut client = span(1, 0, "GET /orders");
            client.trace_id = numbered_trace(id);
            client.span_id = [&id.to_be_bytes()[..], &[1, 1, 1, 1]].concat();
            client.kind = 3;
            let mut server_span = span(1, 1, "GET /orders");
            server_span.trace_id = numbered_trace(id);
            server_span.span_id = [&id.to_be_bytes()[..], &[2, 2, 2, 2]].concat();
            server_span.parent_span_id = client.span_id.clone();
            [client, server_span]
        })
        .collect();
    assert_eq!(server.post_protobuf("/v1/traces", traces("shop", spans).encode_to_vec()).await, 200);
}

fn numbered_trace(id: u32) -> Vec<u8> {
    [&id.to_be_bytes()[..], &[0x5e; 12]].concat()
}

/// Sends a third span, a child of the server span, to flow `id` of
/// [`send_client_server_flows`]; returns the span count of its stored flow once stitched.
async fn send_late_server_span(server: &TestServer, id: u32) -> i64 {
    let mut late = span(1, 2, "GET /orders/late");
    late.trace_id = numbered_trace(id);
    late.span_id = [&id.to_be_bytes()[..], &[3, 3, 3, 3]].concat();
    late.parent_span_id = [&id.to_be_bytes()[..], &[2, 2, 2, 2]].concat();
    assert_eq!(server.post_protobuf("/v1/traces", traces("shop", vec![late]).encode_to_vec()).await, 200);
    wait_stitched(server).await;
    let hex: String = numbered_trace(id).iter().map(|b| format!("{b:02x}")).collect();
    server.count(format!("SELECT max(span_count) FROM flows WHERE flow_id = '{hex}'")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_takes_the_join_filter_back_and_a_stale_one_is_refused() {
    let quiet = |c: &mut flowscope::config::Config| c.stitch.quiet_period = Duration::from_millis(200);
    let server = TestServer::start_with(quiet).await;
    send_client_server_flows(&server, 0..300).await;
    wait_stitched(&server).await;
    let mut watch = server.running().progress.clone();
    tokio::time::timeout(Duration::from_secs(60), watch.wait_for(|p| p.join_filter_build_seconds > 0.0))
        .await
        .expect("the join filter is built")
        .unwrap();
    let (db, dir) = server.stop().await;
    let saved = std::path::PathBuf::from(format!("{}.join-filter", db.display()));
    assert!(saved.exists(), "a clean stop saves the filter beside the file");
    let token = "SELECT value FROM stitch_state WHERE name = 'join_filter_saved'";
    assert_ne!(count_in_file(&db, token), 0, "and notes it in the file");

    let server = TestServer::start_in(dir, quiet).await;
    let mut watch = server.running().progress.clone();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|p| p.rounds > 0)).await.unwrap().unwrap();
    let p = watch.borrow().clone();
    assert!(p.join_filter_restored && p.join_filter_bytes > 0, "{p:?}");
    assert!(!saved.exists(), "taken back once: the file is gone");
    assert_eq!(server.count(token).await, 0, "and its token cleared before anything is written");
    // New traces: the filter taken back says they were never stored, so no lookup...
    send_client_server_flows(&server, 1000..1300).await;
    wait_stitched(&server).await;
    assert_eq!(server.running().progress.borrow().file_lookups, 0);
    // ...and a late span of a flow stored before the stop is still joined, from the file.
    assert_eq!(send_late_server_span(&server, 7).await, 3);
    assert_eq!(server.running().progress.borrow().file_lookups, 1);
    let metrics = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "flowscope_stitcher_join_filter_restored 1"), "{metrics}");

    // A saved filter whose token the file does not hold (a crash between the two, a file
    // restored from a backup) is refused, removed, and the filter built again.
    let (db, dir) = server.stop().await;
    assert!(saved.exists());
    duckdb::Connection::open(&db)
        .unwrap()
        .execute("UPDATE stitch_state SET value = 42 WHERE name = 'join_filter_saved'", [])
        .unwrap();
    let server = TestServer::start_in(dir, quiet).await;
    let mut watch = server.running().progress.clone();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|p| p.rounds > 0)).await.unwrap().unwrap();
    assert!(!watch.borrow().join_filter_restored);
    assert!(!saved.exists());
    assert_eq!(send_late_server_span(&server, 8).await, 3, "joins are found without it");
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stitchers_memory_stays_flat_while_stored_flows_grow_tenfold() {
    let server = TestServer::start_with(|c| c.stitch.quiet_period = Duration::from_millis(200)).await;
    let progress = server.running().progress.clone();
    const BATCH: u32 = 200;
    let mut after_batch = Vec::new();
    for round in 0..10u32 {
        send_client_server_flows(&server, round * BATCH..(round + 1) * BATCH).await;
        wait_stitched(&server).await;
        let p = progress.borrow().clone();
        after_batch.push((p.cached_traces, p.joined_traces, p.cached_spans));
        // Settled flows leave memory (awaited, not slept for).
        let mut watch = progress.clone();
        tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|p| p.cached_traces == 0 && p.joined_traces == 0))
            .await
            .expect("quiet flows leave the stitcher's memory")
            .unwrap();
    }
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 10 * BATCH as i64);
    // Every batch was of new traces: the join filter spared every lookup in the file
    // (but perhaps the first batch's, if it came before the filter's first build, which
    // runs on a thread of its own, had finished)...
    let p = progress.borrow().clone();
    assert!(p.file_lookups <= 1, "{p:?}");
    assert!(p.lookups_skipped >= 9, "{p:?}");
    // ...and a late span of a flow that has left memory is still joined to it, from the file.
    assert_eq!(send_late_server_span(&server, 0).await, 3, "the late span joined its stored flow");
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 10 * BATCH as i64);
    assert_eq!(progress.borrow().file_lookups, p.file_lookups + 1, "one lookup, for the late span");
    let mut watch = progress.clone();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|p| p.cached_traces == 0 && p.joined_traces == 0))
        .await
        .expect("the rejoined flow leaves memory again")
        .unwrap();
    for (round, (traces, joined, spans)) in after_batch.iter().enumerate() {
        assert!(*traces <= BATCH as usize, "round {round}: {traces} traces in memory");
        assert!(*joined <= BATCH as usize, "round {round}: {joined} traces in the joiner");
        assert!(*spans <= 2 * BATCH as usize, "round {round}: {spans} spans in memory");
    }
    let metrics = reqwest::get(server.ui_url("/metrics")).await.unwrap().text().await.unwrap();
    let lookups = format!("flowscope_stitcher_file_lookups_total {}", p.file_lookups + 1);
    for gauge in [
        "flowscope_stitcher_cached_traces 0",
        "flowscope_stitcher_joined_traces 0",
        "flowscope_stitch_lag_seconds 0",
        lookups.as_str(),
    ] {
        assert!(metrics.lines().any(|l| l == gauge), "{gauge} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_flow_arriving_over_many_rounds_is_written_whole() {
    // 3,000 spans of one trace in 30 requests: the flow is past the size from which
    // its rewrites are spaced out, and must still end up whole.
    let server = TestServer::start().await;
    let trace = trace_id(77);
    for part in 0..30u32 {
        let spans: Vec<_> = (0..100u32)
            .map(|i| {
                let n = part * 100 + i;
                let mut s = span(77, 0, "work");
                s.span_id = [&n.to_be_bytes()[..], &[7, 7, 7, 7]].concat();
                s.parent_span_id = if n == 0 { vec![] } else { [&0u32.to_be_bytes()[..], &[7, 7, 7, 7]].concat() };
                s.start_time_unix_nano += u64::from(n) * 1_000;
                s.end_time_unix_nano = s.start_time_unix_nano + 500;
                s.trace_id = trace.clone();
                s
            })
            .collect();
        assert_eq!(server.post_protobuf("/v1/traces", traces("batch", spans).encode_to_vec()).await, 200);
    }
    wait_stitched(&server).await;
    let (status, flow) = api(&server, &format!("/api/flows/{}", trace_hex(77))).await;
    assert_eq!(status, 200);
    assert_eq!(flow["spans"].as_array().unwrap().len(), 3000);
    assert_eq!(server.count("SELECT count(*) FROM flows").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_id_shared_by_too_many_traces_is_ignored_and_reported() {
    let server = TestServer::start_with(|c| c.stitch.key_trace_limit = 3).await;
    let spans: Vec<_> = (0..5u8)
        .map(|n| {
            let mut s = span(100 + n, 0, "GET /health");
            s.attributes.push(kv("correlation_id", "none"));
            s
        })
        .collect();
    let body = traces("prober", spans).encode_to_vec();
    assert_eq!(server.post_protobuf("/v1/traces", body).await, 200);
    wait_stitched(&server).await;
    let (_, list) = api(&server, &format!("/api/flows?{ALL_TIME}")).await;
    assert_eq!(list["flows"].as_array().unwrap().len(), 5, "no giant flow: {list}");
    let (_, diag) = api(&server, "/api/stitching").await;
    let ignored = diag["ignored_join_keys"].as_array().unwrap();
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0]["value"], "none");
    assert_eq!(ignored[0]["kind"], "correlation_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_parameters_get_400_and_unknown_flows_404() {
    let server = TestServer::start().await;
    for path in [
        "/api/flows?from=yesterday",
        "/api/flows?limit=0",
        "/api/flows?sort=size",
        "/api/chains?from=10&to=5",
        "/api/queues?last=soon",
        "/api/retries?bucket=-3",
        "/api/search",
        "/api/flows/not-a-flow-id",
    ] {
        let (status, body) = api(&server, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body["error"].as_str().unwrap().len() > 5, "{path}: {body}");
    }
    let (status, body) = api(&server, &format!("/api/flows/{}", "ab".repeat(16))).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no flow"));
}
