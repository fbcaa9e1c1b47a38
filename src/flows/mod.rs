//! Flows: spans stitched across traces into end-to-end business operations.
//!
//! - [`joiner`]: which traces belong together (links, message ids, correlation ids);
//! - [`analysis`]: what one flow is made of (chain, hops, queue waits, retries, dead
//!   letters, critical path), a pure function of its spans;
//! - [`stitcher`]: the background task applying both to newly committed spans and
//!   writing the `flows` and `flow_*` tables;
//! - [`backlog`]: queue depth series, rates and trends per destination;
//! - [`queries`]: the read side the API and pages use.

pub mod analysis;
pub mod backlog;
pub mod joiner;
pub mod queries;
mod stitcher;

use std::sync::Arc;

use tokio::sync::watch;

pub use stitcher::{StitchConfig, StitchProgress, Stitcher, StitcherHandle};

use crate::store::{CommitStats, Store, StoreError};

/// Starts the stitcher thread; the receiver reports its progress.
pub fn start(
    store: &Store,
    commits: Arc<CommitStats>,
    config: StitchConfig,
) -> Result<(StitcherHandle, watch::Receiver<StitchProgress>), StoreError> {
    let (progress, watcher) = watch::channel(StitchProgress::default());
    let stitcher = Stitcher::new(store, commits, config, progress)?;
    let handle = stitcher.spawn().map_err(|e| StoreError::Task(e.to_string()))?;
    Ok((handle, watcher))
}
