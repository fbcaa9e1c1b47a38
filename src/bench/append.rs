//! `flowscope bench append`: DuckDB's appender alone, the writer's path without the
//! network, with more or fewer export requests a commit. Each commit has a cost of its
//! own (planning each table's append, writing and syncing the log), which decides how
//! many requests the writer should gather into one.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use super::workload::Template;
use super::{cpu_clock, tempfile_dir, templates, BenchError};
use crate::ingest::{CorrelationKeys, Encoding, Signal};
use crate::store::tables::TableBatch;
use crate::store::Store;
use crate::text::now_nanos;

#[derive(Debug, Clone, Args)]
pub struct AppendArgs {
    /// Export requests appended at each size (of `--batch` spans each)
    #[arg(long, default_value_t = 1_000)]
    pub requests: usize,
    /// Spans per export request
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Requests a commit, one run each, in this order
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,10,100")]
    pub per_commit: Vec<usize>,
    /// Write the figures as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What appending a set of requests took.
pub struct Appended {
    pub spans: usize,
    pub seconds: f64,
    /// CPU seconds of the whole process (DuckDB's threads included), appending only.
    pub cpu_seconds: f64,
    /// The same with the checkpoint that folds the appended rows into the file.
    pub with_checkpoint_seconds: f64,
    pub with_checkpoint_cpu_seconds: f64,
}

/// The requests' rows as the writer gets them: `count` instances of the templates.
pub fn flattened(templates: &[Template], count: usize) -> Vec<(usize, Vec<TableBatch>)> {
    let keys = CorrelationKeys::default();
    templates
        .iter()
        .cycle()
        .take(count)
        .enumerate()
        .map(|(i, t)| {
            let flat =
                crate::ingest::flatten(Signal::Traces, Encoding::Protobuf, &t.instance(i as u32 + 1_000_000), &keys)
                    .expect("template flattens");
            (flat.accepted as usize, flat.batches)
        })
        .collect()
}

/// Appends `requests` into a fresh file, `per_commit` of them a transaction, then
/// checkpoints.
pub fn append(requests: &[(usize, Vec<TableBatch>)], per_commit: usize) -> Result<Appended, BenchError> {
    let dir = tempfile_dir()?;
    let store = Store::open(&dir.join("append.duckdb"))?;
    let conn = store.connect()?;
    let cpu = || cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID);
    let (cpu_before, started) = (cpu(), Instant::now());
    let mut spans = 0;
    for (seq, group) in requests.chunks(per_commit.max(1)).enumerate() {
        let refs: Vec<&TableBatch> = group.iter().flat_map(|(_, b)| b).collect();
        crate::store::append_in_transaction(&conn, &refs, seq as i64 + 1)?;
        spans += group.iter().map(|(n, _)| n).sum::<usize>();
    }
    let (seconds, cpu_seconds) = (started.elapsed().as_secs_f64(), cpu() - cpu_before);
    conn.execute_batch(include_str!("../../queries/checkpoint.sql")).map_err(crate::store::StoreError::from)?;
    let appended = Appended {
        spans,
        seconds,
        cpu_seconds,
        with_checkpoint_seconds: started.elapsed().as_secs_f64(),
        with_checkpoint_cpu_seconds: cpu() - cpu_before,
    };
    drop(conn);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(appended)
}

pub fn run(args: &AppendArgs) -> Result<Value, BenchError> {
    let templates = templates(8, args.batch, now_nanos() - 60_000_000_000);
    let requests = flattened(&templates, args.requests.max(1));
    let mut runs = serde_json::Map::new();
    for &n in &args.per_commit {
        let a = append(&requests, n)?;
        let per_million = |cpu: f64| (cpu / a.spans as f64 * 1e6 * 100.0).round() / 100.0;
        let figures = json!({
            "spans_per_commit": a.spans / requests.len().div_ceil(n.max(1)),
            "spans_per_s": (a.spans as f64 / a.seconds).round(),
            "cpu_s_per_million_spans": per_million(a.cpu_seconds),
            "with_checkpoint_spans_per_s": (a.spans as f64 / a.with_checkpoint_seconds).round(),
            "with_checkpoint_cpu_s_per_million_spans": per_million(a.with_checkpoint_cpu_seconds),
        });
        println!("{n} requests a commit: {figures}");
        runs.insert(format!("requests_per_commit_{n}"), figures);
    }
    Ok(Value::Object(runs))
}
