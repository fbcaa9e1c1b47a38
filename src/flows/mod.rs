//! Flows: spans stitched across traces into end-to-end business operations.
//!
//! - [`joiner`]: which traces belong together (links, message ids, correlation ids);
//! - [`ids`]: trace and span ids as numbers, the form the stitcher holds them in;
//! - [`analysis`]: what one flow is made of (chain, hops, queue waits, retries, dead
//!   letters, critical path), a pure function of its spans;
//! - [`join_filter`]: which join hashes the file may hold, so most rounds skip the lookup;
//! - [`stitcher`]: the background task applying both to newly committed spans and
//!   writing the `flows` and `flow_*` tables;
//! - [`restitch`]: recomputing stored flows on demand;
//! - [`backlog`]: queue depth series, rates and trends per destination;
//! - [`breakdown`]: tail attribution, where a chain's slow flows spend their extra time;
//! - [`chain_sums`]: a chain's percentiles, series and queue waits, from per-minute sums;
//! - [`edges`]: what one flow contributes to the map, summed per edge and minute;
//! - [`map`]: the map of a range, from those sums;
//! - [`queries`]: the read side the API and pages use, by concern;
//! - [`rollup`]: settled flows as monotonic Prometheus counters and histograms.

pub mod analysis;
pub mod backlog;
pub mod breakdown;
pub mod chain_sums;
pub mod edges;
pub mod ids;
mod intake;
pub mod join_filter;
pub mod join_runs;
pub mod joiner;
pub mod map;
pub mod queries;
pub mod restitch;
pub mod rollup;
mod stitcher;

use std::sync::Arc;

/// Maps keyed by ids that arrive from the network. aHash with per-process random keys
/// resists crafted collisions like std's SipHash does, at a fraction of its cost; SipHash
/// was the stitcher's largest single item in profiles.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub(crate) type HashSet<T> = std::collections::HashSet<T, ahash::RandomState>;

use tokio::sync::watch;

pub use stitcher::{Restitch, StitchConfig, StitchProgress, Stitcher, StitcherHandle};

use crate::store::{Store, StoreError, Writer};

/// Starts the stitcher thread; the receiver reports its progress.
pub fn start(
    store: &Store,
    writer: &Writer,
    config: StitchConfig,
) -> Result<(StitcherHandle, watch::Receiver<StitchProgress>), StoreError> {
    let (progress, watcher) = watch::channel(StitchProgress::default());
    let stitcher = Stitcher::new(store, Arc::clone(writer.stats()), Arc::clone(writer.feed()), config, progress)?;
    let handle = stitcher.spawn().map_err(|e| StoreError::Task(e.to_string()))?;
    Ok((handle, watcher))
}
