//! The dashboard in a real headless Chromium (Debian's `chromium`, installed by .ci/run),
//! against a server filled with the demo's scenarios. Each page's DOM is checked and a
//! screenshot of it is written under the cargo target tmp dir (`screenshots/`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use flowscope::demo::scenarios::{self, Builder, Pending, MS};
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is installed (.ci/run installs Debian's chromium package)")
}

fn chromium_run(extra: &[String], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url);
    let out = cmd.output().expect("chromium runs");
    assert!(out.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The DOM after Chromium loaded the page and ran its scripts.
fn dom(url: &str) -> String {
    String::from_utf8(chromium_run(&["--dump-dom".into()], url).stdout).unwrap()
}

fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&file);
    chromium_run(&[format!("--screenshot={}", file.display()), "--window-size=1400,1000".into()], url);
    assert!(std::fs::metadata(&file).map(|m| m.len() > 1000).unwrap_or(false), "screenshot of {url} written");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_in_chromium_with_the_demo_data() {
    let server = TestServer::start().await;
    let mut rng = StdRng::seed_from_u64(5);
    let mut b = Builder::new(&mut rng);
    let now = flowscope::web::api::now_nanos();
    let t0 = now - 10 * 60_000 * MS;
    let mut checkouts = Vec::new();
    for n in 0..8 {
        checkouts.push(scenarios::checkout(&mut b, t0 + n * 20_000 * MS, n == 3));
    }
    scenarios::quote(&mut b, t0 + 5_000 * MS);
    scenarios::shipping(&mut b, t0 + 6_000 * MS);
    scenarios::analytics_batch(&mut b, t0 + 7_000 * MS, 4);
    let mut pending = Pending::new();
    for tick in 0..10 {
        let (sent, consumed) = if tick < 4 { (3, 3) } else { (3, 1) };
        scenarios::emails_tick(&mut b, t0 + tick * 60_000 * MS, 60_000 * MS, sent, consumed, &mut pending);
    }
    let (traces_req, logs_req) = flowscope::demo::to_requests(std::mem::take(&mut b.out));
    assert_eq!(server.post_protobuf("/v1/traces", traces_req.encode_to_vec()).await, 200);
    assert_eq!(server.post_protobuf("/v1/logs", logs_req.encode_to_vec()).await, 200);
    // A hostile span name must render as text.
    let mut evil = span(77, 0, "<script>alert(1)</script>");
    evil.start_time_unix_nano = (now - 60_000 * MS) as u64;
    evil.end_time_unix_nano = (now - 59_000 * MS) as u64;
    assert_eq!(server.post_protobuf("/v1/traces", traces("<b>evil</b>", vec![evil]).encode_to_vec()).await, 200);
    tokio::time::timeout(Duration::from_secs(60), server.running().wait_stitched()).await.unwrap();

    let range = "last=1h";
    let page = |path: &str| server.ui_url(&format!("{path}{}{range}", if path.contains('?') { "&" } else { "?" }));

    let overview = tokio::task::spawn_blocking({
        let url = page("/");
        move || dom(&url)
    })
    .await
    .unwrap();
    assert!(overview.contains("checkout POST /orders"), "the chains table lists the demo chains");
    assert!(overview.contains("quote-api GET /quote") && overview.contains("warehouse POST /dispatch"));
    assert!(overview.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the hostile span name is shown as text");
    assert!(!overview.contains("<script>alert(1)</script>"), "and never as markup");
    assert!(!overview.contains("<b>evil</b>"));

    let flow_id = &checkouts[0].flow_id;
    let (status, flow_json) = {
        let resp = reqwest::get(server.ui_url(&format!("/api/flows/{flow_id}"))).await.unwrap();
        (resp.status(), resp.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    let span_count = flow_json["spans"].as_array().unwrap().len();
    let wait_count = flow_json["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["producer_span_id"].is_null() && !h["consumer_span_ids"].as_array().unwrap().is_empty())
        .count();
    let flow_url = page(&format!("/flows/{flow_id}"));
    let chain_url = page("/chains/checkout%20POST%20%2Forders");
    let urls = vec![
        ("overview", page("/")),
        ("chain", chain_url.clone()),
        ("flow", flow_url.clone()),
        ("queues", page("/queues")),
        ("retries", page("/retries")),
        ("dead-letters", page("/dead-letters")),
        ("alerts", page("/alerts")),
    ];
    let doms = tokio::task::spawn_blocking(move || {
        urls.into_iter()
            .map(|(name, url)| {
                let d = dom(&url);
                let shot = screenshot(&url, name);
                eprintln!("screenshot of {name}: {}", shot.display());
                (name, d)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let get = |name: &str| doms.iter().find(|(n, _)| *n == name).unwrap().1.clone();

    let flow = get("flow");
    let span_bars = flow.matches("<div class=\"bar svc").count();
    assert_eq!(span_bars, span_count, "one bar per span");
    assert_eq!(flow.matches("<div class=\"bar wait").count(), wait_count, "one queue-wait bar per hop");
    assert!(wait_count >= 2);
    assert!(flow.contains("critical"), "the critical path is marked");
    assert!(flow.contains("<details"), "span details open without JavaScript");

    let chain = get("chain");
    assert!(chain.contains("Slowest flows") && chain.contains("<svg"), "chain page draws its charts");
    assert!(chain.contains(&format!("/flows/{}", checkouts[0].flow_id)) || chain.contains("/flows/"));

    let retries = get("retries");
    assert!(retries.contains("class=\"cell h"), "the heatmap has cells");
    assert!(retries.contains("service:billing"));

    let dead = get("dead-letters");
    assert!(dead.contains("orders.DLT"), "the poison message is listed");
    assert!(dead.contains(&format!("/flows/{}", checkouts[3].flow_id)));

    let queues = get("queues");
    assert!(queues.contains("emails") && queues.contains("growing"), "the growing queue shows");

    assert!(get("alerts").contains("Alerts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_install_unknown_flow_and_bad_parameters() {
    let server = TestServer::start().await;
    let url = server.ui_url("/");
    let html = tokio::task::spawn_blocking(move || dom(&url)).await.unwrap();
    assert!(html.contains("flowscope demo"), "a fresh install explains how to send data");
    assert!(html.contains("OTEL_EXPORTER_OTLP_ENDPOINT"));

    let resp = reqwest::get(server.ui_url(&format!("/flows/{}", "ab".repeat(16)))).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("no flow contains"));
    let resp = reqwest::get(server.ui_url("/queues?from=yesterday")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("from must be unix nanoseconds"));
    let resp = reqwest::get(server.ui_url("/static/style.css")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
}
