//! The lake's upkeep, run by the active stitcher: every receiver commit adds a snapshot
//! and small files, so it merges the files of adjacent snapshots (rows keep the snapshot
//! that added them, so copying by snapshot still sees each row once), expires snapshots
//! committed more than `keep` before the last one this node copied, and deletes the files
//! no kept snapshot uses. A standby whose file is older than the oldest kept snapshot can
//! no longer follow the lake and says so; one started on an empty file copies it whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duckdb::{params, Connection};
use tokio::sync::watch;

use crate::store::{Store, StoreError};

use super::ClusterStatus;

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
    pub files_merged: AtomicU64,
    pub snapshots_expired: AtomicU64,
    pub files_removed: AtomicU64,
}

/// One run's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Done {
    files_merged: u64,
    snapshots_expired: u64,
    files_removed: u64,
}

pub struct Upkeep {
    pub store: Arc<Store>,
    pub status: Arc<ClusterStatus>,
    pub config: UpkeepConfig,
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
            let keep = self.config.keep;
            let stats = &self.status.upkeep;
            match self.store.write(move |conn| upkeep(conn, through, keep)).await {
                Ok(done) => {
                    stats.runs.fetch_add(1, Ordering::Relaxed);
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
}

fn upkeep(conn: &Connection, through: i64, keep: Duration) -> Result<Done, StoreError> {
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
        let horizon = (at_ns - keep.as_nanos() as i64) / 1000;
        let mut expire = conn.prepare(include_str!("../../queries/lake/expire_snapshots.sql"))?;
        done.snapshots_expired = expire.query_map(params![horizon], |_| Ok(()))?.count() as u64;
    }
    let mut cleanup = conn.prepare(include_str!("../../queries/lake/cleanup_files.sql"))?;
    done.files_removed = cleanup.query_map([], |_| Ok(()))?.count() as u64;
    Ok(done)
}
