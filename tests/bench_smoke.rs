//! The benchmark runs end to end and its JSON parses (a smoke run of seconds; timing
//! targets are checked by reading BENCHMARKS.md, not here).

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let status = Command::new(env!("CARGO_BIN_EXE_flowscope"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success(), "bench {args:?} failed");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

#[test]
fn ingest_overload_query_growth_and_stitch_benchmarks_run_and_report() {
    let ingest = bench(&["ingest", "--seconds", "2", "--connections", "2", "--batch", "200"]);
    for key in [
        "committed_spans_per_s",
        "decode_limit_spans_per_s",
        "append_limit_rows_per_s",
        "limit_ratio",
        "export_p50_ms",
        "export_p99_ms",
        "server_cpu_s_per_million",
        "peak_rss_bytes",
    ] {
        assert!(ingest[key].as_f64().is_some(), "{key} in {ingest}");
    }
    assert!(ingest["committed_spans_per_s"].as_f64().unwrap() > 0.0);

    let overload = bench(&["overload", "--seconds", "2", "--connections", "16", "--batch", "200"]);
    assert_eq!(overload["acknowledged_spans_lost"], 0, "{overload}");
    assert!(overload["acknowledged_spans"].as_i64().unwrap() > 0);

    let query = bench(&["query", "--spans", "20000", "--requests", "2"]);
    for key in [
        "overview_page",
        "api_chains",
        "flow_timeline_page",
        "queues_page",
        "retries_page",
        "dead_letters_page",
        "api_search",
    ] {
        assert!(query[key]["p95_ms"].as_f64().is_some(), "{key} in {query}");
        assert_eq!(query[key]["status"], 200, "{key} answered: {query}");
    }
    assert!(query["stitch_spans_per_s"].as_f64().unwrap() > 0.0);

    let kept = tempfile::tempdir().unwrap();
    let db = kept.path().join("growth.duckdb");
    let db = db.to_str().unwrap();
    let growth = bench(&["growth", "--steps", "10k,30k", "--seconds", "2", "--requests", "2", "--db", db]);
    let steps = growth["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{growth}");
    assert!(steps[1]["stored_spans"].as_u64().unwrap() >= 30_000, "{growth}");
    for step in steps {
        for key in [
            "ready_s",
            "new_flow_stitched_s",
            "idle_rss_bytes",
            "ingest_spans_per_s",
            "peak_rss_bytes",
            "peak_rss_start_bytes",
            "peak_rss_pages_bytes",
            "peak_rss_ingest_bytes",
            "file_bytes",
        ] {
            assert!(step[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {step}");
        }
        for page in ["overview_page", "chain_page", "flow_page", "search_page"] {
            assert_eq!(step[format!("{page}_status")], 200, "{page}: {step}");
            for figure in ["first_ms", "p95_ms"] {
                assert!(step[format!("{page}_{figure}")].as_f64().is_some_and(|v| v > 0.0), "{page}: {step}");
            }
        }
        assert!(step["join_filter_restored"].is_boolean(), "{step}");
    }

    // The kept file, measured again: nothing is filled, and the steps it already exceeds
    // are measured once, at what it holds (the first run's fill and ingests).
    let again = bench(&["growth", "--steps", "10k,30k", "--seconds", "1", "--requests", "1", "--db", db]);
    let again = again["steps"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0]["stored_spans"].as_u64() > steps[1]["stored_spans"].as_u64(), "{again:?} after {steps:?}");
    assert_eq!(again[0]["join_filter_restored"], true, "saved by the last run's clean stop: {again:?}");

    // The stitcher alone, on the same file: every stored span (those the last run found,
    // and those its ingest added) is stitched again.
    let stitch = bench(&["stitch", "--db", db]);
    let stored = again[0]["stored_spans"].as_u64().unwrap();
    assert!(stitch["spans_stitched"].as_u64().is_some_and(|s| s > stored), "{stitch} after {again:?}");
    assert!(stitch["flows_written"].as_u64().is_some_and(|f| f > 0), "{stitch}");
    for key in ["stitcher_thread_cpu_s_per_million", "process_cpu_s_per_million", "spans_per_s"] {
        assert!(stitch[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {stitch}");
    }

    // The sustained rate: a ramp of three short steps and a short hold.
    let sustained = bench(&[
        "sustained",
        "--start",
        "1000",
        "--step",
        "1000",
        "--max",
        "3000",
        "--step-seconds",
        "2",
        "--hold-seconds",
        "3",
        "--connections",
        "4",
        "--batch",
        "100",
    ]);
    let steps = sustained["steps"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 3, "{sustained}");
    assert!(steps[0]["committed_spans_per_s"].as_f64().is_some_and(|c| c > 0.0), "{sustained}");
    assert!(sustained["sustained_spans_per_s"].as_u64().is_some(), "{sustained}");

    // The appender alone, by requests a commit.
    let append = bench(&["append", "--requests", "4", "--batch", "100", "--per-commit", "1,4"]);
    for run in ["requests_per_commit_1", "requests_per_commit_4"] {
        for key in ["spans_per_s", "cpu_s_per_million_spans", "with_checkpoint_spans_per_s"] {
            assert!(append[run][key].as_f64().is_some_and(|v| v > 0.0), "{run}.{key} in {append}");
        }
    }
    let spans_a_commit = |run: &str| append[run]["spans_per_commit"].as_u64().unwrap();
    assert!(spans_a_commit("requests_per_commit_4") > spans_a_commit("requests_per_commit_1"), "{append}");
}

#[test]
fn cluster_benchmark_runs_and_reports() {
    let extensions = std::env::var("FLOWSCOPE_TEST_LAKE_EXTENSIONS")
        .expect("the cluster benchmark needs the lake extensions: run scripts/test, which installs them");
    let report = bench(&[
        "cluster",
        "--receivers",
        "1,2",
        "--seconds",
        "2",
        "--connections",
        "4",
        "--batch",
        "100",
        "--upkeep-every",
        "1s",
        "--requests",
        "1",
        "--lake-extensions",
        &extensions,
    ]);
    for n in ["receivers_1", "receivers_2"] {
        let one = &report[n];
        assert!(one["committed_spans_per_s"].as_f64().is_some_and(|c| c > 0.0), "{report}");
        assert_eq!(one["requests_failed"], 0, "{report}");
        assert_eq!(one["lake_upkeep_failures"], 0.0, "{report}");
        assert_eq!(one["query_node_flows_equal_stitcher"], true, "{report}");
        let (before, after) = (one["lake_files_before_upkeep"].as_u64(), one["lake_files_after_upkeep"].as_u64());
        assert!(before.zip(after).is_some_and(|(b, a)| b > 0 && a <= b), "{report}");
        assert!(one["query_node_pages"]["api_flow"]["status"] == 200, "{report}");
    }
}
