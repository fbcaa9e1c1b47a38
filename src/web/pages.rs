//! The dashboard: server-rendered pages (askama templates in `templates/`) that work with
//! JavaScript off. Each handler gathers its data through `flows::queries` (the same calls
//! the JSON API makes), shapes it into a small view model, and renders.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::api::{load_flow, now_nanos, parse_bucket, ApiError};
use super::charts::{self, fmt_count, fmt_datetime, fmt_ms, fmt_rate, LineSeries, PairedBar};
use super::page::{page_query, render, Layout, PageError, PageParams, PageResult, Pager};
use super::timeline::{pct, timeline_rows, TimelineRow};
use super::AppState;
use crate::flows::backlog::QueueStatus;
use crate::flows::breakdown::{Breakdown, StepDelta};
use crate::flows::queries::{self, FlowDetail, FlowOrder};
pub use crate::text::urlencode;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview))
        .route("/chains/{chain}", get(chain))
        .route("/flows/{flow_id}", get(flow))
        .route("/queues", get(queues))
        .route("/retries", get(retries))
        .route("/dead-letters", get(dead_letters))
        .route("/search", get(search))
}

// ---------------------------------------------------------------- overview

pub struct ChainRow {
    pub chain: String,
    pub href: String,
    pub count: i64,
    pub error_pct: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub queue_share: String,
    pub retries: i64,
    pub dead_letters: i64,
    pub path: String,
    pub sparkline: String,
}

/// A growing or stalled queue on the overview's tile.
pub struct TroubledQueue {
    pub destination: String,
    pub status: &'static str,
    pub depth: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    empty: bool,
    chains: Vec<ChainRow>,
    pager: Pager,
    sort_links: Vec<(String, String)>,
    firing_alerts: usize,
    troubled_queues: Vec<TroubledQueue>,
    dead_letter_count: usize,
    range_query: String,
    /// The service the chains are filtered by (from a map node), or empty.
    service: String,
}

