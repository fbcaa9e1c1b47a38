//! The JSON API under `/api/`: what each page shows, for scripts and the alert evaluator.
//! Times are unix nanoseconds, durations milliseconds.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::alerts::rules::{Rule, RuleSpec};
use crate::alerts::{store as alert_store, AlertError};
use crate::flows::map::FlowMap;
use crate::flows::queries::{self, FlowOrder, Range};
use crate::store::StoreError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/search", get(search))
        .route("/api/flows", get(flows))
        .route("/api/flows/{flow_id}", get(flow))
        .route("/api/chains", get(chains))
        .route("/api/chains/{chain}/breakdown", get(chain_breakdown))
        .route("/api/map", get(map))
        .route("/api/queues", get(queues))
        .route("/api/retries", get(retries))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/stitching", get(stitching))
        .route("/api/alert-rules", get(list_rules).post(create_rule))
        .route("/api/alert-rules/{id}", get(get_rule).put(update_rule).delete(delete_rule))
        .route("/api/alerts", get(alerts))
}

/// An API failure: a status and a message naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Not ready yet (answered 503, with a retry hint).
    #[error("{0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            AlertError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AlertError::FileManaged(_) | AlertError::TooMany(_) => ApiError::Conflict(e.to_string()),
            AlertError::Store(s) => ApiError::Store(s),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => {
                let body = Json(ErrorBody { error: self.to_string() });
                return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], body).into_response();
            }
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

pub use crate::text::now_nanos;

/// What every failed API request answers.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `{"flows": [...]}` and the like: every list the API returns is named.
#[derive(Debug, Serialize)]
pub struct Flows<T> {
    pub flows: Vec<T>,
}

#[derive(Debug, Serialize)]
pub struct Chains {
    pub chains: Vec<queries::ChainStats>,
}

#[derive(Debug, Serialize)]
pub struct Queues {
    pub queues: Vec<queries::QueueView>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetters {
    pub dead_letters: Vec<queries::DeadLetterRow>,
}

#[derive(Debug, Serialize)]
pub struct Rules {
    pub rules: Vec<RuleView>,
}

/// The stitcher's progress and the join keys it gave up on.
#[derive(Debug, Serialize)]
pub struct Stitching {
    pub stitched_commit_seq: i64,
    pub spans_stitched: u64,
    pub flows_written: u64,
    pub rounds: u64,
    pub last_error: Option<String>,
    pub ignored_join_keys: Vec<queries::IgnoredKeyRow>,
    /// Commits that failed stitching again and again, even alone, and were skipped.
    pub set_aside_total: u64,
    pub set_aside_commits: Vec<queries::SetAsideRow>,
}

/// A webhook delivery with when it was made.
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub time_unix_nano: i64,
    #[serde(flatten)]
    pub record: alert_store::DeliveryRecord,
}

/// Active alerts (pending and firing), recent transitions and webhook deliveries.
#[derive(Debug, Serialize)]
pub struct AlertsView {
    pub evaluations: u64,
    pub last_evaluation: crate::alerts::EvaluationStats,
    pub rule_errors: std::collections::BTreeMap<String, String>,
    pub active: Vec<crate::alerts::state::Instance>,
    pub history: Vec<alert_store::HistoryEntry>,
    pub deliveries: Vec<Delivery>,
}

/// `from`/`to` in unix nanoseconds, or `last` as a duration (`15m`, `6h`); the default is
/// the last hour.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RangeParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub last: Option<String>,
}

pub const DEFAULT_RANGE: Duration = Duration::from_secs(3600);
/// Shortest range a page or the API shows: charts cut a range into buckets and ticks.
pub const MIN_RANGE_NS: i64 = 1_000_000_000;

impl RangeParams {
    pub fn resolve(&self, now: i64) -> Result<Range, ApiError> {
        let nanos = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<i64>()
                        .map_err(|_| ApiError::BadRequest(format!("{name} must be unix nanoseconds, got {s:?}")))
                })
                .transpose()
        };
        let to = nanos("to", &self.to)?.unwrap_or(now);
        let last = match self.last.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => humantime::parse_duration(s)
                .map_err(|e| ApiError::BadRequest(format!("last must be a duration like 15m or 6h: {e}")))?,
            None => DEFAULT_RANGE,
        };
        let from = nanos("from", &self.from)?
            .unwrap_or_else(|| to.saturating_sub(last.as_nanos().min(i64::MAX as u128) as i64));
        if from >= to {
            return Err(ApiError::BadRequest(format!("from ({from}) must be before to ({to})")));
        }
        if from < 0 {
            return Err(ApiError::BadRequest(format!("from ({from}) must not be before 1970")));
        }
        if to - from < MIN_RANGE_NS {
            return Err(ApiError::BadRequest(format!(
                "the range must be at least one second long, got {} ns",
                to - from
            )));
        }
        Ok(Range { from, to })
    }
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
}

async fn search(
    State(state): State<Arc<AppState>>,
    Query(p): Query<SearchParams>,
) -> Result<Json<Flows<queries::SearchHit>>, ApiError> {
    let q = p.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::BadRequest("q is required: a trace id, span id, message id or correlation id".into()));
    }
    Ok(Json(Flows { flows: queries::search(&state.store, q).await? }))
}

