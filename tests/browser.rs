//! The dashboard in a real headless Chromium (Debian's `chromium`, installed by `scripts/test`),
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
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists()).expect(
        "Debian's chromium package is missing: `scripts/test` installs it, or run `sudo apt-get install chromium`",
    )
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

/// The demo's scenarios over the last ten minutes, the e-mail queue growing in the
/// second half, plus a span with a hostile name; returns the checkouts.
async fn send_demo_data(server: &TestServer) -> Vec<scenarios::Expected> {
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
    scenarios::refund(&mut b, t0 + 8_000 * MS, scenarios::Delivery::DeadLettered);
    scenarios::refund(&mut b, t0 + 9_000 * MS, scenarios::Delivery::Redelivered(1));
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
    checkouts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_in_chromium_with_the_demo_data() {
    let server = TestServer::start().await;
    let checkouts = send_demo_data(&server).await;
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

/// Measures, once Chromium has laid the page out, the boxes of the map's nodes and edge
/// labels and of the texts in them, into `<pre id="boxes">` (JSON). flowscope's pages
/// allow no inline script, so the test serves them through a loopback proxy of its own
/// that adds this one.
const MEASURE: &str = r#"<script>
window.addEventListener('load', function () {
  var box = function (e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  var items = Array.from(document.querySelectorAll('svg.flowmap g.node, svg.flowmap g.edge-label')).map(function (g) {
    return {
      node: g.classList.contains('node'),
      id: g.getAttribute('data-node') || g.getAttribute('data-edge'),
      href: g.parentNode.getAttribute('href'),
      box: box(g.querySelector('rect')),
      texts: Array.from(g.querySelectorAll('text')).map(box)
    };
  });
  var pre = document.createElement('pre');
  pre.id = 'boxes';
  pre.textContent = JSON.stringify({ svg: box(document.querySelector('svg.flowmap')), items: items });
  document.body.appendChild(pre);
});
</script>"#;

/// A loopback HTTP server passing every GET through to `upstream`, with [`MEASURE`]
/// added to HTML pages (and their script policy relaxed for it).
async fn measuring_proxy(upstream: String) -> std::net::SocketAddr {
    use axum::http::{header, Uri};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let upstream = upstream.clone();
        async move {
            let resp = reqwest::get(format!("{upstream}{uri}")).await.unwrap();
            let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let mut body = resp.text().await.unwrap();
            if kind.starts_with("text/html") {
                body = body.replace("</body>", &format!("{MEASURE}</body>"));
            }
            (status, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

type Box4 = [f64; 4];

fn overlap(a: &Box4, b: &Box4) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

fn inside(inner: &Box4, outer: &Box4) -> bool {
    const SLACK: f64 = 1.0;
    inner[0] >= outer[0] - SLACK
        && inner[1] >= outer[1] - SLACK
        && inner[0] + inner[2] <= outer[0] + outer[2] + SLACK
        && inner[1] + inner[3] <= outer[1] + outer[3] + SLACK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_renders_every_node_without_overlapping_labels_and_links_to_the_right_pages() {
    let server = TestServer::start().await;
    let checkouts = send_demo_data(&server).await;
    let api: serde_json::Value = reqwest::get(server.ui_url("/api/map?last=1h")).await.unwrap().json().await.unwrap();
    let api_nodes = api["nodes"].as_array().unwrap().len();
    let api_edges = api["edges"].as_array().unwrap().len();
    assert!(api_nodes >= 20, "the demo's services and destinations: {api}");

    let proxy = measuring_proxy(format!("http://{}", server.running().ui)).await;
    let measured_url = format!("http://{proxy}/map?last=1h");
    let direct_url = server.ui_url("/map?last=1h");
    let chain_url = server.ui_url("/chains/checkout%20POST%20%2Forders?last=1h");
    let (measured, chain_dom) = tokio::task::spawn_blocking(move || {
        let measured = dom(&measured_url);
        eprintln!("screenshot of the map: {}", screenshot(&direct_url, "map").display());
        eprintln!("screenshot of the chain page: {}", screenshot(&chain_url, "chain-map").display());
        (measured, dom(&chain_url))
    })
    .await
    .unwrap();
    let json = measured
        .split("<pre id=\"boxes\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .expect("the measuring script ran")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let boxes: serde_json::Value = serde_json::from_str(&json).unwrap();
    let svg: Box4 = serde_json::from_value(boxes["svg"].clone()).unwrap();
    let items = boxes["items"].as_array().unwrap();
    let nodes: Vec<&serde_json::Value> = items.iter().filter(|i| i["node"] == true).collect();
    assert_eq!(nodes.len(), api_nodes, "every node is drawn");
    assert_eq!(items.len() - nodes.len(), api_edges, "every edge has its label");
    let rects: Vec<(String, Box4)> = items
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), serde_json::from_value(i["box"].clone()).unwrap()))
        .collect();
    for (id, r) in &rects {
        assert!(r[2] > 10.0 && r[3] > 10.0, "{id} has a size: {r:?}");
        assert!(inside(r, &svg), "{id} lies within the map: {r:?} in {svg:?}");
    }
    for (k, (a, ra)) in rects.iter().enumerate() {
        for (b, rb) in &rects[k + 1..] {
            assert!(!overlap(ra, rb), "{a} {ra:?} overlaps {b} {rb:?}");
        }
    }
    for item in items {
        let r: Box4 = serde_json::from_value(item["box"].clone()).unwrap();
        for t in item["texts"].as_array().unwrap() {
            let t: Box4 = serde_json::from_value(t.clone()).unwrap();
            assert!(inside(&t, &r), "the text of {} fits its box: {t:?} in {r:?}", item["id"]);
        }
    }
    assert!(measured.contains("status-growing"), "the growing e-mail queue is marked");
    assert!(
        measured.contains("edge publish trouble") || measured.contains("edge-label trouble"),
        "dead letters are marked"
    );

    // Links: a queue to its card on the queue page, a service to its chains, an edge to
    // the slowest flows that crossed it.
    let href = |id: &str| -> String {
        items.iter().find(|i| i["id"] == id).unwrap_or_else(|| panic!("{id} on the map"))["href"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let page = |href: String| {
        let url = server.ui_url(&href);
        async move {
            let resp = reqwest::get(url).await.unwrap();
            assert_eq!(resp.status(), 200, "{href}");
            resp.text().await.unwrap()
        }
    };
    let queue_href = href("destination:emails");
    assert!(queue_href.starts_with("/queues?") && queue_href.ends_with("#queue-emails"), "{queue_href}");
    assert!(page(queue_href).await.contains("id=\"queue-emails\""));
    let service_page = page(href("service:inventory")).await;
    assert!(service_page.contains("Chains through inventory") && service_page.contains("checkout POST /orders"));
    assert!(!service_page.contains("quote-api GET /quote"), "only the chains inventory is in");
    let edge_page = page(href("consume destination:orders service:billing")).await;
    for c in &checkouts {
        assert!(edge_page.contains(&format!("/flows/{}", c.flow_id)), "the edge page lists {}", c.flow_id);
    }

    // The chain page draws the chain's own map.
    assert!(chain_dom.contains("class=\"flowmap\""), "the chain page has its map");
    assert!(
        chain_dom.contains("data-node=\"service:billing\"") && !chain_dom.contains("data-node=\"service:auditor\"")
    );
}
