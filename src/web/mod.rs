//! The UI and JSON API listener: the dashboard pages ([`pages`], drawn with [`charts`]),
//! the JSON API ([`api`]), static assets, health probes and self-metrics.

pub mod alert_pages;
pub mod api;
pub mod charts;
pub mod client_share;
pub mod flow_metrics;
pub mod hosts;
pub mod layered;
pub mod map;
pub mod page;
pub mod pages;
mod self_metrics;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Router};

use crate::alerts::Alerts;
use crate::auth::{self, BearerToken};
use crate::flows::analysis::DestinationPatterns;
use crate::flows::queries::FlowReading;
use crate::flows::StitchProgress;
use crate::ingest::Ingest;
use crate::stage::StageState;
use crate::store::Store;
pub use hosts::HostPolicy;

pub struct AppState {
    pub store: Arc<Store>,
    pub ingest: Arc<Ingest>,
    pub flows: FlowsState,
    pub alerts: Arc<Alerts>,
    /// Random per process, embedded in every form and required on every form post, so
    /// other sites cannot post forms on a user's behalf.
    pub csrf_token: String,
    /// This node's part in a cluster; None for a single process.
    pub cluster: Option<Arc<crate::lake::ClusterStatus>>,
}

impl AppState {
    pub fn new(store: Arc<Store>, ingest: Arc<Ingest>, flows: FlowsState, alerts: Arc<Alerts>) -> Self {
        let mut token = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut token);
        AppState { store, ingest, flows, alerts, csrf_token: hex::encode(token), cluster: None }
    }
}

/// Behind by more than this, pages say so.
const NOTICE_LAG: Duration = Duration::from_secs(5);

fn stitch_notice(p: &StitchProgress) -> Option<String> {
    let behind = crate::text::fmt_ms(p.lag.as_secs_f64() * 1000.0);
    match p.restitch {
        Some(r) => Some(format!(
            "Recomputing stored flows: {:.0}% done. Flows are complete up to {behind} ago.",
            r.done(p.stitched_seq) * 100.0
        )),
        None if p.lag > NOTICE_LAG => Some(format!("Flows are complete up to {behind} ago: stitching is catching up.")),
        None => None,
    }
}

/// What the pages need to know about stitching.
pub struct FlowsState {
    pub progress: watch::Receiver<StitchProgress>,
    /// Whether the stitcher thread is alive.
    pub stage: Arc<StageState>,
    pub destination_patterns: DestinationPatterns,
    pub quiet_period: Duration,
    pub max_flow_spans: usize,
    /// The text of `/metrics/flows`, prepared in the background.
    pub flow_metrics: crate::flows::export::Prepared,
    /// The commits of the file the stitcher reads (the lake's copies on a cluster node).
    pub commits: Arc<crate::store::CommitStats>,
}

impl FlowsState {
    /// The line every page shows while its flows are not complete: during a restitch,
    /// or when the stitcher is more than a few seconds behind what was received.
    pub fn notice(&self) -> Option<String> {
        stitch_notice(&self.progress.borrow())
    }

    pub fn quiet_period_ns(&self) -> i64 {
        self.quiet_period.as_nanos().min(i64::MAX as u128) as i64
    }

    /// How flow pages read a flow: as the stitcher analyses it.
    pub fn reading(&self) -> FlowReading {
        FlowReading {
            destination_patterns: self.destination_patterns.clone(),
            quiet_period_ns: self.quiet_period_ns(),
            max_spans: self.max_flow_spans,
        }
    }
}

pub fn router(state: Arc<AppState>, token: BearerToken, hosts: HostPolicy) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/flows", get(flow_metrics::flow_metrics))
        .merge(api::router())
        .merge(pages::router())
        .merge(map::router())
        .merge(alert_pages::router())
        .layer(middleware::from_fn_with_state(token, auth::require))
        .layer(middleware::from_fn_with_state(client_share::share(), client_share::limit));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/{*file}", get(static_file))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .layer(middleware::map_response(security_headers))
        .layer(middleware::from_fn_with_state(Arc::new(hosts), hosts::require_served_host))
        .with_state(state)
}

/// Pages load only their own scripts and styles (inline style attributes position the
/// timeline bars), cannot be framed, and are not content-sniffed.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    response
}

impl AppState {
    /// Every long-running stage with why it died, if it did.
    pub fn stages(&self) -> [(&'static str, Option<String>); 3] {
        [
            ("writer", self.ingest.writer().stage().dead()),
            ("stitcher", self.flows.stage.dead()),
            ("alert evaluator", self.alerts.stage().dead()),
        ]
    }
}

/// Ready when every stage runs, the database answers and the writer is accepting work.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if let Some((_, why)) = state.stages().into_iter().find_map(|(n, d)| d.map(|d| (n, d))) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"));
    }
    let db = state.store.read(|c| Ok(c.execute_batch("SELECT 1")?)).await;
    let writer = state.ingest.writer();
    let role = state.cluster.as_ref().map_or(String::new(), |c| {
        let leader = match (c.roles.stitcher, c.is_leading()) {
            (false, _) => "",
            (true, true) => ", active stitcher",
            (true, false) => ", standby stitcher",
        };
        format!(" ({}{leader})", c.roles.names().join(", "))
    });
    match db {
        Ok(()) if writer.queued_bytes() < writer.capacity_bytes() => (StatusCode::OK, format!("ready{role}\n")),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "write queue is full\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}\n")),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // A scrape still answers when the database is busy; only the DuckDB lines go missing.
    let duckdb_memory = tokio::time::timeout(Duration::from_secs(1), state.store.duckdb_memory())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut text = self_metrics::render(&state.ingest, &duckdb_memory);
    self_metrics::render_reads(&mut text, state.store.reads_in_flight());
    self_metrics::render_checkpoints(&mut text, state.store.checkpoint_stats());
    self_metrics::render_stages(&mut text, &state.stages());
    let last_commit = state.flows.commits.last_commit_seq.load(std::sync::atomic::Ordering::Relaxed);
    self_metrics::render_stitching(&mut text, &state.flows.progress.borrow(), last_commit);
    if let Some(cluster) = &state.cluster {
        self_metrics::render_cluster(&mut text, cluster);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Assets;

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> axum::response::Response {
    match Assets::get(&file) {
        Some(content) => {
            let mime = mime_guess::from_path(&file).first_or_octet_stream();
            (
                [(header::CONTENT_TYPE, mime.as_ref().to_owned()), (header::CACHE_CONTROL, "max-age=300".to_owned())],
                content.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Restitch;

    #[test]
    fn pages_say_how_far_behind_they_are() {
        let at = |lag_s: u64, restitch: Option<Restitch>, seq: i64| StitchProgress {
            lag: Duration::from_secs(lag_s),
            restitch,
            stitched_seq: seq,
            ..Default::default()
        };
        assert_eq!(stitch_notice(&at(2, None, 10)), None);
        assert_eq!(
            stitch_notice(&at(12, None, 10)).as_deref(),
            Some("Flows are complete up to 12.00 s ago: stitching is catching up.")
        );
        assert_eq!(
            stitch_notice(&at(90, Some(Restitch { from: 0, to: 200 }), 90)).as_deref(),
            Some("Recomputing stored flows: 45% done. Flows are complete up to 1.5 min ago.")
        );
    }
}
