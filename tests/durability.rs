//! A span acknowledged before `kill -9` is in the database after a restart.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;

/// Starts the real binary on port-0 listeners and reads the OTLP/HTTP address it logs.
fn spawn_flowscope(db: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db"])
        .arg(db)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("OTLP/HTTP listening on http://").nth(1) {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("flowscope logs its OTLP/HTTP address");
    (child, addr)
}

fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "flowscope did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
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

    let (mut first, addr) = spawn_flowscope(&db);
    for seed in 1..=3 {
        assert_eq!(send(addr, seed), 200);
    }
    first.kill().unwrap(); // SIGKILL: no shutdown hook runs.
    first.wait().unwrap();

    let (mut second, addr) = spawn_flowscope(&db);
    assert_eq!(send(addr, 4), 200);
    let status = Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(wait_for_exit(&mut second, Duration::from_secs(60)).success(), "graceful shutdown exits 0");

    assert_eq!(count_in_file(&db, "SELECT count(*) FROM spans"), 16);
    for seed in 1..=4 {
        let conn = duckdb::Connection::open(&db).unwrap();
        let n: i64 =
            conn.query_row("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_hex(seed)], |r| r.get(0)).unwrap();
        assert_eq!(n, 4, "request {seed}");
    }
}