async fn overview(State(state): State<Arc<AppState>>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    // Independent reads on separate pooled connections, side by side.
    let (mut chains, queues, dead) = tokio::try_join!(
        queries::chains_over_time(&state.store, range, p.service.clone().filter(|s| !s.is_empty()), 24),
        queries::queues(&state.store, range),
        queries::dead_letters(&state.store, range),
    )?;
    let empty = chains.is_empty() && !queries::has_any_span(&state.store).await?;
    let sort = p.sort.clone().unwrap_or_else(|| "p95".into());
    let key = |(c, _): &(queries::ChainStats, _)| -> f64 {
        match sort.as_str() {
            "count" => c.count as f64,
            "errors" => c.error_rate,
            "p50" => c.p50_ms,
            "p99" => c.p99_ms,
            "queue" => c.queue_wait_share,
            "retries" => c.retries as f64,
            "dead" => c.dead_letters as f64,
            _ => c.p95_ms,
        }
    };
    if sort == "chain" {
        chains.sort_by(|a, b| a.0.chain.cmp(&b.0.chain));
    } else {
        chains.sort_by(|a, b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal));
    }
    let rq = p.range_query();
    let service = p.service.clone().unwrap_or_default();
    let own: Vec<(&str, &str)> = if service.is_empty() { vec![] } else { vec![("service", service.as_str())] };
    let pager = Pager::new(chains.len(), p.page, |n| {
        let page = n.to_string();
        let sorted: &[(&str, &str)] = &[("sort", sort.as_str()), ("page", page.as_str())];
        format!("/?{}", page_query(&[own.as_slice(), sorted].concat(), &rq))
    });
    let rows = pager
        .rows(chains)
        .into_iter()
        .map(|(c, series)| {
            let p95s: Vec<f64> = series.iter().map(|x| x.p95_ms).collect();
            ChainRow {
                href: format!("/chains/{}?{rq}", urlencode(&c.chain)),
                sparkline: charts::sparkline(&p95s, &format!("p95 of {} over the range", c.chain)),
                count: c.count,
                error_pct: format!("{:.1}%", c.error_rate * 100.0),
                p50: fmt_ms(c.p50_ms),
                p95: fmt_ms(c.p95_ms),
                p99: fmt_ms(c.p99_ms),
                queue_share: format!("{:.0}%", c.queue_wait_share * 100.0),
                retries: c.retries,
                dead_letters: c.dead_letters,
                path: c.path.join(" → "),
                chain: c.chain,
            }
        })
        .collect();
    let sort_links = ["chain", "count", "errors", "p50", "p95", "p99", "queue", "retries", "dead"]
        .iter()
        .map(|k| (k.to_string(), format!("/?{}", page_query(&[own.as_slice(), &[("sort", *k)]].concat(), &rq))))
        .collect();
    let troubled_queues = queues
        .iter()
        .filter(|q| matches!(q.status, QueueStatus::Growing | QueueStatus::Stalled))
        .map(|q| TroubledQueue {
            destination: q.destination.clone(),
            status: q.status.as_str(),
            depth: fmt_count(q.depth),
        })
        .collect();
    let page = OverviewPage {
        layout: p.layout_with("Overview", "overview", "/", &own, range),
        empty,
        chains: rows,
        pager,
        sort_links,
        firing_alerts: state
            .alerts
            .instances()
            .iter()
            .filter(|i| i.phase == crate::alerts::state::Phase::Firing)
            .count(),
        troubled_queues,
        dead_letter_count: dead.len(),
        range_query: rq,
        service: service.clone(),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- chain

pub struct FlowLinkRow {
    pub href: String,
    pub start: String,
    pub duration: String,
    pub error: bool,
    pub hops: i32,
    pub retries: i32,
    pub dead_letters: i32,
    pub queue_wait: String,
    pub spans: i32,
}

#[derive(Template)]
#[template(path = "chain.html")]
struct ChainPage {
    layout: Layout,
    chain: String,
    count: usize,
    percentiles: Vec<(String, String)>,
    histogram: String,
    over_time: String,
    breakdown: String,
    /// "The slowest 5% spend +820 ms waiting in emails.q and ..."; empty without a tail.
    tail_summary: String,
    tail_chart: String,
    slowest: Vec<FlowLinkRow>,
    /// The chain's map (SVG), empty without edges.
    map: String,
}

/// Histogram bars (label, count, tooltip) for power-of-two buckets, gaps filled with zeros.
pub fn log_buckets(counts: &[(u32, i64)]) -> Vec<(String, f64, String)> {
    let (Some(min), Some(max)) = (counts.iter().map(|c| c.0).min(), counts.iter().map(|c| c.0).max()) else {
        return Vec::new();
    };
    (min..=max)
        .map(|b| {
            let n: i64 = counts.iter().filter(|c| c.0 == b).map(|c| c.1).sum();
            let upper = 2f64.powi(b as i32);
            (fmt_ms(upper), n as f64, format!("≤ {}: {n} flows", fmt_ms(upper)))
        })
        .collect()
}

async fn chain(State(state): State<Arc<AppState>>, Path(chain): Path<String>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let (overview, slowest, tail, map) = tokio::try_join!(
        queries::chain_overview(&state.store, range, chain.clone(), 30),
        queries::flows(&state.store, range, Some(chain.clone()), FlowOrder::Slowest, 20),
        queries::chain_breakdown(&state.store, range, chain.clone()),
        queries::flow_map(&state.store, range, Some(chain.clone())),
    )?;
    let Some((summary, points, hops)) = overview else {
        return Err(ApiError::NotFound(format!("no flows of chain {chain:?} in this time range")).into());
    };

    let percentiles = vec![
        ("p50".to_string(), fmt_ms(summary.p50_ms)),
        ("p95".to_string(), fmt_ms(summary.p95_ms)),
        ("p99".to_string(), fmt_ms(summary.p99_ms)),
        ("max".to_string(), fmt_ms(summary.max_ms)),
    ];
    let p50: Vec<(i64, f64)> = points.iter().map(|x| (x.bucket_start_unix_nano, x.p50_ms)).collect();
    let p95: Vec<(i64, f64)> = points.iter().map(|x| (x.bucket_start_unix_nano, x.p95_ms)).collect();
    let p99: Vec<(i64, f64)> = points.iter().map(|x| (x.bucket_start_unix_nano, x.p99_ms)).collect();
    let over_time = charts::line_chart(
        &[
            LineSeries { name: "p50", class: "s0", points: &p50 },
            LineSeries { name: "p95", class: "s1", points: &p95 },
            LineSeries { name: "p99", class: "s2", points: &p99 },
        ],
        range.from,
        range.to,
        "latency",
        1.0,
        fmt_ms,
    );
    let mut rows: Vec<(String, Vec<(&str, f64)>)> = Vec::new();
    let (svc, wait, retry) = (summary.service_ms, summary.queue_wait_ms, summary.retry_delay_ms);
    rows.push(("whole flow, p50".to_string(), vec![("svc", svc.0), ("wait", wait.0), ("retry", retry.0)]));
    rows.push(("whole flow, p95".to_string(), vec![("svc", svc.1), ("wait", wait.1), ("retry", retry.1)]));
    for h in &hops {
        let dest = h.destination.clone().unwrap_or_else(|| "(unnamed)".into());
        rows.push((format!("{dest} queue, p50"), vec![("wait", h.p50_ms)]));
        rows.push((format!("{dest} queue, p95"), vec![("wait", h.p95_ms)]));
    }
    let breakdown = charts::stacked_bars(
        &rows,
        &[("svc", "service time"), ("wait", "queue wait"), ("retry", "retry delay")],
        fmt_ms,
    );
    let (tail_summary, tail_chart) = tail_view(&tail, &p.range_query());
    let page = ChainPage {
        tail_summary,
        tail_chart,
        layout: p.layout(chain.clone(), "overview", &format!("/chains/{}", urlencode(&chain)), range),
        count: summary.flows as usize,
        percentiles,
        histogram: charts::histogram(&log_buckets(&summary.histogram), "end-to-end duration (log scale)", "flows"),
        over_time,
        breakdown,
        slowest: slowest.into_iter().map(|f| flow_link_row(f, &p.range_query())).collect(),
        map: super::map::map_svg(&map, &p.range_query(), &format!("map of {chain}")),
        chain,
    };
    Ok(render(&page))
}

/// What a step is called in the tail summary: "waiting in emails.q".
fn step_phrase(s: &StepDelta) -> String {
    match s.kind.as_str() {
        "queue_wait" => format!("waiting in {}", s.step),
        "retry_delay" => format!("in retries at {}", s.step),
        "call" => format!("in calls {}", s.step),
        _ => format!("in {}", s.step),
    }
}

/// The tail attribution as one sentence and paired bars (typical vs tail), each step
/// linked to the tail flow where it took longest.
fn tail_view(b: &Breakdown, rq: &str) -> (String, String) {
    if b.tail_flows == 0 || b.steps.is_empty() {
        return (String::new(), String::new());
    }
    let worse: Vec<String> = b
        .steps
        .iter()
        .filter(|s| s.delta_ms > 0.0)
        .take(2)
        .map(|s| format!("+{} {}", fmt_ms(s.delta_ms), step_phrase(s)))
        .collect();
    let summary = if worse.is_empty() {
        format!("The slowest 5% ({} flows) take no step longer than typical flows do.", b.tail_flows)
    } else {
        format!("The slowest 5% ({} flows) spend {}.", b.tail_flows, worse.join(" and "))
    };
    let rows: Vec<PairedBar> = b
        .steps
        .iter()
        .take(12)
        .map(|s| PairedBar {
            label: format!("{} {}", s.kind.replace('_', " "), s.step),
            href: s.example_flow_ids.first().map_or_else(String::new, |f| format!("/flows/{f}?{rq}")),
            first: s.typical_ms,
            second: s.tail_ms,
            note: format!("{}{}", if s.delta_ms >= 0.0 { "+" } else { "−" }, fmt_ms(s.delta_ms.abs())),
        })
        .collect();
    (summary, charts::paired_bars(&rows, ("typical (p40-p60)", "tail (> p95)"), fmt_ms))
}

pub fn flow_link_row(f: queries::FlowRow, rq: &str) -> FlowLinkRow {
    FlowLinkRow {
        href: format!("/flows/{}?{rq}", f.flow_id),
        start: fmt_datetime(f.start_unix_nano),
        duration: fmt_ms(f.duration_ms),
        error: f.error,
        hops: f.hops,
        retries: f.retries,
        dead_letters: f.dead_letters,
        queue_wait: fmt_ms(f.queue_wait_ms),
        spans: f.span_count,
    }
}

// ---------------------------------------------------------------- flow timeline

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    layout: Layout,
    flow: FlowDetail,
    duration: String,
    service_time: String,
    queue_wait: String,
    retry_delay: String,
    rows: Vec<TimelineRow>,
    axis: Vec<(String, String)>,
    chain_href: String,
    dead_letters: Vec<DeadLetterLine>,
}