#[derive(Debug, Deserialize)]
struct FlowsParams {
    #[serde(flatten)]
    range: RangeParams,
    chain: Option<String>,
    limit: Option<String>,
    sort: Option<String>,
}

pub fn parse_limit(limit: Option<&str>) -> Result<i64, ApiError> {
    match limit.filter(|s| !s.is_empty()) {
        None => Ok(100),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!("limit must be a number from 1 to 10000, got {s:?}"))),
        },
    }
}

pub fn parse_sort(sort: Option<&str>) -> Result<FlowOrder, ApiError> {
    match sort.filter(|s| !s.is_empty()) {
        None | Some("time") | Some("start") => Ok(FlowOrder::Newest),
        Some("duration") => Ok(FlowOrder::Slowest),
        Some(other) => Err(ApiError::BadRequest(format!("sort must be time or duration, got {other:?}"))),
    }
}

async fn flows(
    State(state): State<Arc<AppState>>,
    Query(p): Query<FlowsParams>,
) -> Result<Json<Flows<queries::FlowRow>>, ApiError> {
    let range = p.range.resolve(now_nanos())?;
    let limit = parse_limit(p.limit.as_deref())?;
    let order = parse_sort(p.sort.as_deref())?;
    let chain = p.chain.filter(|c| !c.is_empty());
    Ok(Json(Flows { flows: queries::flows(&state.store, range, chain, order, limit).await? }))
}

async fn flow(
    State(state): State<Arc<AppState>>,
    Path(flow_id): Path<String>,
) -> Result<Json<queries::FlowDetail>, ApiError> {
    Ok(Json(load_flow(&state, &flow_id).await?))
}

/// The flow containing `flow_id` (a flow id or any trace id of it), for the API and the
/// timeline page.
pub async fn load_flow(state: &AppState, flow_id: &str) -> Result<queries::FlowDetail, ApiError> {
    if flow_id.len() != 32 || !flow_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!("a flow id is 32 hex digits, got {flow_id:?}")));
    }
    queries::flow(&state.store, flow_id.to_string(), state.flows.reading())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no flow contains {flow_id}")))
}

async fn chain_breakdown(
    State(state): State<Arc<AppState>>,
    Path(chain): Path<String>,
    Query(p): Query<RangeParams>,
) -> Result<Json<crate::flows::breakdown::Breakdown>, ApiError> {
    let range = p.resolve(now_nanos())?;
    Ok(Json(queries::chain_breakdown(&state.store, range, chain).await?))
}

#[derive(Debug, Deserialize)]
struct ChainsParams {
    #[serde(flatten)]
    range: RangeParams,
    /// Only chains whose flows go through this service.
    service: Option<String>,
}

async fn chains(State(state): State<Arc<AppState>>, Query(p): Query<ChainsParams>) -> Result<Json<Chains>, ApiError> {
    let range = p.range.resolve(now_nanos())?;
    let service = p.service.filter(|s| !s.is_empty());
    Ok(Json(Chains { chains: queries::chains(&state.store, range, service).await? }))
}

#[derive(Debug, Deserialize)]
struct MapParams {
    #[serde(flatten)]
    range: RangeParams,
    chain: Option<String>,
}

/// Services, destinations and the calls, publishes and consumptions between them.
async fn map(State(state): State<Arc<AppState>>, Query(p): Query<MapParams>) -> Result<Json<FlowMap>, ApiError> {
    let range = p.range.resolve(now_nanos())?;
    let chain = p.chain.filter(|c| !c.is_empty());
    Ok(Json(queries::flow_map(&state.store, range, chain).await?))
}

async fn queues(State(state): State<Arc<AppState>>, Query(p): Query<RangeParams>) -> Result<Json<Queues>, ApiError> {
    let range = p.resolve(now_nanos())?;
    Ok(Json(Queues { queues: queries::queues(&state.store, range).await? }))
}

#[derive(Debug, Deserialize)]
struct RetryParams {
    #[serde(flatten)]
    range: RangeParams,
    bucket: Option<String>,
}

/// The heatmap bucket: given as a duration (`1m`) or in nanoseconds, else 1/40 of the range.
pub fn parse_bucket(bucket: Option<&str>, range: Range) -> Result<i64, ApiError> {
    let ns = match bucket.filter(|s| !s.is_empty()) {
        None => (range.to - range.from) / 40,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => humantime::parse_duration(s)
                .map_err(|_| {
                    ApiError::BadRequest(format!("bucket must be a duration like 1m or nanoseconds, got {s:?}"))
                })?
                .as_nanos()
                .min(i64::MAX as u128) as i64,
        },
    };
    if ns <= 0 || (range.to - range.from) / ns > 2000 {
        return Err(ApiError::BadRequest("bucket must be positive and cut the range into at most 2000 columns".into()));
    }
    Ok(ns.max(1))
}

