//! Recomputing stored flows: `flowscope restitch [--since TIME]`.
//!
//! The stitcher does not replay stored spans on start (see [`super`]), so
//! flows keep what the analysis made of them when they were written. After a change to
//! the analysis (or a migration that needs it, which starts one itself), a restitch
//! sends the stitcher back: to the first commit with the flow tables emptied, or to the
//! first commit received since a time, rewriting every flow those commits touch. The
//! stitcher then works forward as it always does, saving its watermark every round, so
//! a restitch interrupted by a stop resumes where it was on the next start (of the
//! server, in the background, or of this command).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{StitchConfig, StitchProgress, Stitcher};
use crate::store::{execute_statements, in_transaction, CheckpointConfig, CommitFeed, CommitStats, Store, StoreError};

/// Which stored flows to recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every flow: the flow tables are emptied and rebuilt from the first commit.
    All,
    /// The flows touched by commits received at or after this time (unix ns).
    Since(i64),
    /// Only finish a restitch an earlier run left unfinished.
    Resume,
}

/// Sets the stitcher's state for a restitch; the stitcher (of this process or the next
/// server) carries it out.
pub fn begin(store: &Store, scope: Scope) -> Result<(), StoreError> {
    let conn = store.connect()?;
    let last: i64 = conn.query_row(include_str!("../../../queries/max_commit_seq.sql"), [], |r| r.get(0))?;
    in_transaction(&conn, || match scope {
        Scope::All => execute_statements(&conn, include_str!("../../../queries/restitch_all.sql"), &[&last]),
        Scope::Since(t) => execute_statements(&conn, include_str!("../../../queries/restitch_since.sql"), &[&last, &t]),
        Scope::Resume => Ok(0),
    })?;
    Ok(())
}

/// Runs the stitcher on `store` until it has stitched every commit, reporting progress
/// every `report_every`. For the `restitch` command: no server runs on the file.
pub fn run(
    store: &Store,
    config: StitchConfig,
    report_every: Duration,
    mut report: impl FnMut(&StitchProgress),
) -> Result<StitchProgress, StoreError> {
    let mut reported = Instant::now();
    run_until(store, config, |p| {
        if reported.elapsed() >= report_every {
            report(p);
            reported = Instant::now();
        }
        true
    })
}

/// Runs stitching rounds until every commit is stitched or `go_on` (asked after each
/// round) says stop; returns the progress made.
pub fn run_until(
    store: &Store,
    config: StitchConfig,
    mut go_on: impl FnMut(&StitchProgress) -> bool,
) -> Result<StitchProgress, StoreError> {
    let conn = store.connect()?;
    let last: i64 = conn.query_row(include_str!("../../../queries/max_commit_seq.sql"), [], |r| r.get(0))?;
    drop(conn);
    let commits = Arc::new(CommitStats::default());
    commits.last_commit_seq.store(last.max(0) as u64, Ordering::Release);
    let (progress, watcher) = watch::channel(StitchProgress::default());
    // Nothing new is committed while this runs: every round reads the file.
    let feed = Arc::new(CommitFeed::new(0));
    let mut stitcher = Stitcher::new(store, commits, feed, config, progress)?;
    let checkpointer = store.start_checkpointer(CheckpointConfig::default())?;
    loop {
        let more = stitcher.round()?;
        if !more || !go_on(&watcher.borrow()) {
            break;
        }
    }
    stitcher.stop();
    drop(checkpointer);
    let done = watcher.borrow().clone();
    Ok(done)
}
