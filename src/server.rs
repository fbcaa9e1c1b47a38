//! Wires the stages together: opens the store, starts the writer, the three listeners and
//! the background tasks, and takes them down in order on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerts::{AlertError, Alerts};
use crate::auth::{self, BearerToken};
use crate::config::Config;
use crate::flows::export::{self, ExportConfig};
use crate::flows::{self, StitchProgress, StitcherHandle};
use crate::ingest::grpc::{LogsService, MetricsService, OtlpGrpc, TraceService};
use crate::ingest::http::HttpIngest;
use crate::ingest::{CorrelationKeys, Ingest};
use crate::listen::{self, Protocol};
use crate::store::{retention, Checkpointer, Store, StoreError};
use crate::web::{self, AppState, FlowsState};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Alerts(#[from] AlertError),
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// A started flowscope. Addresses are the ones actually bound (port 0 resolved).
pub struct Running {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub ui: SocketAddr,
    pub store: Arc<Store>,
    pub ingest: Arc<Ingest>,
    /// The stitcher's progress; `wait_stitched` awaits it.
    pub progress: watch::Receiver<StitchProgress>,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    stitcher: StitcherHandle,
    checkpointer: Checkpointer,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { what, addr, source })
}

pub async fn start(config: Config) -> Result<Running, ServerError> {
    let store = Store::open_with(&config.db, &config.duckdb_settings)?;
    let writer = Arc::new(store.start_writer(config.writer.clone())?);
    let checkpointer = store.start_checkpointer(config.checkpoints.clone())?;
    // Requests being decoded may take as much as the write queue holds.
    let decode_bytes = config.writer.queue_capacity_bytes;
    let ingest = Arc::new(Ingest::new(writer, CorrelationKeys::with_extra(&config.correlation_keys), decode_bytes));
    let token = BearerToken::new(config.auth_token.clone());
    let (stop, stopped) = watch::channel(false);

    let grpc_listener = bind("OTLP/gRPC", config.otlp_grpc).await?;
    let http_listener = bind("OTLP/HTTP", config.otlp_http).await?;
    let ui_listener = bind("UI", config.ui).await?;
    let local = |l: &TcpListener| l.local_addr().expect("bound socket has an address");
    let (otlp_grpc, otlp_http, ui) = (local(&grpc_listener), local(&http_listener), local(&ui_listener));

    let mut listeners = Vec::new();
    let max = config.max_request_bytes;
    let grpc_app = tonic::service::Routes::new(OtlpGrpc::<TraceService>::new(Arc::clone(&ingest), max, token.clone()))
        .add_service(OtlpGrpc::<MetricsService>::new(Arc::clone(&ingest), max, token.clone()))
        .add_service(OtlpGrpc::<LogsService>::new(Arc::clone(&ingest), max, token.clone()))
        .into_axum_router();
    listeners.push(listen::serve("OTLP/gRPC", grpc_listener, grpc_app, Protocol::Grpc, config.listen, stopped.clone()));

    let http_app = crate::ingest::http::router(Arc::new(HttpIngest {
        ingest: Arc::clone(&ingest),
        max_body_bytes: max,
        body_grace: config.listen.header_read,
    }))
    .layer(axum::middleware::from_fn_with_state(token.clone(), auth::require));
    listeners.push(listen::serve(
        "OTLP/HTTP",
        http_listener,
        http_app,
        Protocol::Http1,
        config.listen,
        stopped.clone(),
    ));

    let (stitcher, progress) = flows::start(&store, ingest.writer(), config.stitch.clone())?;
    let export = ExportConfig { quiet_period: config.stitch.quiet_period, series_limit: config.metrics_series_limit };
    let (flow_metrics, export_task) = export::start(Arc::clone(&store), progress.clone(), export, stopped.clone());
    let flows_state = FlowsState {
        progress: progress.clone(),
        stage: Arc::clone(stitcher.stage()),
        destination_patterns: config.stitch.destination_patterns.clone(),
        quiet_period: config.stitch.quiet_period,
        max_flow_spans: config.stitch.max_flow_spans,
        flow_metrics,
    };
    let alerts = Alerts::start(Arc::clone(&store), config.file_rules.clone(), config.alerts.clone()).await?;
    let state = AppState::new(Arc::clone(&store), Arc::clone(&ingest), flows_state, Arc::clone(&alerts));
    let hosts = web::HostPolicy::new(&config.alerts.external_url, &config.allowed_hosts);
    let ui_app = web::router(Arc::new(state), token, hosts);
    listeners.push(listen::serve("UI", ui_listener, ui_app, Protocol::Http1, config.listen, stopped.clone()));

    tracing::info!("OTLP/gRPC listening on {otlp_grpc}");
    tracing::info!("OTLP/HTTP listening on http://{otlp_http}");
    tracing::info!("UI and API listening on http://{ui}");

    let background = vec![
        tokio::spawn(retention::run(
            Arc::clone(&store),
            config.retention,
            config.retention_sweep_every,
            stopped.clone(),
        )),
        tokio::spawn(alerts.run(stopped)),
        export_task,
    ];

    Ok(Running {
        otlp_grpc,
        otlp_http,
        ui,
        store,
        ingest,
        progress,
        stop,
        listeners,
        background,
        stitcher,
        checkpointer,
    })
}

/// How long shutdown waits for the last users of the store to let go of it.
const SHUTDOWN_RELEASE: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    /// Resolves if the writer dies: nothing more can be committed, so the process should
    /// end (every acknowledged request was committed before its answer).
    pub async fn writer_died(&self) -> String {
        let stage = Arc::clone(self.ingest.writer().stage());
        stage.died().await;
        stage.dead().unwrap_or_default()
    }

    /// Waits until every commit made so far has been stitched into flows.
    pub async fn wait_stitched(&self) {
        let target = self.ingest.writer().stats().last_commit_seq.load(std::sync::atomic::Ordering::Acquire) as i64;
        let mut progress = self.progress.clone();
        let _ = progress.wait_for(|p| p.stitched_seq >= target && p.last_error.is_none()).await;
    }

    /// Stops accepting, lets in-flight requests finish (they wait for their commit), commits
    /// whatever is queued, and checkpoints the database file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.listeners {
            let _ = task.await;
        }
        self.ingest.writer().shutdown().await;
        let (stitcher, checkpointer) = (self.stitcher, self.checkpointer);
        tokio::task::spawn_blocking(move || {
            stitcher.stop();
            drop(checkpointer);
        })
        .await
        .ok();
        for task in self.background {
            let _ = task.await;
        }
        // The last checkpoint must be the last write: wait (briefly) for reads that were
        // abandoned or deliveries recording their outcome to let go of the store.
        let released = tokio::time::timeout(SHUTDOWN_RELEASE, async {
            while Arc::strong_count(&self.store) > 1 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        if released.await.is_err() {
            tracing::warn!("the store is still in use {SHUTDOWN_RELEASE:?} after shutdown began; checkpointing anyway");
        }
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!(error = %e, "final checkpoint failed; the write-ahead log still holds every commit");
        }
        tracing::info!("flowscope stopped; all acknowledged data is committed");
    }
}
