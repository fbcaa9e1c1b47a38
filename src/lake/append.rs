//! The receiver's commit: a group of requests' rows appended to the lake's raw tables in
//! one lake transaction (one snapshot, a data file per table), acknowledged only once it
//! has committed. The writer's group commit in front of it keeps commits few and large.

use duckdb::Connection;

use crate::store::tables::TableBatch;
use crate::store::{append_tables, in_transaction, CommitSink, StoreError};

use super::gate::AppendGate;
use super::LAKE;

/// Commits to the lake instead of the local file, holding the append gate shared so the
/// lake's retention does not race the commit (see [`super::gate`]).
pub struct LakeSink {
    pub gate: AppendGate,
}

impl CommitSink for LakeSink {
    /// A failed lake commit (the catalog unreachable, a snapshot race DuckLake's retries
    /// did not win) is answered as retryable: the exporter sends the request again.
    fn commit(&self, conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError> {
        self.gate.shared(|| append(conn, batches, seq).map_err(|e| StoreError::Unavailable(e.to_string())))
    }

    fn feeds_stitcher(&self) -> bool {
        false
    }
}

fn append(conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError> {
    in_transaction(conn, || append_tables(conn, batches, seq, Some(LAKE)))
}
