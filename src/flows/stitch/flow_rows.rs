//! Writing flows: a round's changed flows replace their stored rows in `flows`,
//! `flow_traces`, `flow_join_keys`, `flow_hops`, `flow_retries` and `flow_dead_letters`,
//! in one transaction, appended as Arrow batches (appending whole columns costs a
//! fraction of binding values row by row). The map's sums change in the same
//! transaction: the old flows' cells, returned by the delete, subtracted; the new ones
//! added.

use duckdb::Connection;

use crate::flows::analysis::{FlowAnalysis, SpanFacts};
use crate::flows::edges::{self, Cells, EdgeChanges};
use crate::flows::ids::{trace_hash, TraceId};
use crate::flows::steps::steps_json;
use crate::flows::HashSet;
use crate::store::tables::{
    FlowDeadLetterRows, FlowHopRows, FlowJoinKeyRows, FlowRetryRows, FlowRows, FlowTraceRows, TableBatch,
};
use crate::store::{execute_statements, in_transaction, StoreError};

use super::fan_in::{FanIn, FlowMembers};
use super::joiner::Joiner;
use super::late_joins::{LateJoins, FAN_IN, LINK};
use super::map_sums::MapSums;
use super::parallel;
use super::working_set::StoredFlow;

/// Up to this many changed flows are deleted through the indexes, one by one; beyond it a
/// scan per table is cheaper.
const DELETE_ONE_BY_ONE: usize = 200;

/// A flow ready to write.
pub(super) struct AnalysedFlow<'a> {
    /// Its traces, and those of batches attached to it.
    pub members: FlowMembers,
    /// The spans analysed (borrowed from the working set).
    pub spans: Vec<&'a SpanFacts>,
    pub analysis: FlowAnalysis,
    /// Whether the flow had more spans than were analysed.
    pub truncated: bool,
}

impl AnalysedFlow<'_> {
    /// The flow's id: its root span's trace, one of its own (a batch attached to several
    /// flows never gives them its id).
    pub fn flow_id(&self) -> TraceId {
        let root = self.spans[self.analysis.root].trace_id;
        if self.members.own.contains(&root) {
            root
        } else {
            self.members.own[0]
        }
    }
}

/// Where the rows go, and what else a write updates.
pub(super) struct FlowWriter<'a> {
    pub conn: &'a Connection,
    pub joiner: &'a Joiner,
    pub fan_in: &'a FanIn,
    pub late_joins: &'a mut LateJoins,
    pub map_sums: &'a mut MapSums,
    /// Threads the rows are built on.
    pub threads: usize,
}

impl FlowWriter<'_> {
    /// Replaces the `stale` stored flows by `flows`, written at `now`, in one transaction.
    pub fn replace(
        &mut self,
        stale: &HashSet<StoredFlow>,
        flows: &[AnalysedFlow<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        let (conn, threads) = (self.conn, self.threads);
        let joins = Joins { joiner: self.joiner, fan_in: self.fan_in };
        let (late_joins, map_sums) = (&mut *self.late_joins, &mut *self.map_sums);
        let edge_rows = in_transaction(conn, || {
            let mut edge_changes = EdgeChanges::default();
            delete_stale(conn, stale, &mut edge_changes)?;
            append_flows(conn, &joins, late_joins, flows, now, &mut edge_changes, threads)?;
            map_sums.append(conn, &edge_changes)
        })?;
        map_sums.appended(edge_rows);
        Ok(())
    }
}

