//! The flow map of a range, and the flows that crossed one of its edges.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::params;

use super::super::backlog::QueueNames;
use super::super::edges::{self, CellCounts, EdgeKind};
use super::super::map::{self, EdgeSlotSum, FlowMap};
use super::{flow_row, queues, FlowRow, Range};
use crate::flows::stitch::aliases::stored as stored_queue_aliases;
use crate::store::{Store, StoreError};

/// The map of a range (of one chain when given), with each destination's backlog status.
pub async fn flow_map(store: &Arc<Store>, range: Range, chain: Option<String>) -> Result<FlowMap, StoreError> {
    // Whole slots: the one `from` falls in counts, and the rate is over what they cover.
    let from = edges::slot_of(range.from);
    let read = store.read(move |c| {
        let mut stmt = c.prepare(include_str!("../../../queries/map_edges.sql"))?;
        let rows = stmt
            .query_map(params![from, range.to, chain], |r| {
                // Kinds this build does not know (written by a newer one) are skipped.
                let Some(kind) = EdgeKind::parse(&r.get::<_, String>(0)?).filter(|k| k.on_map()) else {
                    return Ok(None);
                };
                Ok(Some(EdgeSlotSum {
                    kind,
                    source: r.get(1)?,
                    target: r.get(2)?,
                    system: r.get(3)?,
                    bucket: r.get(4)?,
                    counts: CellCounts { n: r.get(5)?, errors: r.get(6)?, retries: r.get(7)?, dead_letters: r.get(8)? },
                }))
            })?
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, QueueNames::new(&stored_queue_aliases(c)?)))
    });
    let ((rows, names), queues) = tokio::try_join!(read, queues(store, range))?;
    let statuses = queues.into_iter().map(|q| ((q.system, q.destination), q.status)).collect::<BTreeMap<_, _>>();
    Ok(map::build(rows, &names, &statuses, (range.to - from) as f64 / 1e9))
}

/// Most names of one destination the edge page looks for (a queue and its exchanges).
const MAX_NAMES: usize = 8;

/// The slowest flows of a range that crossed an edge of the map, under any name of its
/// destinations (a queue and the exchanges feeding it).
pub async fn flows_across_edge(
    store: &Arc<Store>,
    range: Range,
    kind: EdgeKind,
    source: String,
    target: String,
    limit: i64,
) -> Result<Vec<FlowRow>, StoreError> {
    store
        .read(move |c| {
            let names = QueueNames::new(&stored_queue_aliases(c)?);
            let every_name = |node: &str| -> Vec<String> {
                let Some(queue) = node.strip_prefix("destination:") else { return vec![node.to_owned()] };
                let mut all = vec![node.to_owned()];
                // A hostile stream can teach a queue many names: one query per pair, so few.
                all.extend(
                    names.aliases_of_any_system(queue).iter().take(MAX_NAMES).map(|a| edges::destination_node(a)),
                );
                all
            };
            let mut stmt = c.prepare(include_str!("../../../queries/flows_across_edge.sql"))?;
            let mut found: Vec<FlowRow> = Vec::new();
            for s in every_name(&source) {
                for t in every_name(&target) {
                    let needle = edges::edge_needle(kind, &s, &t);
                    let rows = stmt.query_map(params![range.from, range.to, needle, limit], flow_row)?;
                    found.extend(rows.collect::<Result<Vec<_>, _>>()?);
                }
            }
            found.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms).then_with(|| a.flow_id.cmp(&b.flow_id)));
            found.dedup_by(|a, b| a.flow_id == b.flow_id);
            found.truncate(limit.max(0) as usize);
            Ok(found)
        })
        .await
}
