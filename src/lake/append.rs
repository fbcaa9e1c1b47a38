//! The receiver's commit: a group of requests' rows appended to the lake's raw tables in
//! one lake transaction (one snapshot, a data file per table), acknowledged only once it
//! has committed. The writer's group commit in front of it keeps commits few and large.

use duckdb::Connection;

use crate::store::tables::{TableBatch, ALL};
use crate::store::{in_transaction, with_commit_seq, CommitSink, StoreError};

use super::LAKE;

/// Commits to the lake instead of the local file.
pub struct LakeSink;

impl CommitSink for LakeSink {
    fn commit(&mut self, conn: &Connection, batches: &[&TableBatch], seq: i64) -> Result<(), StoreError> {
        in_transaction(conn, || {
            for (table, _, commit_seq_at) in ALL {
                let mut of_table = batches.iter().filter(|b| b.table == *table).peekable();
                if of_table.peek().is_none() {
                    continue;
                }
                let mut appender = conn.appender_to_catalog_and_db(table, LAKE, "main")?;
                for b in of_table {
                    appender.append_record_batch(with_commit_seq(&b.batch, seq, *commit_seq_at))?;
                }
                appender.flush()?;
            }
            Ok(())
        })
    }

    fn feeds_stitcher(&self) -> bool {
        false
    }
}