/// Deletes the rows of flows being rewritten; their map cells go into `edge_changes`,
/// subtracted. New flows have nothing to replace; a few rewritten flows are deleted one
/// by one through the flow-id indexes, many at once with one scan per table.
fn delete_stale(
    conn: &Connection,
    stale: &HashSet<StoredFlow>,
    edge_changes: &mut EdgeChanges,
) -> Result<(), StoreError> {
    let mut subtract = |rows: &mut duckdb::Rows<'_>| -> Result<(), StoreError> {
        while let Some(r) = rows.next()? {
            let (chain, seq, cells, start): (String, i64, Option<String>, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            edge_changes.apply(&chain, seq, edges::parse_cells(cells.as_deref(), start), -1);
        }
        Ok(())
    };
    if stale.len() <= DELETE_ONE_BY_ONE {
        for old in stale {
            let key: [&dyn duckdb::ToSql; 2] = [&old.flow_id.hex(), &old.updated];
            subtract(
                &mut conn
                    .prepare_cached(include_str!("../../../queries/stitch_delete_flow_row.sql"))?
                    .query(&key[..])?,
            )?;
            execute_statements(conn, include_str!("../../../queries/stitch_delete_flow.sql"), &key)?;
        }
    } else if let Some(oldest_write) = stale.iter().map(|f| f.updated).min() {
        let mut app = conn.appender("stale_flows")?;
        for old in stale {
            app.append_row([old.flow_id.hex()])?;
        }
        app.flush()?;
        drop(app);
        subtract(
            &mut conn.prepare(include_str!("../../../queries/stitch_delete_stale_rows.sql"))?.query([oldest_write])?,
        )?;
        execute_statements(conn, include_str!("../../../queries/stitch_delete_stale.sql"), &[&oldest_write])?;
    }
    Ok(())
}

/// The Arrow builders of one write, a table each.
struct Batches {
    flows: FlowRows,
    traces: FlowTraceRows,
    joins: FlowJoinKeyRows,
    hops: FlowHopRows,
    retries: FlowRetryRows,
    dead_letters: FlowDeadLetterRows,
}

/// What joins the traces of a flow, to be written with it.
struct Joins<'a> {
    joiner: &'a Joiner,
    fan_in: &'a FanIn,
}

/// The rows of a share of a round's flows, built on one thread: the tables' batches, the
/// join hashes written (for the late-join filter), and each flow's map cells.
struct Built {
    batches: Vec<TableBatch>,
    join_hashes: Vec<i64>,
    cells: Vec<(String, i64, Cells)>,
}

/// Flows per share of the row building (each share a batch per table).
const FLOWS_PER_SHARE: usize = 256;

