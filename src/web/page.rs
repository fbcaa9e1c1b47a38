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

/// Rows per page of the long lists: chains, destinations, alert rules.
pub const ROWS_PER_PAGE: usize = 100;

/// Which rows of a long list a page shows, and links to the pages before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Pager {
    pub number: usize,
    pub pages: usize,
    pub total: usize,
    /// The rows shown, 1-based and inclusive, for "101-200 of 5,000".
    pub first: usize,
    pub last: usize,
    /// Empty on the first (last) page.
    pub previous_href: String,
    pub next_href: String,
}

impl Pager {
    /// Page `requested` (clamped to those there are) of `total` rows; `href(n)` is the
    /// address of page `n`.
    pub fn new(total: usize, requested: Option<usize>, href: impl Fn(usize) -> String) -> Pager {
        let pages = total.div_ceil(ROWS_PER_PAGE).max(1);
        let number = requested.unwrap_or(1).clamp(1, pages);
        let first = (number - 1) * ROWS_PER_PAGE;
        Pager {
            number,
            pages,
            total,
            first: (first + 1).min(total),
            last: (first + ROWS_PER_PAGE).min(total),
            previous_href: if number > 1 { href(number - 1) } else { String::new() },
            next_href: if number < pages { href(number + 1) } else { String::new() },
        }
    }

    /// The rows of this page out of all of them.
    pub fn rows<T>(&self, all: Vec<T>) -> Vec<T> {
        all.into_iter().skip((self.number - 1) * ROWS_PER_PAGE).take(ROWS_PER_PAGE).collect()
    }
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
    /// Which page of a long list (chains, destinations, rules), from 1.
    pub page: Option<usize>,
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
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagers_clamp_and_link_their_neighbours() {
        let href = |n: usize| format!("/?page={n}");
        let cases = [
            // (rows, requested) -> (page, pages, first, last, previous, next)
            ((0, None), (1, 1, 0, 0, "", "")),
            ((50, Some(3)), (1, 1, 1, 50, "", "")),
            ((250, None), (1, 3, 1, 100, "", "/?page=2")),
            ((250, Some(2)), (2, 3, 101, 200, "/?page=1", "/?page=3")),
            ((250, Some(99)), (3, 3, 201, 250, "/?page=2", "")),
            ((250, Some(0)), (1, 3, 1, 100, "", "/?page=2")),
        ];
        for ((rows, requested), (number, pages, first, last, previous, next)) in cases {
            let p = Pager::new(rows, requested, href);
            assert_eq!(
                (p.number, p.pages, p.first, p.last, p.previous_href.as_str(), p.next_href.as_str()),
                (number, pages, first, last, previous, next),
                "{rows} rows, page {requested:?}"
            );
            assert_eq!(p.rows((0..rows).collect()).len(), if rows == 0 { 0 } else { last - first + 1 });
        }
    }
}
