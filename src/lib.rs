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
//! [`semconv`] types the OpenTelemetry vocabulary they share; [`server`] wires them together, [`listen`] serves HTTP with limits; [`config`] resolves flags, environment and file;
//! [`demo`] generates realistic traffic; [`bench`] measures it all.

pub mod alerts;
pub mod auth;
pub mod bench;
pub mod config;
pub mod demo;
pub mod flows;
pub mod ingest;
pub mod lake;
pub mod listen;
pub mod semconv;
pub mod server;
pub mod stage;
pub mod store;
pub mod text;
pub mod web;

/// Shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use crate::store::tables::{SpanRows, TableBatch};

    /// A property-test runner with a fixed seed (every run tries the same cases) and no
    /// failure file written into the tree.
    pub fn seeded_runner(cases: u32, seed: u8) -> TestRunner {
        let config = Config { cases, failure_persistence: None, ..Config::default() };
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
    }

    /// A batch of `spans` rows, one per trace id given (span ids numbered from 0), as
    /// the writer makes them.
    pub fn span_rows(trace_ids: impl IntoIterator<Item = String>) -> TableBatch {
        let mut rows = SpanRows::new();
        for (i, trace_id) in trace_ids.into_iter().enumerate() {
            rows.trace_id.append_value(trace_id);
            rows.span_id.append_value(format!("{i:016x}"));
            rows.parent_span_id.append_null();
            rows.trace_state.append_null();
            rows.service_name.append_value("svc");
            rows.scope_name.append_null();
            rows.name.append_value("op");
            rows.kind.append_value("SERVER");
            rows.start_unix_nano.append_value(1);
            rows.end_unix_nano.append_value(2);
            rows.status_code.append_value("UNSET");
            rows.status_message.append_null();
            rows.attributes.append_value("{\"big\":\"json\"}");
            rows.events.append_null();
            rows.link_count.append_value(0);
            rows.messaging_system.append_null();
            rows.messaging_operation.append_null();
            rows.destination.append_null();
            rows.message_id.append_null();
            rows.correlation_id.append_null();
            rows.consumer_group.append_null();
            rows.partition_id.append_null();
            rows.batch_message_count.append_null();
            rows.attempt.append_null();
            rows.dead_letter_evidence.append_value(false);
            rows.dead_letter_source.append_null();
            rows.resource_id.append_value(0);
        }
        rows.finish().expect("rows")
    }
}
