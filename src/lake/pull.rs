//! A following node's intake (every stitcher, active or standing by, and every query
//! node): what receivers appended to the lake since the last snapshot pulled is copied
//! into the local file as one local commit, through the local writer (the file's one
//! writer), with the snapshot it reached saved in the same transaction. The node's
//! stitcher then reads that commit as a single process reads what it received: nothing is
//! pulled twice or skipped, whatever stops when. A node with an empty file starts with a
//! copy of everything the lake holds at its latest snapshot.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection, OptionalExt};
use tokio::sync::watch;

use crate::store::{in_transaction, Store, StoreError, Writer};
use crate::text::now_nanos;

use super::{ClusterStatus, LakeError};

/// Most lake snapshots copied in one local commit: a receiver's snapshot holds at most
/// `--flush-rows` rows, so a stitcher catching up takes bounded steps.
const SNAPSHOTS_PER_PULL: i64 = 8;

/// Copies new lake rows into the local file.
pub struct Puller {
    pub store: Arc<Store>,
    pub writer: Arc<Writer>,
    /// Where the pulls are reported.
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

/// What the next pull copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The file has every snapshot.
    Nothing,
    /// The rows that snapshots `from..=to` added.
    Added { from: i64, to: i64 },
    /// Everything the lake holds at snapshot `at`: the file has nothing yet.
    Whole { at: i64 },
}

/// The next step for a file holding snapshots up to `through` (-1: none) of a lake that
/// keeps snapshots `oldest..=latest`. An error when the snapshots the file lacks are
/// expired: it can no longer follow the lake.
fn next_step(through: i64, oldest: i64, latest: i64) -> Result<Step, LakeError> {
    if through >= latest {
        return Ok(Step::Nothing);
    }
    if through < 0 {
        return Ok(Step::Whole { at: latest });
    }
    if through + 1 < oldest {
        return Err(LakeError::Behind { through, oldest });
    }
    Ok(Step::Added { from: through + 1, to: latest.min(through + SNAPSHOTS_PER_PULL) })
}

impl Puller {
    /// Pulls every `interval` (back to back while catching up), until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            loop {
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
                _ = stop.changed() => return,
            }
        }
    }

    /// Copies the next snapshots' rows, if the lake has any the file lacks.
    pub async fn pull_once(&self) -> Result<Pulled, LakeError> {
        let (through, oldest, latest) = self.store.read(snapshots).await?;
        let (to, step) = match next_step(through, oldest, latest)? {
            Step::Nothing => return Ok(Pulled { latest, through, rows: None }),
            step @ Step::Added { to, .. } => (to, step),
            step @ Step::Whole { at } => (at, step),
        };
        let (_, rows) = self.writer.run_task(Box::new(move |conn, seq| copy(conn, seq, step))).await?;
        Ok(Pulled { latest, through: to, rows: Some(rows) })
    }
}

/// The last snapshot in the file (-1: none), and the lake's oldest and latest.
fn snapshots(conn: &Connection) -> Result<(i64, i64, i64), StoreError> {
    let (oldest, latest): (i64, i64) =
        conn.query_row(include_str!("../../queries/lake/snapshot_range.sql"), [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((pulled_through(conn)?, oldest, latest))
}

fn pulled_through(conn: &Connection) -> Result<i64, StoreError> {
    let through: Option<i64> =
        conn.query_row(include_str!("../../queries/lake/pulled_through.sql"), [], |r| r.get(0)).optional()?;
    Ok(through.unwrap_or(-1))
}

/// Copies what `step` names as local commit `seq`, with the snapshot reached, in one
/// transaction. Returns the rows copied.
fn copy(conn: &Connection, seq: i64, step: Step) -> Result<usize, StoreError> {
    let (sql, from, to): (&str, i64, i64) = match step {
        Step::Nothing => return Ok(0),
        Step::Added { from, to } => (include_str!("../../queries/lake/pull.sql"), from, to),
        Step::Whole { at } => (include_str!("../../queries/lake/pull_whole.sql"), 0, at),
    };
    in_transaction(conn, || {
        // Checked again inside the transaction: only this writer moves it.
        if pulled_through(conn)? >= to {
            return Ok(0);
        }
        let (mut rows, mut stitch_rows) = (0, 0);
        for (i, statement) in sql.split_terminator(";\n").filter(|s| s.contains("INSERT")).enumerate() {
            let n = match step {
                Step::Whole { .. } => conn.execute(statement, params![seq, to])?,
                _ => conn.execute(statement, params![seq, from, to])?,
            };
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
        conn.execute(include_str!("../../queries/lake/pull_record.sql"), params![seq, from, to])?;
        crate::store::execute_statements(conn, include_str!("../../queries/lake/pulled_through_set.sql"), &[&to])?;
        Ok(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_copy_everything_once_then_bounded_ranges_of_new_snapshots() {
        let most = SNAPSHOTS_PER_PULL;
        // (through, oldest, latest, step; None: the file can no longer follow the lake)
        let cases = [
            (-1, 0, 0, Some(Step::Whole { at: 0 })),
            (-1, 40, 90, Some(Step::Whole { at: 90 })),
            (3, 0, 3, Some(Step::Nothing)),
            (5, 0, 3, Some(Step::Nothing)),
            (3, 0, 4, Some(Step::Added { from: 4, to: 4 })),
            (0, 0, 100, Some(Step::Added { from: 1, to: most })),
            (9, 10, 12, Some(Step::Added { from: 10, to: 12 })),
            (8, 10, 12, None),
        ];
        for (through, oldest, latest, want) in cases {
            assert_eq!(next_step(through, oldest, latest).ok(), want, "{through} {oldest} {latest}");
        }
    }
}
