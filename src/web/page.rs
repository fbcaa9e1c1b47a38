//! The page framework every dashboard page shares: the layout (title, search box, range
//! links, refresh), the query parameters pages take, rendering, and the error page.

use std::sync::Arc;

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::api::{now_nanos, ApiError, RangeParams};
use super::charts::{esc, fmt_clock, fmt_datetime};
use super::AppState;
use crate::flows::queries::Range;
use crate::text::urlencode;

/// Everything the shared layout needs: title, search box, time-range links, refresh.
pub struct Layout {
    pub title: String,
    pub active: &'static str,
    pub q: String,
    pub ranges: Vec<RangeLink>,
    pub refresh_href: String,
    pub refresh_on: bool,
    pub range_text: String,
    pub from_value: String,
    pub to_value: String,
    pub path: String,
    /// Query parameters of the page itself (not the range), kept by the range links and
    /// the custom-range form.
    pub hidden: Vec<(String, String)>,
    /// Shown above the page while flows are incomplete.
    pub notice: Option<String>,
}

/// One of the preset ranges at the top of every page.
pub struct RangeLink {
    pub label: String,
    pub href: String,
    pub on: bool,
}

/// A query string: a page's own parameters (values URL-encoded), then `rest` (already a
/// query string, such as the range part), joined with `&`.
pub fn page_query(own: &[(&str, &str)], rest: &str) -> String {
    own.iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .chain((!rest.is_empty()).then(|| rest.to_owned()))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query string every page shares: the range and the refresh toggle.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PageParams {
    #[serde(flatten)]
    pub range: RangeParams,
    pub refresh: Option<String>,
    pub sort: Option<String>,
    pub bucket: Option<String>,
    pub q: Option<String>,
    /// The overview: only chains through this service.
    pub service: Option<String>,
    /// How far behind the flows are, when they are (see `FlowsState::notice`).
    #[serde(skip)]
    pub notice: Option<String>,
}

/// Pages take their parameters with the stitcher's notice attached.
impl axum::extract::FromRequestParts<Arc<AppState>> for PageParams {
    type Rejection = axum::extract::rejection::QueryRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Query(mut p) = Query::<PageParams>::from_request_parts(parts, state).await?;
        p.notice = state.flows.notice();
        Ok(p)
    }
}

impl PageParams {
    fn query_string(&self, last: Option<&str>, refresh: bool) -> String {
        let mut parts = Vec::new();
        match last {
            Some(l) => parts.push(format!("last={l}")),
            None => {
                if let Some(l) = self.range.last.as_deref().filter(|s| !s.is_empty()) {
                    parts.push(format!("last={}", urlencode(l)));
                }
                if let Some(f) = self.range.from.as_deref().filter(|s| !s.is_empty()) {
                    parts.push(format!("from={}", urlencode(f)));
                }
                if let Some(t) = self.range.to.as_deref().filter(|s| !s.is_empty()) {
                    parts.push(format!("to={}", urlencode(t)));
                }
            }
        }
        if refresh {
            parts.push("refresh=on".into());
        }
        parts.join("&")
    }

    /// The range part of the URL, to carry over into links between pages.
    pub fn range_query(&self) -> String {
        self.query_string(None, false)
    }

    fn refresh_on(&self) -> bool {
        self.refresh.as_deref() == Some("on")
    }

    pub fn layout(&self, title: impl Into<String>, active: &'static str, path: &str, range: Range) -> Layout {
        self.layout_with(title, active, path, &[], range)
    }

    /// The layout of a page with parameters of its own (`page`), which its range links keep.
    pub fn layout_with(
        &self,
        title: impl Into<String>,
        active: &'static str,
        path: &str,
        page: &[(&str, &str)],
        range: Range,
    ) -> Layout {
        let current = self.range.last.clone().unwrap_or_default();
        let custom = self.range.from.is_some() || self.range.to.is_some();
        let ranges = ["15m", "1h", "6h", "24h", "7d"]
            .iter()
            .map(|l| {
                let on = !custom && (current == *l || (current.is_empty() && *l == "1h"));
                RangeLink {
                    label: l.to_string(),
                    href: format!("{path}?{}", page_query(page, &self.query_string(Some(l), self.refresh_on()))),
                    on,
                }
            })
            .collect();
        let refresh_href = format!("{path}?{}", page_query(page, &self.query_string(None, !self.refresh_on())));
        Layout {
            title: title.into(),
            active,
            q: self.q.clone().unwrap_or_default(),
            ranges,
            refresh_href,
            refresh_on: self.refresh_on(),
            range_text: format!("{} – {}", fmt_datetime(range.from), fmt_clock(range.to)),
            from_value: range.from.to_string(),
            to_value: range.to.to_string(),
            path: path.to_string(),
            hidden: page.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            notice: self.notice.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    heading: String,
    message: String,
}

/// A page that could not be shown: renders the error page with the right status.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(ApiError::Store(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading) = match &self.0 {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Not possible"),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        };
        let params = PageParams::default();
        let range = Range { from: now_nanos() - 3_600_000_000_000, to: now_nanos() };
        let page = ErrorPage {
            layout: params.layout(heading, "", "/", range),
            status: status.as_u16(),
            heading: heading.into(),
            message: self.0.to_string(),
        };
        (status, render(&page)).into_response()
    }
}

pub fn render<T: Template>(t: &T) -> Html<String> {
    Html(t.render().unwrap_or_else(|e| format!("<!doctype html><p>template error: {}</p>", esc(&e.to_string()))))
}

pub type PageResult = Result<Html<String>, PageError>;
