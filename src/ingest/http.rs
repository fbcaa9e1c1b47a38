//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies,
//! optionally gzip-compressed. Responses (including errors, as a `google.rpc.Status`) are
//! encoded like the request.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use prost::Message;

use super::{Encoding, Ingest, IngestError, Signal};

pub struct HttpIngest {
    pub ingest: Arc<Ingest>,
    /// Largest body accepted, compressed or not.
    pub max_body_bytes: usize,
    /// How long a body may take beyond what [`MIN_BODY_BYTES_PER_SECOND`] allows.
    pub body_grace: Duration,
}

/// The slowest a request body may arrive on average: a client sending a byte now and then
/// would otherwise hold its connection slot for the whole request deadline.
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 64 * 1024;

/// The OTLP/HTTP routes.
pub fn router(state: Arc<HttpIngest>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/traces", post(|s, h, b| export(Signal::Traces, s, h, b)))
        .route("/v1/metrics", post(|s, h, b| export(Signal::Metrics, s, h, b)))
        .route("/v1/logs", post(|s, h, b| export(Signal::Logs, s, h, b)))
        // The extractor enforces our own limit; a little slack lets it report "too large"
        // for bodies just over it instead of failing mid-read.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), read_body))
        .with_state(state)
}

/// Reads a request's body before the handler, within bounds no client can outlast: a
/// body declared larger than the limit is refused at once, before any of it is read; any
/// other must arrive within the grace period plus its declared size at
/// [`MIN_BODY_BYTES_PER_SECOND`] (the whole limit's worth without a `Content-Length`), or
/// gets 408. Either way the connection closes, freeing its slot.
async fn read_body(
    State(state): State<Arc<HttpIngest>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.max_body_bytes;
    let encoding = request_encoding(request.headers()).unwrap_or(Encoding::Json);
    let closing = |status, message: String| {
        let mut response = Failure { status, message, encoding }.into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return closing(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than the {limit} byte limit"));
    }
    let expected = declared.unwrap_or(limit as u64) as f64;
    let deadline = state.body_grace + Duration::from_secs_f64(expected / MIN_BODY_BYTES_PER_SECOND as f64);
    let (parts, body) = request.into_parts();
    // A little slack, so a body just over the limit reaches the handler, which says so.
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit.saturating_add(1))).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the {limit} byte limit, or was cut off"),
        ),
        Err(_) => closing(StatusCode::REQUEST_TIMEOUT, format!("request body did not arrive within {deadline:?}")),
    }
}

/// An OTLP/HTTP failure: HTTP status plus the `google.rpc.Status` body.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    encoding: Encoding,
}

/// `google.rpc.Status`, the error body OTLP/HTTP prescribes.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let grpc_code = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => tonic::Code::Internal,
            StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
            _ => tonic::Code::InvalidArgument,
        };
        let body = RpcStatus { code: grpc_code as i32, message: self.message };
        let mut response = (self.status, encode_body(self.encoding, &body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, content_type(self.encoding));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn encode_body(encoding: Encoding, status: &RpcStatus) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(status).expect("status serializes"),
    }
}

fn content_type(encoding: Encoding) -> HeaderValue {
    HeaderValue::from_static(match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    })
}

async fn export(
    signal: Signal,
    State(state): State<Arc<HttpIngest>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(signal, &state, &headers, body).await {
        Ok((encoding, bytes)) => ([(header::CONTENT_TYPE, content_type(encoding))], bytes).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn handle(
    signal: Signal,
    state: &HttpIngest,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Encoding, Vec<u8>), Failure> {
    // Until we know the request's encoding, errors are answered in JSON.
    let fail = |status, message: String, encoding| Failure { status, message, encoding };
    let encoding =
        request_encoding(headers).map_err(|m| fail(StatusCode::UNSUPPORTED_MEDIA_TYPE, m, Encoding::Json))?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than the {} byte limit", state.max_body_bytes)
        } else {
            format!("cannot read request body: {}", rejection.body_text())
        };
        fail(status, message, encoding)
    })?;
    if body.len() > state.max_body_bytes {
        let message = format!("request body is larger than the {} byte limit", state.max_body_bytes);
        return Err(fail(StatusCode::PAYLOAD_TOO_LARGE, message, encoding));
    }
    let body = decompress(headers, body, state.max_body_bytes).map_err(|(s, m)| fail(s, m, encoding))?;
    match state.ingest.export(signal, encoding, body).await {
        Ok(accepted) => Ok((encoding, accepted.encode(encoding))),
        Err(e) => {
            let status = match e {
                IngestError::Malformed { .. } => StatusCode::BAD_REQUEST,
                IngestError::Overloaded(_) | IngestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                IngestError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(fail(status, e.to_string(), encoding))
        }
    }
}

fn request_encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err("missing Content-Type: use application/x-protobuf or application/json".into()),
        other => Err(format!("unsupported Content-Type {other:?}: use application/x-protobuf or application/json")),
    }
}

/// Undoes `Content-Encoding: gzip`, refusing output beyond `limit` so a small
/// compressed body cannot expand into unbounded memory.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, (StatusCode, String)> {
    let coding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match coding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let mut reader = flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1);
            reader
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("cannot decompress gzip body: {e}")))?;
            if out.len() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed request body is larger than the {limit} byte limit"),
                ));
            }
            Ok(Bytes::from(out))
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: use gzip or none"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let table = [
            ("application/x-protobuf", Ok(Encoding::Protobuf)),
            ("application/json; charset=utf-8", Ok(Encoding::Json)),
            ("Application/JSON", Ok(Encoding::Json)),
            ("text/plain", Err(())),
            ("", Err(())),
        ];
        for (ct, want) in table {
            let mut h = HeaderMap::new();
            if !ct.is_empty() {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            assert_eq!(request_encoding(&h).map_err(|_| ()), want, "{ct}");
        }
    }

    #[test]
    fn gzip_is_undone_within_the_limit() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[7u8; 1000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decompress(&h, gz.clone(), 1000).unwrap().len(), 1000);
        assert_eq!(decompress(&h, gz, 999).unwrap_err().0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(decompress(&h, Bytes::from_static(b"not gzip"), 1000).unwrap_err().0, StatusCode::BAD_REQUEST);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(decompress(&h, Bytes::new(), 10).unwrap_err().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
