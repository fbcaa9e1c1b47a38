//! Configuration: command-line flags, then `FLOWSCOPE_*` environment variables, then the
//! optional TOML file, then the defaults documented in the README (first one set wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::alerts::notify::{RetryPolicy, WebhookConfig};
use crate::alerts::rules::{parse_rules_file, Rule};
use crate::alerts::AlertConfig;
use crate::flows::analysis::{DestinationPatterns, NamePatterns};
use crate::flows::StitchConfig;
use crate::lake::upkeep::UpkeepConfig;
use crate::lake::{LakeConfig, Roles};
use crate::store::{CheckpointConfig, WriterConfig};

pub const DEFAULT_OTLP_GRPC: &str = "127.0.0.1:4317";
pub const DEFAULT_OTLP_HTTP: &str = "127.0.0.1:4318";
pub const DEFAULT_UI: &str = "127.0.0.1:8080";
pub const DEFAULT_DB: &str = "./data/flowscope.duckdb";
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {setting}: {message}")]
    Invalid { setting: &'static str, message: String },
}

/// The flags of `flowscope serve` (each also readable from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "FLOWSCOPE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317]
    #[arg(long, env = "FLOWSCOPE_OTLP_GRPC", value_name = "ADDR")]
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318]
    #[arg(long, env = "FLOWSCOPE_OTLP_HTTP", value_name = "ADDR")]
    pub otlp_http: Option<SocketAddr>,
    /// Dashboard and JSON API listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "FLOWSCOPE_UI", value_name = "ADDR")]
    pub ui: Option<SocketAddr>,
    /// DuckDB database file [default: ./data/flowscope.duckdb]
    #[arg(long, env = "FLOWSCOPE_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Delete data older than this, e.g. 7d, 12h [default: 7d]
    #[arg(long, env = "FLOWSCOPE_RETENTION", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// Bytes of decoded rows that may wait for a commit before exporters are told to retry [default: an eighth of --memory-limit]
    #[arg(long, env = "FLOWSCOPE_QUEUE_BYTES", value_name = "BYTES")]
    pub queue_bytes: Option<usize>,
    /// Longest wait before a group commit, e.g. 200ms [default: 200ms]
    #[arg(long, env = "FLOWSCOPE_FLUSH_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
    /// Commit as soon as this many rows are pending [default: 100000]
    #[arg(long, env = "FLOWSCOPE_FLUSH_ROWS", value_name = "ROWS")]
    pub flush_rows: Option<usize>,
    /// Largest OTLP request body, compressed or decompressed, in bytes [default: 16777216]
    #[arg(long, env = "FLOWSCOPE_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Extra attribute key that carries a correlation id (repeatable), e.g. app.order_id
    #[arg(long = "correlation-key", env = "FLOWSCOPE_CORRELATION_KEYS", value_delimiter = ',', value_name = "KEY")]
    pub correlation_keys: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` on ingest, UI and API
    #[arg(long, env = "FLOWSCOPE_AUTH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Dead-letter destination name pattern, `*` wildcards (repeatable; replaces the defaults)
    #[arg(
        long = "dead-letter-pattern",
        env = "FLOWSCOPE_DEAD_LETTER_PATTERNS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub dead_letter_patterns: Vec<String>,
    /// Retry destination name pattern, `*` wildcards (repeatable; replaces the defaults): a record a consumer re-produces there and consumes again is a retry
    #[arg(long = "retry-pattern", env = "FLOWSCOPE_RETRY_PATTERNS", value_delimiter = ',', value_name = "GLOB")]
    pub retry_patterns: Vec<String>,
    /// A flow with no new span for this long is settled [default: 30s]
    #[arg(long, env = "FLOWSCOPE_SETTLE_AFTER", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub settle_after: Option<Duration>,
    /// Ignore a message/correlation id for joining once this many traces share it [default: 1000]
    #[arg(long, env = "FLOWSCOPE_JOIN_KEY_LIMIT", value_name = "TRACES")]
    pub join_key_limit: Option<usize>,
    /// Analyse and show at most this many spans of one flow; larger flows are truncated [default: 10000]
    #[arg(long, env = "FLOWSCOPE_MAX_FLOW_SPANS", value_name = "SPANS")]
    pub max_flow_spans: Option<usize>,
    /// Threads the stitcher analyses flows on [default: the cores available]
    #[arg(long, env = "FLOWSCOPE_STITCH_THREADS", value_name = "N")]
    pub stitch_threads: Option<usize>,
    /// TOML file of alert rules (`[[rules]]`), shown read-only in the UI
    #[arg(long, env = "FLOWSCOPE_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Webhook receiving alert notifications, Alertmanager format (repeatable)
    #[arg(long = "webhook", env = "FLOWSCOPE_WEBHOOKS", value_delimiter = ',', value_name = "URL")]
    pub webhooks: Vec<String>,
    /// How often alert rules are evaluated [default: 15s]
    #[arg(long, env = "FLOWSCOPE_ALERT_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub alert_interval: Option<Duration>,
    /// DuckDB setting KEY=VALUE, e.g. checkpoint_threshold=1GB or memory_limit=2GB (repeatable)
    #[arg(long = "duckdb-setting", env = "FLOWSCOPE_DUCKDB_SETTINGS", value_delimiter = ',', value_name = "KEY=VALUE")]
    pub duckdb_settings: Vec<String>,
    /// flowscope's address as users reach it, for links in notifications [default: http://UI]
    #[arg(long, env = "FLOWSCOPE_EXTERNAL_URL", value_name = "URL")]
    pub external_url: Option<String>,
    /// Chains and destinations exported with their own label on /metrics/flows; later ones as "other" [default: 100]
    #[arg(long, env = "FLOWSCOPE_METRICS_SERIES_LIMIT", value_name = "N")]
    pub metrics_series_limit: Option<usize>,
    /// Memory budget of the whole process, e.g. 1GiB, 512MiB, shared by DuckDB, the write queue, the commit feed and the stitcher [default: 1GiB]
    #[arg(long, env = "FLOWSCOPE_MEMORY_LIMIT", value_name = "BYTES", value_parser = parse_bytes)]
    pub memory_limit: Option<u64>,
    /// How long after its last change a stored flow can still be joined by a late span [default: 24h]
    #[arg(long, env = "FLOWSCOPE_JOIN_WINDOW", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub join_window: Option<Duration>,
    /// New spans and logs are refused (retryably) while flows are further behind than this; 0 never refuses [default: 30s]
    #[arg(long, env = "FLOWSCOPE_MAX_STITCH_LAG", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_stitch_lag: Option<Duration>,
    /// Host name the UI answers besides IP addresses, localhost and --external-url's (repeatable)
    #[arg(long = "allowed-host", env = "FLOWSCOPE_ALLOWED_HOSTS", value_delimiter = ',', value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Run as a node of a cluster: the lake's PostgreSQL catalog, as a libpq connection string, e.g. "host=db dbname=flowscope user=flowscope"
    #[arg(long, env = "FLOWSCOPE_LAKE", value_name = "CONNINFO", hide_env_values = true)]
    pub lake: Option<String>,
    /// The lake's data directory, the same for every node (with --lake)
    #[arg(long, env = "FLOWSCOPE_LAKE_DATA", value_name = "PATH")]
    pub lake_data: Option<String>,
    /// Where the PyPI packages duckdb-extension-ducklake, -postgres-scanner and -parquet are installed (with --lake)
    #[arg(long, env = "FLOWSCOPE_LAKE_EXTENSIONS", value_name = "DIR")]
    pub lake_extensions: Option<PathBuf>,
    /// How long a receiver gathers requests into one lake commit, e.g. 500ms (with --lake) [default: 500ms]
    #[arg(long, env = "FLOWSCOPE_LAKE_COMMIT_EVERY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lake_commit_every: Option<Duration>,
    /// How often the active stitcher keeps the lake (retention, merge, expire, clean up), e.g. 10m (with --lake) [default: 10m]
    #[arg(long, env = "FLOWSCOPE_LAKE_UPKEEP_EVERY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lake_upkeep_every: Option<Duration>,
    /// How long lake snapshots are kept before the last one copied, e.g. 1d (with --lake) [default: 1d]
    #[arg(long, env = "FLOWSCOPE_LAKE_KEEP_SNAPSHOTS", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lake_keep_snapshots: Option<Duration>,
    /// This node's roles in a cluster: receiver, stitcher, query (repeatable) [default: receiver,stitcher]
    #[arg(long = "role", env = "FLOWSCOPE_ROLES", value_delimiter = ',', value_name = "ROLE")]
    pub roles: Vec<String>,
}

/// The TOML file: the same settings, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub ui: Option<SocketAddr>,
    pub db: Option<PathBuf>,
    pub retention: Option<String>,
    pub queue_bytes: Option<usize>,
    pub flush_interval: Option<String>,
    pub flush_rows: Option<usize>,
    pub max_request_bytes: Option<usize>,
    #[serde(default)]
    pub correlation_keys: Vec<String>,
    pub auth_token: Option<String>,
    #[serde(default)]
    pub dead_letter_patterns: Vec<String>,
    #[serde(default)]
    pub retry_patterns: Vec<String>,
    pub settle_after: Option<String>,
    pub join_key_limit: Option<usize>,
    pub max_flow_spans: Option<usize>,
    pub stitch_threads: Option<usize>,
    pub rules: Option<PathBuf>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    pub alert_interval: Option<String>,
    pub external_url: Option<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub metrics_series_limit: Option<usize>,
    pub memory_limit: Option<String>,
    pub join_window: Option<String>,
    pub max_stitch_lag: Option<String>,
    #[serde(default)]
    pub duckdb_settings: std::collections::BTreeMap<String, String>,
    pub lake: Option<String>,
    pub lake_data: Option<String>,
    pub lake_extensions: Option<PathBuf>,
    pub lake_commit_every: Option<String>,
    pub lake_upkeep_every: Option<String>,
    pub lake_keep_snapshots: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Other names of queues that flowscope cannot learn: an exchange -> the queue it feeds.
    #[serde(default)]
    pub queue_aliases: std::collections::BTreeMap<String, String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub ui: SocketAddr,
    pub db: PathBuf,
    pub retention: Duration,
    pub retention_sweep_every: Duration,
    pub writer: WriterConfig,
    /// When the file is checkpointed (not configurable beyond DuckDB's own settings).
    pub checkpoints: CheckpointConfig,
    pub max_request_bytes: usize,
    pub correlation_keys: Vec<String>,
    pub auth_token: Option<String>,
    pub stitch: StitchConfig,
    /// Rules from the rules file, already validated.
    pub file_rules: Vec<Rule>,
    pub alerts: AlertConfig,
    /// DuckDB settings applied when the database opens (defaults, then file, then flags).
    pub duckdb_settings: Vec<(String, String)>,
    /// Host names the UI answers besides IP literals, localhost and the external URL's.
    pub allowed_hosts: Vec<String>,
    /// Connection and time limits of the HTTP listeners.
    pub listen: crate::listen::ListenLimits,
    /// Chains (and destinations) with their own label on `/metrics/flows`.
    pub metrics_series_limit: usize,
    /// The process's memory budget (bytes), split by [`MemoryBudget`].
    pub memory_limit: u64,
    /// The cluster this node belongs to; None: a single process.
    pub lake: Option<LakeConfig>,
    /// What this node does (a single process: everything).
    pub roles: Roles,
}

pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;
/// Most threads the stitcher spreads a round over, whatever `--stitch-threads` says.
const MAX_STITCH_THREADS: usize = 256;
const MIN_MEMORY_LIMIT: u64 = 128 << 20;

/// How `--memory-limit` is shared. DuckDB gets seven sixteenths: its buffer pool holds
/// the column segments that queries and the stitcher's lookups read, and spills beyond
/// it. The queue of decoded rows waiting for a commit (admitted by bytes) an eighth; the
/// feed of committed rows the stitcher reads from memory (also by bytes) a
/// thirty-second (it only needs to hold a round or two when the stitcher keeps up; when
/// it lags, rounds read the file anyway); the stitcher's working set (flows still
/// arriving) an eighth, at the size per span given below, and its filter
/// of the join window's hashes a sixteenth. The rest (a fifth) is for
/// requests being decoded, pages being rendered and the allocator's slack. Nothing here
/// grows with the data stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub duckdb_bytes: u64,
    pub write_queue_bytes: usize,
    pub feed_bytes: usize,
    pub stitcher_spans: usize,
    pub join_filter_bytes: usize,
}

impl MemoryBudget {
    /// Bytes one span takes in the stitcher's working set: its facts and strings,
    /// the trace's entries in the joiner's maps and vector slack (a heap profile under
    /// full-speed ingest put it at about 2.3 KB).
    const STITCHER_SPAN_BYTES: u64 = 2048;

    pub fn split(limit: u64) -> MemoryBudget {
        MemoryBudget {
            duckdb_bytes: limit / 16 * 7,
            write_queue_bytes: (limit / 8) as usize,
            feed_bytes: (limit / 32) as usize,
            stitcher_spans: (limit / 8 / Self::STITCHER_SPAN_BYTES) as usize,
            join_filter_bytes: (limit / 16) as usize,
        }
    }
}

/// Name patterns from the flags, else from the file; None when neither gives any.
fn patterns(flags: Vec<String>, file: Vec<String>) -> Option<NamePatterns> {
    [flags, file].into_iter().find(|p| !p.is_empty()).map(|p| NamePatterns::new(&p))
}

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?}: write a number of bytes, e.g. 1GiB or 512MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use B, KB, MB, GB, KiB, MiB or GiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{text:?}: too large"))
}

impl Config {
    /// Defaults everywhere, with the database at `db`: what tests start from.
    pub fn with_db(db: PathBuf) -> Config {
        Config::resolve(ServeArgs { db: Some(db), ..Default::default() }, FileConfig::default())
            .expect("defaults are valid")
    }

    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(args, file)
    }

    fn resolve(args: ServeArgs, file: FileConfig) -> Result<Config, ConfigError> {
        let duration = |setting, text: Option<String>| -> Result<Option<Duration>, ConfigError> {
            text.map(|t| {
                humantime::parse_duration(&t)
                    .map_err(|e| ConfigError::Invalid { setting, message: format!("{t:?}: {e}") })
            })
            .transpose()
        };
        let addr = |s: &str| s.parse::<SocketAddr>().expect("default address parses");
        let writer_default = WriterConfig::default();
        let stitch_default = StitchConfig::default();
        let mut correlation_keys = file.correlation_keys;
        correlation_keys.extend(args.correlation_keys.into_iter().filter(|k| !k.trim().is_empty()));
        let ui = args.ui.or(file.ui).unwrap_or_else(|| addr(DEFAULT_UI));
        let rules_path = args.rules.or(file.rules);
        let file_rules = match &rules_path {
            None => Vec::new(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                parse_rules_file(&text).map_err(|message| ConfigError::Parse { path: path.clone(), message })?
            }
        };
        let mut webhooks = file.webhooks;
        webhooks.extend(args.webhooks.into_iter().filter(|u| !u.trim().is_empty()).map(|url| WebhookConfig {
            url,
            bearer_token: None,
            timeout_seconds: 10.0,
            name: None,
        }));
        for (i, hook) in webhooks.iter().enumerate() {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    setting: "webhooks",
                    message: format!("webhook {} url must start with http:// or https://, got {:?}", i + 1, hook.url),
                });
            }
        }
        let alerts = AlertConfig {
            eval_interval: args
                .alert_interval
                .or(duration("alert_interval", file.alert_interval)?)
                .unwrap_or(Duration::from_secs(15)),
            webhooks,
            external_url: args.external_url.or(file.external_url).unwrap_or_else(|| format!("http://{ui}")),
            retry: RetryPolicy::default(),
        };
        let memory_limit = match (args.memory_limit, file.memory_limit) {
            (Some(bytes), _) => bytes,
            (None, Some(text)) => {
                parse_bytes(&text).map_err(|message| ConfigError::Invalid { setting: "memory_limit", message })?
            }
            (None, None) => DEFAULT_MEMORY_LIMIT,
        };
        if memory_limit < MIN_MEMORY_LIMIT {
            return Err(ConfigError::Invalid { setting: "memory_limit", message: "must be at least 128MiB".into() });
        }
        let budget = MemoryBudget::split(memory_limit);
        let mut duckdb_settings = crate::store::default_settings();
        for (key, value) in &mut duckdb_settings {
            if key == "memory_limit" {
                *value = format!("{}B", budget.duckdb_bytes);
            }
        }
        let mut set = |k: String, v: String| match duckdb_settings.iter_mut().find(|(key, _)| *key == k) {
            Some(entry) => entry.1 = v,
            None => duckdb_settings.push((k, v)),
        };
        for (k, v) in file.duckdb_settings {
            set(k, v);
        }
        for kv in args.duckdb_settings {
            let (k, v) = kv.split_once('=').ok_or_else(|| ConfigError::Invalid {
                setting: "duckdb_settings",
                message: format!("write KEY=VALUE, got {kv:?}"),
            })?;
            set(k.trim().to_string(), v.trim().to_string());
        }
        let lake = match (args.lake.or(file.lake), args.lake_data.or(file.lake_data)) {
            (None, None) => None,
            (Some(catalog), Some(data_path)) => Some(LakeConfig {
                catalog,
                data_path,
                extensions: args.lake_extensions.or(file.lake_extensions).ok_or_else(|| ConfigError::Invalid {
                    setting: "lake_extensions",
                    message: "a cluster node needs the directory its lake extensions were installed in".into(),
                })?,
                commit_every: args
                    .lake_commit_every
                    .or(duration("lake_commit_every", file.lake_commit_every)?)
                    .unwrap_or(LakeConfig::DEFAULT_COMMIT_EVERY)
                    .max(Duration::from_millis(1)),
                upkeep: UpkeepConfig {
                    every: args
                        .lake_upkeep_every
                        .or(duration("lake_upkeep_every", file.lake_upkeep_every)?)
                        .unwrap_or(UpkeepConfig::default().every)
                        .max(Duration::from_millis(100)),
                    keep: args
                        .lake_keep_snapshots
                        .or(duration("lake_keep_snapshots", file.lake_keep_snapshots)?)
                        .unwrap_or(UpkeepConfig::default().keep),
                },
            }),
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "lake",
                    message: "a cluster node needs both --lake (the catalog) and --lake-data (the data directory)"
                        .into(),
                })
            }
        };
        let role_list = if args.roles.is_empty() { file.roles } else { args.roles };
        let roles = Roles::parse(&role_list).map_err(|message| ConfigError::Invalid { setting: "roles", message })?;
        if lake.is_none() && roles != Roles::DEFAULT {
            return Err(ConfigError::Invalid {
                setting: "roles",
                message: "a single process has every role; roles need a cluster (--lake and --lake-data)".into(),
            });
        }
        let config = Config {
            otlp_grpc: args.otlp_grpc.or(file.otlp_grpc).unwrap_or_else(|| addr(DEFAULT_OTLP_GRPC)),
            otlp_http: args.otlp_http.or(file.otlp_http).unwrap_or_else(|| addr(DEFAULT_OTLP_HTTP)),
            ui,
            db: args.db.or(file.db).unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            retention: args.retention.or(duration("retention", file.retention)?).unwrap_or(DEFAULT_RETENTION),
            retention_sweep_every: Duration::from_secs(600),
            checkpoints: CheckpointConfig::default(),
            writer: WriterConfig {
                queue_capacity_bytes: args.queue_bytes.or(file.queue_bytes).unwrap_or(budget.write_queue_bytes),
                flush_interval: args
                    .flush_interval
                    .or(duration("flush_interval", file.flush_interval)?)
                    .unwrap_or(writer_default.flush_interval),
                flush_rows: args.flush_rows.or(file.flush_rows).unwrap_or(writer_default.flush_rows),
                feed_capacity_bytes: budget.feed_bytes,
                max_stitch_lag: match args.max_stitch_lag.or(duration("max_stitch_lag", file.max_stitch_lag)?) {
                    Some(lag) if lag.is_zero() => None,
                    Some(lag) => Some(lag),
                    None => writer_default.max_stitch_lag,
                },
                ..writer_default
            },
            max_request_bytes: args.max_request_bytes.or(file.max_request_bytes).unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            correlation_keys,
            auth_token: args.auth_token.or(file.auth_token).filter(|t| !t.is_empty()),
            stitch: StitchConfig {
                quiet_period: args
                    .settle_after
                    .or(duration("settle_after", file.settle_after)?)
                    .unwrap_or(stitch_default.quiet_period),
                key_trace_limit: args.join_key_limit.or(file.join_key_limit).unwrap_or(stitch_default.key_trace_limit),
                max_flow_spans: args
                    .max_flow_spans
                    .or(file.max_flow_spans)
                    .unwrap_or(stitch_default.max_flow_spans)
                    .max(1),
                destination_patterns: DestinationPatterns {
                    dead_letter: patterns(args.dead_letter_patterns, file.dead_letter_patterns)
                        .unwrap_or(stitch_default.destination_patterns.dead_letter.clone()),
                    retry: patterns(args.retry_patterns, file.retry_patterns)
                        .unwrap_or(stitch_default.destination_patterns.retry.clone()),
                },
                configured_queue_aliases: file.queue_aliases,
                join_window: args
                    .join_window
                    .or(duration("join_window", file.join_window)?)
                    .unwrap_or(stitch_default.join_window),
                cache_spans: budget.stitcher_spans,
                // A round's rows join the working set; a quarter of it keeps rounds short.
                round_rows: budget.stitcher_spans / 4,
                join_filter_bytes: budget.join_filter_bytes,
                threads: args
                    .stitch_threads
                    .or(file.stitch_threads)
                    .unwrap_or(stitch_default.threads)
                    .clamp(1, MAX_STITCH_THREADS),
                ..stitch_default
            },
            file_rules,
            listen: Default::default(),
            metrics_series_limit: args.metrics_series_limit.or(file.metrics_series_limit).unwrap_or(100),
            allowed_hosts: if args.allowed_hosts.is_empty() { file.allowed_hosts } else { args.allowed_hosts },
            alerts,
            duckdb_settings,
            memory_limit,
            lake,
            roles,
        };
        if config.writer.queue_capacity_bytes < 1024 {
            return Err(ConfigError::Invalid { setting: "queue_bytes", message: "must be at least 1024".into() });
        }
        if config.max_request_bytes < 1024 {
            return Err(ConfigError::Invalid { setting: "max_request_bytes", message: "must be at least 1024".into() });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let file: FileConfig = toml::from_str(
            "ui = \"127.0.0.1:9000\"\notlp_http = \"127.0.0.1:9001\"\nretention = \"2d\"\ncorrelation_keys = [\"app.order_id\"]\nflush_interval = \"50ms\"",
        )
        .unwrap();
        let args = ServeArgs { ui: Some("127.0.0.1:7000".parse().unwrap()), ..Default::default() };
        let c = Config::resolve(args, file).unwrap();
        assert_eq!(c.ui.to_string(), "127.0.0.1:7000");
        assert_eq!(c.otlp_http.to_string(), "127.0.0.1:9001");
        assert_eq!(c.otlp_grpc.to_string(), DEFAULT_OTLP_GRPC);
        assert_eq!(c.retention, Duration::from_secs(2 * 86400));
        assert_eq!(c.writer.flush_interval, Duration::from_millis(50));
        assert_eq!(c.correlation_keys, vec!["app.order_id".to_string()]);
        assert_eq!(c.db, PathBuf::from(DEFAULT_DB));
    }

    #[test]
    fn a_cluster_needs_its_catalog_data_and_extensions_and_roles_need_a_cluster() {
        let args = |lake: Option<&str>, data: Option<&str>, ext: Option<&str>, roles: &[&str]| ServeArgs {
            lake: lake.map(Into::into),
            lake_data: data.map(Into::into),
            lake_extensions: ext.map(Into::into),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        let resolve = |a| Config::resolve(a, FileConfig::default());
        let node = resolve(args(Some("host=db"), Some("/srv/lake"), Some("/opt/ext"), &["receiver"])).unwrap();
        assert_eq!(node.roles, Roles { receiver: true, stitcher: false, query: false });
        let lake = node.lake.unwrap();
        assert_eq!(lake.commit_every, LakeConfig::DEFAULT_COMMIT_EVERY);
        assert_eq!(lake.upkeep, UpkeepConfig::default());
        let query = ServeArgs {
            lake_upkeep_every: Some(Duration::from_secs(30)),
            lake_keep_snapshots: Some(Duration::ZERO),
            ..args(Some("host=db"), Some("/srv/lake"), Some("/opt/ext"), &["query"])
        };
        let query = resolve(query).unwrap();
        assert_eq!(query.roles, Roles { receiver: false, stitcher: false, query: true });
        let upkeep = query.lake.unwrap().upkeep;
        assert_eq!((upkeep.every, upkeep.keep), (Duration::from_secs(30), Duration::ZERO));
        for bad in [
            args(None, None, None, &["receiver"]),
            args(Some("host=db"), None, Some("/opt/ext"), &[]),
            args(None, Some("/srv/lake"), Some("/opt/ext"), &[]),
            args(Some("host=db"), Some("/srv/lake"), None, &[]),
            args(Some("host=db"), Some("/srv/lake"), Some("/opt/ext"), &["writer"]),
        ] {
            assert!(resolve(bad).is_err());
        }
        assert_eq!(resolve(args(None, None, None, &[])).unwrap().roles, Roles::DEFAULT);
    }

    #[test]
    fn the_memory_budget_is_shared_and_parsed() {
        let b = MemoryBudget::split(1 << 30);
        assert_eq!(b.duckdb_bytes, 448 << 20);
        assert_eq!(b.write_queue_bytes, 128 << 20);
        assert_eq!(b.feed_bytes, 32 << 20);
        assert_eq!(b.stitcher_spans, 65_536);
        assert_eq!(b.join_filter_bytes, 64 << 20);
        for (text, want) in
            [("1GiB", Ok(1 << 30)), ("512MiB", Ok(512 << 20)), ("2GB", Ok(2_000_000_000)), ("4096", Ok(4096))]
        {
            assert_eq!(parse_bytes(text), want, "{text}");
        }
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("1TiB").unwrap_err().contains("unknown unit"));
        let c =
            Config::resolve(ServeArgs { memory_limit: Some(256 << 20), ..Default::default() }, FileConfig::default())
                .unwrap();
        assert!(c.duckdb_settings.contains(&("memory_limit".into(), format!("{}B", 112 << 20))));
        assert_eq!(c.writer.queue_capacity_bytes, 32 << 20);
        assert_eq!(c.stitch.cache_spans, 16_384);
        assert_eq!(c.stitch.round_rows, 4_096);
        let err =
            Config::resolve(ServeArgs { memory_limit: Some(1 << 20), ..Default::default() }, FileConfig::default());
        assert!(err.is_err(), "too small a budget is refused");
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(toml::from_str::<FileConfig>("uii = \"x\"").unwrap_err().to_string().contains("uii"));
        let file: FileConfig = toml::from_str("retention = \"soon\"").unwrap();
        let err = Config::resolve(ServeArgs::default(), file).unwrap_err().to_string();
        assert!(err.contains("retention"), "{err}");
    }

    #[test]
    fn stitch_threads_stay_between_one_and_the_most() {
        for (asked, got) in [(Some(0), 1), (Some(3), 3), (Some(1_000_000), MAX_STITCH_THREADS)] {
            let c = Config::resolve(ServeArgs { stitch_threads: asked, ..Default::default() }, FileConfig::default());
            assert_eq!(c.unwrap().stitch.threads, got, "{asked:?}");
        }
    }
}
