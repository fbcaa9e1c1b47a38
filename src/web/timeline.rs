//! The flow timeline: one waterfall across every trace of a flow. Spans are laid out in
//! tree order (children under parents, consumers under their producers) with a
//! queue-wait row between each producer and its consumers.

use std::collections::{HashMap, HashSet};

use super::charts::{fmt_datetime, fmt_ms};
use crate::flows::queries::{FlowDetail, FlowHop, FlowSpan};
use crate::semconv::SpanStatus;

pub struct TimelineRow {
    pub depth: usize,
    pub service: String,
    pub service_class: String,
    pub label: String,
    pub kind: String,
    pub left: String,
    pub width: String,
    /// Where the duration label goes: just right of the bar.
    pub after: String,
    pub duration: String,
    pub classes: String,
    pub is_wait: bool,
    pub marks: Vec<String>,
    pub details: Vec<(String, String)>,
    pub events: Vec<String>,
    pub links: Vec<String>,
    pub span_id: String,
}

/// A percentage as CSS wants it.
pub fn pct(v: f64) -> String {
    format!("{:.3}%", v.clamp(0.0, 100.0))
}

/// The flow's spans as a tree: each span's children in start order, the roots, and the
/// hops whose queue wait follows each producer (with the hop's first consumer).
struct Tree<'a> {
    roots: Vec<usize>,
    children: Vec<Vec<usize>>,
    waits: HashMap<usize, Vec<(usize, &'a FlowHop)>>,
}

fn tree(flow: &FlowDetail) -> Tree<'_> {
    let spans = &flow.spans;
    let index: HashMap<(&str, &str), usize> =
        spans.iter().enumerate().map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i)).collect();
    let by_span_id: HashMap<&str, usize> = spans.iter().enumerate().map(|(i, s)| (s.span_id.as_str(), i)).collect();
    let mut parent: Vec<Option<usize>> = spans
        .iter()
        .map(|s| s.parent_span_id.as_deref().and_then(|p| index.get(&(s.trace_id.as_str(), p)).copied()))
        .collect();
    let mut waits: HashMap<usize, Vec<(usize, &FlowHop)>> = HashMap::new();
    for hop in &flow.hops {
        let Some(p) = hop.producer_span_id.as_deref().and_then(|id| by_span_id.get(id).copied()) else {
            continue;
        };
        let consumers: Vec<usize> =
            hop.consumer_span_ids.iter().filter_map(|id| by_span_id.get(id.as_str()).copied()).collect();
        if let Some(first) = consumers.iter().copied().min_by_key(|c| spans[*c].start_unix_nano) {
            waits.entry(p).or_default().push((first, hop));
        }
        // A consumer in another trace hangs under its producer.
        for c in consumers {
            if parent[c].is_none() {
                parent[c] = Some(p);
            }
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) if *p != i => children[*p].push(i),
            _ => roots.push(i),
        }
    }
    let by_start = |v: &mut Vec<usize>| v.sort_by_key(|i| (spans[*i].start_unix_nano, *i));
    by_start(&mut roots);
    for c in &mut children {
        by_start(c);
    }
    Tree { roots, children, waits }
}

/// Where rows go on the page: the flow's start and length, and a colour per service;
/// and the flow's traces, to tell which of a batch's messages are this flow's.
struct Scale<'a> {
    start: i64,
    total: f64,
    services: Vec<&'a str>,
    traces: HashSet<&'a str>,
}

impl Scale<'_> {
    fn service_class(&self, name: &str) -> String {
        format!("svc{}", self.services.iter().position(|s| *s == name).unwrap_or(0) % 8)
    }

    /// Left offset, width and label position of a bar from `from` for `length` ns; at
    /// least a sliver wide so instant spans stay visible.
    fn bar(&self, from: i64, length: i64) -> (String, String, String) {
        let left = (from - self.start) as f64 / self.total * 100.0;
        let width = (length as f64 / self.total * 100.0).max(0.15);
        (pct(left), pct(width), pct((left + width).min(92.0)))
    }
}

/// Spans in tree order, with a queue-wait row between each producer and its consumers.
pub fn timeline_rows(flow: &FlowDetail) -> Vec<TimelineRow> {
    let spans = &flow.spans;
    let mut services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    services.sort();
    services.dedup();
    let scale = Scale {
        start: flow.start_unix_nano,
        total: (flow.end_unix_nano - flow.start_unix_nano).max(1) as f64,
        services,
        traces: spans.iter().map(|s| s.trace_id.as_str()).collect(),
    };
    let tree = tree(flow);
    let mut rows = Vec::with_capacity(spans.len() + flow.hops.len());
    let mut stack: Vec<(usize, usize)> = tree.roots.iter().rev().map(|r| (*r, 0)).collect();
    let mut seen = HashSet::new();
    while let Some((i, depth)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        let s = &spans[i];
        rows.push(span_row(s, depth, &scale));
        for (consumer, hop) in tree.waits.get(&i).map(Vec::as_slice).unwrap_or_default() {
            rows.push(wait_row(hop, s.end_unix_nano, spans[*consumer].start_unix_nano, depth + 1, &scale));
        }
        for c in tree.children[i].iter().rev() {
            stack.push((*c, depth + 1));
        }
    }
    rows
}

