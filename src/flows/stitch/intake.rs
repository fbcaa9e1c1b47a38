//! How the stitcher takes in newly committed rows: from the writer's in-memory
//! [`CommitFeed`](crate::store::CommitFeed) when it holds the whole range, otherwise (after a restart, or when the
//! stitcher fell far enough behind for the feed to overflow) from the DuckDB file. Both
//! give the same [`NewRows`].

use duckdb::arrow::array::{Array, AsArray, BooleanArray, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::{Int32Type, Int64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use crate::flows::analysis::{LinkFacts, MessagingOperation, SpanFacts, SpanKind};
use crate::flows::ids::{SpanId, TraceId};
use crate::flows::{HashMap, HashSet};

use crate::store::{Committed, StoreError};

/// A span link as committed: the span it belongs to, and where it points.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub trace: TraceId,
    pub span: SpanId,
    pub link: LinkFacts,
}

/// The rows of a range of commits that matter for stitching.
#[derive(Debug, Default)]
pub struct NewRows {
    pub spans: Vec<SpanFacts>,
    pub links: Vec<LinkRow>,
    /// (trace id, correlation id) of log records carrying both, without repeats.
    pub log_keys: Vec<(TraceId, String)>,
}

/// Converts the feed's batches; the columns are those `CommitFeed` keeps.
pub fn from_feed(commits: &[Committed]) -> NewRows {
    let mut rows = NewRows::default();
    let mut log_keys = HashSet::default();
    for (commit, batch) in commits.iter().flat_map(|c| c.batches.iter().map(move |b| (c, b))) {
        let b = &batch.batch;
        match batch.table {
            "spans" => spans_from_batch(b, Some(commit.seq), &mut rows.spans),
            "span_links" => links_from_batch(b, &mut rows.links),
            "logs" => log_keys_from_batch(b, &mut log_keys),
            _ => {}
        }
    }
    rows.log_keys = log_keys.into_iter().collect();
    rows
}

/// Reads the rows of commits `from + 1 ..= to` from the file, as Arrow batches decoded by
/// the feed's own code (reading them row by row through `duckdb::Row` was 13% of the
/// stitcher's time whenever the feed had overflowed).
pub fn from_file(conn: &Connection, from: i64, to: i64) -> Result<NewRows, StoreError> {
    let range = [from, to];
    let mut rows = NewRows::default();
    for b in batches(conn, include_str!("../../../queries/stitch_new_spans.sql"), range)? {
        spans_from_batch(&b, None, &mut rows.spans);
    }
    for b in batches(conn, include_str!("../../../queries/stitch_new_links.sql"), range)? {
        links_from_batch(&b, &mut rows.links);
    }
    let mut log_keys = HashSet::default();
    for b in batches(conn, include_str!("../../../queries/stitch_new_log_correlations.sql"), range)? {
        log_keys_from_batch(&b, &mut log_keys);
    }
    rows.log_keys = log_keys.into_iter().collect();
    Ok(rows)
}

/// Reads every span (committed up to `upto_seq`, links attached) of the traces listed in
/// the `stitch_traces` temp table; none of them starts before `from_start`.
pub fn reload_from_file(conn: &Connection, from_start: i64, upto_seq: i64) -> Result<Vec<SpanFacts>, StoreError> {
    let bounds = [from_start, upto_seq];
    let (mut spans, mut links) = (Vec::new(), Vec::new());
    for b in batches(conn, include_str!("../../../queries/stitch_reload_spans.sql"), bounds)? {
        spans_from_batch(&b, None, &mut spans);
    }
    for b in batches(conn, include_str!("../../../queries/stitch_reload_links.sql"), bounds)? {
        links_from_batch(&b, &mut links);
    }
    attach_links(&mut spans, links);
    Ok(spans)
}

/// Runs one of the stitcher's two-parameter reads. Planned afresh each time, as are the
/// stitcher's other reads that join a temp table of this round's keys to the stored
/// rows: a plan cached while the tables were small (a first round on an empty file)
/// kept building its hash table on what became the large side; at 20 M stored spans a
/// round then spent 90% of its time building and spilling a table of every stored trace.
fn batches(conn: &Connection, sql: &str, params: [i64; 2]) -> Result<Vec<RecordBatch>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let batches = stmt.query_arrow(params)?.collect();
    Ok(batches)
}

