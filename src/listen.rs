//! Serving the HTTP listeners (OTLP/HTTP and the UI) with limits no client can outlast:
//! a connection cap, a deadline for request headers (which also closes idle keep-alive
//! connections), a deadline for each whole request, and a bounded drain on shutdown.
//! axum's own `serve` sets none of these: a client that opens connections and never
//! finishes its headers would hold them forever.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
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
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            max_connections: 1024,
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `stopped` turns true.
pub fn serve(
    what: &'static str,
    listener: TcpListener,
    app: axum::Router,
    limits: ListenLimits,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let deadline = limits.request;
    let app = app.layer(middleware::from_fn(move |req: Request, next: Next| request_deadline(deadline, req, next)));
    tokio::spawn(async move {
        // HTTP/1.1 only (browsers and OTLP/HTTP exporters use it over plain TCP): no
        // protocol sniffing, which would wait for a client's first bytes with no deadline.
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
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
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(app.clone());
            let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("{what}: connections still open after {:?}; closing them", limits.drain);
        }
    })
}

async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn request_deadline(deadline: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, format!("request not finished within {deadline:?}\n")).into_response(),
    }
}
