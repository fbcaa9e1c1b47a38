//! The commit feed: rows the writer has just committed, handed to the flow stitcher in
//! memory so it need not read them back from the file.
//!
//! The feed is an optimisation, never the source of truth. It keeps only the columns the
//! stitcher reads (the bulky attribute JSON is dropped) and holds at most
//! `capacity_bytes` of their Arrow buffers; a commit that does not fit is left out, and
//! a reader that finds a gap in the sequence numbers reads that range from DuckDB
//! instead. So a slow stitcher costs
//! bounded memory, and a restart (an empty feed) simply means reading from the file.

use std::collections::VecDeque;

use duckdb::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use super::tables::TableBatch;

/// The span columns the stitcher reads: what the feed keeps of `spans`, and what the
/// `span_facts` view (migration 007) selects besides `commit_seq`.
pub const SPAN_FACT_COLUMNS: [&str; 18] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "kind",
    "start_unix_nano",
    "end_unix_nano",
    "status_code",
    "status_message",
    "messaging_system",
    "messaging_operation",
    "destination",
    "message_id",
    "correlation_id",
    "attempt",
    "dead_letter_evidence",
    "dead_letter_source",
];

/// Columns of each table the stitcher needs, by table name.
const STITCH_COLUMNS: &[(&str, &[&str])] = &[
    ("spans", &SPAN_FACT_COLUMNS),
    ("span_links", &["trace_id", "span_id", "linked_trace_id", "linked_span_id", "message_id"]),
    ("logs", &["trace_id", "correlation_id"]),
];

/// One commit's rows, narrowed to the stitcher's columns.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: i64,
    pub batches: Vec<TableBatch>,
}

impl Committed {
    fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.batch.num_rows()).sum()
    }

    /// Memory its batches hold. Counted in bytes, not rows: a row's size varies with its
    /// names and ids, so a count of rows bounds memory only through a guess.
    fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.batch.get_array_memory_size()).sum()
    }
}

#[derive(Debug)]
pub struct CommitFeed {
    capacity_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    commits: VecDeque<Committed>,
    rows: usize,
    bytes: usize,
}

impl CommitFeed {
    pub fn new(capacity_bytes: usize) -> Self {
        CommitFeed { capacity_bytes, inner: Mutex::new(Inner::default()) }
    }

    /// Offers a commit's batches; left out (the reader will fall back to the file) when
    /// the feed is full.
    pub(super) fn push(&self, seq: i64, batches: &[&TableBatch]) {
        let commit = Committed { seq, batches: batches.iter().filter_map(|b| narrow(b)).collect() };
        let (rows, bytes) = (commit.rows(), commit.bytes());
        let mut inner = self.inner.lock();
        if inner.bytes + bytes > self.capacity_bytes {
            return;
        }
        inner.rows += rows;
        inner.bytes += bytes;
        inner.commits.push_back(commit);
    }

    /// Takes every commit up to `upto`. Returns them only when they are exactly the
    /// commits `after + 1 ..= upto`; `None` means some are missing and the range must be
    /// read from the file.
    pub fn take(&self, after: i64, upto: i64) -> Option<Vec<Committed>> {
        let mut inner = self.inner.lock();
        let mut taken = Vec::new();
        while inner.commits.front().is_some_and(|c| c.seq <= upto) {
            let c = inner.commits.pop_front().expect("front exists");
            inner.rows -= c.rows();
            inner.bytes -= c.bytes();
            if c.seq > after {
                taken.push(c);
            }
        }
        let complete =
            taken.iter().zip(after + 1..=upto).all(|(c, seq)| c.seq == seq) && taken.len() as i64 == upto - after;
        complete.then_some(taken)
    }

    pub fn queued_rows(&self) -> usize {
        self.inner.lock().rows
    }
}

/// Rows of these batches that the stitcher reads: what bounds a stitching round.
pub fn stitch_rows(batches: &[&TableBatch]) -> usize {
    let read = |b: &&&TableBatch| STITCH_COLUMNS.iter().any(|(table, _)| *table == b.table);
    batches.iter().filter(read).map(|b| b.batch.num_rows()).sum()
}

fn narrow(batch: &TableBatch) -> Option<TableBatch> {
    let (_, columns) = STITCH_COLUMNS.iter().find(|(table, _)| *table == batch.table)?;
    let schema = batch.batch.schema();
    let indices: Vec<usize> =
        columns.iter().map(|c| schema.index_of(c).expect("stitch columns exist in the table's schema")).collect();
    let narrowed: RecordBatch = batch.batch.project(&indices).expect("indices come from the schema");
    Some(TableBatch { table: batch.table, batch: narrowed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tables::MetricPointRows;

    fn spans(n: usize) -> TableBatch {
        crate::test_support::span_rows((0..n).map(|i| format!("{i:032x}")))
    }

    #[test]
    fn keeps_only_the_stitchers_columns_and_tables() {
        let feed = CommitFeed::new(1 << 20);
        // Metric points are not the stitcher's business, whatever their columns.
        let metrics = TableBatch { table: MetricPointRows::TABLE, batch: spans(1).batch };
        feed.push(1, &[&spans(3), &metrics]);
        let got = feed.take(0, 1).expect("complete");
        assert_eq!(got[0].batches.len(), 1);
        let batch = &got[0].batches[0].batch;
        assert_eq!(batch.num_rows(), 3);
        assert!(batch.schema().index_of("attributes").is_err());
        assert_eq!(batch.schema().index_of("trace_id").ok(), Some(0));
        assert_eq!(feed.queued_rows(), 0);
    }

    #[test]
    fn gaps_and_overflow_send_the_reader_to_the_file() {
        // One commit of two spans, as the feed keeps it.
        let commit = Committed { seq: 1, batches: vec![narrow(&spans(2)).expect("spans are kept")] }.bytes();
        let big = 100 * commit;
        // (pushed seqs, capacity, take after, take upto, complete?)
        let cases: &[(&[i64], usize, i64, i64, bool)] = &[
            (&[1, 2, 3], big, 0, 3, true),
            (&[1, 2, 3], big, 1, 3, true),
            (&[1, 3], big, 0, 3, false),
            (&[2, 3], big, 0, 3, false),
            (&[1, 2], big, 0, 3, false),
            (&[1, 2, 3], 2 * commit + commit / 2, 0, 3, false), // two commits fit, the third is left out
            (&[1, 2, 3], 3 * commit, 0, 3, true),
            (&[], big, 0, 0, true),
        ];
        for (pushed, capacity, after, upto, complete) in cases {
            let feed = CommitFeed::new(*capacity);
            for seq in *pushed {
                feed.push(*seq, &[&spans(2)]);
            }
            assert_eq!(feed.take(*after, *upto).is_some(), *complete, "{pushed:?} cap {capacity} ({after}, {upto}]");
            assert_eq!(feed.queued_rows(), 0, "taking drops everything up to `upto`");
            assert_eq!(feed.inner.lock().bytes, 0);
        }
    }
}