/// Hangs each link on the span it belongs to (links of spans not in `spans` are dropped).
pub fn attach_links(spans: &mut [SpanFacts], links: Vec<LinkRow>) {
    if links.is_empty() {
        return;
    }
    // Indexed by link, since links are far fewer than spans.
    let mut by_span: HashMap<(TraceId, SpanId), Vec<usize>> = HashMap::default();
    for (i, l) in links.iter().enumerate() {
        by_span.entry((l.trace, l.span)).or_default().push(i);
    }
    let placed: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(si, s)| by_span.get(&(s.trace_id, s.span_id)).into_iter().flatten().map(move |li| (si, *li)))
        .collect();
    drop(by_span);
    let mut links: Vec<Option<LinkFacts>> = links.into_iter().map(|l| Some(l.link)).collect();
    for (si, li) in placed {
        if let Some(link) = links[li].take() {
            spans[si].links.push(link);
        }
    }
}

/// Decodes spans from a batch with the `span_facts` columns (found by name; others may
/// follow). Each span's commit is `batch_commit` when the batch is one commit's (the
/// feed), otherwise the batch's `commit_seq` column.
pub fn spans_from_batch(b: &RecordBatch, batch_commit: Option<i64>, out: &mut Vec<SpanFacts>) {
    let mut trace_id = Ids::new(b, "trace_id", TraceId::parse);
    let mut span_id = Ids::new(b, "span_id", SpanId::parse);
    let mut parent = Ids::new(b, "parent_span_id", SpanId::parse);
    let service = strings(b, "service_name");
    let name = strings(b, "name");
    let kind = strings(b, "kind");
    let (start, end) = (int64s(b, "start_unix_nano"), int64s(b, "end_unix_nano"));
    let status_code = strings(b, "status_code");
    let status_message = strings(b, "status_message");
    let system = strings(b, "messaging_system");
    let operation = strings(b, "messaging_operation");
    let destination = strings(b, "destination");
    let message_id = strings(b, "message_id");
    let correlation_id = strings(b, "correlation_id");
    let attempt: &Int32Array = b.column_by_name("attempt").expect("attempt column").as_primitive::<Int32Type>();
    let dead_letter: &BooleanArray = b.column_by_name("dead_letter_evidence").expect("dead letter column").as_boolean();
    let dead_letter_source = strings(b, "dead_letter_source");
    let commit_column = batch_commit.is_none().then(|| int64s(b, "commit_seq"));
    let owned = |a: &StringArray, i: usize| opt_str(a, i).map(str::to_owned);
    out.reserve(b.num_rows());
    for i in 0..b.num_rows() {
        let (Some(trace), Some(span)) = (trace_id.get(i), span_id.get(i)) else { continue };
        // A parent id that does not read leaves the span without one (a root).
        let parent = parent.get(i);
        out.push(SpanFacts {
            trace_id: trace,
            span_id: span,
            parent_span_id: parent,
            service: service.value(i).to_owned(),
            name: name.value(i).to_owned(),
            kind: SpanKind::parse(kind.value(i)),
            start: start.value(i),
            end: end.value(i),
            error: status_code.value(i) == "ERROR",
            status_message: owned(status_message, i),
            system: owned(system, i),
            operation: opt_str(operation, i).and_then(MessagingOperation::parse),
            destination: owned(destination, i),
            message_id: owned(message_id, i),
            correlation_id: owned(correlation_id, i),
            attempt: attempt.is_valid(i).then(|| attempt.value(i)),
            dead_letter_evidence: dead_letter.is_valid(i) && dead_letter.value(i),
            dead_letter_source: owned(dead_letter_source, i),
            commit_seq: match commit_column {
                Some(seqs) => seqs.value(i),
                None => batch_commit.unwrap_or_default(),
            },
            links: Vec::new(),
        });
    }
}

