//! `/alerts`: rules (created, edited, disabled and deleted with HTML forms), what is firing
//! now, the history of transitions, and webhook deliveries. Every form carries the
//! process's CSRF token; posts without it are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::api::{now_nanos, ApiError};
use super::page::{page_query, render, Layout, PageError, PageParams, Pager, ROWS_PER_PAGE};
use super::AppState;
use crate::alerts::rules::{params_of, Rule, RuleError, RuleSpec, KINDS, SEVERITIES};
use crate::alerts::{store as alert_store, AlertError};
use crate::text::{datetime, urlencode};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/alerts", get(alerts_page))
        .route("/alerts/rules", post(create))
        .route("/alerts/rules/{id}", get(edit_page).post(update))
        .route("/alerts/rules/{id}/delete", post(delete))
        .route("/alerts/rules/{id}/toggle", post(toggle))
}

/// Every parameter any kind takes, in form order.
const ALL_PARAMS: &[&str] = &[
    "threshold",
    "window_seconds",
    "min_slope_per_minute",
    "max_drain_seconds",
    "seconds",
    "min_count",
    "quantile",
    "budget_ms",
];

/// The rule form as posted: text fields, validated into a [`RuleSpec`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub for_seconds: String,
    #[serde(default)]
    pub severity: String,
    pub enabled: Option<String>,
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub params: BTreeMap<String, String>,
}

fn number(field: &str, text: &str) -> Result<Option<f64>, RuleError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<f64>()
        .map(Some)
        .map_err(|_| RuleError { field: field.into(), message: format!("must be a number, got {t:?}") })
}

impl RuleForm {
    /// The spec the form describes; parameters of other kinds than the chosen one are
    /// ignored, so switching the kind does not trip over stale fields.
    pub fn to_spec(&self) -> Result<RuleSpec, RuleError> {
        let mut params = BTreeMap::new();
        for name in params_of(&self.kind) {
            if let Some(v) = number(&format!("params.{name}"), self.params.get(*name).map_or("", String::as_str))? {
                params.insert(name.to_string(), v);
            }
        }
        let mut labels = BTreeMap::new();
        for line in self.labels.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| RuleError {
                field: "labels".into(),
                message: format!("write one name=value per line, got {line:?}"),
            })?;
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let mut annotations = BTreeMap::new();
        for (k, v) in [("summary", &self.summary), ("description", &self.description)] {
            if !v.trim().is_empty() {
                annotations.insert(k.to_string(), v.trim().to_string());
            }
        }
        Ok(RuleSpec {
            name: self.name.trim().to_string(),
            kind: self.kind.trim().to_string(),
            scope: if self.scope.trim().is_empty() { "*".into() } else { self.scope.trim().to_string() },
            system: Some(self.system.trim().to_string()).filter(|s| !s.is_empty()),
            params,
            for_seconds: number("for_seconds", &self.for_seconds)?.unwrap_or(0.0),
            severity: if self.severity.is_empty() { "warning".into() } else { self.severity.clone() },
            labels,
            annotations,
            enabled: self.enabled.is_some(),
        })
    }

    fn from_rule(rule: &Rule) -> RuleForm {
        let s = &rule.spec;
        RuleForm {
            csrf: String::new(),
            name: s.name.clone(),
            kind: s.kind.clone(),
            scope: s.scope.clone(),
            system: s.system.clone().unwrap_or_default(),
            for_seconds: s.for_seconds.to_string(),
            severity: s.severity.clone(),
            enabled: s.enabled.then(|| "on".to_string()),
            labels: s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n"),
            summary: s.annotations.get("summary").cloned().unwrap_or_default(),
            description: s.annotations.get("description").cloned().unwrap_or_default(),
            params: s.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        }
    }

    fn blank() -> RuleForm {
        RuleForm {
            kind: "queue_depth".into(),
            scope: "*".into(),
            severity: "warning".into(),
            enabled: Some("on".into()),
            ..Default::default()
        }
    }
}

/// The form as the template draws it.
pub struct FormView {
    pub action: String,
    pub submit: String,
    pub form: RuleForm,
    pub error: Option<String>,
    pub kinds: Vec<(String, String)>,
    pub params: Vec<(String, String, String)>,
    pub severities: Vec<String>,
}