async fn retries(
    State(state): State<Arc<AppState>>,
    Query(p): Query<RetryParams>,
) -> Result<Json<queries::RetryView>, ApiError> {
    let range = p.range.resolve(now_nanos())?;
    let bucket = parse_bucket(p.bucket.as_deref(), range)?;
    Ok(Json(queries::retries(&state.store, range, bucket).await?))
}

async fn dead_letters(
    State(state): State<Arc<AppState>>,
    Query(p): Query<RangeParams>,
) -> Result<Json<DeadLetters>, ApiError> {
    let range = p.resolve(now_nanos())?;
    Ok(Json(DeadLetters { dead_letters: queries::dead_letters(&state.store, range).await? }))
}

async fn stitching(State(state): State<Arc<AppState>>) -> Result<Json<Stitching>, ApiError> {
    let progress = state.flows.progress.borrow().clone();
    Ok(Json(Stitching {
        stitched_commit_seq: progress.stitched_seq,
        spans_stitched: progress.spans_stitched,
        flows_written: progress.flows_written,
        rounds: progress.rounds,
        last_error: progress.last_error,
        ignored_join_keys: queries::ignored_keys(&state.store).await?,
        set_aside_total: progress.set_aside,
        set_aside_commits: queries::set_aside_commits(&state.store).await?,
    }))
}

/// A rule as the API shows it: the spec plus its id and where it comes from.
#[derive(Debug, Serialize)]
pub struct RuleView {
    pub id: String,
    pub file_managed: bool,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

impl From<Rule> for RuleView {
    fn from(r: Rule) -> Self {
        RuleView { id: r.id, file_managed: r.file_managed, spec: r.spec }
    }
}

type RuleBody = Result<Json<RuleSpec>, axum::extract::rejection::JsonRejection>;

fn rule_body(body: RuleBody) -> Result<RuleSpec, ApiError> {
    body.map(|Json(spec)| spec).map_err(|e| ApiError::BadRequest(format!("invalid rule: {}", e.body_text())))
}

async fn list_rules(State(state): State<Arc<AppState>>) -> Json<Rules> {
    Json(Rules { rules: state.alerts.rules().into_iter().map(RuleView::from).collect() })
}

async fn create_rule(
    State(state): State<Arc<AppState>>,
    body: RuleBody,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let rule = state.alerts.create_rule(rule_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

async fn get_rule(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<RuleView>, ApiError> {
    let rule = state.alerts.rule(&id).ok_or_else(|| ApiError::NotFound(format!("no alert rule with id {id:?}")))?;
    Ok(Json(rule.into()))
}

async fn update_rule(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: RuleBody,
) -> Result<Json<RuleView>, ApiError> {
    Ok(Json(state.alerts.update_rule(&id, rule_body(body)?).await?.into()))
}

async fn delete_rule(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.alerts.delete_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn alerts(State(state): State<Arc<AppState>>) -> Result<Json<AlertsView>, ApiError> {
    let history = alert_store::history(state.alerts.store(), 200).await?;
    let deliveries = alert_store::deliveries(state.alerts.store(), 200)
        .await?
        .into_iter()
        .map(|(time_unix_nano, record)| Delivery { time_unix_nano, record })
        .collect();
    Ok(Json(AlertsView {
        evaluations: state.alerts.evaluations(),
        last_evaluation: state.alerts.last_evaluation(),
        rule_errors: state.alerts.rule_errors(),
        active: state.alerts.instances(),
        history,
        deliveries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |from: Option<&str>, to: Option<&str>, last: Option<&str>| RangeParams {
            from: from.map(Into::into),
            to: to.map(Into::into),
            last: last.map(Into::into),
        };
        let h = 3_600_000_000_000i64;
        assert_eq!(p(None, None, None).resolve(10 * h).unwrap(), Range { from: 9 * h, to: 10 * h });
        assert_eq!(p(None, None, Some("15m")).resolve(4 * h).unwrap(), Range { from: 4 * h - h / 4, to: 4 * h });
        assert_eq!(p(Some("5"), Some("1000000005"), None).resolve(0).unwrap(), Range { from: 5, to: 1_000_000_005 });
        for bad in [
            p(Some("x"), None, None),
            p(None, Some("1.5"), None),
            p(None, None, Some("soon")),
            p(Some("10"), Some("5"), None),
            // Shorter than a second, before 1970.
            p(Some("5"), Some("10"), None),
            p(Some("1700000000000000000"), Some("1700000000000000256"), None),
            p(Some("-9000000000000000000"), Some("9000000000000000000"), None),
        ] {
            assert!(matches!(bad.resolve(h), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn limits_sorts_buckets() {
        assert_eq!(parse_limit(None).unwrap(), 100);
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("abc")).is_err());
        assert_eq!(parse_sort(Some("duration")).unwrap(), FlowOrder::Slowest);
        assert!(parse_sort(Some("size")).is_err());
        let r = Range { from: 0, to: 3_600_000_000_000 };
        assert_eq!(parse_bucket(Some("1m"), r).unwrap(), 60_000_000_000);
        assert_eq!(parse_bucket(None, r).unwrap(), 90_000_000_000);
        assert!(parse_bucket(Some("1ms"), r).is_err());
        assert!(parse_bucket(Some("-5"), r).is_err());
    }
}
