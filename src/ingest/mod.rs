//! Ingest: OTLP in, rows out. gRPC ([`grpc`]) and HTTP ([`http`]) both hand the raw request
//! body to [`Ingest::export`], which decodes it, validates and flattens it into table rows
//! ([`traces`], [`logs`], [`metrics`]) on the caller's task, and waits until the store's
//! writer has committed them. A success therefore always means "in the database file".

pub mod attributes;
pub mod grpc;
pub mod http;
mod logs;
mod metrics;
mod traces;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::store::tables::{ResourceRows, TableBatch};
use crate::store::{StoreError, Writer};

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one item of this signal is called in OTLP's partial-success fields.
    fn item(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body could not be decoded at all: nothing of it was stored.
    #[error("cannot decode OTLP {signal} request as {encoding}: {message}")]
    Malformed { signal: &'static str, encoding: &'static str, message: String },
    /// The write queue is full, or flows are too far behind: retry later.
    #[error("{0}")]
    Overloaded(String),
    #[error("flowscope is shutting down; retry against the restarted instance")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Storage(String),
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded { .. } | StoreError::StitchingBehind { .. } | StoreError::Unavailable(_) => {
                IngestError::Overloaded(e.to_string())
            }
            StoreError::ShuttingDown => IngestError::ShuttingDown,
            other => IngestError::Storage(other.to_string()),
        }
    }
}

/// The outcome of a stored request: how many items were refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub signal: Signal,
    pub accepted: u64,
    pub rejected: u64,
    pub reason: Option<String>,
}

impl Accepted {
    /// The OTLP Export*ServiceResponse in the request's encoding; `partial_success` is set
    /// only when something was rejected, as the spec asks.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        let rejected = self.rejected as i64;
        let message = self.reason.clone().unwrap_or_default();
        let partial = self.rejected > 0;
        match self.signal {
            Signal::Traces => encode(
                encoding,
                &ExportTraceServiceResponse {
                    partial_success: partial
                        .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
                },
            ),
            Signal::Metrics => encode(
                encoding,
                &ExportMetricsServiceResponse {
                    partial_success: partial.then_some(ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: message,
                    }),
                },
            ),
            Signal::Logs => encode(
                encoding,
                &ExportLogsServiceResponse {
                    partial_success: partial
                        .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
                },
            ),
        }
    }
}

fn encode<T: Message + serde::Serialize>(encoding: Encoding, msg: &T) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        // Unset fields are left out, as protobuf's JSON mapping does (not `null`).
        Encoding::Json => {
            let mut value = serde_json::to_value(msg).expect("OTLP responses serialize");
            if let Some(obj) = value.as_object_mut() {
                obj.retain(|_, v| !v.is_null());
            }
            serde_json::to_vec(&value).expect("JSON values serialize")
        }
    }
}

/// Rows produced from one request, with the count of items refused by validation.
#[derive(Debug, Default)]
pub struct Flattened {
    pub batches: Vec<TableBatch>,
    pub accepted: u64,
    pub rejected: u64,
    pub reason: Option<String>,
}

impl Flattened {
    pub fn reject(&mut self, why: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.reason.is_none() {
            self.reason = Some(why());
        }
    }
}

/// Per-signal counters for the self-metrics page.
#[derive(Debug, Default)]
pub struct SignalStats {
    pub requests: AtomicU64,
    pub malformed_requests: AtomicU64,
    pub refused_requests: AtomicU64,
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub committed: AtomicU64,
}

#[derive(Debug, Default)]
pub struct IngestStats {
    pub traces: SignalStats,
    pub metrics: SignalStats,
    pub logs: SignalStats,
    /// Requests turned away, by [`Refusal`] (all signals).
    refusals: [AtomicU64; Refusal::ALL.len()],
}

impl IngestStats {
    pub fn of(&self, signal: Signal) -> &SignalStats {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    fn refused(&self, signal: Signal, why: Refusal) {
        self.of(signal).refused_requests.fetch_add(1, Ordering::Relaxed);
        self.refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests turned away for this reason so far.
    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refusals[why as usize].load(Ordering::Relaxed)
    }
}

/// Why a request was turned away (503 / `UNAVAILABLE`, which exporters retry): what an
/// operator needs to know to tell an undersized queue from ingest outrunning stitching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Flows were further behind than `--max-stitch-lag`.
    StitchingBehind,
    /// The write queue was full: commits did not keep up (a checkpoint, say).
    WriteQueueFull,
    /// The requests being decoded already took the decode budget.
    DecodingFull,
    /// The store could not take the commit.
    StoreFailed,
    ShuttingDown,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::StitchingBehind,
        Refusal::WriteQueueFull,
        Refusal::DecodingFull,
        Refusal::StoreFailed,
        Refusal::ShuttingDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::StitchingBehind => "stitching_behind",
            Refusal::WriteQueueFull => "write_queue_full",
            Refusal::DecodingFull => "decoding_full",
            Refusal::StoreFailed => "store_failed",
            Refusal::ShuttingDown => "shutting_down",
        }
    }

    fn of(e: &StoreError) -> Refusal {
        match e {
            StoreError::StitchingBehind { .. } => Refusal::StitchingBehind,
            StoreError::Overloaded { .. } => Refusal::WriteQueueFull,
            StoreError::ShuttingDown => Refusal::ShuttingDown,
            _ => Refusal::StoreFailed,
        }
    }
}