impl FormView {
    fn new(action: String, submit: &str, form: RuleForm, error: Option<String>) -> FormView {
        let kinds = KINDS.iter().map(|(k, p)| (k.to_string(), p.join(", "))).collect();
        let params = ALL_PARAMS
            .iter()
            .map(|p| {
                let kinds: Vec<&str> = KINDS.iter().filter(|(_, ps)| ps.contains(p)).map(|(k, _)| *k).collect();
                (p.to_string(), form.params.get(*p).cloned().unwrap_or_default(), kinds.join(" "))
            })
            .collect();
        FormView {
            action,
            submit: submit.into(),
            form,
            error,
            kinds,
            params,
            severities: SEVERITIES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub struct RuleRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub scope: String,
    pub params: String,
    pub for_seconds: String,
    pub severity: String,
    pub enabled: bool,
    pub file_managed: bool,
    pub active: usize,
}

pub struct ActiveRow {
    pub name: String,
    pub state: String,
    pub subject: String,
    pub value: String,
    pub since: String,
    pub summary: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    csrf: String,
    rules: Vec<RuleRow>,
    pager: Pager,
    /// The first [`ROWS_PER_PAGE`] active alerts, firing first, of `active_total`.
    active: Vec<ActiveRow>,
    active_total: usize,
    history: Vec<(String, String, String, String, String)>,
    deliveries: Vec<(String, String, String, String, String, String)>,
    webhooks: Vec<String>,
    form: FormView,
}

#[derive(Template)]
#[template(path = "alert_rule.html")]
struct EditPage {
    layout: Layout,
    csrf: String,
    form: FormView,
}

fn subject(labels: &BTreeMap<String, String>) -> String {
    labels.get("destination").or_else(|| labels.get("chain")).cloned().unwrap_or_default()
}

async fn alerts_view(state: &AppState, p: &PageParams, form: FormView) -> Result<AlertsPage, PageError> {
    let range = p.range.resolve(now_nanos())?;
    let instances = state.alerts.instances();
    let mut active_per_rule: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for i in &instances {
        *active_per_rule.entry(i.rule_id.as_str()).or_default() += 1;
    }
    let all_rules = state.alerts.rules();
    let rq = p.range_query();
    let pager =
        Pager::new(all_rules.len(), p.page, |n| format!("/alerts?{}", page_query(&[("page", &n.to_string())], &rq)));
    let rules = pager
        .rows(all_rules)
        .into_iter()
        .map(|r| RuleRow {
            active: active_per_rule.get(r.id.as_str()).copied().unwrap_or(0),
            params: r.spec.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
            for_seconds: format!("{}s", r.spec.for_seconds),
            id: r.id,
            name: r.spec.name,
            kind: r.spec.kind,
            scope: match r.spec.system {
                Some(s) => format!("{} ({s})", r.spec.scope),
                None => r.spec.scope,
            },
            severity: r.spec.severity,
            enabled: r.spec.enabled,
            file_managed: r.file_managed,
        })
        .collect();
    let mut active: Vec<ActiveRow> = instances
        .iter()
        .map(|i| ActiveRow {
            name: i.labels.get("alertname").cloned().unwrap_or_default(),
            state: i.phase.as_str().into(),
            subject: subject(&i.labels),
            value: format!("{:.1}", i.value),
            since: datetime(i.firing_since_unix_nano.unwrap_or(i.active_since_unix_nano)),
            summary: i.annotations.get("description").cloned().unwrap_or_default(),
            href: i.page.clone(),
        })
        .collect();
    active.sort_by(|a, b| b.state.cmp(&a.state).then(a.name.cmp(&b.name)));
    let active_total = active.len();
    active.truncate(ROWS_PER_PAGE);
    let history = alert_store::history(&state.store, 100)
        .await?
        .into_iter()
        .map(|h| {
            (
                datetime(h.time_unix_nano),
                h.rule_name,
                subject(&h.labels),
                h.transition,
                h.value.map_or(String::new(), |v| format!("{v:.1}")),
            )
        })
        .collect();
    let deliveries = alert_store::deliveries(&state.store, 50)
        .await?
        .into_iter()
        .map(|(t, d)| {
            (datetime(t), d.receiver, d.status, d.outcome, d.attempts.to_string(), d.error.unwrap_or_default())
        })
        .collect();
    Ok(AlertsPage {
        layout: p.layout("Alerts", "alerts", "/alerts", range),
        csrf: state.csrf_token.clone(),
        rules,
        pager,
        active,
        active_total,
        history,
        deliveries,
        webhooks: state.alerts.webhooks().iter().map(|w| w.display()).collect(),
        form,
    })
}

pub async fn alerts_page(State(state): State<Arc<AppState>>, p: PageParams) -> Result<Response, PageError> {
    let form = FormView::new("/alerts/rules".into(), "Create rule", RuleForm::blank(), None);
    Ok(render(&alerts_view(&state, &p, form).await?).into_response())
}

/// A posted form that carries the process's CSRF token. Posts without it (stale pages,
/// other sites) are refused with 403 before any handler runs.
pub struct CheckedForm<T>(pub T);

pub trait CarriesCsrf {
    fn csrf(&self) -> &str;
}

impl<T> FromRequest<Arc<AppState>> for CheckedForm<T>
where
    T: DeserializeOwned + CarriesCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Form(value) = Form::<T>::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        if value.csrf() != state.csrf_token {
            let message = "this form is stale or was posted from another site; reload the page and try again\n";
            return Err((StatusCode::FORBIDDEN, message).into_response());
        }
        Ok(CheckedForm(value))
    }
}

