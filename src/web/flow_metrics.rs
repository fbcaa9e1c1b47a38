//! `GET /metrics/flows`: what only flowscope computes, for Prometheus: chain latency,
//! queue waits, retries, dead letters and queue traffic as counters and histograms, and
//! queue depth as a gauge. The text is prepared in the background
//! ([`crate::flows::export`]); a scrape copies the latest.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::api::ApiError;
use super::AppState;

/// How long a scrape right after start waits for the first prepared text.
const FIRST_PREPARATION_WAIT: Duration = Duration::from_secs(5);

pub async fn flow_metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let mut prepared = state.flows.flow_metrics.clone();
    let text = match tokio::time::timeout(FIRST_PREPARATION_WAIT, prepared.wait_for(Option::is_some)).await {
        Ok(Ok(text)) => text.clone().unwrap_or_default(),
        _ => return Err(ApiError::Unavailable("flow metrics are being prepared; scrape again shortly".into())),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