/// Attribute keys whose value joins spans, events and log records into one flow.
#[derive(Debug, Clone)]
pub struct CorrelationKeys(Vec<String>);

impl CorrelationKeys {
    /// The conventional keys plus the user's own (such as `app.order_id`).
    pub fn with_extra(extra: &[String]) -> Self {
        let mut keys: Vec<String> = attributes::keys::DEFAULT_CORRELATION.iter().map(|k| k.to_string()).collect();
        for k in extra {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        CorrelationKeys(keys)
    }

    pub fn find(&self, attrs: &[KeyValue]) -> Option<String> {
        self.0
            .iter()
            .filter_map(|k| attrs.iter().find(|kv| &kv.key == k))
            .filter_map(|kv| kv.value.as_ref())
            .find_map(attributes::as_text)
    }
}

impl Default for CorrelationKeys {
    fn default() -> Self {
        Self::with_extra(&[])
    }
}

/// What every row of one OTLP resource shares, computed once per resource.
pub(crate) struct ResourceContext<'a> {
    pub attributes: &'a [KeyValue],
    pub service_name: String,
    pub attributes_json: String,
    /// Stable across requests and restarts: the first 8 bytes of the JSON's SHA-256.
    pub id: i64,
}

impl<'a> ResourceContext<'a> {
    pub fn new(resource: Option<&'a Resource>) -> Self {
        use sha2::Digest;
        let attributes = resource.map(|r| &r.attributes[..]).unwrap_or(&[]);
        let attributes_json = attributes::json_object(attributes);
        let digest = sha2::Sha256::digest(attributes_json.as_bytes());
        let id = i64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"));
        ResourceContext {
            attributes,
            service_name: attributes::text_of(attributes, attributes::keys::SERVICE_NAME)
                .unwrap_or_else(|| "unknown_service".to_owned()),
            attributes_json,
            id,
        }
    }
}

/// The resources of one request, each stored once however many rows refer to it: a large
/// resource attribute costs its size once per request, not once per span.
#[derive(Default)]
pub(crate) struct RequestResources {
    rows: ResourceRows,
    seen: crate::flows::HashSet<i64>,
}

impl RequestResources {
    pub fn add(&mut self, resource: &ResourceContext<'_>) {
        if self.seen.insert(resource.id) {
            self.rows.resource_id.append_value(resource.id);
            self.rows.attributes.append_value(&resource.attributes_json);
        }
    }

    pub fn finish(self) -> Option<TableBatch> {
        self.rows.finish()
    }
}

/// Appends an id as lower-case hex, or null when empty.
pub(crate) fn append_hex(builder: &mut duckdb::arrow::array::StringBuilder, id: &[u8]) {
    if id.is_empty() {
        builder.append_null();
        return;
    }
    let mut buf = [0u8; 32];
    match buf.get_mut(..id.len() * 2) {
        Some(out) => {
            hex::encode_to_slice(id, out).expect("output is twice the input");
            builder.append_value(std::str::from_utf8(out).expect("hex is ascii"));
        }
        None => builder.append_value(hex::encode(id)),
    }
}

/// OTLP times are u64 nanoseconds; DuckDB's BIGINT holds them until the year 2262.
pub(crate) fn nanos(t: u64) -> Option<i64> {
    i64::try_from(t).ok()
}

pub(crate) fn check_id(what: &str, id: &[u8], len: usize, required: bool) -> Result<(), String> {
    if id.is_empty() {
        return if required { Err(format!("{what} is missing")) } else { Ok(()) };
    }
    if id.len() != len {
        return Err(format!("{what} must be {len} bytes, got {}", id.len()));
    }
    if id.iter().all(|b| *b == 0) {
        return Err(format!("{what} is all zeros"));
    }
    Ok(())
}

