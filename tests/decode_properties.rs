//! Property test: random and mutated OTLP bodies (protobuf and JSON, grown from the
//! published OTLP/JSON examples and the recorded fixtures) through the decode path never
//! panic and always end as "stored" or "malformed"; through the real HTTP listener they get
//! 200, 400 or 413 and the server keeps serving; and a large string shared by many rows of
//! a body is cut once per row, never copied whole into each. Seeded and bounded in count.

mod common;

use common::*;
use flowscope::ingest::{flatten, CorrelationKeys, Encoding, IngestError, Signal};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// (signal, encoding, body) seeds to mutate.
fn seeds() -> Vec<(Signal, Encoding, Vec<u8>)> {
    let mut out = Vec::new();
    for (file, signal) in
        [("trace.json", Signal::Traces), ("metrics.json", Signal::Metrics), ("logs.json", Signal::Logs)]
    {
        let json = std::fs::read(fixture(&format!("otlp-examples/{file}"))).unwrap();
        out.push((signal, Encoding::Json, json));
    }
    for rel in [
        "recorded/pika-dlx/0015-v1-traces.pb",
        "recorded/pika-dlx/0016-v1-metrics.pb",
        "recorded/pika-dlx/0006-v1-logs.pb",
    ] {
        let signal = match rel {
            r if r.ends_with("traces.pb") => Signal::Traces,
            r if r.ends_with("metrics.pb") => Signal::Metrics,
            _ => Signal::Logs,
        };
        out.push((signal, Encoding::Protobuf, std::fs::read(fixture(rel)).unwrap()));
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ];
    prop::collection::vec(one, 1..6)
}

fn mutate(body: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = body.to_vec();
    for m in mutations {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(i, v) if !b.is_empty() => b[i % len] ^= v | 1,
            Mutation::Truncate(i) => b.truncate(i % len),
            Mutation::Insert(i, bytes) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if !b.is_empty() => {
                let at = i % len;
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            _ => {}
        }
    }
    b
}

#[test]
fn mutated_bodies_never_panic_the_decoder() {
    let seeds = seeds();
    let correlation = CorrelationKeys::default();
    let config = Config { cases: 2000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]));
    runner
        .run(&(0..seeds.len(), mutations()), |(which, muts)| {
            let (signal, encoding, body) = &seeds[which];
            let body = mutate(body, &muts);
            match flatten(*signal, *encoding, &body, &correlation) {
                Ok(flat) => prop_assert!(flat.accepted + flat.rejected < 1_000_000),
                Err(IngestError::Malformed { .. }) => {}
                Err(other) => prop_assert!(false, "decoding gave {other}"),
            }
            Ok(())
        })
        .unwrap();
    // Pure noise too.
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 500, failure_persistence: None, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[12; 32]),
    );
    runner
        .run(&(prop::collection::vec(any::<u8>(), 0..512), 0usize..6), |(noise, which)| {
            let (signal, encoding, _) = &seeds[which];
            let r = flatten(*signal, *encoding, &noise, &correlation);
            let malformed = matches!(r, Err(IngestError::Malformed { .. }));
            prop_assert!(r.is_ok() || malformed, "noise gave another error");
            Ok(())
        })
        .unwrap();
}

/// Longest string a flattened row holds: 1,024 bytes and the `…` marker.
const LONGEST_STRING: usize = 1024 + '…'.len_utf8();

#[test]
fn a_large_string_shared_by_many_rows_is_cut_once_per_row() {
    use duckdb::arrow::array::{Array, StringArray};
    use prost::Message;
    let correlation = CorrelationKeys::default();
    let config = Config { cases: 24, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[14; 32]));
    runner
        .run(&(1usize..=64, 1usize..3_000, 0usize..3), |(kib, rows, signal)| {
            let large = "n".repeat(kib << 10);
            // The string once in the body (a resource's service.name, a metric's name and
            // unit), shared by every row the body makes.
            let (signal, body) = match signal {
                0 => {
                    let spans = (0..rows)
                        .map(|i| {
                            let mut s = span(1, 1, "op");
                            s.span_id = (i as u64 + 1).to_be_bytes().to_vec();
                            s
                        })
                        .collect();
                    (Signal::Traces, traces(&large, spans).encode_to_vec())
                }
                1 => {
                    let mut request = gauge(&large, &large, &vec![1.0; rows]);
                    let metrics = request.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics);
                    metrics.flat_map(|s| &mut s.metrics).for_each(|m| m.unit = large.clone());
                    (Signal::Metrics, request.encode_to_vec())
                }
                _ => (Signal::Logs, logs(&large, &vec!["body"; rows]).encode_to_vec()),
            };
            let flat = flatten(signal, Encoding::Protobuf, &body, &correlation).expect("a valid body");
            let bytes: usize = flat.batches.iter().map(|b| b.batch.get_array_memory_size()).sum();
            prop_assert!(
                // Arrays start with some capacity: a megabyte covers every table's.
                bytes <= 4 * body.len() + rows * 8192 + (1 << 20),
                "{rows} rows sharing {kib} KiB flattened to {bytes} bytes from a {}-byte body",
                body.len()
            );
            // The resource itself is stored whole, once per request.
            for b in flat.batches.iter().filter(|b| b.table != "resources") {
                for column in b.batch.columns() {
                    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
                        let longest = (0..strings.len()).map(|i| strings.value(i).len()).max().unwrap_or(0);
                        prop_assert!(longest <= LONGEST_STRING, "{}: a {longest}-byte string", b.table);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_over_http_get_200_400_or_413_and_the_server_keeps_serving() {
    let server = TestServer::start_with(|c| c.max_request_bytes = 64 * 1024).await;
    let seeds = seeds();
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]));
    let client = reqwest::Client::new();
    for n in 0..150 {
        let (signal, encoding, body) = &seeds[n % seeds.len()];
        let muts = mutations().new_tree(&mut runner).unwrap().current();
        let mut body = mutate(body, &muts);
        if n % 25 == 0 {
            body.resize(70 * 1024, b' ');
        }
        let path = match signal {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        };
        let content_type = match encoding {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
        };
        let resp =
            client.post(server.http_url(path)).header("content-type", content_type).body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!([200, 400, 413].contains(&status), "{path} {content_type}: {status}");
    }
    assert_eq!(reqwest::get(server.ui_url("/readyz")).await.unwrap().status(), 200);
}
