use anyhow::Context;
use clap::{Parser, Subcommand};
use flowscope::config::{Config, ServeArgs};

// The stitcher allocates a string per id per span and frees it once the flow is written:
// under glibc's allocator, malloc and free were a quarter of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenTelemetry collector and dashboard for flows across HTTP, gRPC and message queues.
#[derive(Debug, Parser)]
#[command(name = "flowscope", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive OTLP and serve the dashboard (the default).
    Serve(ServeArgs),
    /// Send realistic demo traffic to a running flowscope.
    Demo(flowscope::demo::DemoArgs),
    /// Measure ingest, query latency and overload behaviour (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(flowscope::bench::BenchCommand),
    /// Recompute stored flows with this version's analysis (stop the server first).
    Restitch(RestitchArgs),
}

#[derive(Debug, clap::Args)]
struct RestitchArgs {
    /// Only flows that received spans since then: an RFC 3339 time or an age such as 6h
    /// [default: every stored flow]
    #[arg(long, value_name = "TIME", conflicts_with = "resume")]
    since: Option<String>,
    /// Finish a restitch that was interrupted, and nothing more
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

/// glibc gives each thread that allocates its own heap arena (up to eight per core), and
/// memory freed in one arena is not reused by the others: with the writer, the stitcher,
/// DuckDB's workers and tokio's all allocating, that fragmentation showed as 10-15% of peak
/// RSS under overload (BENCHMARKS.md). Two arenas keep it down at no measurable cost.
///
/// DuckDB's buffers are 256 KiB blocks allocated through glibc. glibc maps such blocks
/// on their own only until the first is freed, then raises its threshold and carves them
/// from the heaps, where a freed block stays resident until a trim. Under ingest at 20 M
/// spans, RSS peaked at 1,070 MB while DuckDB held 221 MB, just after a checkpoint had
/// freed its rows. A fixed threshold keeps every block mapped on its own, returned to the
/// kernel when freed: 990 MB at the peak, when DuckDB's share was full (BENCHMARKS.md).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Freed memory stays in glibc's heaps (counted in RSS) until it is trimmed: DuckDB frees
/// its buffers (allocated through glibc, not the Rust allocator) as it evicts them, but
/// without a trim the RSS stays at the high-water mark of everything ever allocated at
/// once. Trimming every two seconds keeps RSS near what is live (BENCHMARKS.md). mimalloc, for Rust's allocations, returns freed pages on its own after a second.
fn trim_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let _ = std::thread::Builder::new().name("flowscope-trim".into()).spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

fn main() -> anyhow::Result<()> {
    tune_malloc();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Demo(args)) => Ok(runtime.block_on(flowscope::demo::run(args))?),
        Some(Command::Bench(command)) => {
            runtime.block_on(flowscope::bench::run(command))?;
            Ok(())
        }
        Some(Command::Restitch(args)) => restitch(args),
    }
}

fn restitch(args: RestitchArgs) -> anyhow::Result<()> {
    use flowscope::flows::restitch::{self, Scope};
    let scope = match (&args.since, args.resume) {
        (_, true) => Scope::Resume,
        (None, false) => Scope::All,
        (Some(text), false) => Scope::Since(parse_since(text)?),
    };
    let config = Config::from_args(args.serve)?;
    let store = flowscope::store::Store::open_with(&config.db, &config.duckdb_settings)
        .with_context(|| format!("opening {}", config.db.display()))?;
    restitch::begin(&store, scope)?;
    let started = std::time::Instant::now();
    let done = restitch::run(&store, config.stitch, std::time::Duration::from_secs(2), |p| {
        let share = p.restitch.map_or(1.0, |r| r.done(p.stitched_seq));
        eprintln!(
            "restitch: {:5.1}% (commit {}), {} spans, {} flows written",
            share * 100.0,
            p.stitched_seq,
            p.spans_stitched,
            p.flows_written
        );
    })?;
    eprintln!(
        "restitch: done in {:.1} s: {} spans, {} flows written, stitched through commit {}",
        started.elapsed().as_secs_f64(),
        done.spans_stitched,
        done.flows_written,
        done.stitched_seq
    );
    Ok(())
}

/// An RFC 3339 time, or an age such as `6h` (that long before now), as unix ns.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    let at = match humantime::parse_duration(text) {
        Ok(age) => std::time::SystemTime::now() - age,
        Err(_) => humantime::parse_rfc3339_weak(text)
            .with_context(|| format!("--since {text:?}: write an RFC 3339 time or an age such as 6h"))?,
    };
    let since = at.duration_since(std::time::UNIX_EPOCH).context("--since before 1970")?;
    Ok(since.as_nanos() as i64)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    tracing::info!(db = %config.db.display(), "starting flowscope");
    if std::env::var_os("FLOWSCOPE_NO_TRIM").is_none() {
        trim_freed_memory_periodically();
    }
    let running = flowscope::server::start(config).await?;
    tokio::select! {
        _ = wait_for_signal() => {}
        why = running.writer_died() => {
            // Exit non-zero so a supervisor restarts flowscope; every acknowledged request
            // was committed before it was answered.
            tracing::error!(reason = %why, "the writer died; exiting so that flowscope is restarted");
            std::process::exit(70);
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