/// The shared decode-and-store path behind both transports.
pub struct Ingest {
    writer: Arc<Writer>,
    correlation: CorrelationKeys,
    stats: IngestStats,
    /// What the requests being decoded at once may take, in KiB (see [`DECODE_FACTOR`]).
    decoding: Arc<tokio::sync::Semaphore>,
    decode_kib: u32,
}

/// A request takes up to about this many times its body's size while it is decoded and
/// flattened (the decoded messages, then the rows).
const DECODE_FACTOR: usize = 3;

impl Ingest {
    /// `decode_bytes`: what the requests being decoded at once may take together; a
    /// request that would go past it is refused retryably before it is decoded.
    pub fn new(writer: Arc<Writer>, correlation: CorrelationKeys, decode_bytes: usize) -> Self {
        let decode_kib = (decode_bytes / 1024).clamp(1, u32::MAX as usize) as u32;
        Ingest {
            writer,
            correlation,
            stats: IngestStats::default(),
            decoding: Arc::new(tokio::sync::Semaphore::new(decode_kib as usize)),
            decode_kib,
        }
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    pub fn writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    /// Decodes, validates and stores one export request body; returns once it is committed.
    pub async fn export(&self, signal: Signal, encoding: Encoding, body: Bytes) -> Result<Accepted, IngestError> {
        let stats = self.stats.of(signal);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        // Metric points are not stitched: a stitching backlog does not hold them back.
        let room = match signal {
            Signal::Metrics => self.writer.check_room(),
            Signal::Traces | Signal::Logs => self.writer.check_stitch_lag().and_then(|()| self.writer.check_room()),
        };
        if let Err(e) = room {
            self.stats.refused(signal, Refusal::of(&e));
            return Err(e.into());
        }
        // Admission by bytes, before decoding: many large bodies at once would otherwise
        // all be decoded before the write queue could refuse them. A body larger than the
        // whole budget is decoded alone.
        let kib = (body.len().saturating_mul(DECODE_FACTOR) / 1024).clamp(1, self.decode_kib as usize) as u32;
        let Ok(decoding) = Arc::clone(&self.decoding).try_acquire_many_owned(kib) else {
            self.stats.refused(signal, Refusal::DecodingFull);
            return Err(IngestError::Overloaded("too many requests are being decoded; retry".into()));
        };
        let flat = if body.len() > DECODE_INLINE_BYTES {
            // Decoding megabytes takes milliseconds: on a blocking thread, so the async
            // workers keep answering other requests meanwhile.
            let correlation = self.correlation.clone();
            tokio::task::spawn_blocking(move || flatten(signal, encoding, &body, &correlation))
                .await
                .unwrap_or_else(|panic| Err(IngestError::Storage(format!("decoding failed: {panic}"))))
        } else {
            flatten(signal, encoding, &body, &self.correlation)
        };
        // The rows now count against the write queue instead.
        drop(decoding);
        let flat = match flat {
            Ok(flat) => flat,
            Err(e) => {
                stats.malformed_requests.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        stats.received.fetch_add(flat.accepted + flat.rejected, Ordering::Relaxed);
        stats.rejected.fetch_add(flat.rejected, Ordering::Relaxed);
        if let Err(e) = self.writer.write(flat.batches).await {
            self.stats.refused(signal, Refusal::of(&e));
            return Err(e.into());
        }
        stats.committed.fetch_add(flat.accepted, Ordering::Relaxed);
        let reason = flat.reason.map(|r| format!("rejected {} {}: {r}", flat.rejected, signal.item()));
        Ok(Accepted { signal, accepted: flat.accepted, rejected: flat.rejected, reason })
    }
}

/// Bodies up to this size are decoded on the async worker that received them.
const DECODE_INLINE_BYTES: usize = 256 * 1024;

/// Decodes one request body and flattens it into table rows (what [`Ingest::export`] does
/// before handing the rows to the writer).
pub fn flatten(
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
    correlation: &CorrelationKeys,
) -> Result<Flattened, IngestError> {
    Ok(match signal {
        Signal::Traces => traces::flatten(&decode::<ExportTraceServiceRequest>(signal, encoding, body)?, correlation),
        Signal::Metrics => metrics::flatten(&decode::<ExportMetricsServiceRequest>(signal, encoding, body)?),
        Signal::Logs => logs::flatten(&decode::<ExportLogsServiceRequest>(signal, encoding, body)?, correlation),
    })
}

fn decode<T>(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<T, IngestError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    let result = match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    result.map_err(|message| IngestError::Malformed {
        signal: signal.name(),
        encoding: match encoding {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "JSON",
        },
        message,
    })
}
