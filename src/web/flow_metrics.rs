//! `GET /metrics/flows`: what only flowscope computes, for Prometheus: chain latency,
//! queue waits, retries, dead letters and queue traffic as counters and histograms (rolled
//! up from settled flows, see [`crate::flows::rollup`]), and queue depth as a gauge.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::api::ApiError;
use super::AppState;
use crate::flows::queries::{self, QueueView, Range};
use crate::flows::rollup::{self, render_labels, OTHER};
use crate::flows::HashMap;
use crate::text::now_nanos;

/// Every family exported: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("flowscope_chain_flows_total", "counter", "Settled flows per chain by outcome (ok, error, dead_lettered)"),
    ("flowscope_chain_duration_seconds", "histogram", "End-to-end duration of settled flows per chain"),
    ("flowscope_chain_queue_wait_seconds", "histogram", "Time settled flows spent waiting in queues, per chain"),
    ("flowscope_chain_retry_delay_seconds", "histogram", "Time settled flows spent between retry attempts, per chain"),
    (
        "flowscope_queue_wait_seconds",
        "histogram",
        "Queue wait of messages per destination (producer end to consumer start)",
    ),
    ("flowscope_queue_published_total", "counter", "Messages sent to a destination, counted from spans"),
    ("flowscope_queue_consumed_total", "counter", "Messages consumed from a destination, counted from spans"),
    ("flowscope_dead_letters_total", "counter", "Messages that reached a dead-letter destination"),
    ("flowscope_retries_total", "counter", "Retried deliveries and calls per destination ((none) for calls)"),
    ("flowscope_queue_depth", "gauge", "Messages waiting in a queue, from broker metrics or estimated from spans"),
];

/// Queue depth is judged on this recent window.
const DEPTH_WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;

pub async fn flow_metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let now = now_nanos();
    let settled_before = now - state.flows.quiet_period_ns();
    let stitched = state.flows.progress.borrow().stitched_seq;
    let cap = state.flows.metrics_series_limit;
    let (counters, labels) = state
        .store
        .write(move |c| {
            rollup::roll_up(c, settled_before, stitched, cap)?;
            Ok((rollup::counters(c)?, rollup::destination_labels(c)?))
        })
        .await?;
    let queues = queries::queues(&state.store, Range { from: now - DEPTH_WINDOW_NS, to: now }).await?;
    let body = render(&counters, &depth_series(&queues, &labels, cap));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

/// `flowscope_queue_depth` series: (rendered labels, depth). Destinations past the cap
/// (or already exported as `other`) are summed into `other`.
fn depth_series(queues: &[QueueView], labels: &HashMap<String, String>, cap: usize) -> Vec<(String, f64)> {
    let mut own = labels.values().filter(|l| l.as_str() != OTHER).count();
    let mut series: BTreeMap<String, f64> = BTreeMap::new();
    for q in queues {
        let label = match labels.get(&q.destination) {
            Some(l) => l.clone(),
            None if own < cap => {
                own += 1;
                q.destination.clone()
            }
            None => OTHER.to_owned(),
        };
        let rendered = render_labels(&[("destination", &label), ("system", &q.system), ("source", q.depth_source)]);
        *series.entry(rendered).or_default() += q.depth;
    }
    series.into_iter().collect()
}

/// The exposition text: every family with HELP and TYPE, then its series.
pub fn render(counters: &[(String, String, f64)], depth: &[(String, f64)]) -> String {
    let mut out = String::with_capacity(4096);
    for (family, kind, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
        if *family == "flowscope_queue_depth" {
            for (labels, v) in depth {
                let _ = writeln!(out, "{family}{{{labels}}} {v}");
            }
            continue;
        }
        let members: &[&str] = if *kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
        for suffix in members {
            let name = format!("{family}{suffix}");
            for (_, labels, v) in counters.iter().filter(|(m, _, _)| *m == name) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_series_follow_them() {
        let counters = vec![
            ("flowscope_chain_duration_seconds_bucket".to_string(), "chain=\"c\",le=\"+Inf\"".to_string(), 2.0),
            ("flowscope_chain_duration_seconds_count".to_string(), "chain=\"c\"".to_string(), 2.0),
            ("flowscope_chain_flows_total".to_string(), "chain=\"a\\\"b\",outcome=\"ok\"".to_string(), 1.0),
        ];
        let text = render(&counters, &[("destination=\"q\",system=\"rabbitmq\",source=\"metrics\"".into(), 7.0)]);
        assert!(text.contains("# TYPE flowscope_chain_duration_seconds histogram\n"));
        assert!(text.contains("flowscope_chain_duration_seconds_bucket{chain=\"c\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("flowscope_chain_flows_total{chain=\"a\\\"b\",outcome=\"ok\"} 1\n"));
        assert!(text.contains("flowscope_queue_depth{destination=\"q\",system=\"rabbitmq\",source=\"metrics\"} 7\n"));
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(types, FAMILIES.len());
    }
}
