//! The text `/metrics/flows` serves, prepared in the background: every couple of seconds
//! settled flows are rolled up ([`super::rollup`]) and the exposition text is rendered
//! once, so a scrape only copies what is ready, whatever the number of flows, chains or
//! destinations. Every family is bounded by the series limit: names past it are `other`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::queries::{self, QueueView, Range};
use super::rollup::{self, render_labels, OTHER};
use super::{HashSet, StitchProgress};
use crate::store::{Store, StoreError};
use crate::text::now_nanos;

/// How often the text is prepared again.
pub const PREPARE_EVERY: Duration = Duration::from_secs(2);

/// Queue depth is judged on this recent window.
const DEPTH_WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;

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

/// What the roll-up needs to know: which flows are settled and stitched, and the limit.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub quiet_period: Duration,
    /// Chains (and destinations) exported with their own label; later ones as `other`.
    pub series_limit: usize,
}

/// The latest prepared exposition text (`None` until the first roll-up finished).
pub type Prepared = watch::Receiver<Option<Bytes>>;

/// Starts the background roll-up; it stops when `shutdown` turns true.
pub fn start(
    store: Arc<Store>,
    progress: watch::Receiver<StitchProgress>,
    config: ExportConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (Prepared, tokio::task::JoinHandle<()>) {
    let (publish, prepared) = watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            match prepare(&store, &progress, &config).await {
                Ok(text) => {
                    publish.send_replace(Some(Bytes::from(text)));
                }
                Err(e) => tracing::warn!(error = %e, "preparing flow metrics failed; the last prepared stay served"),
            }
            tokio::select! {
                _ = tokio::time::sleep(PREPARE_EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
    (prepared, task)
}

/// One roll-up of what settled since the last, and the text of every series.
async fn prepare(
    store: &Arc<Store>,
    progress: &watch::Receiver<StitchProgress>,
    config: &ExportConfig,
) -> Result<String, StoreError> {
    let now = now_nanos();
    let settled_before = now.saturating_sub(config.quiet_period.as_nanos().min(i64::MAX as u128) as i64);
    let stitched = progress.borrow().stitched_seq;
    let cap = config.series_limit;
    let (counters, own) = store
        .write(move |c| {
            rollup::roll_up(c, settled_before, stitched, cap)?;
            Ok((rollup::counters(c)?, rollup::own_destinations(c)?))
        })
        .await?;
    let queues = queries::queues(store, Range { from: now - DEPTH_WINDOW_NS, to: now }).await?;
    Ok(render(&counters, &depth_series(&queues, &own, cap)))
}

/// `flowscope_queue_depth` series: (rendered labels, depth). A destination keeps the label
/// the counters gave it; others get their own while under the limit, then `other`.
fn depth_series(queues: &[QueueView], own: &HashSet<String>, cap: usize) -> Vec<(String, f64)> {
    let mut given = own.clone();
    let mut series: BTreeMap<String, f64> = BTreeMap::new();
    for q in queues {
        let label = if given.contains(&q.destination) || given.len() < cap {
            given.insert(q.destination.clone());
            q.destination.as_str()
        } else {
            OTHER
        };
        let rendered = render_labels(&[("destination", label), ("system", &q.system), ("source", q.depth_source)]);
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
