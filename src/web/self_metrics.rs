//! flowscope's own metrics in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::ingest::{Ingest, Refusal, Signal};
use crate::store::COMMIT_BUCKETS_MS;

/// `flowscope_stage_up{stage}`: 1 while a stage runs, 0 once it died.
pub fn render_stages(out: &mut String, stages: &[(&'static str, Option<String>)]) {
    let _ = writeln!(out, "# HELP flowscope_stage_up Whether a stage (writer, stitcher, alert evaluator) is running");
    let _ = writeln!(out, "# TYPE flowscope_stage_up gauge");
    for (name, dead) in stages {
        let _ = writeln!(out, "flowscope_stage_up{{stage=\"{name}\"}} {}", u8::from(dead.is_none()));
    }
}

/// Page and API reads of the database: running now, and interrupted because their
/// client left or their deadline passed.
pub fn render_reads(out: &mut String, (in_flight, interrupted): (usize, usize)) {
    let _ = writeln!(out, "# HELP flowscope_store_reads_in_flight Page and API reads running (at most {})\n# TYPE flowscope_store_reads_in_flight gauge", crate::store::reads::MAX_READS);
    let _ = writeln!(out, "flowscope_store_reads_in_flight {in_flight}");
    let _ = writeln!(out, "# HELP flowscope_store_reads_interrupted_total Reads interrupted because their client left or their deadline passed\n# TYPE flowscope_store_reads_interrupted_total counter");
    let _ = writeln!(out, "flowscope_store_reads_interrupted_total {interrupted}");
}

/// One unlabelled series each: (name, type, help, value).
fn render_rows(out: &mut String, rows: &[(&str, &str, &str, f64)]) {
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// What the checkpointer did (see [`crate::store::checkpoints`]).
pub fn render_checkpoints(out: &mut String, c: &crate::store::CheckpointStats) {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let rows: [(&str, &str, &str, f64); 5] = [
        ("flowscope_checkpoints_total", "counter", "Checkpoints made off the commit path", load(&c.checkpoints) as f64),
        (
            "flowscope_checkpoint_seconds_total",
            "counter",
            "Time spent in those checkpoints",
            load(&c.micros_sum) as f64 / 1e6,
        ),
        (
            "flowscope_checkpoint_busy_total",
            "counter",
            "Checkpoint attempts that found a write open (retried)",
            load(&c.busy) as f64,
        ),
        ("flowscope_checkpoint_failures_total", "counter", "Checkpoints that failed", load(&c.failures) as f64),
        ("flowscope_wal_bytes", "gauge", "Bytes of write-ahead log not yet checkpointed", load(&c.wal_bytes) as f64),
    ];
    render_rows(out, &rows);
}

/// A cluster node's roles, whether it is the active stitcher, and its copying from the lake.
pub fn render_cluster(out: &mut String, c: &crate::lake::ClusterStatus) {
    let _ = writeln!(
        out,
        "# HELP flowscope_cluster_role The roles this cluster node has\n# TYPE flowscope_cluster_role gauge"
    );
    for (role, on) in c.roles.each() {
        let _ = writeln!(out, "flowscope_cluster_role{{role=\"{role}\"}} {}", u8::from(on));
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let snapshot = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed) as f64;
    let u = &c.upkeep;
    let rows: [(&str, &str, &str, f64); 12] = [
        (
            "flowscope_stitcher_leader",
            "gauge",
            "1 while this node is the active stitcher",
            f64::from(u8::from(c.is_leading())),
        ),
        (
            "flowscope_lake_snapshot_latest",
            "gauge",
            "The lake's latest snapshot when this node last looked (-1: not yet)",
            snapshot(&c.latest_snapshot),
        ),
        (
            "flowscope_lake_snapshot_pulled",
            "gauge",
            "The last lake snapshot copied into this node's file (-1: none)",
            snapshot(&c.pulled_snapshot),
        ),
        ("flowscope_lake_pulls_total", "counter", "Copies of new lake snapshots into this node's file", load(&c.pulls)),
        ("flowscope_lake_pulled_rows_total", "counter", "Rows copied from the lake", load(&c.pulled_rows)),
        (
            "flowscope_lake_pull_failures_total",
            "counter",
            "Copies from the lake that failed (retried)",
            load(&c.pull_failures),
        ),
        (
            "flowscope_lake_upkeep_runs_total",
            "counter",
            "Lake upkeep runs (retention, merge, expire, clean up)",
            load(&u.runs),
        ),
        ("flowscope_lake_upkeep_failures_total", "counter", "Lake upkeep runs that failed", load(&u.failures)),
        (
            "flowscope_lake_files_merged_total",
            "counter",
            "Lake data files merged into larger ones",
            load(&u.files_merged),
        ),
        (
            "flowscope_lake_rows_expired_total",
            "counter",
            "Raw lake rows deleted as older than the retention age",
            load(&u.rows_expired),
        ),
        ("flowscope_lake_snapshots_expired_total", "counter", "Lake snapshots expired", load(&u.snapshots_expired)),
        (
            "flowscope_lake_files_removed_total",
            "counter",
            "Lake data files deleted once no snapshot used them",
            load(&u.files_removed),
        ),
    ];
    render_rows(out, &rows);
}

pub fn render(ingest: &Ingest, duckdb_memory: &[(String, i64)]) -> String {
    let mut out = String::with_capacity(4096);
    let stats = ingest.stats();
    let counters: [(&str, &str, fn(&crate::ingest::SignalStats) -> u64); 6] = [
        ("flowscope_export_requests_total", "OTLP export requests received", |s| s.requests.load(Ordering::Relaxed)),
        ("flowscope_malformed_requests_total", "Requests refused as undecodable (400 / INVALID_ARGUMENT)", |s| {
            s.malformed_requests.load(Ordering::Relaxed)
        }),
        (
            "flowscope_refused_requests_total",
            "Requests turned away retryably (503 / UNAVAILABLE); flowscope_refusals_total gives the cause",
            |s| s.refused_requests.load(Ordering::Relaxed),
        ),
        ("flowscope_received_items_total", "Spans, data points or log records decoded", |s| {
            s.received.load(Ordering::Relaxed)
        }),
        ("flowscope_rejected_items_total", "Items refused by validation (partial success)", |s| {
            s.rejected.load(Ordering::Relaxed)
        }),
        ("flowscope_committed_items_total", "Items committed to the database", |s| s.committed.load(Ordering::Relaxed)),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for signal in Signal::ALL {
            let _ = writeln!(out, "{name}{{signal=\"{}\"}} {}", signal.name(), get(stats.of(signal)));
        }
    }
    let _ = writeln!(out, "# HELP flowscope_refusals_total Requests turned away retryably (503 / UNAVAILABLE), all signals, by cause\n# TYPE flowscope_refusals_total counter");
    for why in Refusal::ALL {
        let _ = writeln!(out, "flowscope_refusals_total{{cause=\"{}\"}} {}", why.name(), stats.refusals(why));
    }
    let writer = ingest.writer();
    let commits = writer.stats();
    let _ = writeln!(
        out,
        "# HELP flowscope_write_queue_bytes Bytes of rows waiting for a commit\n# TYPE flowscope_write_queue_bytes gauge"
    );
    let _ = writeln!(out, "flowscope_write_queue_bytes {}", writer.queued_bytes());
    let _ = writeln!(out, "# HELP flowscope_write_queue_capacity_bytes Bytes the write queue holds before refusing\n# TYPE flowscope_write_queue_capacity_bytes gauge");
    let _ = writeln!(out, "flowscope_write_queue_capacity_bytes {}", writer.capacity_bytes());
    let _ = writeln!(out, "# HELP flowscope_ingest_held_back 1 while new data is refused (retryably) because flows are more than --max-stitch-lag behind\n# TYPE flowscope_ingest_held_back gauge");
    let _ = writeln!(out, "flowscope_ingest_held_back {}", u8::from(writer.held_back_by_stitching()));
    let _ = writeln!(out, "# HELP flowscope_committed_rows_total Rows committed, all tables\n# TYPE flowscope_committed_rows_total counter");
    let _ = writeln!(out, "flowscope_committed_rows_total {}", commits.rows.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP flowscope_failed_commits_total Commits that failed\n# TYPE flowscope_failed_commits_total counter"
    );
    let _ = writeln!(out, "flowscope_failed_commits_total {}", commits.failed_commits.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP flowscope_commit_duration_seconds Group commit latency\n# TYPE flowscope_commit_duration_seconds histogram");
    for (bound, bucket) in COMMIT_BUCKETS_MS.iter().zip(&commits.commit_micros_buckets) {
        let _ = writeln!(
            out,
            "flowscope_commit_duration_seconds_bucket{{le=\"{}\"}} {}",
            *bound as f64 / 1000.0,
            bucket.load(Ordering::Relaxed)
        );
    }
    let count = commits.commits.load(Ordering::Relaxed);
    let _ = writeln!(out, "flowscope_commit_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        out,
        "flowscope_commit_duration_seconds_sum {}",
        commits.commit_micros_sum.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "flowscope_commit_duration_seconds_count {count}");
    let _ = writeln!(out, "# HELP flowscope_stitch_feed_rows Committed rows held in memory for the stitcher\n# TYPE flowscope_stitch_feed_rows gauge");
    let _ = writeln!(out, "flowscope_stitch_feed_rows {}", writer.feed().queued_rows());
    let _ = writeln!(out, "# HELP flowscope_duckdb_memory_bytes Memory DuckDB accounts for, by tag\n# TYPE flowscope_duckdb_memory_bytes gauge");
    for (tag, bytes) in duckdb_memory {
        let _ = writeln!(out, "flowscope_duckdb_memory_bytes{{tag=\"{}\"}} {bytes}", tag.to_ascii_lowercase());
    }
    out
}

/// The stitcher's progress and what it holds in memory: none of it grows with what is
/// stored, which these gauges let anyone check.
/// The stitcher's progress; `last_commit` is the last commit of the file it reads.
pub fn render_stitching(out: &mut String, p: &crate::flows::StitchProgress, last_commit: u64) {
    let gauges: [(&str, &str, f64); 15] = [
        (
            "flowscope_stitch_lag_seconds",
            "How long ago the oldest commit not yet stitched was received",
            p.lag.as_secs_f64(),
        ),
        ("flowscope_stitched_commit_seq", "Every commit up to this one is stitched", p.stitched_seq as f64),
        (
            "flowscope_last_commit_seq",
            "The last commit of the file the stitcher reads (flowscope_stitched_commit_seq catches up with it)",
            last_commit as f64,
        ),
        ("flowscope_stitcher_cached_traces", "Traces whose spans the stitcher holds in memory", p.cached_traces as f64),
        ("flowscope_stitcher_cached_spans", "Spans the stitcher holds in memory", p.cached_spans as f64),
        ("flowscope_stitcher_joined_traces", "Traces the stitcher's in-memory joiner knows", p.joined_traces as f64),
        (
            "flowscope_stitcher_join_filter_bytes",
            "Bytes of the filter of join hashes written in the join window",
            p.join_filter_bytes as f64,
        ),
        (
            "flowscope_stitcher_join_filter_build_seconds",
            "How long the join filter's last completed build took (0 until the first completes)",
            p.join_filter_build_seconds,
        ),
        (
            "flowscope_stitcher_join_filter_restored",
            "1 when the join filter in use at start was the one saved at the last clean stop",
            if p.join_filter_restored { 1.0 } else { 0.0 },
        ),
        ("flowscope_stitcher_join_runs", "Sorted runs of join hashes that lookups read", p.join_runs.runs as f64),
        (
            "flowscope_stitcher_join_run_hashes",
            "Join hashes in sorted runs (hashes of rewritten flows included until their run leaves)",
            p.join_runs.hashes as f64,
        ),
        (
            "flowscope_stitcher_join_unsorted_hashes",
            "Join hashes written since the newest run, which lookups scan",
            p.join_runs.unsorted as f64,
        ),
        (
            "flowscope_stitcher_join_runs_job_seconds",
            "How long the last job keeping the sorted runs took",
            p.join_runs.last_job_seconds,
        ),
        (
            "flowscope_restitch_running",
            "Whether stored flows are being recomputed",
            f64::from(u8::from(p.restitch.is_some())),
        ),
        (
            "flowscope_restitch_progress_ratio",
            "Share of a running restitch done (1 when none runs)",
            p.restitch.map_or(1.0, |r| r.done(p.stitched_seq)),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let counters = [
        ("flowscope_stitcher_file_lookups_total", "Rounds that looked stored flows up in the file", p.file_lookups),
        (
            "flowscope_stitcher_lookups_skipped_total",
            "Rounds whose traces and keys the join filter showed were never stored, so read nothing",
            p.lookups_skipped,
        ),
        (
            "flowscope_stitcher_rounds_read_from_file_total",
            "Rounds that read their new rows back from the file because the commit feed no longer held them",
            p.rows_from_file,
        ),
        ("flowscope_stitcher_join_runs_jobs_total", "Jobs that kept the sorted runs of join hashes", p.join_runs.jobs),
        (
            "flowscope_stitch_commits_set_aside_total",
            "Commits that failed stitching again and again, even alone, and were skipped (see /api/stitching)",
            p.set_aside,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
}
