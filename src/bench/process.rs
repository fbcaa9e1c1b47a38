//! A flowscope server in a child process, so its CPU time and memory can be measured
//! apart from the load generator's.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BenchError;

pub struct ServerProcess {
    pub child: Child,
    /// The OTLP listeners (both unspecified, `0.0.0.0:0`, on a cluster node that takes no
    /// OTLP).
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub ui: SocketAddr,
}

/// The unspecified address: what a node that takes no OTLP has for its OTLP listeners.
const NO_LISTENER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Clock ticks per second in /proc/<pid>/stat: 100 on every Linux this runs on.
const CLOCK_TICKS: f64 = 100.0;

impl ServerProcess {
    /// Starts `flowscope serve` (this same binary, or `binary`) on port-0 loopback
    /// listeners and waits for it to log their addresses.
    pub fn spawn(binary: &Path, db: &Path, extra: &[&str]) -> Result<ServerProcess, BenchError> {
        Self::spawn_node(binary, db, extra, true)
    }

    /// As [`spawn`](Self::spawn), for a node that takes OTLP only if `takes_otlp` (a
    /// cluster node without the receiver role).
    pub fn spawn_node(binary: &Path, db: &Path, extra: &[&str], takes_otlp: bool) -> Result<ServerProcess, BenchError> {
        // FLOWSCOPE_BENCH_WRAPPER runs the server under a profiler (`heaptrack`, say).
        let mut command = match std::env::var_os("FLOWSCOPE_BENCH_WRAPPER") {
            Some(wrapper) => {
                let mut c = Command::new(wrapper);
                c.arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("serve")
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            // The caller's log filter, but the server's listener lines are how we find it.
            .env(
                "RUST_LOG",
                format!("{},flowscope::server=info", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Server(format!("cannot start {}: {e}", binary.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // The server's own warnings (and, with RUST_LOG, its debug lines) are
                // the benchmark's to show.
                if !line.contains(" INFO ") {
                    eprintln!("server: {line}");
                }
                for (what, marker) in [
                    ("grpc", "OTLP/gRPC listening on "),
                    ("http", "OTLP/HTTP listening on http://"),
                    ("ui", "UI and API listening on http://"),
                ] {
                    if let Some(addr) = line.split(marker).nth(1).and_then(|a| a.trim().parse::<SocketAddr>().ok()) {
                        let _ = tx.send((what, addr));
                    }
                }
            }
        });
        let unused = (!takes_otlp).then_some(NO_LISTENER);
        let (mut grpc, mut http, mut ui) = (unused, unused, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        while grpc.is_none() || http.is_none() || ui.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("grpc", a)) => grpc = Some(a),
                Ok(("http", a)) => http = Some(a),
                Ok((_, a)) => ui = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    return Err(BenchError::Server("the server did not report its listeners".into()));
                }
            }
        }
        Ok(ServerProcess { child, grpc: grpc.unwrap(), http: http.unwrap(), ui: ui.unwrap() })
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// User plus system CPU seconds the server has used.
    pub fn cpu_seconds(&self) -> f64 {
        stat_cpu_seconds(&self.proc_file("stat"))
    }

    /// CPU seconds per thread name (writer, stitcher, tokio workers, DuckDB's threads), to
    /// see which stage the time goes to.
    pub fn cpu_by_thread(&self) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else { return out };
        for task in tasks.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            *out.entry(name).or_insert(0.0) += stat_cpu_seconds(&stat);
        }
        out
    }

    /// Resident memory now (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    fn status_kb(&self, field: &str) -> u64 {
        status_kb(self.child.id(), field)
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    /// SIGTERM, then wait for the graceful shutdown to finish.
    pub fn stop(mut self) -> Result<(), BenchError> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| BenchError::Server(e.to_string()))? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(BenchError::Server(format!("server exited with {status}")))
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(BenchError::Server("the server did not stop within 5 minutes".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// User plus system CPU seconds in the text of a /proc/<pid>/stat (or a task's).
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / CLOCK_TICKS
}

/// A field of /proc/<pid>/status in kB (0 once the process is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// The highest resident memory of a process since the last [`RssPeak::take`], sampled
/// every 20 ms on a thread of its own: VmHWM covers the process's whole life, this one
/// phase of it (start, pages, ingest), so a report can say which phase the peak was in.
pub struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    pub fn watch(server: &ServerProcess) -> RssPeak {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let pid = server.child.id();
        let thread = std::thread::spawn({
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kb(pid, "VmRSS:") * 1024, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        RssPeak { peak, stop, thread: Some(thread) }
    }

    /// The peak since the last call (or the start), and a new phase begins.
    pub fn take(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GETs `path` from the server's UI listener as text.
pub async fn get_text(client: &reqwest::Client, ui: SocketAddr, path: &str) -> Result<String, BenchError> {
    let fail = |e: reqwest::Error| BenchError::Server(format!("GET {path}: {e}"));
    client.get(format!("http://{ui}{path}")).send().await.map_err(fail)?.text().await.map_err(fail)
}

/// A counter from the server's `/metrics`, e.g. `flowscope_committed_items_total{signal="traces"}`.
pub async fn metric(client: &reqwest::Client, ui: SocketAddr, series: &str) -> Result<f64, BenchError> {
    get_text(client, ui, "/metrics")
        .await?
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<f64>().ok()))
        .ok_or_else(|| BenchError::Server(format!("{series} missing from /metrics")))
}

/// How the server answered an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Taken,
    /// Refused retryably (503 / `UNAVAILABLE`): the exporter should back off and retry.
    Refused,
    Failed,
}

/// One client connection exporting traces to the server, over OTLP/gRPC or OTLP/HTTP
/// protobuf, one request at a time as an SDK's exporter does.
pub struct Exporter {
    http: reqwest::Client,
    http_url: String,
    grpc: Option<tonic::client::Grpc<tonic::transport::Channel>>,
}

impl Exporter {
    /// A gRPC exporter when `grpc` (and the server accepts the connection), else HTTP.
    pub async fn connect(server_grpc: SocketAddr, server_http: SocketAddr, grpc: bool) -> Exporter {
        let grpc = match grpc {
            true => tonic::transport::Channel::from_shared(format!("http://{server_grpc}"))
                .expect("a loopback uri")
                .connect()
                .await
                .ok()
                .map(tonic::client::Grpc::new),
            false => None,
        };
        Exporter { http: reqwest::Client::new(), http_url: format!("http://{server_http}/v1/traces"), grpc }
    }

    pub async fn export(&mut self, body: Vec<u8>) -> Answer {
        let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
        match self.grpc.as_mut() {
            Some(g) => {
                let _ = g.ready().await;
                match g.unary(tonic::Request::new(bytes::Bytes::from(body)), path, crate::ingest::grpc::RawCodec).await
                {
                    Ok(_) => Answer::Taken,
                    Err(s) if s.code() == tonic::Code::Unavailable => Answer::Refused,
                    Err(_) => Answer::Failed,
                }
            }
            None => {
                let sent = self.http.post(&self.http_url).header("content-type", "application/x-protobuf").body(body);
                match sent.send().await {
                    Ok(r) if r.status().is_success() => Answer::Taken,
                    Ok(r) if r.status().as_u16() == 503 => Answer::Refused,
                    _ => Answer::Failed,
                }
            }
        }
    }
}
