//! Serving the three listeners (OTLP/gRPC, OTLP/HTTP and the UI) with limits no client can
//! outlast: a connection cap, a deadline for the first bytes (HTTP/1 request headers, which
//! also closes idle keep-alive connections; the HTTP/2 connection preface), keep-alive
//! pings and a stream cap on HTTP/2, a deadline for each whole request, and a bounded drain
//! on shutdown. Neither axum's `serve` nor tonic's server sets the first-byte deadlines: a
//! client that connects and never finishes its headers would hold its connection forever.
//! No client holds slots for long or many: a connection with no request in flight for
//! `idle` is closed (an HTTP/2 connection that never opens a stream too), one older than
//! `max_age` is closed once it has no request in flight, and one client address holds at
//! most `per_address` of the connections.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// The bounds every HTTP listener enforces (documented in the README's "Limits and safety").
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Most open connections; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A request's headers must arrive within this; an idle keep-alive connection is
    /// closed after it.
    pub header_read: Duration,
    /// A whole request (reading the body, handling, committing) must finish within this.
    pub request: Duration,
    /// How long shutdown waits for open connections to finish.
    pub drain: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle: Duration,
    /// A connection older than this is closed once no request is in flight on it.
    pub max_age: Duration,
    /// Most connections one client address may hold open.
    pub per_address: usize,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_connections: 1024,
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            per_address: 256,
        }
    }
}

/// What a listener speaks. Each is pinned (no protocol sniffing, which would wait for a
/// client's first bytes with no deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: browsers and OTLP/HTTP exporters over plain TCP.
    Http1,
    /// gRPC: HTTP/2 with prior knowledge.
    Grpc,
}

/// Concurrent streams (gRPC calls) one HTTP/2 connection may have open.
const STREAMS_PER_CONNECTION: u32 = 64;
/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what an HTTP/2 client sends first.
const HTTP2_PREFACE_LEN: usize = 24;

/// Serves `app` on `listener` until `stopped` turns true.
pub fn serve(
    what: &'static str,
    listener: TcpListener,
    app: axum::Router,
    protocol: Protocol,
    limits: ListenLimits,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let deadline = limits.request;
    let app =
        app.layer(middleware::from_fn(move |req: Request, next: Next| request_deadline(deadline, protocol, req, next)));
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder = match protocol {
            Protocol::Http1 => builder.http1_only(),
            Protocol::Grpc => builder.http2_only(),
        };
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(limits.header_read))
            .keep_alive_timeout(limits.header_read)
            .max_concurrent_streams(STREAMS_PER_CONNECTION);
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let addresses = Arc::new(AddressShare::new(limits.per_address));
        let graceful = GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
                _ = stop_requested(&mut stopped) => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop_requested(&mut stopped) => break,
            };
            let (stream, slot, peer) = match accepted {
                Ok((stream, peer)) => match addresses.admit(peer.ip()) {
                    Some(slot) => (stream, slot, ClientAddress(peer.ip())),
                    // Past its address's share: closed at once, the slot freed.
                    None => continue,
                },
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::new());
            let tracked = Arc::clone(&activity);
            let app = app.clone().layer(middleware::from_fn(move |mut req: Request, next: Next| {
                let activity = Arc::clone(&tracked);
                req.extensions_mut().insert(peer);
                async move {
                    let _busy = activity.begin();
                    next.run(req).await
                }
            }));
            let service = TowerToHyperService::new(app);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                if protocol == Protocol::Grpc && !first_bytes(&stream, HTTP2_PREFACE_LEN, limits.header_read).await {
                    return; // dropping the stream and the permit closes the connection
                }
                let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                tokio::pin!(connection);
                let opened = Instant::now();
                let mut check =
                    tokio::time::interval((limits.idle.min(limits.max_age) / 4).max(Duration::from_millis(50)));
                loop {
                    tokio::select! {
                        _ = &mut connection => break,
                        _ = check.tick() => {
                            // Dropping the connection closes it; no request is in flight.
                            if activity.quiet_for(limits.idle) || (opened.elapsed() >= limits.max_age && activity.idle()) {
                                break;
                            }
                        }
                    }
                }
                drop(permit);
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("{what}: connections still open after {:?}; closing them", limits.drain);
        }
    })
}

/// The address a request came from, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// What each client address holds of something bounded per address (connections here,
/// page requests in [`crate::web::client_share`]): at most `share` at a time.
pub struct AddressShare {
    held: parking_lot::Mutex<std::collections::HashMap<IpAddr, usize>>,
    share: usize,
}

impl AddressShare {
    pub fn new(share: usize) -> AddressShare {
        AddressShare { held: Default::default(), share: share.max(1) }
    }

    /// One more for `ip`, or None when it holds its share already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock();
        let n = held.entry(ip).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(AddressSlot { share: Arc::clone(self), ip })
    }
}

/// One of an address's share; given back when dropped.
pub struct AddressSlot {
    share: Arc<AddressShare>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.share.held.lock();
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// What a connection is doing: requests in flight, and when the last one ended.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `opened` when a request last ended (or the connection opened).
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { opened: Instant::now(), in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// No request in flight, and none ended, for `d`.
    fn quiet_for(&self, d: Duration) -> bool {
        let since_ms = (self.opened.elapsed().as_millis() as u64).saturating_sub(self.last_ms.load(Ordering::Acquire));
        self.idle() && since_ms >= d.as_millis() as u64
    }
}

/// A request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms.store(a.opened.elapsed().as_millis() as u64, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Whether the client sent its first `n` bytes within `deadline` (they stay unread).
async fn first_bytes(stream: &TcpStream, n: usize, deadline: Duration) -> bool {
    let arrived = async {
        let mut buf = [0u8; HTTP2_PREFACE_LEN];
        loop {
            match stream.peek(&mut buf[..n]).await {
                Ok(got) if got >= n => return true,
                Ok(0) | Err(_) => return false,
                // Part of it: peek returns at once while data waits, so pause between looks.
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(deadline, arrived).await.unwrap_or(false)
}

async fn request_deadline(deadline: Duration, protocol: Protocol, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) if protocol == Protocol::Grpc => {
            let status = tonic::Status::deadline_exceeded(format!("call not finished within {deadline:?}"));
            status.into_http::<axum::body::Body>().into_response()
        }
        Err(_) => (StatusCode::REQUEST_TIMEOUT, format!("request not finished within {deadline:?}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_share_given_back_when_dropped() {
        let share = Arc::new(AddressShare::new(3));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<_> = (0..3).map(|_| share.admit(a).expect("within the share")).collect();
        assert!(share.admit(a).is_none(), "past the share");
        assert!(share.admit(b).is_some(), "another address is not affected");
        drop(held);
        assert!(share.admit(a).is_some());
        assert!(share.held.lock().is_empty(), "nothing given back is remembered");
    }
}