impl CarriesCsrf for RuleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl CarriesCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    CheckedForm(form): CheckedForm<RuleForm>,
) -> Result<Response, PageError> {
    let result = match form.to_spec() {
        Ok(spec) => state.alerts.create_rule(spec).await,
        Err(e) => Err(AlertError::Invalid(e)),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/alerts").into_response()),
        Err(AlertError::Invalid(e)) => {
            let view = FormView::new("/alerts/rules".into(), "Create rule", form, Some(e.to_string()));
            let page = alerts_view(&state, &PageParams::default(), view).await?;
            Ok((StatusCode::BAD_REQUEST, render(&page)).into_response())
        }
        Err(e) => Err(ApiError::from(e).into()),
    }
}

fn editable_rule(state: &AppState, id: &str) -> Result<Rule, PageError> {
    let rule = state.alerts.rule(id).ok_or_else(|| ApiError::NotFound(format!("no alert rule with id {id:?}")))?;
    if rule.file_managed {
        return Err(ApiError::Conflict(format!(
            "rule {:?} comes from the rules file; change it there",
            rule.spec.name
        ))
        .into());
    }
    Ok(rule)
}

/// The edit form for rule `id`, with `error` when a save was refused.
fn edit_form(
    state: &AppState,
    id: &str,
    title: String,
    form: RuleForm,
    error: Option<String>,
) -> Result<EditPage, PageError> {
    let p = PageParams::default();
    let range = p.range.resolve(now_nanos())?;
    let form = FormView::new(format!("/alerts/rules/{}", urlencode(id)), "Save rule", form, error);
    Ok(EditPage { layout: p.layout(title, "alerts", "/alerts", range), csrf: state.csrf_token.clone(), form })
}

async fn edit_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, PageError> {
    let rule = editable_rule(&state, &id)?;
    let page = edit_form(&state, &id, format!("Edit {}", rule.spec.name), RuleForm::from_rule(&rule), None)?;
    Ok(render(&page).into_response())
}

async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<RuleForm>,
) -> Result<Response, PageError> {
    editable_rule(&state, &id)?;
    let result = match form.to_spec() {
        Ok(spec) => state.alerts.update_rule(&id, spec).await,
        Err(e) => Err(AlertError::Invalid(e)),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/alerts").into_response()),
        Err(AlertError::Invalid(e)) => {
            let page = edit_form(&state, &id, "Edit rule".into(), form, Some(e.to_string()))?;
            Ok((StatusCode::BAD_REQUEST, render(&page)).into_response())
        }
        Err(e) => Err(ApiError::from(e).into()),
    }
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<CsrfOnly>,
) -> Result<Response, PageError> {
    state.alerts.delete_rule(&id).await.map_err(ApiError::from)?;
    Ok(Redirect::to("/alerts").into_response())
}

async fn toggle(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<CsrfOnly>,
) -> Result<Response, PageError> {
    let mut spec = editable_rule(&state, &id)?.spec;
    spec.enabled = !spec.enabled;
    state.alerts.update_rule(&id, spec).await.map_err(ApiError::from)?;
    Ok(Redirect::to("/alerts").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_to_spec() {
        let mut form = RuleForm::blank();
        form.name = "orders DLQ".into();
        form.kind = "dead_letters".into();
        form.scope = "orders.*".into();
        form.params.insert("min_count".into(), "2".into());
        form.params.insert("threshold".into(), "99".into()); // another kind's field: ignored
        form.labels = "team=payments\n\n owner = ops ".into();
        form.summary = "DLQ got {{ value }}".into();
        let spec = form.to_spec().unwrap();
        assert_eq!(spec.params, BTreeMap::from([("min_count".to_string(), 2.0)]));
        assert_eq!(spec.labels["owner"], "ops");
        assert_eq!(spec.annotations["summary"], "DLQ got {{ value }}");
        assert!(spec.enabled);
        form.params.insert("window_seconds".into(), "soon".into());
        assert_eq!(form.to_spec().unwrap_err().field, "params.window_seconds");
        form.params.remove("window_seconds");
        form.labels = "no equals".into();
        assert_eq!(form.to_spec().unwrap_err().field, "labels");
    }
}