fn links_from_batch(b: &RecordBatch, out: &mut Vec<LinkRow>) {
    let (mut trace_id, mut span_id) = (Ids::new(b, "trace_id", TraceId::parse), Ids::new(b, "span_id", SpanId::parse));
    let (mut linked_trace, mut linked_span) =
        (Ids::new(b, "linked_trace_id", TraceId::parse), Ids::new(b, "linked_span_id", SpanId::parse));
    let message_id = strings(b, "message_id");
    for i in 0..b.num_rows() {
        let ids = (trace_id.get(i), span_id.get(i), linked_trace.get(i), linked_span.get(i));
        let (Some(trace), Some(span), Some(linked_trace), Some(linked_span)) = ids else { continue };
        out.push(LinkRow {
            trace,
            span,
            link: LinkFacts {
                trace_id: linked_trace,
                span_id: linked_span,
                message_id: opt_str(message_id, i).map(str::to_owned),
            },
        });
    }
}

/// (trace id, correlation id) of the log records carrying both.
fn log_keys_from_batch(b: &RecordBatch, out: &mut HashSet<(TraceId, String)>) {
    let (mut trace, corr) = (Ids::new(b, "trace_id", TraceId::parse), strings(b, "correlation_id"));
    for i in 0..b.num_rows() {
        if let (Some(t), Some(c)) = (trace.get(i), opt_str(corr, i)) {
            out.insert((t, c.to_owned()));
        }
    }
}

/// A batch's trace or span id column, parsed row by row. flowscope writes no id but
/// lower-case hex digits of the id's length, so only a file changed by hand holds
/// another: stitching leaves it out (its row, or a parent id), with one warning per
/// batch and column, rather than stopping.
struct Ids<'a, T> {
    name: &'a str,
    column: &'a StringArray,
    unreadable: usize,
    parse: fn(&str) -> Option<T>,
}

impl<'a, T> Ids<'a, T> {
    fn new(b: &'a RecordBatch, name: &'a str, parse: fn(&str) -> Option<T>) -> Self {
        Ids { name, column: strings(b, name), unreadable: 0, parse }
    }

    /// The id in row `i`; `None` for a null or an unreadable id.
    fn get(&mut self, i: usize) -> Option<T> {
        let id = (self.parse)(opt_str(self.column, i)?);
        self.unreadable += usize::from(id.is_none());
        id
    }
}

impl<T> Drop for Ids<'_, T> {
    fn drop(&mut self) {
        if self.unreadable > 0 {
            tracing::warn!(
                column = self.name,
                rows = self.unreadable,
                "stored ids are not hex digits of their length; stitching leaves them out"
            );
        }
    }
}

fn int64s<'a>(b: &'a RecordBatch, column: &str) -> &'a Int64Array {
    b.column_by_name(column)
        .unwrap_or_else(|| panic!("integer column {column} in the batch"))
        .as_primitive::<Int64Type>()
}

/// A string column of a batch whose schema is the store's (a mismatch is a bug).
pub fn strings<'a>(b: &'a RecordBatch, column: &str) -> &'a StringArray {
    b.column_by_name(column).unwrap_or_else(|| panic!("string column {column} in the batch")).as_string::<i32>()
}

pub fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_whose_trace_id_is_not_stored_hex_is_left_out_not_fatal() {
        let good = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ids = [good, "not-a-trace-id", "4BF92F3577B34DA6A3CE929D0E0E4736", ""];
        let batch = crate::test_support::span_rows(ids.map(String::from));
        let mut spans = Vec::new();
        spans_from_batch(&batch.batch, Some(7), &mut spans);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id.to_string(), good);
        assert_eq!((spans[0].span_id.to_string(), spans[0].commit_seq), ("0000000000000000".to_owned(), 7));
    }
}
