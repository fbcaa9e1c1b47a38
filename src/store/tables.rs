//! The Arrow shape of each raw-signal table. Ingest fills these row builders off the writer
//! thread; the writer appends the finished batches with DuckDB's Arrow appender. Column
//! names and order match `queries/migrations/001_signals.sql` (a test checks it), minus
//! `commit_seq`, which the writer adds at commit time.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;

/// A finished batch of rows for one table.
#[derive(Debug, Clone)]
pub struct TableBatch {
    pub table: &'static str,
    pub batch: RecordBatch,
}

macro_rules! table_rows {
    ($(#[$doc:meta])* $rows:ident = $table:literal { $($col:ident : $builder:ident => $dtype:expr,)* }) => {
        $(#[$doc])*
        pub struct $rows {
            $(pub $col: $builder,)*
        }

        impl $rows {
            pub const TABLE: &'static str = $table;
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($col),)*];

            pub fn new() -> Self {
                Self { $($col: $builder::new(),)* }
            }

            pub fn schema() -> SchemaRef {
                Arc::new(Schema::new(vec![$(Field::new(stringify!($col), $dtype, true),)*]))
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
                let columns = vec![$(ArrayBuilder::finish(&mut self.$col),)*];
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
        resource_attributes: StringBuilder => DataType::Utf8,
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
        resource_attributes: StringBuilder => DataType::Utf8,
        correlation_id: StringBuilder => DataType::Utf8,
        message_id: StringBuilder => DataType::Utf8,
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
        resource_attributes: StringBuilder => DataType::Utf8,
        messaging_system: StringBuilder => DataType::Utf8,
        destination: StringBuilder => DataType::Utf8,
    }
}

/// Every raw-signal table with its appended columns, for the writer and the schema test.
pub const ALL: &[(&str, &[&str])] = &[
    (SpanRows::TABLE, SpanRows::COLUMNS),
    (LinkRows::TABLE, LinkRows::COLUMNS),
    (LogRows::TABLE, LogRows::COLUMNS),
    (MetricPointRows::TABLE, MetricPointRows::COLUMNS),
];
