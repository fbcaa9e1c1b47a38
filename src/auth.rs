//! The optional bearer token guarding ingest, the UI and the API.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `None` means open access (the default: listeners bind to localhost).
#[derive(Debug, Clone, Default)]
pub struct BearerToken(pub Option<Arc<str>>);

impl BearerToken {
    pub fn new(token: Option<String>) -> Self {
        BearerToken(token.map(Arc::from))
    }

    /// Whether the `authorization` header value lets the request in.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.0 else { return true };
        let presented = authorization.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
        presented.is_some_and(|p| constant_time_eq(p.trim().as_bytes(), expected.as_bytes()))
    }

    pub fn allows_headers(&self, headers: &HeaderMap) -> bool {
        self.allows(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// axum middleware: 401 unless the token matches.
pub async fn require(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    if token.allows_headers(request.headers()) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token\n")
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let open = BearerToken::new(None);
        let closed = BearerToken::new(Some("s3cret".into()));
        let table = [
            (&open, None, true),
            (&open, Some("Bearer x"), true),
            (&closed, None, false),
            (&closed, Some("Bearer s3cret"), true),
            (&closed, Some("Bearer s3cre"), false),
            (&closed, Some("Basic s3cret"), false),
        ];
        for (token, header, want) in table {
            assert_eq!(token.allows(header), want, "{header:?}");
        }
    }
}
