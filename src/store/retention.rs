//! Deletes data received longer ago than the retention age (by commit time, not by the
//! timestamps in the data: exporters' clocks and bugs decide those). Runs in the
//! background: DuckDB's optimistic concurrency lets the deletes of old rows and the
//! writer's appends of new rows proceed side by side, so ingest never waits for it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::{Store, StoreError};

const DELETES: &[(&str, &str)] = &[
    // A flow's rows go once its last span is old; children first.
    ("flow_traces", include_str!("../../queries/retention_flow_traces.sql")),
    ("flow_join_keys", include_str!("../../queries/retention_flow_join_keys.sql")),
    ("flow_hops", include_str!("../../queries/retention_flow_hops.sql")),
    ("flow_retries", include_str!("../../queries/retention_flow_retries.sql")),
    ("flow_dead_letters", include_str!("../../queries/retention_flow_dead_letters.sql")),
    ("flows", include_str!("../../queries/retention_flows.sql")),
    ("spans", include_str!("../../queries/retention_spans.sql")),
    ("span_links", include_str!("../../queries/retention_span_links.sql")),
    ("logs", include_str!("../../queries/retention_logs.sql")),
    ("metric_points", include_str!("../../queries/retention_metric_points.sql")),
    ("resources", include_str!("../../queries/retention_resources.sql")),
    ("queue_counts", include_str!("../../queries/retention_queue_counts.sql")),
    ("flow_edge_slots", include_str!("../../queries/retention_flow_edge_slots.sql")),
    ("lake_pulls", include_str!("../../queries/retention_lake_pulls.sql")),
    ("commits", include_str!("../../queries/retention_commits.sql")),
];

/// The oldest timestamp (unix ns) to keep.
pub fn cutoff_unix_nano(now: SystemTime, max_age: Duration) -> i64 {
    let now_ns = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    now_ns.saturating_sub(max_age.as_nanos().min(i64::MAX as u128) as i64)
}

/// Deletes everything older than `max_age`; returns the number of rows deleted.
pub async fn sweep(store: &Arc<Store>, max_age: Duration) -> Result<usize, StoreError> {
    let cutoff = cutoff_unix_nano(SystemTime::now(), max_age);
    store
        .write(move |conn| {
            let last_old: Option<i64> =
                conn.query_row(include_str!("../../queries/retention_cutoff_seq.sql"), [cutoff], |r| r.get(0))?;
            let Some(last_old) = last_old else { return Ok(0) };
            let mut deleted = 0;
            for (_, sql) in DELETES {
                deleted += conn.execute(sql, [last_old])?;
            }
            Ok(deleted)
        })
        .await
}

/// Sweeps every `every` until `shutdown` turns true.
pub async fn run(store: Arc<Store>, max_age: Duration, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        match sweep(&store, max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "retention removed old data"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_subtracts_the_age_and_saturates() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let table = [
            (Duration::from_secs(40), 60_000_000_000),
            (Duration::from_secs(100), 0),
            (Duration::from_secs(1000), -900_000_000_000),
            (Duration::MAX, i64::MIN + 100_000_000_001),
        ];
        for (age, want) in table {
            assert_eq!(cutoff_unix_nano(now, age), want, "{age:?}");
        }
    }
}
