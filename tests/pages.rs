//! Page and API handlers called directly with `tower::ServiceExt::oneshot`: no listener,
//! the real router over a real (fresh) DuckDB file.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use flowscope::alerts::{AlertConfig, Alerts};
use flowscope::auth::BearerToken;
use flowscope::flows::analysis::DestinationPatterns;
use flowscope::flows::StitchProgress;
use flowscope::ingest::{CorrelationKeys, Encoding, Ingest, Signal};
use flowscope::store::{Store, WriterConfig};
use flowscope::web::{self, AppState, FlowsState};
use tower::ServiceExt;

async fn app() -> (axum::Router, Arc<Ingest>, tempfile::TempDir) {
    app_with_stitcher(flowscope::stage::StageState::new()).await
}

async fn app_with_stitcher(
    stitcher: Arc<flowscope::stage::StageState>,
) -> (axum::Router, Arc<Ingest>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("x.duckdb")).unwrap();
    let writer = Arc::new(store.start_writer(WriterConfig::default()).unwrap());
    let commits = Arc::clone(writer.stats());
    let ingest = Arc::new(Ingest::new(writer, CorrelationKeys::default(), 64 << 20));
    let (_progress, watcher) = tokio::sync::watch::channel(StitchProgress::default());
    let flows = FlowsState {
        progress: watcher,
        stage: stitcher,
        destination_patterns: DestinationPatterns::default(),
        quiet_period: Duration::from_secs(30),
        max_flow_spans: 10_000,
        flow_metrics: tokio::sync::watch::channel(None).1,
        commits,
    };
    let alerts = Alerts::start(
        Arc::clone(&store),
        vec![],
        AlertConfig {
            eval_interval: Duration::from_secs(60),
            webhooks: vec![],
            external_url: "http://x".into(),
            retry: Default::default(),
        },
    )
    .await
    .unwrap();
    let state = AppState::new(store, Arc::clone(&ingest), flows, alerts);
    (web::router(Arc::new(state), BearerToken::default(), web::HostPolicy::default()), ingest, dir)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, String) {
    let resp = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_with_html_and_the_right_status() {
    let (app, _ingest, _dir) = app().await;
    let table = [
        ("/", StatusCode::OK, "flowscope demo"),
        ("/queues", StatusCode::OK, "Queues"),
        ("/retries", StatusCode::OK, "No retries"),
        ("/dead-letters", StatusCode::OK, "No message reached"),
        ("/alerts", StatusCode::OK, "New rule"),
        ("/search?q=abc", StatusCode::OK, "No flow contains"),
        ("/search", StatusCode::BAD_REQUEST, "type a trace id"),
        ("/queues?from=yesterday", StatusCode::BAD_REQUEST, "from must be unix nanoseconds"),
        ("/retries?bucket=1ns", StatusCode::BAD_REQUEST, "bucket must be positive"),
        ("/flows/zz", StatusCode::BAD_REQUEST, "32 hex digits"),
        ("/flows/0123456789abcdef0123456789abcdef", StatusCode::NOT_FOUND, "no flow contains"),
        ("/chains/nothing%20here", StatusCode::NOT_FOUND, "no flows of chain"),
    ];
    for (uri, status, needle) in table {
        let (got, ct, body) = get(&app, uri).await;
        assert_eq!(got, status, "{uri}");
        assert!(ct.starts_with("text/html"), "{uri}: {ct}");
        assert!(body.contains(needle), "{uri} lacks {needle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_data_is_escaped_and_security_headers_are_set() {
    let (app, ingest, _dir) = app().await;
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "<img src=x onerror=alert(1)>"}}]},
        "scopeSpans": [{"spans": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "name": "<script>alert(1)</script>", "kind": 2,
            "startTimeUnixNano": (flowscope::text::now_nanos() - 1_000_000_000).to_string(),
            "endTimeUnixNano": flowscope::text::now_nanos().to_string()}]}]}]});
    ingest.export(Signal::Traces, Encoding::Json, body.to_string().into()).await.unwrap();
    // Search reads spans directly; the not-yet-stitched span has no flow, but the name
    // must never come back as markup from any page that echoes input.
    let (_, _, html) = get(&app, "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert!(html.contains("&#60;script&#62;alert(1)") || html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(!html.contains("<script>alert(1)</script>"));
    let resp = app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    let h = resp.headers();
    assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_api_and_static_assets() {
    let (app, _ingest, _dir) = app().await;
    let (status, ct, body) = get(&app, "/api/chains?last=15m").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/json"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["chains"], serde_json::json!([]));
    let (status, ct, body) = get(&app, "/static/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.contains("javascript"), "{ct}");
    assert!(body.contains("auto-refresh") || body.contains("refresh"));
    let (status, _, _) = get(&app, "/static/nope.css").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stage_fails_readiness_by_name_and_shows_in_metrics() {
    let stitcher = flowscope::stage::StageState::new();
    let (app, _ingest, _dir) = app_with_stitcher(Arc::clone(&stitcher)).await;
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let guarded = Arc::clone(&stitcher);
    let _ = std::thread::spawn(move || {
        let _guard = flowscope::stage::StageGuard::new("stitcher", guarded);
        panic!("a bug meets odd data");
    })
    .join();
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("the stitcher panicked"), "{body}");
    let (_, _, metrics) = get(&app, "/metrics").await;
    assert!(metrics.contains("flowscope_stage_up{stage=\"stitcher\"} 0"), "{metrics}");
    assert!(metrics.contains("flowscope_stage_up{stage=\"writer\"} 1"), "{metrics}");
}
