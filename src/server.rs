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
use crate::lake::append::LakeSink;
use crate::lake::gate::AppendGate;
use crate::lake::leader::Leadership;
use crate::lake::pull::Puller;
use crate::lake::upkeep::Upkeep;
use crate::lake::{self, ClusterStatus, LakeError};
use crate::listen::{self, Protocol};
use crate::store::{retention, Checkpointer, Store, StoreError, Writer, WriterConfig};
use crate::web::{self, AppState, FlowsState};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Alerts(#[from] AlertError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// A started flowscope. Addresses are the ones actually bound (port 0 resolved); a
/// cluster node without the receiver role takes no OTLP.
pub struct Running {
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
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
    /// The writer of the local file: the stitcher's source (ingest writes to the lake on
    /// a cluster's receiver, and here otherwise).
    local_writer: Arc<Writer>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { what, addr, source })
}

pub async fn start(config: Config) -> Result<Running, ServerError> {
    let store = Store::open_with(&config.db, &config.duckdb_settings)?;
    if let Some(lake) = &config.lake {
        let extension_dir = crate::text::path_with_suffix(&config.db, ".extensions");
        let conn = store.connect()?;
        lake::open(&conn, lake, &extension_dir)?;
        tracing::info!(roles = ?config.roles.names(), data = %lake.data_path, "cluster node: lake attached");
    }
    let local_writer = Arc::new(store.start_writer(config.writer.clone())?);
    let mut checkpoints = config.checkpoints.clone();
    if config.lake.is_some() {
        // DuckDB relaunching its worker threads while a lake scan runs (it queries the
        // catalog from inside a scan task) deadlocks the two (DuckDB 1.5.5 with DuckLake):
        // a cluster node checkpoints with the threads it has.
        checkpoints.threads = 1;
    }
    let checkpointer = store.start_checkpointer(checkpoints)?;
    let receives_into_lake = config.lake.as_ref().filter(|_| config.roles.receiver);
    let writer = match receives_into_lake {
        Some(lake) => {
            let sink = LakeSink { gate: AppendGate::new(&lake.catalog)? };
            Arc::new(store.start_writer_to(lake_writer_config(&config.writer, lake), Box::new(sink))?)
        }
        None => Arc::clone(&local_writer),
    };
    // Requests being decoded may take as much as the write queue holds.
    let decode_bytes = config.writer.queue_capacity_bytes;
    let ingest = Arc::new(Ingest::new(writer, CorrelationKeys::with_extra(&config.correlation_keys), decode_bytes));
    let token = BearerToken::new(config.auth_token.clone());
    let (stop, stopped) = watch::channel(false);

    let mut listeners = Vec::new();
    let (otlp_grpc, otlp_http) = match config.lake.is_none() || config.roles.receiver {
        true => {
            let (grpc, http) = serve_otlp(&config, &ingest, &token, &stopped, &mut listeners).await?;
            (Some(grpc), Some(http))
        }
        false => (None, None),
    };
    let ui_listener = bind("UI", config.ui).await?;
    let ui = ui_listener.local_addr().expect("bound socket has an address");

    let (stitcher, progress) = flows::start(&store, &local_writer, config.stitch.clone())?;
    let commits = Arc::clone(local_writer.stats());
    let export = ExportConfig { quiet_period: config.stitch.quiet_period, series_limit: config.metrics_series_limit };
    let (flow_metrics, export_task) = export::start(Arc::clone(&store), progress.clone(), export, stopped.clone());
    let flows_state = FlowsState {
        progress: progress.clone(),
        stage: Arc::clone(stitcher.stage()),
        destination_patterns: config.stitch.destination_patterns.clone(),
        quiet_period: config.stitch.quiet_period,
        max_flow_spans: config.stitch.max_flow_spans,
        flow_metrics,
        commits,
    };
    let alerts = Alerts::start(Arc::clone(&store), config.file_rules.clone(), config.alerts.clone()).await?;
    let cluster = match &config.lake {
        None => None,
        Some(lake) => {
            let leading = match config.roles.stitcher {
                true => Leadership::start(&lake.catalog, stopped.clone())?.leading,
                false => watch::channel(false).1,
            };
            Some(Arc::new(ClusterStatus::new(config.roles, leading)))
        }
    };
    // A single process evaluates its alerts; in a cluster, the active stitcher alone.
    let alerts_active = cluster.as_ref().map_or_else(|| watch::channel(true).1, |c| c.leading.clone());
    let mut state = AppState::new(Arc::clone(&store), Arc::clone(&ingest), flows_state, Arc::clone(&alerts));
    state.cluster = cluster.clone();
    let hosts = web::HostPolicy::new(&config.alerts.external_url, &config.allowed_hosts);
    let ui_app = web::router(Arc::new(state), token, hosts);
    listeners.push(listen::serve("UI", ui_listener, ui_app, Protocol::Http1, config.listen, stopped.clone()));

    if let (Some(grpc), Some(http)) = (otlp_grpc, otlp_http) {
        tracing::info!("OTLP/gRPC listening on {grpc}");
        tracing::info!("OTLP/HTTP listening on http://{http}");
    }
    tracing::info!("UI and API listening on http://{ui}");

    let mut background = vec![
        tokio::spawn(retention::run(
            Arc::clone(&store),
            config.retention,
            config.retention_sweep_every,
            stopped.clone(),
        )),
        tokio::spawn(alerts.run(alerts_active, stopped.clone())),
        export_task,
    ];
    if let (Some(lake), Some(status)) = (&config.lake, &cluster) {
        if config.roles.follows_lake() {
            let puller = Puller {
                store: Arc::clone(&store),
                writer: Arc::clone(&local_writer),
                status: Arc::clone(status),
                interval: config.stitch.interval,
            };
            background.push(tokio::spawn(puller.run(stopped.clone())));
        }
        if config.roles.stitcher {
            let upkeep = Upkeep {
                store: Arc::clone(&store),
                status: Arc::clone(status),
                config: lake.upkeep,
                catalog: lake.catalog.clone(),
            };
            background.push(tokio::spawn(upkeep.run(stopped.clone())));
        }
    }

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
        local_writer,
    })
}

