//! Each client address gets a share of the page and API reads: at most
//! [`READS_PER_CLIENT`] GET requests in flight at once, the next answered 429 at once. The
//! database runs at most [`crate::store::reads::MAX_READS`] reads at a time, so one client
//! flooding expensive pages cannot take every slot, and a read whose client left is
//! interrupted (see [`crate::store::reads`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::listen::ClientAddress;

/// GET requests one client address may have in flight (a browser opens at most six
/// connections to a host).
pub const READS_PER_CLIENT: usize = 8;

#[derive(Debug, Default)]
pub struct ClientShare {
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// A request counted against its client's share until dropped.
struct Held<'a> {
    share: &'a ClientShare,
    ip: IpAddr,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.share.in_flight.lock();
        if let Some(n) = in_flight.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.ip);
            }
        }
    }
}

impl ClientShare {
    fn hold(&self, ip: IpAddr) -> Option<Held<'_>> {
        let mut in_flight = self.in_flight.lock();
        let n = in_flight.entry(ip).or_insert(0);
        if *n >= READS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(Held { share: self, ip })
    }
}

pub async fn limit(State(share): State<Arc<ClientShare>>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ClientAddress>().map(|c| c.0);
    let (Some(ip), true) = (client, request.method() == Method::GET) else {
        return next.run(request).await;
    };
    let Some(_held) = share.hold(ip) else {
        let message = format!("at most {READS_PER_CLIENT} requests at once per client; retry when one has answered\n");
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], message).into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_share_freed_as_requests_end() {
        let share = ClientShare::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..READS_PER_CLIENT).map(|_| share.hold(a).expect("within the share")).collect();
        assert!(share.hold(a).is_none(), "past the share");
        assert!(share.hold(b).is_some(), "another address is not affected");
        drop(held);
        assert!(share.hold(a).is_some());
        assert!(share.in_flight.lock().is_empty(), "nothing held is remembered");
    }
}
