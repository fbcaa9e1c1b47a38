//! The flow map: `/map` (every chain), the map on each chain page, and `/map/edge` (the
//! slowest flows that crossed one edge). Drawn server-side as SVG with [`layered`], so it
//! works without JavaScript; every node and edge is a link.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::api::{now_nanos, ApiError};
use super::charts::esc;
use super::layered::{self, Size};
use super::page::{page_query, render, Layout, PageParams, PageResult};
use super::pages::{flow_link_row, FlowLinkRow};
use super::AppState;
use crate::flows::backlog::QueueStatus;
use crate::flows::edges::EdgeKind;
use crate::flows::map::{FlowMap, MapEdge, MapNode, NodeKind};
use crate::flows::queries;
use crate::text::{fmt_ms, urlencode};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/map", get(map_page)).route("/map/edge", get(edge_page))
}

// ---------------------------------------------------------------- drawing

/// Labels are set in a monospace face, so their width is known without a browser.
const CHAR_W_NAME: f64 = 7.3;
const CHAR_W_FIGURES: f64 = 6.7;
const NODE_H: f64 = 40.0;
const NODE_PAD: f64 = 12.0;
const LINE_H: f64 = 14.0;
/// Longer names are cut with an ellipsis (the whole name is in the tooltip and the link).
const MAX_NAME_CHARS: usize = 28;

fn shorten(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_CHARS {
        return name.to_owned();
    }
    let mut s: String = name.chars().take(MAX_NAME_CHARS - 1).collect();
    s.push('…');
    s
}

/// The second line of a node: what kind of thing it is and, for a queue in trouble, why.
fn node_subtitle(n: &MapNode) -> String {
    match n.kind {
        NodeKind::Service if n.flows_started > 0 => format!("service · {} flows start here", n.flows_started),
        NodeKind::Service => "service".into(),
        NodeKind::Destination => {
            let system = n.system.clone().unwrap_or_else(|| "destination".into());
            match n.status {
                Some(s) if s != QueueStatus::Ok => format!("{system} · {}", s.as_str()),
                _ => system,
            }
        }
    }
}

