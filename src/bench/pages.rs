//! The pages and API calls the benchmarks time, and how: each endpoint in turn, its p50
//! and p95 latency.

use std::time::Instant;

use serde_json::{json, Value};

use super::{percentile, BenchError};

/// The pages and API calls timed, over the workload's flows in `range`: the slowest
/// flow's timeline and a search for one of its traces among them.
pub async fn page_endpoints(
    client: &reqwest::Client,
    ui: std::net::SocketAddr,
    range: &str,
) -> Vec<(&'static str, String)> {
    let get_json = |path: String| {
        let client = client.clone();
        async move { client.get(format!("http://{ui}{path}")).send().await.ok()?.json::<Value>().await.ok() }
    };
    let biggest = get_json(format!("/api/flows?{range}&sort=duration&limit=1"))
        .await
        .and_then(|v| v["flows"][0]["flow_id"].as_str().map(String::from))
        .unwrap_or_default();
    let some_trace = get_json(format!("/api/flows/{biggest}"))
        .await
        .and_then(|v| v["trace_ids"][0].as_str().map(String::from))
        .unwrap_or_default();
    vec![
        ("overview_page", format!("/?{range}")),
        ("api_chains", format!("/api/chains?{range}")),
        ("chain_page", format!("/chains/checkout%20POST%20%2Forders?{range}")),
        ("api_chain_breakdown", format!("/api/chains/checkout%20POST%20%2Forders/breakdown?{range}")),
        ("map_page", format!("/map?{range}")),
        ("api_map", format!("/api/map?{range}")),
        ("api_chain_map", format!("/api/map?{range}&chain=checkout%20POST%20%2Forders")),
        ("metrics_flows", "/metrics/flows".to_string()),
        ("api_flows_slowest", format!("/api/flows?{range}&sort=duration")),
        ("flow_timeline_page", format!("/flows/{biggest}?{range}")),
        ("api_flow", format!("/api/flows/{biggest}")),
        ("queues_page", format!("/queues?{range}")),
        ("retries_page", format!("/retries?{range}")),
        ("dead_letters_page", format!("/dead-letters?{range}")),
        ("api_search", format!("/api/search?q={some_trace}")),
    ]
}

/// GETs each of `endpoints` (name, path) `requests` times in turn: per endpoint, p50 and
/// p95 latency and the last status.
pub async fn time_pages(
    client: &reqwest::Client,
    ui: std::net::SocketAddr,
    endpoints: &[(&str, String)],
    requests: usize,
) -> Result<serde_json::Map<String, Value>, BenchError> {
    let mut timings = serde_json::Map::new();
    for (name, path) in endpoints {
        let mut ms = Vec::new();
        let mut status = 0;
        for _ in 0..requests.max(1) {
            let started = Instant::now();
            let resp =
                client.get(format!("http://{ui}{path}")).send().await.map_err(|e| BenchError::Server(e.to_string()))?;
            status = resp.status().as_u16();
            let _ = resp.bytes().await;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        timings.insert(
            name.to_string(),
            json!({"p50_ms": (percentile(&ms, 0.5) * 10.0).round() / 10.0, "p95_ms": (percentile(&ms, 0.95) * 10.0).round() / 10.0, "status": status}),
        );
    }
    Ok(timings)
}
