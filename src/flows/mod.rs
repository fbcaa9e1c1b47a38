//! Flows: spans stitched across traces into end-to-end business operations.
//!
//! The model both sides share:
//! - [`ids`]: trace and span ids as numbers, and the join hashes stored for them;
//! - [`analysis`]: what one flow is made of (chain, hops, queue waits, retries, dead
//!   letters, critical path), a pure function of its spans;
//! - [`edges`]: what one flow contributes to the map, summed per edge and minute;
//! - [`steps`]: a flow's steps as stored, which the tail attribution reads.
//!
//! The write side, [`stitch`]: the background stitcher that joins newly committed spans
//! into flows and writes the `flows` and `flow_*` tables, and restitching stored flows.
//!
//! The read side, which serves pages and never writes flows:
//! - [`queries`]: what the API and pages read, by concern;
//! - [`backlog`]: queue depth series, rates and trends per destination;
//! - [`breakdown`]: tail attribution, where a chain's slow flows spend their extra time;
//! - [`chain_sums`]: a chain's percentiles, series and queue waits, from per-minute sums;
//! - [`map`]: the map of a range, from the edge sums;
//! - [`rollup`]: settled flows as monotonic Prometheus counters and histograms.

pub mod analysis;
pub mod backlog;
pub mod breakdown;
pub mod chain_sums;
pub mod edges;
pub mod export;
pub mod ids;
pub mod map;
pub mod queries;
pub mod rollup;
pub mod steps;
pub mod stitch;

/// Maps keyed by ids that arrive from the network. aHash with per-process random keys
/// resists crafted collisions like std's SipHash does, at a fraction of its cost; SipHash
/// was the stitcher's largest single item in profiles.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub(crate) type HashSet<T> = std::collections::HashSet<T, ahash::RandomState>;

pub use stitch::{restitch, start, Restitch, StitchConfig, StitchProgress, Stitcher, StitcherHandle};
