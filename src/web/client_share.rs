//! Each client address gets a share of the page and API reads: at most
//! [`READS_PER_CLIENT`] GET requests in flight at once, the next answered 429 at once. The
//! database runs at most [`crate::store::reads::MAX_READS`] reads at a time, so one client
//! flooding expensive pages cannot take every slot, and a read whose client left is
//! interrupted (see [`crate::store::reads`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::listen::{AddressShare, ClientAddress};

/// GET requests one client address may have in flight (a browser opens at most six
/// connections to a host).
pub const READS_PER_CLIENT: usize = 8;

/// The share every client address gets.
pub fn share() -> Arc<AddressShare> {
    Arc::new(AddressShare::new(READS_PER_CLIENT))
}

pub async fn limit(State(share): State<Arc<AddressShare>>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ClientAddress>().map(|c| c.0);
    let (Some(ip), true) = (client, request.method() == Method::GET) else {
        return next.run(request).await;
    };
    let Some(_held) = share.admit(ip) else {
        let message = format!("at most {READS_PER_CLIENT} requests at once per client; retry when one has answered\n");
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], message).into_response();
    };
    next.run(request).await
}
