//! The map's sums in `flow_edge_slots`: what each written flow adds per edge and minute
//! (see [`crate::flows::edges`]), appended with the flows, and folded into a row per
//! cell once the appended rows outgrow what the last fold left.

use duckdb::{params, Connection};

use crate::flows::edges::EdgeChanges;
use crate::store::tables::FlowEdgeSlotRows;
use crate::store::{in_transaction, StoreError};

/// The `stitch_state` entry holding the rows of `flow_edge_slots` after its last
/// compaction.
const COMPACTED_ROWS: &str = "edge_slots_compacted_rows";

/// How many rows `flow_edge_slots` holds: compacted, and appended since. Compacting once
/// the appended rows outnumber the compacted ones keeps the cost per row constant.
#[derive(Debug, Clone, Copy)]
pub(super) struct MapSums {
    compacted: usize,
    appended: usize,
}

impl MapSums {
    /// Appended rows that never warrant a compaction on their own.
    const FLOOR: usize = 100_000;

    /// The table's size as the last compaction left it (from `stitch_state`) and now.
    pub fn open(conn: &Connection, state: &crate::flows::HashMap<String, i64>) -> Result<MapSums, StoreError> {
        let now: i64 = conn.query_row(include_str!("../../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
        let compacted = state.get(COMPACTED_ROWS).copied().unwrap_or(0);
        Ok(Self::since_compaction(compacted as usize, now as usize))
    }

    fn since_compaction(compacted: usize, now: usize) -> Self {
        MapSums { compacted, appended: now.saturating_sub(compacted) }
    }

    fn due(&self) -> bool {
        self.appended > self.compacted.max(Self::FLOOR)
    }

    /// Appends a round's changes (inside the round's transaction); returns how many rows
    /// it appended.
    pub fn append(&mut self, conn: &Connection, changes: &EdgeChanges) -> Result<usize, StoreError> {
        let mut rows = FlowEdgeSlotRows::new();
        for (chain, seq, key, counts) in changes.rows() {
            rows.slot_unix_nano.append_value(key.slot);
            rows.chain.append_value(chain);
            rows.kind.append_value(key.kind.as_str());
            rows.source.append_value(&key.source);
            rows.target.append_value(&key.target);
            rows.system.append_option(key.system.as_deref());
            rows.latency_bucket.append_option(key.bucket);
            rows.n.append_value(counts.n);
            rows.errors.append_value(counts.errors);
            rows.retries.append_value(counts.retries);
            rows.dead_letters.append_value(counts.dead_letters);
            rows.commit_seq.append_value(seq);
        }
        let Some(batch) = rows.finish() else { return Ok(0) };
        let appended = batch.batch.num_rows();
        let mut appender = conn.appender(batch.table)?;
        appender.append_record_batch(batch.batch)?;
        appender.flush()?;
        Ok(appended)
    }

    /// Counts rows appended by a transaction that committed.
    pub fn appended(&mut self, rows: usize) {
        self.appended += rows;
    }

    /// Folds the sums into a row per cell when due (see `flow_edge_slots_compact.sql`).
    pub fn compact_if_due(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if !self.due() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let rows = in_transaction(conn, || {
            conn.execute_batch(include_str!("../../../queries/flow_edge_slots_compact.sql"))?;
            let rows: i64 =
                conn.query_row(include_str!("../../../queries/flow_edge_slots_count.sql"), [], |r| r.get(0))?;
            conn.execute(include_str!("../../../queries/stitch_state_set.sql"), params![COMPACTED_ROWS, rows])?;
            Ok(rows)
        })?;
        tracing::info!(
            appended = self.appended,
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "flow map sums compacted"
        );
        *self = Self::since_compaction(rows as usize, rows as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_sums_are_compacted_once_the_rows_appended_since_outgrow_what_was_left() {
        // (rows after the last compaction as saved, rows now, due)
        for (compacted, now, due) in [
            (0, 632_000, true),        // a file from before the count was saved
            (71_000, 140_000, false),  // appended less than the floor
            (71_000, 171_001, true),   // past the floor
            (400_000, 700_000, false), // appended less than it held
            (400_000, 800_001, true),  // doubled
            (500_000, 300_000, false), // retention deleted rows since
        ] {
            assert_eq!(MapSums::since_compaction(compacted, now).due(), due, "{compacted} then {now}");
        }
        let mut size = MapSums::since_compaction(71_000, 71_000);
        size.appended(100_000);
        assert!(!size.due());
        size.appended(1);
        assert!(size.due());
    }
}