/// A rate in the unit that keeps it readable: per second, minute or hour.
fn fmt_edge_rate(per_s: f64) -> String {
    if per_s >= 0.1 {
        format!("{per_s:.1}/s")
    } else if per_s * 60.0 >= 0.1 {
        format!("{:.1}/min", per_s * 60.0)
    } else {
        format!("{:.1}/h", per_s * 3600.0)
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An edge's label lines: rate and p95 always, trouble only when there is some.
fn edge_lines(e: &MapEdge) -> Vec<String> {
    let latency = match (e.kind, e.p95_ms) {
        (_, None) => String::new(),
        ("consume", Some(p)) => format!(" · wait p95 {}", fmt_ms(p)),
        (_, Some(p)) => format!(" · p95 {}", fmt_ms(p)),
    };
    let mut lines = vec![format!("{}{latency}", fmt_edge_rate(e.rate_per_s))];
    let mut trouble = Vec::new();
    if e.error_share > 0.0 {
        trouble.push(format!("{:.1}% errors", e.error_share * 100.0));
    }
    if e.retries > 0 {
        trouble.push(plural(e.retries, "retry", "retries"));
    }
    if e.dead_letters > 0 {
        trouble.push(plural(e.dead_letters, "dead letter", "dead letters"));
    }
    if !trouble.is_empty() {
        lines.push(trouble.join(" · "));
    }
    lines
}

fn node_href(n: &MapNode, rq: &str) -> String {
    match n.kind {
        NodeKind::Service => format!("/?{}", page_query(&[("service", &n.name)], rq)),
        NodeKind::Destination => format!("/queues?{rq}#queue-{}", urlencode(&n.name)),
    }
}

fn edge_href(e: &MapEdge, rq: &str) -> String {
    format!("/map/edge?{}", page_query(&[("kind", e.kind), ("source", &e.from), ("target", &e.to)], rq))
}

/// A smooth path through the route's points, bending only horizontally.
fn path_data(points: &[(f64, f64)]) -> String {
    let mut d = format!("M{:.1},{:.1}", points[0].0, points[0].1);
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let mid = (x0 + x1) / 2.0;
        d.push_str(&format!(" C{mid:.1},{y0:.1} {mid:.1},{y1:.1} {x1:.1},{y1:.1}"));
    }
    d
}

/// The map as SVG; `rq` is the range query carried into the links. Empty for an empty map.
pub fn map_svg(map: &FlowMap, rq: &str, label: &str) -> String {
    if map.nodes.is_empty() {
        return String::new();
    }
    let index: std::collections::HashMap<&str, usize> =
        map.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let names: Vec<String> = map.nodes.iter().map(|n| shorten(&n.name)).collect();
    let subtitles: Vec<String> = map.nodes.iter().map(node_subtitle).collect();
    let sizes: Vec<Size> = names
        .iter()
        .zip(&subtitles)
        .map(|(name, sub)| {
            let chars = (name.chars().count() as f64 * CHAR_W_NAME).max(sub.chars().count() as f64 * CHAR_W_FIGURES);
            Size { w: chars + 2.0 * NODE_PAD, h: NODE_H }
        })
        .collect();
    let lines: Vec<Vec<String>> = map.edges.iter().map(edge_lines).collect();
    let edges: Vec<layered::Edge> = map
        .edges
        .iter()
        .zip(&lines)
        .map(|(e, lines)| {
            let widest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
            layered::Edge {
                from: index[e.from.as_str()],
                to: index[e.to.as_str()],
                label: Size { w: widest * CHAR_W_FIGURES + 10.0, h: lines.len() as f64 * LINE_H + 6.0 },
            }
        })
        .collect();
    // Break cycles from where flows enter: the busiest entry services first.
    let priority: Vec<i64> = map.nodes.iter().map(|n| -n.flows_started).collect();
    let drawing = layered::layout(&sizes, &edges, &priority);

    let mut svg = format!(
        r#"<svg class="flowmap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{label}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>
"#,
        w = drawing.width,
        h = drawing.height,
        label = esc(label),
    );
    let title_of = |e: &MapEdge| {
        let (from, to) = (&map.nodes[index[e.from.as_str()]].name, &map.nodes[index[e.to.as_str()]].name);
        format!("{} {from} → {to}: {} in range", e.kind, e.count)
    };
    svg.push_str("<g class=\"edges\">\n");
    for (e, route) in map.edges.iter().zip(&drawing.edges) {
        let trouble = if e.troubled() { " trouble" } else { "" };
        svg.push_str(&format!(
            "<a href=\"{href}\" class=\"edge-link\"><path class=\"edge {kind}{trouble}\" d=\"{d}\" marker-end=\"url(#arrow)\"><title>{title}</title></path></a>\n",
            href = esc(&edge_href(e, rq)),
            kind = e.kind,
            d = path_data(&route.points),
            title = esc(&title_of(e)),
        ));
    }
    svg.push_str("</g>\n<g class=\"edge-labels\">\n");
    for ((e, route), lines) in map.edges.iter().zip(&drawing.edges).zip(&lines) {
        let r = route.label;
        let trouble = if e.troubled() { " trouble" } else { "" };
        let mut text = String::new();
        for (k, line) in lines.iter().enumerate() {
            let class = if k == 0 { "figures" } else { "problems" };
            text.push_str(&format!(
                "<text class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                r.x + 5.0,
                r.y + 3.0 + LINE_H * (k as f64 + 0.75),
                esc(line)
            ));
        }
        svg.push_str(&format!(
            "<a href=\"{href}\"><g class=\"edge-label{trouble}\" data-edge=\"{id}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"3\"/>{text}<title>{title}</title></g></a>\n",
            href = esc(&edge_href(e, rq)),
            id = esc(&format!("{} {} {}", e.kind, e.from, e.to)),
            x = r.x,
            y = r.y,
            w = r.w,
            h = r.h,
            title = esc(&title_of(e)),
        ));
    }
    svg.push_str("</g>\n<g class=\"nodes\">\n");
    for (((n, r), name), sub) in map.nodes.iter().zip(&drawing.nodes).zip(&names).zip(&subtitles) {
        let (kind, radius) = match n.kind {
            NodeKind::Service => ("service", 5.0),
            NodeKind::Destination => ("destination", r.h / 2.0),
        };
        let status = n.status.map(|s| format!(" status-{}", s.as_str())).unwrap_or_default();
        svg.push_str(&format!(
            "<a href=\"{href}\"><g class=\"node {kind}{status}\" data-node=\"{id}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{radius:.1}\"/><text class=\"name\" x=\"{tx:.1}\" y=\"{ty1:.1}\">{name}</text><text class=\"sub\" x=\"{tx:.1}\" y=\"{ty2:.1}\">{sub}</text><title>{full}</title></g></a>\n",
            href = esc(&node_href(n, rq)),
            id = esc(&n.id),
            x = r.x,
            y = r.y,
            w = r.w,
            h = r.h,
            tx = r.x + NODE_PAD,
            ty1 = r.y + 17.0,
            ty2 = r.y + 32.0,
            name = esc(name),
            sub = esc(sub),
            full = esc(&format!("{} ({})", n.name, sub)),
        ));
    }
    svg.push_str("</g>\n</svg>");
    svg
}

// ---------------------------------------------------------------- pages

/// An edge as the map page's table lists it.
pub struct EdgeRow {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub href: String,
    pub rate: String,
    pub p95: String,
    pub errors: String,
    pub retries: i64,
    pub dead_letters: i64,
    pub trouble: bool,
}

#[derive(Template)]
#[template(path = "map.html")]
struct MapPage {
    layout: Layout,
    svg: String,
    edges: Vec<EdgeRow>,
    omitted_edges: usize,
}

fn edge_rows(map: &FlowMap, rq: &str) -> Vec<EdgeRow> {
    let name = |id: &str| map.nodes.iter().find(|n| n.id == id).map_or_else(|| id.to_owned(), |n| n.name.clone());
    map.edges
        .iter()
        .map(|e| EdgeRow {
            kind: e.kind,
            from: name(&e.from),
            to: name(&e.to),
            href: edge_href(e, rq),
            rate: fmt_edge_rate(e.rate_per_s),
            p95: e.p95_ms.map_or_else(|| "–".into(), fmt_ms),
            errors: format!("{:.1}%", e.error_share * 100.0),
            retries: e.retries,
            dead_letters: e.dead_letters,
            trouble: e.troubled(),
        })
        .collect()
}

async fn map_page(State(state): State<Arc<AppState>>, p: PageParams) -> PageResult {
    let range = p.range.resolve(now_nanos())?;
    let map = queries::flow_map(&state.store, range, None).await?;
    let rq = p.range_query();
    let page = MapPage {
        layout: p.layout("Map", "map", "/map", range),
        svg: map_svg(&map, &rq, "map of services and destinations"),
        edges: edge_rows(&map, &rq),
        omitted_edges: map.omitted_edges,
    };
    Ok(render(&page))
}

/// The edge's own parameters (the page's range and refresh come as [`PageParams`]).
#[derive(Debug, Deserialize)]
struct EdgeParams {
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
}

#[derive(Template)]
#[template(path = "map_edge.html")]
struct EdgePage {
    layout: Layout,
    kind: String,
    source: String,
    target: String,
    slowest: Vec<FlowLinkRow>,
    range_query: String,
}

/// The kind, source and target of an edge named in a query string.
pub fn parse_edge(
    kind: Option<&str>,
    source: Option<&str>,
    target: Option<&str>,
) -> Result<(EdgeKind, String, String), ApiError> {
    let kind = kind
        .and_then(EdgeKind::parse)
        .filter(|k| *k != EdgeKind::Entry)
        .ok_or_else(|| ApiError::BadRequest("kind must be call, publish or consume".into()))?;
    let node = |name: &str, v: Option<&str>| {
        v.filter(|v| v.starts_with("service:") || v.starts_with("destination:")).map(str::to_owned).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a map node id (service:NAME or destination:NAME)"))
        })
    };
    Ok((kind, node("source", source)?, node("target", target)?))
}

