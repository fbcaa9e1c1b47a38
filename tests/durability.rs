//! A span acknowledged before `kill -9` is in the database after a restart.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::*;
use flowscope::bench::process::ServerProcess;
use prost::Message;

fn spawn(db: &Path) -> ServerProcess {
    ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_flowscope")), db, &[]).expect("flowscope starts")
}

#[test]
fn acknowledged_spans_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flowscope.duckdb");
    let client = reqwest::blocking::Client::new();
    let send = |addr: SocketAddr, seed: u8| {
        let body = traces("checkout", (0..4).map(|i| span(seed, i, "GET /orders")).collect()).encode_to_vec();
        client
            .post(format!("http://{addr}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .unwrap()
            .status()
    };

    let mut first = spawn(&db);
    for seed in 1..=3 {
        assert_eq!(send(first.http, seed), 200);
    }
    first.child.kill().unwrap(); // SIGKILL: no shutdown hook runs.
    first.child.wait().unwrap();

    let second = spawn(&db);
    assert_eq!(send(second.http, 4), 200);
    second.stop().expect("graceful shutdown exits 0");

    assert_eq!(count_in_file(&db, "SELECT count(*) FROM spans"), 16);
    let conn = duckdb::Connection::open(&db).unwrap();
    for seed in 1..=4 {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_hex(seed)], |r| r.get(0)).unwrap();
        assert_eq!(n, 4, "request {seed}");
    }
}
