//! How the stitcher takes in newly committed rows: from the writer's in-memory
//! [`CommitFeed`](crate::store::CommitFeed) when it holds the whole range, otherwise (after a restart, or when the
//! stitcher fell far enough behind for the feed to overflow) from the DuckDB file. Both
//! give the same [`NewRows`].

use duckdb::arrow::array::{Array, AsArray, BooleanArray, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::{Int32Type, Int64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::analysis::{LinkFacts, SpanFacts, SpanKind};
use super::joiner::TraceId;
use super::{HashMap, HashSet};

use crate::store::{Committed, StoreError, SPAN_FACT_COLUMNS};

/// (span's trace, span id, link)
pub type LinkRow = (TraceId, String, LinkFacts);

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
            "spans" => spans_from_batch(b, commit.seq, &mut rows.spans),
            "span_links" => links_from_batch(b, &mut rows.links),
            "logs" => {
                let (trace, corr) = (strings(b, "trace_id"), strings(b, "correlation_id"));
                for i in 0..b.num_rows() {
                    if let (Some(t), Some(c)) = (opt_str(trace, i), opt_str(corr, i)) {
                        log_keys.insert((t.to_owned(), c.to_owned()));
                    }
                }
            }
            _ => {}
        }
    }
    rows.log_keys = log_keys.into_iter().collect();
    rows
}

/// Reads the rows of commits `from + 1 ..= to` from the file.
pub fn from_file(conn: &Connection, from: i64, to: i64) -> Result<NewRows, StoreError> {
    let range = [from, to];
    Ok(NewRows {
        spans: rows(conn, include_str!("../../queries/stitch_new_spans.sql"), range, span_reader())?,
        links: rows(conn, include_str!("../../queries/stitch_new_links.sql"), range, link_from_row)?,
        log_keys: rows(conn, include_str!("../../queries/stitch_new_log_correlations.sql"), range, |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?,
    })
}

/// Reads every span (committed up to `upto_seq`, links attached) of the traces listed in
/// the `stitch_traces` temp table; none of them starts before `from_start`.
pub fn reload_from_file(conn: &Connection, from_start: i64, upto_seq: i64) -> Result<Vec<SpanFacts>, StoreError> {
    let bounds = [from_start, upto_seq];
    let mut spans = rows(conn, include_str!("../../queries/stitch_reload_spans.sql"), bounds, span_reader())?;
    let links = rows(conn, include_str!("../../queries/stitch_reload_links.sql"), bounds, link_from_row)?;
    attach_links(&mut spans, links);
    Ok(spans)
}

/// Runs one of the stitcher's two-parameter reads. Planned afresh each time, as are the
/// stitcher's other reads that join a temp table of this round's keys to the stored
/// rows: a plan cached while the tables were small (a first round on an empty file)
/// kept building its hash table on what became the large side; at 20 M stored spans a
/// round then spent 90% of its time building and spilling a table of every stored trace.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: [i64; 2],
    row: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Hangs each link on the span it belongs to (links of spans not in `spans` are dropped).
pub fn attach_links(spans: &mut [SpanFacts], links: Vec<LinkRow>) {
    if links.is_empty() {
        return;
    }
    // Indexed by link, since links are far fewer than spans.
    let mut by_span: HashMap<(&str, &str), Vec<usize>> = HashMap::default();
    for (i, (trace, span, _)) in links.iter().enumerate() {
        by_span.entry((trace.as_str(), span.as_str())).or_default().push(i);
    }
    let placed: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            by_span.get(&(s.trace_id.as_str(), s.span_id.as_str())).into_iter().flatten().map(move |li| (si, *li))
        })
        .collect();
    drop(by_span);
    let mut links: Vec<Option<LinkFacts>> = links.into_iter().map(|(_, _, link)| Some(link)).collect();
    for (si, li) in placed {
        if let Some(link) = links[li].take() {
            spans[si].links.push(link);
        }
    }
}