/// A dead letter of the flow, above its timeline.
pub struct DeadLetterLine {
    pub destination: String,
    /// The queue the broker moved it from, or empty.
    pub source: String,
    pub error: String,
}

async fn flow(State(state): State<Arc<AppState>>, Path(flow_id): Path<String>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let detail = load_flow(&state, &flow_id).await?;
    let total = (detail.end_unix_nano - detail.start_unix_nano).max(1) as f64;
    let axis = charts::nice_ticks(0.0, total / 1e6, 6)
        .into_iter()
        .map(|ms| (pct(ms * 1e6 / total * 100.0), fmt_ms(ms)))
        .collect();
    let rq = p.range_query();
    let page = FlowPage {
        layout: p.layout(format!("Flow {}", &detail.flow_id[..8]), "", &format!("/flows/{}", detail.flow_id), range),
        duration: fmt_ms(detail.duration_ms),
        service_time: fmt_ms(detail.service_ms),
        queue_wait: fmt_ms(detail.queue_wait_ms),
        retry_delay: fmt_ms(detail.retry_delay_ms),
        rows: timeline_rows(&detail),
        axis,
        chain_href: format!("/chains/{}?{rq}", urlencode(&detail.chain)),
        dead_letters: detail
            .dead_letters
            .iter()
            .map(|d| DeadLetterLine {
                destination: d.destination.clone(),
                source: d.source_destination.clone().unwrap_or_default(),
                error: d.error.clone().unwrap_or_default(),
            })
            .collect(),
        flow: detail,
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- queues

pub struct QueueCard {
    /// Other names of the queue (exchanges feeding it), comma-separated.
    fed_by: String,
    pub destination: String,
    pub system: String,
    pub status: String,
    pub depth: String,
    pub source: String,
    pub publish_rate: String,
    pub consume_rate: String,
    pub drain: String,
    pub growth: String,
    pub chart: String,
}

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    layout: Layout,
    queues: Vec<QueueCard>,
    pager: Pager,
}

async fn queues(State(state): State<Arc<AppState>>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let queues = queries::queues(&state.store, range).await?;
    let rq = p.range_query();
    let pager =
        Pager::new(queues.len(), p.page, |n| format!("/queues?{}", page_query(&[("page", &n.to_string())], &rq)));
    let cards = pager
        .rows(queues)
        .iter()
        .map(|q| QueueCard {
            destination: q.destination.clone(),
            fed_by: q.aliases.join(", "),
            system: if q.system.is_empty() { "–".into() } else { q.system.clone() },
            status: q.status.as_str().into(),
            depth: fmt_count(q.depth),
            source: q.depth_source.into(),
            publish_rate: fmt_rate(q.publish_rate),
            consume_rate: fmt_rate(q.consume_rate),
            drain: match q.drain_seconds {
                Some(s) => fmt_ms(s * 1000.0),
                None => "not draining".into(),
            },
            growth: format!("{:+.1} msgs/min", q.growth_per_minute),
            chart: charts::line_chart(
                &[LineSeries { name: "depth", class: "s0", points: &q.series }],
                range.from,
                range.to,
                "messages",
                4.0,
                fmt_count,
            ),
        })
        .collect();
    Ok(render(&QueuesPage { layout: p.layout("Queues", "queues", "/queues", range), queues: cards, pager }))
}

// ---------------------------------------------------------------- retries

#[derive(Template)]
#[template(path = "retries.html")]
struct RetriesPage {
    layout: Layout,
    heatmap: String,
    attempts: String,
    total: i64,
}

async fn retries(State(state): State<Arc<AppState>>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let bucket = parse_bucket(p.bucket.as_deref(), range)?;
    let view = queries::retries(&state.store, range, bucket).await?;
    let mut rows: Vec<String> = view.cells.iter().map(|c| c.row.clone()).collect();
    rows.sort();
    rows.dedup();
    let columns = ((range.to - range.from) / bucket).max(1) as usize;
    let cells: Vec<(usize, usize, i64)> = view
        .cells
        .iter()
        .filter_map(|c| {
            let r = rows.iter().position(|x| *x == c.row)?;
            let col = ((c.bucket_start_unix_nano - range.from) / bucket) as usize;
            (col < columns).then_some((r, col, c.count))
        })
        .collect();
    let total = view.cells.iter().filter(|c| c.row.starts_with("service:")).map(|c| c.count).sum();
    let bars: Vec<(String, f64, String)> =
        view.attempts.iter().map(|(a, n)| (format!("#{a}"), *n as f64, format!("attempt {a}: {n} retries"))).collect();
    let page = RetriesPage {
        layout: p.layout("Retries", "retries", "/retries", range),
        heatmap: if rows.is_empty() {
            String::new()
        } else {
            charts::heatmap(&rows, range.from, bucket, columns, &cells)
        },
        attempts: if bars.is_empty() { String::new() } else { charts::histogram(&bars, "attempt number", "retries") },
        total,
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- dead letters

pub struct DeadLetterView {
    pub time: String,
    pub destination: String,
    pub source: String,
    pub error: String,
    pub message_id: String,
    pub correlation_id: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    layout: Layout,
    rows: Vec<DeadLetterView>,
}

async fn dead_letters(State(state): State<Arc<AppState>>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let rq = p.range_query();
    let rows = queries::dead_letters(&state.store, range)
        .await?
        .into_iter()
        .map(|d| DeadLetterView {
            time: fmt_datetime(d.time_unix_nano),
            destination: d.destination,
            source: d.source_destination.unwrap_or_else(|| "–".into()),
            error: d.error.unwrap_or_else(|| "–".into()),
            message_id: d.message_id.unwrap_or_else(|| "–".into()),
            correlation_id: d.correlation_id.unwrap_or_else(|| "–".into()),
            href: format!("/flows/{}?{rq}", d.flow_id),
        })
        .collect();
    Ok(render(&DeadLettersPage { layout: p.layout("Dead letters", "dead", "/dead-letters", range), rows }))
}

// ---------------------------------------------------------------- search

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    q: String,
    hits: Vec<SearchHitRow>,
}

pub struct SearchHitRow {
    pub href: String,
    pub chain: String,
    pub start: String,
    pub duration: String,
}

async fn search(State(state): State<Arc<AppState>>, p: PageParams) -> Result<Response, PageError> {
    let range = p.range.resolve(now_nanos())?;
    let q = p.q.clone().unwrap_or_default().trim().to_string();
    if q.is_empty() {
        return Err(ApiError::BadRequest(
            "type a trace id, span id, message id or correlation id to search for".into(),
        )
        .into());
    }
    let hits = queries::search(&state.store, q.clone()).await?;
    let rq = p.range_query();
    if hits.len() == 1 {
        return Ok(Redirect::to(&format!("/flows/{}?{rq}", hits[0].flow_id)).into_response());
    }
    let hits = hits
        .into_iter()
        .map(|h| SearchHitRow {
            href: format!("/flows/{}?{rq}", h.flow_id),
            chain: h.chain,
            start: fmt_datetime(h.start_unix_nano),
            duration: fmt_ms(h.duration_ms),
        })
        .collect();
    Ok(render(&SearchPage { layout: p.layout("Search", "", "/search", range), q, hits }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_cover_the_range() {
        // 0.5 ms -> bucket 0; 3.0 and 3.5 ms -> bucket 2; 100 ms -> bucket 7.
        let b = log_buckets(&[(0, 1), (2, 2), (7, 1)]);
        assert_eq!(b.first().unwrap().0, "1.0 ms");
        assert_eq!(b.len(), 8, "empty buckets in between are shown");
        assert_eq!(b.iter().map(|x| x.1).sum::<f64>(), 4.0);
        assert_eq!(b[2].1, 2.0);
        assert_eq!(b.last().unwrap().0, "128 ms");
        assert!(log_buckets(&[]).is_empty());
    }

    #[test]
    fn urlencoding() {
        assert_eq!(urlencode("checkout POST /orders"), "checkout%20POST%20%2Forders");
    }
}
