//! The active stitcher's intake: what receivers appended to the lake since the last
//! snapshot pulled is copied into the local file as one local commit, through the local
//! writer (the file's one writer), with the snapshot it reached saved in the same
//! transaction. The stitcher then reads that commit as a single process reads what it
//! received: nothing is pulled twice or skipped, whatever stops when.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection, OptionalExt};
use tokio::sync::watch;

use crate::store::{in_transaction, Store, StoreError, Writer};
use crate::text::now_nanos;

use super::ClusterStatus;

/// Most lake snapshots copied in one local commit: a receiver's snapshot holds at most
/// `--flush-rows` rows, so a stitcher catching up takes bounded steps.
const SNAPSHOTS_PER_PULL: i64 = 8;

/// Copies new lake rows into the local file while this node leads.
pub struct Puller {
    pub store: Arc<Store>,
    pub writer: Arc<Writer>,
    /// Whether this node is the active stitcher (see [`super::leader`]), and where the
    /// pulls are reported.
    pub status: Arc<ClusterStatus>,
    pub interval: Duration,
}

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// The lake's latest snapshot.
    pub latest: i64,
    /// The last lake snapshot now in the local file (-1: none).
    pub through: i64,
    /// Rows copied; None when the file already had every snapshot.
    pub rows: Option<usize>,
}

impl Puller {
    /// Pulls every `interval` while leading, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut leading = self.status.leading.clone();
        loop {
            while *leading.borrow() {
                match self.pull_once().await {
                    Ok(pulled) => {
                        let status = &self.status;
                        status.latest_snapshot.store(pulled.latest, Ordering::Relaxed);
                        status.pulled_snapshot.store(pulled.through, Ordering::Relaxed);
                        let Some(rows) = pulled.rows else { break };
                        status.pulls.fetch_add(1, Ordering::Relaxed);
                        status.pulled_rows.fetch_add(rows as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.status.pull_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "copying from the lake failed; will retry");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = leading.changed() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Copies the next snapshots' rows, if the lake has any the file lacks.
    pub async fn pull_once(&self) -> Result<Pulled, StoreError> {
        let (latest, through) = self.store.read(snapshots).await?;
        let Some((from, to)) = next_range(through, latest) else { return Ok(Pulled { latest, through, rows: None }) };
        let (_, rows) = self.writer.run_task(Box::new(move |conn, seq| copy(conn, seq, from, to))).await?;
        Ok(Pulled { latest, through: to, rows: Some(rows) })
    }
}

/// The lake's latest snapshot, and the last one in the file (-1: none).
fn snapshots(conn: &Connection) -> Result<(i64, i64), StoreError> {
    let latest: i64 = conn.query_row(include_str!("../../queries/lake/current_snapshot.sql"), [], |r| r.get(0))?;
    Ok((latest, pulled_through(conn)?))
}

fn pulled_through(conn: &Connection) -> Result<i64, StoreError> {
    let through: Option<i64> =
        conn.query_row(include_str!("../../queries/lake/pulled_through.sql"), [], |r| r.get(0)).optional()?;
    Ok(through.unwrap_or(-1))
}

/// Snapshots `through + 1 ..= current`, at most [`SNAPSHOTS_PER_PULL`] of them.
fn next_range(through: i64, current: i64) -> Option<(i64, i64)> {
    (current > through).then(|| (through + 1, current.min(through + SNAPSHOTS_PER_PULL)))
}

/// Copies the rows of snapshots `from..=to` as local commit `seq`, with the snapshot
/// reached, in one transaction. Returns the rows copied.
fn copy(conn: &Connection, seq: i64, from: i64, to: i64) -> Result<usize, StoreError> {
    in_transaction(conn, || {
        // Checked again inside the transaction: only this writer moves it.
        if pulled_through(conn)? >= to {
            return Ok(0);
        }
        let mut rows = 0;
        let mut stitch_rows = 0;
        for (i, statement) in include_str!("../../queries/lake/pull.sql")
            .split_terminator(";\n")
            .filter(|s| s.contains("INSERT"))
            .enumerate()
        {
            let n = conn.execute(statement, params![seq, from, to])?;
            rows += n;
            // Spans, span links and log records: what the stitcher reads.
            if i < 3 {
                stitch_rows += n;
            }
        }
        let received: Option<i64> =
            conn.query_row(include_str!("../../queries/lake/snapshot_time.sql"), params![from, to], |r| r.get(0))?;
        conn.execute(
            include_str!("../../queries/commit_time_insert.sql"),
            params![seq, received.unwrap_or_else(now_nanos), stitch_rows as i64],
        )?;
        crate::store::execute_statements(conn, include_str!("../../queries/lake/pulled_through_set.sql"), &[&to])?;
        Ok(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_take_bounded_ranges_of_new_snapshots() {
        let cases = [
            (-1, 0, Some((0, 0))),
            (-1, 3, Some((0, 3))),
            (3, 3, None),
            (5, 3, None),
            (3, 4, Some((4, 4))),
            (0, 100, Some((1, SNAPSHOTS_PER_PULL))),
        ];
        for (through, current, want) in cases {
            assert_eq!(next_range(through, current), want, "{through} {current}");
        }
    }
}