fn append_flows(
    conn: &Connection,
    joins: &Joins<'_>,
    late_joins: &mut LateJoins,
    flows: &[AnalysedFlow<'_>],
    now: i64,
    edge_changes: &mut EdgeChanges,
    threads: usize,
) -> Result<(), StoreError> {
    // Shares in order, so the rows are appended in the flows' order whatever the threads.
    let per_share = flows.len().div_ceil(threads.max(1)).clamp(1, FLOWS_PER_SHARE);
    let shares: Vec<&[AnalysedFlow<'_>]> = flows.chunks(per_share).collect();
    // One appender a table for the whole write: making one looks the table up in the
    // catalog, which cost as much as a share's append.
    let mut appenders: Vec<(&str, duckdb::Appender<'_>)> = Vec::new();
    for built in parallel::map_in_order(&shares, threads, |share| build_rows(joins, share, now)) {
        for hash in built.join_hashes {
            late_joins.written(hash);
        }
        for (chain, seq, cells) in built.cells {
            edge_changes.apply(&chain, seq, cells, 1);
        }
        for batch in built.batches {
            let at = match appenders.iter().position(|(table, _)| *table == batch.table) {
                Some(at) => at,
                None => {
                    appenders.push((batch.table, conn.appender(batch.table)?));
                    appenders.len() - 1
                }
            };
            appenders[at].1.append_record_batch(batch.batch)?;
        }
    }
    for (_, mut appender) in appenders {
        appender.flush()?;
    }
    Ok(())
}

fn build_rows(joins: &Joins<'_>, flows: &[AnalysedFlow<'_>], now: i64) -> Built {
    let mut b = Batches {
        flows: FlowRows::new(),
        traces: FlowTraceRows::new(),
        joins: FlowJoinKeyRows::new(),
        hops: FlowHopRows::new(),
        retries: FlowRetryRows::new(),
        dead_letters: FlowDeadLetterRows::new(),
    };
    let (mut join_hashes, mut all_cells) = (Vec::new(), Vec::with_capacity(flows.len()));
    for flow in flows {
        let last_commit_seq = flow.spans.iter().map(|s| s.commit_seq).max().unwrap_or(0);
        let cells = edges::flow_cells(&flow.spans, &flow.analysis);
        flow_row(&mut b.flows, flow, now, last_commit_seq, edges::cells_json(&cells, flow.analysis.start));
        all_cells.push((flow.analysis.chain.clone(), last_commit_seq, cells));
        join_rows(&mut b, joins, &mut join_hashes, flow, now);
        hop_rows(&mut b.hops, flow, now);
        outcome_rows(&mut b, flow, now);
    }
    let batches = [
        b.flows.finish(),
        b.traces.finish(),
        b.joins.finish(),
        b.hops.finish(),
        b.retries.finish(),
        b.dead_letters.finish(),
    ];
    Built { batches: batches.into_iter().flatten().collect(), join_hashes, cells: all_cells }
}

fn flow_row(f: &mut FlowRows, flow: &AnalysedFlow<'_>, now: i64, last_commit_seq: i64, edges: String) {
    let (a, spans) = (&flow.analysis, &flow.spans);
    let root = spans[a.root];
    f.flow_id.append_value(flow.flow_id().number());
    f.chain.append_value(&a.chain);
    f.root_service.append_value(&root.service);
    f.root_name.append_value(&root.name);
    f.path.append_value(json_array(a.path.iter().map(String::as_str)));
    f.services.append_value(json_array(a.services.iter().map(String::as_str)));
    f.start_unix_nano.append_value(a.start);
    f.end_unix_nano.append_value(a.end);
    f.duration_ms.append_value(ms(a.end - a.start));
    f.span_count.append_value(spans.len() as i32);
    f.trace_count.append_value(a.trace_ids.len() as i32);
    f.error.append_value(a.error);
    f.hops.append_value(a.hops.len() as i32);
    f.retries.append_value(a.retries.len() as i32);
    f.dead_letters.append_value(a.dead_letters.len() as i32);
    f.queue_wait_ms.append_value(ms(a.queue_wait_ns));
    f.service_ms.append_value(ms(a.service_ns));
    f.retry_delay_ms.append_value(ms(a.retry_delay_ns));
    f.clock_skew_hops.append_value(a.hops.iter().filter(|h| h.clock_skew).count() as i32);
    f.updated_unix_nano.append_value(now);
    f.last_commit_seq.append_value(last_commit_seq);
    f.truncated.append_value(flow.truncated);
    f.steps.append_value(steps_json(&a.steps));
    f.edges.append_value(edges);
}

/// A row per member trace (attached batches included), and a row per link, key and
/// fan-in edge of each, which late spans find the flow by.
fn join_rows(b: &mut Batches, joins: &Joins<'_>, written: &mut Vec<i64>, flow: &AnalysedFlow<'_>, now: i64) {
    let flow_id = flow.flow_id().number();
    let start = flow.analysis.start;
    for t in flow.members.all() {
        let r = &mut b.traces;
        r.flow_id.append_value(flow_id);
        r.trace_id.append_value(t.number());
        let trace_key = t.join_hash();
        written.push(trace_key);
        r.trace_key.append_value(trace_key);
        r.flow_start_unix_nano.append_value(start);
        r.updated_unix_nano.append_value(now);
        let (links, keys) = joins.joiner.joins_of(*t);
        let mut join_row = |key: i64, kind: &str, value: &str| {
            let r = &mut b.joins;
            written.push(key);
            r.key.append_value(key);
            r.flow_id.append_value(flow_id);
            r.trace_id.append_value(t.number());
            r.kind.append_value(kind);
            r.value.append_value(value);
            r.flow_start_unix_nano.append_value(start);
            r.updated_unix_nano.append_value(now);
        };
        // A link joins two members of this flow, and both ends list it: the row is
        // written from one end only (the loader restores both), and no lookup needs
        // it, since the other end's trace row has the same hash.
        for to in links.into_iter().filter(|to| t < to) {
            let to = to.hex();
            join_row(trace_hash(&to), LINK, &to);
        }
        for k in keys {
            join_row(k.hash(), k.kind(), k.value());
        }
        // Every edge of a batch, in each flow it is attached to: an edge to a trace not
        // yet arrived is how that trace's flow finds the batch when it comes.
        for target in joins.fan_in.targets_of(t) {
            let target = target.hex();
            join_row(trace_hash(&target), FAN_IN, &target);
        }
    }
}

fn hop_rows(r: &mut FlowHopRows, flow: &AnalysedFlow<'_>, now: i64) {
    let (a, spans) = (&flow.analysis, &flow.spans);
    let flow_id = flow.flow_id().number();
    for (i, h) in a.hops.iter().enumerate() {
        let producer = h.producer.map(|p| spans[p]);
        r.flow_id.append_value(flow_id);
        r.hop_index.append_value(i as i32);
        r.system.append_option(h.system.as_deref());
        r.destination.append_option(h.destination.as_deref());
        r.producer_trace_id.append_option(producer.map(|p| p.trace_id.number()));
        r.producer_span_id.append_option(producer.map(|p| p.span_id.hex()));
        r.producer_service.append_option(producer.map(|p| &p.service));
        let consumers: Vec<_> = h.consumers.iter().map(|c| spans[*c].span_id.hex()).collect();
        r.consumer_span_ids.append_value(json_array(consumers.iter().map(|c| &**c)));
        r.consumer_service.append_option(h.consumers.first().map(|c| &spans[*c].service));
        r.sent_unix_nano.append_value(h.time);
        r.queue_wait_ms.append_option(h.queue_wait_ns.map(ms));
        r.clock_skew.append_value(h.clock_skew);
        r.dead_letter.append_value(h.dead_letter);
        r.chain.append_value(&a.chain);
        r.flow_start_unix_nano.append_value(a.start);
        r.source_destination.append_option(h.source_destination.as_deref());
        r.updated_unix_nano.append_value(now);
        r.retry.append_value(h.retry);
    }
}

/// The flow's retries and dead letters.
fn outcome_rows(b: &mut Batches, flow: &AnalysedFlow<'_>, now: i64) {
    let (a, spans) = (&flow.analysis, &flow.spans);
    let flow_id = flow.flow_id().number();
    for retry in &a.retries {
        let r = &mut b.retries;
        r.flow_id.append_value(flow_id);
        r.time_unix_nano.append_value(retry.time);
        r.service.append_value(&retry.service);
        r.destination.append_option(retry.destination.as_deref());
        r.span_id.append_value(spans[retry.span].span_id.hex());
        r.attempt.append_value(retry.attempt);
        r.delay_ms.append_value(ms(retry.delay_ns));
        r.previous_span_id.append_option(retry.previous.map(|p| spans[p].span_id.hex()));
        r.updated_unix_nano.append_value(now);
    }
    for d in &a.dead_letters {
        let r = &mut b.dead_letters;
        r.flow_id.append_value(flow_id);
        r.time_unix_nano.append_value(d.time);
        r.destination.append_value(&d.destination);
        r.source_destination.append_option(d.source_destination.as_deref());
        r.message_id.append_option(d.message_id.as_deref());
        r.correlation_id.append_option(d.correlation_id.as_deref());
        r.error.append_option(d.error.as_deref());
        r.span_id.append_value(spans[d.span].span_id.hex());
        r.updated_unix_nano.append_value(now);
    }
}

/// A JSON array of strings, serialised from borrowed ones.
fn json_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::to_string(&items.into_iter().collect::<Vec<&str>>()).expect("strings serialize")
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arrays_of_strings_are_escaped_like_serde_json_s() {
        for items in [vec![], vec!["checkout"], vec!["a \"quoted\" name", "tab\there", "ünïcode", "\u{1}"]] {
            assert_eq!(json_array(items.iter().copied()), serde_json::to_string(&items).unwrap());
        }
    }
}
