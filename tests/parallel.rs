//! Property: the stitcher writes exactly the same flows whatever its number of threads.
//! Random mixes of the demo's flows (calls, links, message ids, correlation ids in logs,
//! retries, redeliveries, dead letters, batches fanning in), shuffled and sent in small
//! requests with a restart part-way, are stitched on 1, 2 and 8 threads, and every flow
//! table read back from the file must be the same; the recorded fixtures too, on 1 and 4.

mod common;

use std::time::Duration;

use common::*;
use flowscope::demo::scenarios::{self, Builder, Delivery, Emission, MS};
use flowscope::demo::to_requests;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One case: which demo flows, from which seed, and where the server restarts.
#[derive(Debug, Clone)]
struct Mix {
    flows: Vec<u8>,
    seed: u64,
    restart_after: f64,
}

fn mixes() -> impl Strategy<Value = Mix> {
    (prop::collection::vec(0u8..7, 4..40), any::<u64>(), 0.2f64..0.8).prop_map(|(flows, seed, restart_after)| Mix {
        flows,
        seed,
        restart_after,
    })
}

fn emission(mix: &Mix) -> Emission {
    let mut rng = StdRng::seed_from_u64(mix.seed);
    let mut b = Builder::new(&mut rng);
    let t0 = flowscope::web::api::now_nanos() - 120_000 * MS;
    for (i, kind) in mix.flows.iter().enumerate() {
        let at = t0 + i as i64 * 40 * MS;
        match kind {
            0 => _ = scenarios::checkout(&mut b, at, false),
            1 => _ = scenarios::checkout(&mut b, at, true),
            2 => _ = scenarios::quote(&mut b, at),
            3 => _ = scenarios::refund(&mut b, at, Delivery::Redelivered(1 + i % 2)),
            4 => _ = scenarios::refund(&mut b, at, Delivery::DeadLettered),
            5 => _ = scenarios::fulfilment_retry(&mut b, at),
            _ => _ = scenarios::analytics_batch(&mut b, at, 2 + i % 4),
        }
    }
    b.out
}

/// Sends `emission` (spans shuffled by `seed`, in requests of a few spans, logs first)
/// to a server stitching on `threads` threads, restarting it after `restart_after` of the
/// spans; returns the flow tables.
async fn stitched_on(threads: usize, emission: &Emission, seed: u64, restart_after: f64) -> String {
    let tweak = move |c: &mut flowscope::config::Config| {
        c.stitch.threads = threads;
        c.stitch.quiet_period = Duration::from_millis(200);
    };
    let mut spans = emission.spans.clone();
    spans.shuffle(&mut StdRng::seed_from_u64(seed));
    let cut = (spans.len() as f64 * restart_after) as usize;
    let server = TestServer::start_with(tweak).await;
    let (_, logs) = to_requests(Emission { spans: vec![], logs: emission.logs.clone() });
    assert_eq!(server.post_protobuf("/v1/logs", logs.encode_to_vec()).await, 200);
    for chunk in spans[..cut].chunks(7) {
        assert_eq!(server.post_protobuf("/v1/traces", spans_request(chunk).encode_to_vec()).await, 200);
    }
    server.stitched().await;
    let (_, dir) = server.stop().await;
    let server = TestServer::start_in(dir, tweak).await;
    for chunk in spans[cut..].chunks(7) {
        assert_eq!(server.post_protobuf("/v1/traces", spans_request(chunk).encode_to_vec()).await, 200);
    }
    server.stitched().await;
    let (db, _dir) = server.stop().await;
    flow_tables(&db)
}

#[test]
fn flows_are_the_same_on_one_two_and_eight_threads() {
    let config = Config { cases: 6, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[36; 32]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runner
        .run(&mixes(), |mix| {
            rt.block_on(async {
                let emission = emission(&mix);
                let one = stitched_on(1, &emission, mix.seed, mix.restart_after).await;
                prop_assert!(one.lines().filter(|l| l.starts_with("flow|")).count() >= mix.flows.len() / 2);
                for threads in [2, 8] {
                    let many = stitched_on(threads, &emission, mix.seed, mix.restart_after).await;
                    prop_assert!(many == one, "{} threads against one:\n{}", threads, differences(&one, &many));
                }
                Ok(())
            })
        })
        .unwrap();
}

/// The flow tables after replaying a recorded fixture on `threads` threads.
async fn replayed_on(threads: usize, fixture: &str) -> String {
    let server = TestServer::start_with(|c| c.stitch.threads = threads).await;
    replay_recorded(&server, fixture).await;
    server.stitched().await;
    let (db, _dir) = server.stop().await;
    flow_tables(&db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_traffic_makes_the_same_flows_on_one_and_four_threads() {
    for fixture in ["recorded/kafka-confluent", "recorded/sqs-boto3", "recorded/pika-dlx", "recorded/aio-pika-rpc"] {
        let one = replayed_on(1, fixture).await;
        assert!(one.lines().any(|l| l.starts_with("flow|")), "{fixture} makes flows");
        let four = replayed_on(4, fixture).await;
        assert!(four == one, "{fixture}, 4 threads against one:\n{}", differences(&one, &four));
    }
}
