//! Real traffic from stock instrumentations on Kafka and SQS, replayed over OTLP/HTTP:
//! every order is exactly the one flow its fixture's `expected.json` describes.

mod common;

use common::*;
use serde_json::Value;

const ALL_TIME: &str = "from=0&to=9000000000000000000";

async fn api(server: &TestServer, path: &str) -> Value {
    let resp = reqwest::get(server.ui_url(path)).await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

/// How often the flow consumed a message from each destination: its deliveries, one per
/// consuming trace (a receive and its process, or a poll and its record, are one).
fn consumptions(flow: &Value) -> std::collections::BTreeMap<String, u64> {
    let trace_of: std::collections::HashMap<&str, &str> = flow["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s["trace_id"].as_str().unwrap()))
        .collect();
    let mut deliveries: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> = Default::default();
    for hop in flow["hops"].as_array().unwrap() {
        let Some(d) = hop["destination"].as_str() else { continue };
        for c in hop["consumer_span_ids"].as_array().unwrap() {
            deliveries.entry(d.to_owned()).or_default().insert(trace_of[c.as_str().unwrap()]);
        }
    }
    deliveries.into_iter().map(|(d, traces)| (d, traces.len() as u64)).collect()
}

/// Replays `dir` and checks every order against its `expected.json`; returns each
/// order's flow, by the order's search key.
async fn replay_and_check(dir: &str, consumed_key: &str) -> (TestServer, Value, Vec<Value>) {
    let server = TestServer::start().await;
    replay_recorded(&server, dir).await;
    server.stitched().await;
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture(&format!("{dir}/expected.json"))).unwrap()).unwrap();
    let key = expected["search_key"].as_str().unwrap();
    let orders = expected["orders"].as_array().unwrap();
    let mut flows = Vec::new();
    for order in orders {
        let (q, kind) = (order[key].as_str().unwrap(), order["kind"].as_str().unwrap());
        let want = &expected["expected"][kind];
        let what = format!("{} ({kind})", order["order_id"].as_str().unwrap());
        let hits = api(&server, &format!("/api/search?q={q}")).await;
        let hits = hits["flows"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{what} is one flow: {hits:?}");
        let flow = api(&server, &format!("/api/flows/{}", hits[0]["flow_id"].as_str().unwrap())).await;
        assert_eq!(flow["chain"], want["chain"], "{what}: chain");
        assert_eq!(strings(&flow["services"]), strings(&want["services"]), "{what}: services");
        let retries = flow["retries"].as_u64().unwrap();
        match want.get("retries_at_least") {
            Some(n) => assert!(retries >= n.as_u64().unwrap(), "{what}: retries {retries}"),
            None => assert_eq!(retries, want["retries"].as_u64().unwrap(), "{what}: retries"),
        }
        assert_eq!(flow["dead_lettered"], want["dead_lettered"], "{what}: dead lettered");
        let dead = flow["dead_letters"].as_array().unwrap();
        if want["dead_lettered"] == true {
            assert_eq!(dead.len(), 1, "{what}: one dead letter: {dead:?}");
            assert_eq!(dead[0]["destination"], want["dead_letter_destination"], "{what}");
            assert!(
                dead[0]["error"].as_str().unwrap_or_default().contains("shipping address failed validation"),
                "{what}: the error that sent it there: {}",
                dead[0]
            );
        } else {
            assert!(dead.is_empty(), "{what}: {dead:?}");
        }
        let want_consumed: std::collections::BTreeMap<String, u64> =
            serde_json::from_value(want[consumed_key].clone()).unwrap();
        assert_eq!(consumptions(&flow), want_consumed, "{what}: consumptions");
        // No hop is a poll: every hop names its destination.
        for hop in flow["hops"].as_array().unwrap() {
            assert!(hop["destination"].is_string(), "{what}: {hop}");
        }
        flows.push(flow);
    }
    // Every order is its chain's flow: the poll loops name no chain, and no batch is a
    // flow of its own.
    let chains = api(&server, &format!("/api/chains?{ALL_TIME}")).await;
    let chains = chains["chains"].as_array().unwrap();
    let chain = chains.iter().find(|c| c["chain"] == expected["expected"]["ok"]["chain"]).expect("the orders' chain");
    assert_eq!(chain["count"].as_u64(), Some(orders.len() as u64), "{chains:?}");
    (server, expected, flows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_sqs_orders_each_replay_as_one_flow() {
    let (_server, expected, flows) = replay_and_check("recorded/sqs-boto3", "receives").await;
    let orders = expected["orders"].as_array().unwrap();
    for (order, flow) in orders.iter().zip(&flows) {
        // No other order's message in this order's flow.
        let others: Vec<&str> =
            orders.iter().filter(|o| o != &order).map(|o| o["message_id"].as_str().unwrap()).collect();
        for s in flow["spans"].as_array().unwrap() {
            let id = s["attributes"]["messaging.message.id"].as_str().unwrap_or_default();
            assert!(!others.contains(&id), "{}: holds {id}", order["order_id"]);
        }
        if order["kind"] == "poison" {
            assert_eq!(flow["dead_letters"][0]["source_destination"], "orders-queue", "{}", order["order_id"]);
        }
        // A hop the worker took without the producer's span still waits, but how long is unknown.
        for hop in flow["hops"].as_array().unwrap() {
            assert_eq!(hop["producer_span_id"].is_null(), hop["queue_wait_ms"].is_null(), "{hop}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_kafka_orders_each_replay_as_one_flow_and_batches_join_none() {
    let (server, expected, flows) = replay_and_check("recorded/kafka-confluent", "consumed").await;
    let orders = expected["orders"].as_array().unwrap();
    for (order, flow) in orders.iter().zip(&flows) {
        let traces: Vec<&str> =
            flow["spans"].as_array().unwrap().iter().map(|s| s["trace_id"].as_str().unwrap()).collect();
        for other in orders.iter().filter(|o| o != &order) {
            let theirs = other["trace_id"].as_str().unwrap();
            assert!(!traces.contains(&theirs), "{} holds {}'s front trace", order["order_id"], other["order_id"]);
        }
        match order["kind"].as_str().unwrap() {
            "retry" | "poison" => {
                let attempts: Vec<i64> =
                    flow["spans"].as_array().unwrap().iter().filter_map(|s| s["retry_attempt"].as_i64()).collect();
                assert!(attempts.contains(&2), "{}: the second attempt is numbered: {attempts:?}", order["order_id"]);
                assert!(flow["retry_delay_ms"].as_f64().unwrap() > 0.0, "{}: the retry delay", order["order_id"]);
            }
            _ => {}
        }
        if order["kind"] == "poison" {
            assert_eq!(flow["dead_letters"][0]["source_destination"], "orders.retry", "{}", order["order_id"]);
        }
    }
    // Each batch belongs to the flow of every order it billed, shown as a batch there.
    for batch in expected["billing_batches"].as_array().unwrap() {
        let span = batch["process_span_id"].as_str().unwrap();
        let links = batch["links"].as_u64().unwrap();
        for order_trace in batch["order_trace_ids"].as_array().unwrap() {
            let (i, _) =
                orders.iter().enumerate().find(|(_, o)| o["trace_id"] == *order_trace).expect("a billed order");
            let flow = &flows[i];
            assert!(
                flow["spans"].as_array().unwrap().iter().any(|s| s["span_id"] == span),
                "{} shows its batch",
                orders[i]["order_id"]
            );
            let page = reqwest::get(server.ui_url(&format!("/flows/{}", flow["flow_id"].as_str().unwrap())))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(page.contains(&format!("batch of {links}, 1 from this flow")), "{}", orders[i]["order_id"]);
        }
    }
}
