use anyhow::Context;
use clap::{Parser, Subcommand};
use flowscope::config::{Config, ServeArgs};

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
}

/// glibc gives each thread that allocates its own heap arena (up to eight per core), and
/// memory freed in one arena is not reused by the others: with the writer, the stitcher,
/// DuckDB's workers and tokio's all allocating, that fragmentation showed as 10-15% of peak
/// RSS under overload (BENCHMARKS.md). Two arenas keep it down at no measurable cost.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
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
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    tracing::info!(db = %config.db.display(), "starting flowscope");
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
