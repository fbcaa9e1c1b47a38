//! flowscope: an OpenTelemetry collector and dashboard that follows requests across
//! synchronous calls and message queues.
//!
//! The data's journey, one module per stage:
//! - [`ingest`]: OTLP over gRPC and HTTP, decoded once, flattened into table rows;
//! - [`store`]: the DuckDB file, its schema, the group-commit writer and retention;
//! - [`flows`]: spans stitched across traces into flows, hops, retries, dead letters;
//! - [`alerts`]: rules on queues, dead letters and chain latency, with webhooks;
//! - [`web`]: the dashboard, JSON API, health and self-metrics;
//!
//! [`server`] wires them together, [`listen`] serves HTTP with limits; [`config`] resolves flags, environment and file;
//! [`demo`] generates realistic traffic; [`bench`] measures it all.

pub mod alerts;
pub mod auth;
pub mod bench;
pub mod config;
pub mod demo;
pub mod flows;
pub mod ingest;
pub mod listen;
pub mod server;
pub mod stage;
pub mod store;
pub mod text;
pub mod web;

/// Shared by the unit tests' property tests.
#[cfg(test)]
pub(crate) mod test_support {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    /// A property-test runner with a fixed seed (every run tries the same cases) and no
    /// failure file written into the tree.
    pub fn seeded_runner(cases: u32, seed: u8) -> TestRunner {
        let config = Config { cases, failure_persistence: None, ..Config::default() };
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
    }
}
