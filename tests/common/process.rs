//! flowscope in a process of its own (the binary cargo built for these tests), for what
//! only a separate process shows: `kill -9`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Node {
    child: Child,
    pub ui: SocketAddr,
    /// The OTLP/HTTP listener, on a node that takes OTLP.
    pub otlp_http: Option<SocketAddr>,
    pub db: PathBuf,
}

impl Node {
    /// Starts `flowscope serve` on loopback port-0 listeners with its database at `db` and
    /// `args`; waits for it to log its UI address (and its OTLP/HTTP one, if `takes_otlp`).
    pub fn spawn(db: &Path, args: &[String], takes_otlp: bool) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowscope"))
            .arg("serve")
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env("RUST_LOG", "warn,flowscope::server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the flowscope binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (what, marker) in
                    [("ui", "UI and API listening on http://"), ("http", "OTLP/HTTP listening on http://")]
                {
                    if let Some(addr) = line.split(marker).nth(1).and_then(|a| a.trim().parse::<SocketAddr>().ok()) {
                        let _ = tx.send((what, addr));
                    }
                }
                if !line.contains(" INFO ") {
                    eprintln!("node: {line}");
                }
            }
        });
        let (mut ui, mut otlp_http) = (None, None);
        while ui.is_none() || (takes_otlp && otlp_http.is_none()) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(("ui", a)) => ui = Some(a),
                Ok((_, a)) => otlp_http = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the node did not report its listeners");
                }
            }
        }
        Node { child, ui: ui.unwrap(), otlp_http, db: db.to_owned() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ui)
    }

    pub fn otlp_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.otlp_http.expect("the node takes OTLP"))
    }

    /// A series of the node's `/metrics` (None while it is missing).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics")).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// `kill -9`: nothing of the node's shutdown runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits (a minute at most) for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the node exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the node did not stop within a minute");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