fn span_row(s: &FlowSpan, depth: usize, scale: &Scale<'_>) -> TimelineRow {
    let mut classes = vec!["bar".to_string(), scale.service_class(&s.service)];
    let mut marks = Vec::new();
    if s.status == SpanStatus::Error {
        classes.push("error".into());
        marks.push("error".into());
    }
    if s.critical {
        classes.push("critical".into());
    }
    if let Some(a) = s.retry_attempt {
        if a > 1 {
            classes.push("retry".into());
        }
        marks.push(format!("attempt {a}"));
    }
    if s.dead_letter {
        classes.push("dead".into());
        marks.push("dead letter".into());
    }
    if s.links.len() > 1 {
        // A batch: shown in the flow of each message it carries.
        let mine = s.links.iter().filter(|l| scale.traces.contains(l.trace_id.as_str())).count();
        marks.push(format!("batch of {}, {mine} from this flow", s.links.len()));
    }
    let dur = s.end_unix_nano - s.start_unix_nano;
    let (left, width, after) = scale.bar(s.start_unix_nano, dur);
    TimelineRow {
        depth,
        service: s.service.clone(),
        service_class: scale.service_class(&s.service),
        label: s.name.clone(),
        kind: s.kind.as_str().to_owned(),
        left,
        width,
        after,
        duration: fmt_ms(dur as f64 / 1e6),
        classes: classes.join(" "),
        is_wait: false,
        marks,
        details: span_details(s),
        events: span_events(s),
        links: s.links.iter().map(|l| format!("{}/{} {}", l.trace_id, l.span_id, l.attributes)).collect(),
        span_id: s.span_id.clone(),
    }
}

/// The span's ids, times, status and attributes, shown on demand.
fn span_details(s: &FlowSpan) -> Vec<(String, String)> {
    let status = match &s.status_message {
        Some(m) => format!("{} {m}", s.status.as_str()),
        None => s.status.as_str().to_owned(),
    };
    let mut details: Vec<(String, String)> = vec![
        ("trace id".into(), s.trace_id.clone()),
        ("span id".into(), s.span_id.clone()),
        ("parent".into(), s.parent_span_id.clone().unwrap_or_else(|| "–".into())),
        ("start".into(), fmt_datetime(s.start_unix_nano)),
        ("status".into(), status),
    ];
    if let Some(obj) = s.attributes.as_object() {
        details.extend(obj.iter().map(|(k, v)| (k.clone(), value_text(v))));
    }
    if let Some(obj) = s.resource_attributes.as_object() {
        details.extend(obj.iter().map(|(k, v)| (format!("resource {k}"), value_text(v))));
    }
    details
}

/// The span's events, each with its offset into the span.
fn span_events(s: &FlowSpan) -> Vec<String> {
    let Some(events) = s.events.as_array() else { return Vec::new() };
    events
        .iter()
        .map(|e| {
            let at =
                e["time_unix_nano"].as_i64().map(|t| fmt_ms((t - s.start_unix_nano) as f64 / 1e6)).unwrap_or_default();
            format!("+{at} {} {}", e["name"].as_str().unwrap_or(""), e["attributes"])
        })
        .collect()
}

/// The queue wait of a hop: from its producer's end to its first consumer's start.
fn wait_row(hop: &FlowHop, from: i64, consumer_start: i64, depth: usize, scale: &Scale<'_>) -> TimelineRow {
    let to = consumer_start.max(from);
    let (left, width, after) = scale.bar(from, to - from);
    TimelineRow {
        depth,
        service: String::new(),
        service_class: String::new(),
        label: format!(
            "{} · {}",
            if hop.retry { "retry delay" } else { "queue wait" },
            hop.destination.clone().unwrap_or_default()
        ),
        kind: "WAIT".into(),
        left,
        width,
        after,
        duration: hop.queue_wait_ms.map_or_else(|| "unknown".to_owned(), fmt_ms),
        classes: if hop.dead_letter { "bar wait dead".into() } else { "bar wait".into() },
        is_wait: true,
        marks: if hop.clock_skew { vec!["clock skew".into()] } else { vec![] },
        details: vec![],
        events: vec![],
        links: vec![],
        span_id: String::new(),
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
