//! The Arrow shape of each table flowscope appends to. Ingest fills the raw-signal row
//! builders off the writer thread; the writer appends the finished batches with DuckDB's
//! Arrow appender. Column names and order match `queries/migrations/001_signals.sql` (a
//! test checks it), minus `commit_seq`, which the writer adds at commit time. The flow
//! tables' builders (`002_flows.sql`) are filled by the stitcher the same way.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;

/// The Arrow shape of a UUID column (flow and trace ids in the flow tables, migration
/// 019): 16 bytes, big-endian, so the column sorts as the ids' hex digits do.
pub const UUID: DataType = DataType::FixedSizeBinary(16);

/// A column of a batch: UUID columns carry Arrow's UUID extension name, by which DuckDB's
/// appender writes them as UUID rather than as BLOB.
fn column(name: &str, dtype: DataType) -> Field {
    let uuid = dtype == UUID;
    let field = Field::new(name, dtype, true);
    if uuid {
        field.with_metadata(HashMap::from([("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned())]))
    } else {
        field
    }
}

/// Builds a UUID column from 128-bit ids.
#[derive(Debug)]
pub struct IdBuilder(FixedSizeBinaryBuilder);

impl IdBuilder {
    pub fn new() -> Self {
        IdBuilder(FixedSizeBinaryBuilder::new(16))
    }

    pub fn append_value(&mut self, id: u128) {
        self.0.append_value(id.to_be_bytes()).expect("an id is 16 bytes");
    }

    pub fn append_option(&mut self, id: Option<u128>) {
        match id {
            Some(id) => self.append_value(id),
            None => self.0.append_null(),
        }
    }
}

impl ArrayBuilder for IdBuilder {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn finish(&mut self) -> ArrayRef {
        ArrayBuilder::finish(&mut self.0)
    }

    fn finish_cloned(&self) -> ArrayRef {
        ArrayBuilder::finish_cloned(&self.0)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_box_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A finished batch of rows for one table.
#[derive(Debug, Clone)]
pub struct TableBatch {
    pub table: &'static str,
    pub batch: RecordBatch,
}

/// `table_rows! { Rows = "table" { columns } }`, optionally followed by
/// `after_commit_seq { columns }` for columns a later migration added to a raw-signal
/// table (`ALTER TABLE ... ADD COLUMN` puts them after `commit_seq`).
macro_rules! table_rows {
    ($(#[$doc:meta])* $rows:ident = $table:literal { $($col:ident : $builder:ident => $dtype:expr,)* }
     $(after_commit_seq { $($late:ident : $lbuilder:ident => $ldtype:expr,)* })?) => {
        $(#[$doc])*
        pub struct $rows {
            $(pub $col: $builder,)*
            $($(pub $late: $lbuilder,)*)?
        }

        impl $rows {
            pub const TABLE: &'static str = $table;
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($col),)* $($(stringify!($late),)*)?];
            /// Where the writer's `commit_seq` column goes among `COLUMNS`.
            pub const COMMIT_SEQ_AT: usize = [$(stringify!($col),)*].len();

            pub fn new() -> Self {
                Self { $($col: $builder::new(),)* $($($late: $lbuilder::new(),)*)? }
            }

            pub fn schema() -> SchemaRef {
                Arc::new(Schema::new(vec![
                    $(column(stringify!($col), $dtype),)*
                    $($(column(stringify!($late), $ldtype),)*)?
                ]))
            }

            pub fn len(&self) -> usize {
                // Every column gets one value per row; the first is as good as any.
                [$(self.$col.len(),)*][0]
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Finishes the builders into a batch; `None` when there are no rows.
            pub fn finish(mut self) -> Option<TableBatch> {
                if self.is_empty() {
                    return None;
                }
                let columns = vec![$(ArrayBuilder::finish(&mut self.$col),)* $($(ArrayBuilder::finish(&mut self.$late),)*)?];
                let batch = RecordBatch::try_new(Self::schema(), columns)
                    .expect("row builders are filled one value per column per row");
                Some(TableBatch { table: Self::TABLE, batch })
            }
        }

        impl Default for $rows {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

table_rows! {
    /// Rows of `spans`.
    SpanRows = "spans" {
        trace_id: StringBuilder => DataType::Utf8,
        span_id: StringBuilder => DataType::Utf8,
        parent_span_id: StringBuilder => DataType::Utf8,
        trace_state: StringBuilder => DataType::Utf8,
        service_name: StringBuilder => DataType::Utf8,
        scope_name: StringBuilder => DataType::Utf8,
        name: StringBuilder => DataType::Utf8,
        kind: StringBuilder => DataType::Utf8,
        start_unix_nano: Int64Builder => DataType::Int64,
        end_unix_nano: Int64Builder => DataType::Int64,
        status_code: StringBuilder => DataType::Utf8,
        status_message: StringBuilder => DataType::Utf8,
        attributes: StringBuilder => DataType::Utf8,
        events: StringBuilder => DataType::Utf8,
        link_count: Int32Builder => DataType::Int32,
        messaging_system: StringBuilder => DataType::Utf8,
        messaging_operation: StringBuilder => DataType::Utf8,
        destination: StringBuilder => DataType::Utf8,
        message_id: StringBuilder => DataType::Utf8,
        correlation_id: StringBuilder => DataType::Utf8,
        consumer_group: StringBuilder => DataType::Utf8,
        partition_id: StringBuilder => DataType::Utf8,
        batch_message_count: Int64Builder => DataType::Int64,
        attempt: Int32Builder => DataType::Int32,
        dead_letter_evidence: BooleanBuilder => DataType::Boolean,
    }
    after_commit_seq {
        dead_letter_source: StringBuilder => DataType::Utf8,
        resource_id: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `span_links`: one per link, so joins by link are plain SQL joins.
    LinkRows = "span_links" {
        trace_id: StringBuilder => DataType::Utf8,
        span_id: StringBuilder => DataType::Utf8,
        linked_trace_id: StringBuilder => DataType::Utf8,
        linked_span_id: StringBuilder => DataType::Utf8,
        attributes: StringBuilder => DataType::Utf8,
        message_id: StringBuilder => DataType::Utf8,
        span_start_unix_nano: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `logs`.
    LogRows = "logs" {
        time_unix_nano: Int64Builder => DataType::Int64,
        observed_time_unix_nano: Int64Builder => DataType::Int64,
        service_name: StringBuilder => DataType::Utf8,
        severity_number: Int32Builder => DataType::Int32,
        severity_text: StringBuilder => DataType::Utf8,
        body: StringBuilder => DataType::Utf8,
        event_name: StringBuilder => DataType::Utf8,
        trace_id: StringBuilder => DataType::Utf8,
        span_id: StringBuilder => DataType::Utf8,
        attributes: StringBuilder => DataType::Utf8,
        correlation_id: StringBuilder => DataType::Utf8,
        message_id: StringBuilder => DataType::Utf8,
    }
    after_commit_seq {
        resource_id: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `resources`: each OTLP resource (its attributes as JSON) once per request
    /// that used it; spans, logs and metric points refer to it by `resource_id`.
    ResourceRows = "resources" {
        resource_id: Int64Builder => DataType::Int64,
        attributes: StringBuilder => DataType::Utf8,
    }
}

table_rows! {
    /// Rows of `metric_points`: one per data point, whatever the metric type.
    MetricPointRows = "metric_points" {
        time_unix_nano: Int64Builder => DataType::Int64,
        start_time_unix_nano: Int64Builder => DataType::Int64,
        service_name: StringBuilder => DataType::Utf8,
        metric_name: StringBuilder => DataType::Utf8,
        unit: StringBuilder => DataType::Utf8,
        metric_type: StringBuilder => DataType::Utf8,
        value: Float64Builder => DataType::Float64,
        count: Int64Builder => DataType::Int64,
        sum: Float64Builder => DataType::Float64,
        min: Float64Builder => DataType::Float64,
        max: Float64Builder => DataType::Float64,
        buckets: StringBuilder => DataType::Utf8,
        is_monotonic: BooleanBuilder => DataType::Boolean,
        temporality: StringBuilder => DataType::Utf8,
        attributes: StringBuilder => DataType::Utf8,
        messaging_system: StringBuilder => DataType::Utf8,
        destination: StringBuilder => DataType::Utf8,
    }
    after_commit_seq {
        resource_id: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `flows`: one per flow.
    FlowRows = "flows" {
        flow_id: IdBuilder => UUID,
        chain: StringBuilder => DataType::Utf8,
        root_service: StringBuilder => DataType::Utf8,
        root_name: StringBuilder => DataType::Utf8,
        path: StringBuilder => DataType::Utf8,
        services: StringBuilder => DataType::Utf8,
        start_unix_nano: Int64Builder => DataType::Int64,
        end_unix_nano: Int64Builder => DataType::Int64,
        duration_ms: Float64Builder => DataType::Float64,
        span_count: Int32Builder => DataType::Int32,
        trace_count: Int32Builder => DataType::Int32,
        error: BooleanBuilder => DataType::Boolean,
        hops: Int32Builder => DataType::Int32,
        retries: Int32Builder => DataType::Int32,
        dead_letters: Int32Builder => DataType::Int32,
        queue_wait_ms: Float64Builder => DataType::Float64,
        service_ms: Float64Builder => DataType::Float64,
        retry_delay_ms: Float64Builder => DataType::Float64,
        clock_skew_hops: Int32Builder => DataType::Int32,
        updated_unix_nano: Int64Builder => DataType::Int64,
        last_commit_seq: Int64Builder => DataType::Int64,
        truncated: BooleanBuilder => DataType::Boolean,
        steps: StringBuilder => DataType::Utf8,
        edges: StringBuilder => DataType::Utf8,
    }
}

table_rows! {
    /// Rows of `flow_traces`: which traces make up each flow.
    FlowTraceRows = "flow_traces" {
        flow_id: IdBuilder => UUID,
        trace_id: IdBuilder => UUID,
        trace_key: Int64Builder => DataType::Int64,
        flow_start_unix_nano: Int64Builder => DataType::Int64,
        updated_unix_nano: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `flow_join_keys`: the links and keys that join a flow's traces.
    FlowJoinKeyRows = "flow_join_keys" {
        key: Int64Builder => DataType::Int64,
        flow_id: IdBuilder => UUID,
        trace_id: IdBuilder => UUID,
        kind: StringBuilder => DataType::Utf8,
        value: StringBuilder => DataType::Utf8,
        flow_start_unix_nano: Int64Builder => DataType::Int64,
        updated_unix_nano: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `flow_hops`: one per asynchronous hop.
    FlowHopRows = "flow_hops" {
        flow_id: IdBuilder => UUID,
        hop_index: Int32Builder => DataType::Int32,
        system: StringBuilder => DataType::Utf8,
        destination: StringBuilder => DataType::Utf8,
        producer_trace_id: IdBuilder => UUID,
        producer_span_id: StringBuilder => DataType::Utf8,
        producer_service: StringBuilder => DataType::Utf8,
        consumer_span_ids: StringBuilder => DataType::Utf8,
        consumer_service: StringBuilder => DataType::Utf8,
        sent_unix_nano: Int64Builder => DataType::Int64,
        queue_wait_ms: Float64Builder => DataType::Float64,
        clock_skew: BooleanBuilder => DataType::Boolean,
        dead_letter: BooleanBuilder => DataType::Boolean,
        chain: StringBuilder => DataType::Utf8,
        flow_start_unix_nano: Int64Builder => DataType::Int64,
        source_destination: StringBuilder => DataType::Utf8,
        updated_unix_nano: Int64Builder => DataType::Int64,
        retry: BooleanBuilder => DataType::Boolean,
    }
}

table_rows! {
    /// Rows of `flow_retries`: one per retried delivery or call.
    FlowRetryRows = "flow_retries" {
        flow_id: IdBuilder => UUID,
        time_unix_nano: Int64Builder => DataType::Int64,
        service: StringBuilder => DataType::Utf8,
        destination: StringBuilder => DataType::Utf8,
        span_id: StringBuilder => DataType::Utf8,
        attempt: Int32Builder => DataType::Int32,
        delay_ms: Float64Builder => DataType::Float64,
        previous_span_id: StringBuilder => DataType::Utf8,
        updated_unix_nano: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `flow_dead_letters`: one per message that ended in a dead-letter queue.
    FlowDeadLetterRows = "flow_dead_letters" {
        flow_id: IdBuilder => UUID,
        time_unix_nano: Int64Builder => DataType::Int64,
        destination: StringBuilder => DataType::Utf8,
        source_destination: StringBuilder => DataType::Utf8,
        message_id: StringBuilder => DataType::Utf8,
        correlation_id: StringBuilder => DataType::Utf8,
        error: StringBuilder => DataType::Utf8,
        span_id: StringBuilder => DataType::Utf8,
        updated_unix_nano: Int64Builder => DataType::Int64,
    }
}

table_rows! {
    /// Rows of `flow_edge_slots`: changes to the flow map's sums (src/flows/edges.rs).
    FlowEdgeSlotRows = "flow_edge_slots" {
        slot_unix_nano: Int64Builder => DataType::Int64,
        chain: StringBuilder => DataType::Utf8,
        kind: StringBuilder => DataType::Utf8,
        source: StringBuilder => DataType::Utf8,
        target: StringBuilder => DataType::Utf8,
        system: StringBuilder => DataType::Utf8,
        latency_bucket: Int16Builder => DataType::Int16,
        n: Int64Builder => DataType::Int64,
        errors: Int64Builder => DataType::Int64,
        retries: Int64Builder => DataType::Int64,
        dead_letters: Int64Builder => DataType::Int64,
        commit_seq: Int64Builder => DataType::Int64,
    }
}

/// The flow tables the stitcher appends, for the schema test.
pub const FLOW_TABLES: &[(&str, fn() -> SchemaRef)] = &[
    (FlowRows::TABLE, FlowRows::schema),
    (FlowTraceRows::TABLE, FlowTraceRows::schema),
    (FlowJoinKeyRows::TABLE, FlowJoinKeyRows::schema),
    (FlowHopRows::TABLE, FlowHopRows::schema),
    (FlowRetryRows::TABLE, FlowRetryRows::schema),
    (FlowDeadLetterRows::TABLE, FlowDeadLetterRows::schema),
    (FlowEdgeSlotRows::TABLE, FlowEdgeSlotRows::schema),
];

/// A raw-signal table: its name, appended columns, and where `commit_seq` goes among them.
pub type RawTable = (&'static str, &'static [&'static str], usize);

/// Every raw-signal table, for the writer and the schema test.
pub const ALL: &[RawTable] = &[
    (SpanRows::TABLE, SpanRows::COLUMNS, SpanRows::COMMIT_SEQ_AT),
    (LinkRows::TABLE, LinkRows::COLUMNS, LinkRows::COMMIT_SEQ_AT),
    (LogRows::TABLE, LogRows::COLUMNS, LogRows::COMMIT_SEQ_AT),
    (MetricPointRows::TABLE, MetricPointRows::COLUMNS, MetricPointRows::COMMIT_SEQ_AT),
    (ResourceRows::TABLE, ResourceRows::COLUMNS, ResourceRows::COMMIT_SEQ_AT),
];