/// Reads spans from rows that have the `span_facts` columns (other columns may follow).
/// Positions are looked up by name once, at the first row: looking a name up on every
/// `get` cost the stitcher's replay a quarter of its speed.
pub fn span_reader() -> impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<SpanFacts> {
    // SPAN_FACT_COLUMNS, then commit_seq.
    let mut at: Option<[usize; 19]> = None;
    move |row| {
        let c = match at {
            Some(c) => c,
            None => {
                let stmt = row.as_ref();
                let mut c = [0; 19];
                for (i, name) in SPAN_FACT_COLUMNS.iter().chain(&["commit_seq"]).enumerate() {
                    c[i] = stmt.column_index(name)?;
                }
                *at.insert(c)
            }
        };
        Ok(SpanFacts {
            trace_id: row.get(c[0])?,
            span_id: row.get(c[1])?,
            parent_span_id: row.get(c[2])?,
            service: row.get(c[3])?,
            name: row.get(c[4])?,
            kind: SpanKind::parse(&row.get::<_, String>(c[5])?),
            start: row.get(c[6])?,
            end: row.get(c[7])?,
            error: row.get::<_, String>(c[8])? == "ERROR",
            status_message: row.get(c[9])?,
            system: row.get(c[10])?,
            operation: row.get(c[11])?,
            destination: row.get(c[12])?,
            message_id: row.get(c[13])?,
            correlation_id: row.get(c[14])?,
            attempt: row.get(c[15])?,
            dead_letter_evidence: row.get(c[16])?,
            dead_letter_source: row.get(c[17])?,
            commit_seq: row.get(c[18])?,
            links: Vec::new(),
        })
    }
}

fn link_from_row(row: &duckdb::Row<'_>) -> duckdb::Result<LinkRow> {
    Ok((row.get(0)?, row.get(1)?, LinkFacts { trace_id: row.get(2)?, span_id: row.get(3)?, message_id: row.get(4)? }))
}

fn spans_from_batch(b: &RecordBatch, commit_seq: i64, out: &mut Vec<SpanFacts>) {
    let trace_id = strings(b, "trace_id");
    let span_id = strings(b, "span_id");
    let parent = strings(b, "parent_span_id");
    let service = strings(b, "service_name");
    let name = strings(b, "name");
    let kind = strings(b, "kind");
    let start: &Int64Array = b.column_by_name("start_unix_nano").expect("start column").as_primitive::<Int64Type>();
    let end: &Int64Array = b.column_by_name("end_unix_nano").expect("end column").as_primitive::<Int64Type>();
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
    let owned = |a: &StringArray, i: usize| opt_str(a, i).map(str::to_owned);
    out.reserve(b.num_rows());
    for i in 0..b.num_rows() {
        out.push(SpanFacts {
            trace_id: trace_id.value(i).to_owned(),
            span_id: span_id.value(i).to_owned(),
            parent_span_id: owned(parent, i),
            service: service.value(i).to_owned(),
            name: name.value(i).to_owned(),
            kind: SpanKind::parse(kind.value(i)),
            start: start.value(i),
            end: end.value(i),
            error: status_code.value(i) == "ERROR",
            status_message: owned(status_message, i),
            system: owned(system, i),
            operation: owned(operation, i),
            destination: owned(destination, i),
            message_id: owned(message_id, i),
            correlation_id: owned(correlation_id, i),
            attempt: attempt.is_valid(i).then(|| attempt.value(i)),
            dead_letter_evidence: dead_letter.is_valid(i) && dead_letter.value(i),
            dead_letter_source: owned(dead_letter_source, i),
            commit_seq,
            links: Vec::new(),
        });
    }
}

fn links_from_batch(b: &RecordBatch, out: &mut Vec<LinkRow>) {
    let (trace_id, span_id) = (strings(b, "trace_id"), strings(b, "span_id"));
    let (linked_trace, linked_span) = (strings(b, "linked_trace_id"), strings(b, "linked_span_id"));
    let message_id = strings(b, "message_id");
    for i in 0..b.num_rows() {
        out.push((
            trace_id.value(i).to_owned(),
            span_id.value(i).to_owned(),
            LinkFacts {
                trace_id: linked_trace.value(i).to_owned(),
                span_id: linked_span.value(i).to_owned(),
                message_id: opt_str(message_id, i).map(str::to_owned),
            },
        ));
    }
}

fn strings<'a>(b: &'a RecordBatch, column: &str) -> &'a StringArray {
    b.column_by_name(column).unwrap_or_else(|| panic!("column {column} in the stitch feed")).as_string::<i32>()
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}
