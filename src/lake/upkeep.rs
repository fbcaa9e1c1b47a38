//! The lake's upkeep, run by the active stitcher. Retention first: the lake keeps raw rows
//! as long as this node's file keeps their copies (its retention deletes by the time they
//! were received, as a single process does), so the rows of the snapshots whose copies are
//! gone are deleted (by the snapshot that added them), in one transaction holding the
//! append gate (see [`super::gate`]). Then, since every receiver commit adds a snapshot
//! and small files, it merges the files of adjacent snapshots (rows keep the snapshot that
//! added them, so copying by snapshot still sees each row once), expires snapshots
//! committed more than `keep` before the last one this node copied, and deletes the files
//! no kept snapshot uses (files whose rows are all deleted among them). A node whose file
//! is older than the oldest kept snapshot can no longer follow the lake and says so; one
//! started on an empty file copies it whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use crate::store::{execute_statements, in_transaction, Store, StoreError};

use super::{gate, ClusterStatus, LakeError};

/// When and how far upkeep goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpkeepConfig {
    pub every: Duration,
    /// Snapshots are kept this long before the last one copied.
    pub keep: Duration,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        UpkeepConfig { every: Duration::from_secs(600), keep: Duration::from_secs(24 * 3600) }
    }
}

/// What upkeep did, for `/metrics`.
#[derive(Debug, Default)]
pub struct UpkeepStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub rows_expired: AtomicU64,
    pub files_merged: AtomicU64,
    pub snapshots_expired: AtomicU64,
    pub files_removed: AtomicU64,
}

/// One run's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Done {
    rows_expired: u64,
    files_merged: u64,
    snapshots_expired: u64,
    files_removed: u64,
}

pub struct Upkeep {
    pub store: Arc<Store>,
    pub status: Arc<ClusterStatus>,
    pub config: UpkeepConfig,
    /// The catalog, for the append gate.
    pub catalog: String,
}

impl Upkeep {
    /// Runs every `every` while this node leads, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.every) => {}
                _ = stop.changed() => return,
            }
            let through = self.status.pulled_snapshot.load(Ordering::Relaxed);
            if !self.status.is_leading() || through < 0 {
                continue;
            }
            let stats = &self.status.upkeep;
            match self.run_once(through).await {
                Ok(done) => {
                    stats.runs.fetch_add(1, Ordering::Relaxed);
                    stats.rows_expired.fetch_add(done.rows_expired, Ordering::Relaxed);
                    stats.files_merged.fetch_add(done.files_merged, Ordering::Relaxed);
                    stats.snapshots_expired.fetch_add(done.snapshots_expired, Ordering::Relaxed);
                    stats.files_removed.fetch_add(done.files_removed, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "lake upkeep failed; will retry");
                }
            }
        }
    }

    /// One run, for a node that has copied the lake through snapshot `through`.
    async fn run_once(&self, through: i64) -> Result<Done, LakeError> {
        let rows_expired = {
            let _gate = gate::exclusive(&self.catalog).await?;
            self.store.write(move |conn| expire_rows(conn, through)).await?
        };
        let keep = self.config.keep;
        let done = self.store.write(move |conn| compact(conn, through, keep)).await?;
        Ok(Done { rows_expired, ..done })
    }
}

/// Deletes from the lake the raw rows this node's file no longer holds (its retention
/// deleted their copies), none it has not copied yet (past `through`); returns how many.
fn expire_rows(conn: &Connection, through: i64) -> Result<u64, StoreError> {
    in_transaction(conn, || {
        let sql = include_str!("../../queries/lake/retention_through.sql");
        let last_old: i64 = conn.query_row(sql, params![through], |r| r.get::<_, i64>(0))?.min(through);
        // Counted first: a lake DELETE does not report the rows it deleted.
        let old: i64 =
            conn.query_row(include_str!("../../queries/lake/retention_count.sql"), params![last_old], |r| r.get(0))?;
        if old > 0 {
            execute_statements(conn, include_str!("../../queries/lake/retention.sql"), &[&last_old])?;
        }
        Ok(old.max(0) as u64)
    })
}

/// Merges small files, expires snapshots older than `keep` before snapshot `through`, and
/// deletes the files no kept snapshot uses.
fn compact(conn: &Connection, through: i64, keep: Duration) -> Result<Done, StoreError> {
    let mut done = Done::default();
    let mut merged = conn.prepare(include_str!("../../queries/lake/merge_files.sql"))?;
    let mut rows = merged.query([])?;
    while let Some(r) = rows.next()? {
        done.files_merged += r.get::<_, i64>(2)?.max(0) as u64;
    }
    // None once that snapshot is expired itself: nothing older is left to expire.
    let copied_at: Option<i64> =
        conn.query_row(include_str!("../../queries/lake/snapshot_time.sql"), params![through, through], |r| r.get(0))?;
    if let Some(at_ns) = copied_at {
        let horizon = expiry_horizon_us(at_ns, keep);
        let mut expire = conn.prepare(include_str!("../../queries/lake/expire_snapshots.sql"))?;
        done.snapshots_expired = expire.query_map(params![horizon], |_| Ok(()))?.count() as u64;
    }
    let mut cleanup = conn.prepare(include_str!("../../queries/lake/cleanup_files.sql"))?;
    done.files_removed = cleanup.query_map([], |_| Ok(()))?.count() as u64;
    Ok(done)
}

/// The unix microsecond before which snapshots expire: `keep` before `copied_at_ns`,
/// saturating, so a keep longer than nanoseconds in an i64 hold expires nothing.
fn expiry_horizon_us(copied_at_ns: i64, keep: Duration) -> i64 {
    let keep_ns = keep.as_nanos().min(i64::MAX as u128) as i64;
    copied_at_ns.saturating_sub(keep_ns) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_horizon_saturates_whatever_the_keep() {
        let at = 1_800_000_000_000_000_000; // unix ns
        let cases = [
            (Duration::ZERO, at / 1000),
            (Duration::from_secs(86_400), (at - 86_400_000_000_000) / 1000),
            // Past what i64 nanoseconds hold: far in the past, never wrapped into the future.
            (Duration::from_secs(300 * 365 * 86_400), (at - i64::MAX) / 1000),
            (Duration::MAX, (at - i64::MAX) / 1000),
        ];
        for (keep, want) in cases {
            assert_eq!(expiry_horizon_us(at, keep), want, "{keep:?}");
        }
    }
}