async fn edge_page(State(state): State<Arc<AppState>>, params: PageParams, Query(p): Query<EdgeParams>) -> PageResult {
    let range = params.range.resolve(now_nanos())?;
    let (kind, source, target) = parse_edge(p.kind.as_deref(), p.source.as_deref(), p.target.as_deref())?;
    let flows = queries::flows_across_edge(&state.store, range, kind, source.clone(), target.clone(), 50).await?;
    let rq = params.range_query();
    let plain = |id: &str| id.split_once(':').map_or(id, |(_, name)| name).to_owned();
    let edge = [("kind", kind.as_str()), ("source", source.as_str()), ("target", target.as_str())];
    let page = EdgePage {
        layout: params.layout_with("Edge", "map", "/map/edge", &edge, range),
        kind: kind.as_str().into(),
        source: plain(&source),
        target: plain(&target),
        slowest: flows.into_iter().map(|f| flow_link_row(f, &rq)).collect(),
        range_query: rq,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_shortened_and_trouble_is_spelt_out() {
        assert_eq!(shorten("payments"), "payments");
        let long = "a-very-long-service-name-that-goes-on-and-on";
        assert_eq!(shorten(long).chars().count(), MAX_NAME_CHARS);
        assert!(shorten(long).ends_with('…'));
        let mut e = MapEdge {
            from: "destination:emails".into(),
            to: "service:mailer".into(),
            kind: "consume",
            count: 120,
            rate_per_s: 2.0,
            p95_ms: Some(820.0),
            error_share: 0.0,
            retries: 0,
            dead_letters: 0,
        };
        assert_eq!(edge_lines(&e), ["2.0/s · wait p95 820 ms"]);
        e.retries = 3;
        e.dead_letters = 1;
        assert_eq!(edge_lines(&e)[1], "3 retries · 1 dead letter");
        for (per_s, text) in [(2.0, "2.0/s"), (0.05, "3.0/min"), (0.0005, "1.8/h")] {
            assert_eq!(fmt_edge_rate(per_s), text);
        }
        assert!(edge_href(&e, "last=1h").starts_with("/map/edge?kind=consume&source=destination%3Aemails"));
        assert!(parse_edge(Some("entry"), Some("service:a"), Some("service:b")).is_err());
        assert!(parse_edge(Some("call"), Some("a"), Some("service:b")).is_err());
        assert!(parse_edge(Some("call"), Some("service:a"), Some("service:b")).is_ok());
    }
}
