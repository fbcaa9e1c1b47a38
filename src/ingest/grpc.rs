//! OTLP/gRPC: `opentelemetry.proto.collector.{trace,metrics,logs}.v1.*Service/Export`.
//!
//! The generated tonic servers decode the protobuf themselves and answer INTERNAL when it
//! is malformed; OTLP wants INVALID_ARGUMENT, and we want gRPC and HTTP to share one decode
//! path. So the services here take the request message as raw bytes (a pass-through codec)
//! and hand them to [`Ingest::export`] like the HTTP receiver does.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;

use super::{Encoding, Ingest, IngestError, Signal};
use crate::auth::BearerToken;

/// One OTLP service, told apart by a marker type so each has its own gRPC name.
pub trait OtlpService: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    const SIGNAL: Signal;
}

pub struct TraceService;
pub struct MetricsService;
pub struct LogsService;

impl OtlpService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: Signal = Signal::Traces;
}
impl OtlpService for MetricsService {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: Signal = Signal::Metrics;
}
impl OtlpService for LogsService {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: Signal = Signal::Logs;
}

/// The tower service tonic's router serves for one OTLP service.
pub struct OtlpGrpc<S> {
    ingest: Arc<Ingest>,
    max_message_bytes: usize,
    token: BearerToken,
    _service: PhantomData<S>,
}

impl<S> OtlpGrpc<S> {
    pub fn new(ingest: Arc<Ingest>, max_message_bytes: usize, token: BearerToken) -> Self {
        OtlpGrpc { ingest, max_message_bytes, token, _service: PhantomData }
    }
}

impl<S> Clone for OtlpGrpc<S> {
    fn clone(&self) -> Self {
        OtlpGrpc::new(Arc::clone(&self.ingest), self.max_message_bytes, self.token.clone())
    }
}

impl<S: OtlpService> NamedService for OtlpGrpc<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for OtlpGrpc<S>
where
    S: OtlpService,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != S::PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        if !self.token.allows_headers(req.headers()) {
            return Box::pin(async { Ok(Status::unauthenticated("missing or wrong bearer token").into_http()) });
        }
        let export = Export { ingest: Arc::clone(&self.ingest), signal: S::SIGNAL };
        let mut grpc = Grpc::new(RawCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(self.max_message_bytes);
        Box::pin(async move { Ok(grpc.unary(export, req).await) })
    }
}

struct Export {
    ingest: Arc<Ingest>,
    signal: Signal,
}

impl UnaryService<Bytes> for Export {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = Arc::clone(&self.ingest);
        let signal = self.signal;
        Box::pin(async move {
            let body = request.into_inner();
            match ingest.export(signal, Encoding::Protobuf, body).await {
                Ok(accepted) => Ok(tonic::Response::new(Bytes::from(accepted.encode(Encoding::Protobuf)))),
                Err(e) => Err(status_of(&e)),
            }
        })
    }
}

/// OTLP's mapping: malformed -> INVALID_ARGUMENT (do not retry); overloaded or shutting
/// down -> UNAVAILABLE (retry with back-off).
pub fn status_of(e: &IngestError) -> Status {
    match e {
        IngestError::Malformed { .. } => Status::invalid_argument(e.to_string()),
        IngestError::Overloaded(_) | IngestError::ShuttingDown => Status::unavailable(e.to_string()),
        IngestError::Storage(_) => Status::internal(e.to_string()),
    }
}

/// Passes message bytes through untouched in both directions (the benchmark's client
/// uses it too, to send pre-encoded requests).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
