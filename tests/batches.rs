//! Property: batches that link to messages of 1 to 10 flows never merge flows that no one
//! to one relation joins, whatever order the spans arrive in, across a restart. Each case
//! runs a real server on a real file; the cases are seeded and few.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use flowscope::demo::scenarios::{Builder, Ctx, Emission, MS};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const SERVER: i32 = 2;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;
const INTERNAL: i32 = 1;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// A case: operations, which pairs of them share a correlation id (a one-to-one join that
/// makes them one flow), the batches (each the operations whose messages it links to),
/// how the spans are shuffled, and where the server restarts.
#[derive(Debug, Clone)]
struct Case {
    operations: usize,
    correlated: Vec<(usize, usize)>,
    batches: Vec<BTreeSet<usize>>,
    shuffle_seed: u64,
    restart_after: f64,
}

fn cases() -> impl Strategy<Value = Case> {
    (2usize..=10).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec((0..n, 0..n), 0..2),
            prop::collection::vec(prop::collection::btree_set(0..n, 1..=n.min(10)), 1..4),
            any::<u64>(),
            0.2f64..0.8,
        )
            .prop_map(|(operations, correlated, batches, shuffle_seed, restart_after)| Case {
                operations,
                correlated,
                batches,
                shuffle_seed,
                restart_after,
            })
    })
}

/// The spans of a case, and each operation's root trace id.
fn emission(case: &Case) -> (Emission, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(case.shuffle_seed);
    let mut b = Builder::new(&mut rng);
    let t0 = flowscope::web::api::now_nanos() - 60_000 * MS;
    let mut sends: Vec<Ctx> = Vec::new();
    let mut roots = Vec::new();
    for i in 0..case.operations {
        let start = t0 + i as i64 * 10 * MS;
        let mut attrs = vec![];
        for (n, (a, c)) in case.correlated.iter().enumerate() {
            if *a == i || *c == i {
                attrs.push(kv("correlation_id", &format!("corr-{}-{n}", case.shuffle_seed)));
            }
        }
        let root = b.span("shop", "POST /orders", SERVER, None, start, start + 5 * MS, attrs);
        roots.push(hex::encode(root.trace));
        let send = b.span(
            "shop",
            "events send",
            PRODUCER,
            Some(root),
            start + MS,
            start + 2 * MS,
            vec![kv("messaging.system", "kafka"), kv("messaging.destination.name", "events")],
        );
        sends.push(send);
    }
    for (j, batch) in case.batches.iter().enumerate() {
        let start = t0 + 500 * MS + j as i64 * 20 * MS;
        let process = b.span(
            "billing",
            "events process",
            CONSUMER,
            None,
            start,
            start + 10 * MS,
            vec![
                kv("messaging.system", "kafka"),
                kv("messaging.operation.type", "process"),
                kv("messaging.destination.name", "events"),
            ],
        );
        for i in batch {
            b.link(sends[*i], vec![]);
        }
        b.span("billing", "bill batch", INTERNAL, Some(process), start + MS, start + 9 * MS, vec![]);
    }
    (std::mem::take(&mut b.out), roots)
}

/// The operations each operation shares a flow with: those one-to-one joins connect, and
/// the operations of a batch linking to one operation only (a single link joins).
fn expected_flows(case: &Case) -> Vec<BTreeSet<usize>> {
    let mut parent: Vec<usize> = (0..case.operations).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            i = p[i];
        }
        i
    }
    for (a, c) in &case.correlated {
        let (ra, rc) = (root(&mut parent, *a), root(&mut parent, *c));
        parent[ra] = rc;
    }
    let mut groups: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    for i in 0..case.operations {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().insert(i);
    }
    (0..case.operations).map(|i| groups[&root(&mut parent, i)].clone()).collect()
}

async fn send(server: &TestServer, spans: &[(String, opentelemetry_proto::tonic::trace::v1::Span)]) {
    for chunk in spans.chunks(3) {
        let request = spans_request(chunk);
        assert_eq!(server.post_protobuf("/v1/traces", request.encode_to_vec()).await, 200);
    }
}

async fn run_case(case: Case) -> Result<(), TestCaseError> {
    let (emission, roots) = emission(&case);
    let mut spans = emission.spans;
    spans.shuffle(&mut StdRng::seed_from_u64(case.shuffle_seed ^ 1));
    let cut = ((spans.len() as f64) * case.restart_after) as usize;
    // A short quiet period, so the first half's flows leave memory before the restart's
    // second half joins them from the file.
    let quick = |c: &mut flowscope::config::Config| c.stitch.quiet_period = Duration::from_millis(200);
    let server = TestServer::start_with(quick).await;
    send(&server, &spans[..cut]).await;
    server.stitched().await;
    let (_, dir) = server.stop().await;
    let server = TestServer::start_in(dir, quick).await;
    send(&server, &spans[cut..]).await;
    server.stitched().await;

    let want = expected_flows(&case);
    for (i, trace) in roots.iter().enumerate() {
        let hits: serde_json::Value =
            reqwest::get(server.ui_url(&format!("/api/search?q={trace}"))).await.unwrap().json().await.unwrap();
        let hits = hits["flows"].as_array().unwrap();
        prop_assert_eq!(hits.len(), 1, "operation {} is in one flow: {:?}", i, hits);
        let flow: serde_json::Value =
            reqwest::get(server.ui_url(&format!("/api/flows/{}", hits[0]["flow_id"].as_str().unwrap())))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let traces: BTreeSet<&str> =
            flow["spans"].as_array().unwrap().iter().map(|s| s["trace_id"].as_str().unwrap()).collect();
        let holds: BTreeSet<usize> =
            roots.iter().enumerate().filter(|(_, r)| traces.contains(r.as_str())).map(|(k, _)| k).collect();
        prop_assert_eq!(&holds, &want[i], "operation {}'s flow holds exactly the operations joined to it", i);
        // Every batch carrying a message of this flow is in it.
        let batches = case.batches.iter().filter(|b| b.iter().any(|o| want[i].contains(o))).count();
        let processes = flow["spans"].as_array().unwrap().iter().filter(|s| s["name"] == "events process").count();
        prop_assert_eq!(processes, batches, "operation {}'s flow shows each of its batches", i);
    }
    server.stop().await;
    Ok(())
}

#[test]
fn batches_never_merge_flows_in_any_order_across_a_restart() {
    let config = Config { cases: 10, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[35; 32]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runner.run(&cases(), |case| rt.block_on(run_case(case))).unwrap();
}