/// Binds and serves OTLP/gRPC and OTLP/HTTP; returns their addresses.
async fn serve_otlp(
    config: &Config,
    ingest: &Arc<Ingest>,
    token: &BearerToken,
    stopped: &watch::Receiver<bool>,
    listeners: &mut Vec<JoinHandle<()>>,
) -> Result<(SocketAddr, SocketAddr), ServerError> {
    let grpc_listener = bind("OTLP/gRPC", config.otlp_grpc).await?;
    let http_listener = bind("OTLP/HTTP", config.otlp_http).await?;
    let local = |l: &TcpListener| l.local_addr().expect("bound socket has an address");
    let addrs = (local(&grpc_listener), local(&http_listener));
    let max = config.max_request_bytes;
    let grpc_app = tonic::service::Routes::new(OtlpGrpc::<TraceService>::new(Arc::clone(ingest), max, token.clone()))
        .add_service(OtlpGrpc::<MetricsService>::new(Arc::clone(ingest), max, token.clone()))
        .add_service(OtlpGrpc::<LogsService>::new(Arc::clone(ingest), max, token.clone()))
        .into_axum_router();
    listeners.push(listen::serve("OTLP/gRPC", grpc_listener, grpc_app, Protocol::Grpc, config.listen, stopped.clone()));
    let http_app = crate::ingest::http::router(Arc::new(HttpIngest {
        ingest: Arc::clone(ingest),
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
    Ok(addrs)
}

/// A receiver's writer: requests gathered for the lake's `commit_every` per commit.
fn lake_writer_config(local: &WriterConfig, lake: &lake::LakeConfig) -> WriterConfig {
    WriterConfig { flush_interval: lake.commit_every, linger: lake.commit_every, ..local.clone() }
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
        let target = self.local_writer.stats().last_commit_seq.load(std::sync::atomic::Ordering::Acquire) as i64;
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
        // The same writer twice on a single process: the second call finds it stopped.
        self.ingest.writer().shutdown().await;
        self.local_writer.shutdown().await;
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
