//! The `rerankd` binary: parse flags; `serve`: set up logging (human or
//! JSON), bind the ports (gRPC, metrics, HTTP), serve until SIGTERM or Ctrl-C, drain, exit;
//! `bench`: run the load generator (`rerankd_bench::run`, as the
//! `rerankd-bench` binary does) against a running server. Must never: hold
//! logic that tests cannot reach (all of it lives in the library;
//! `server::load` and `serving::serve` are what tests call too).

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use rerankd::config::{Cli, Command, LogFormat, ServeArgs};
use rerankd::{logging, server, serving};

/// Logs to stderr through `logging::lossy_stderr`; the returned guard,
/// dropped at exit, lets the last lines out.
fn init_logging(format: LogFormat) -> anyhow::Result<logging::Flush> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (stderr, flush) = logging::lossy_stderr().context("cannot start the log writer")?;
    // The writer never fails; the fmt layer's own reports of a failed write
    // go to stderr with `eprintln!`, which panics when stderr is closed.
    let logs = tracing_subscriber::fmt()
        .with_writer(stderr)
        .log_internal_errors(false)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object a line; a request's span (id, rpc, traceparent,
        // timings) rides on each of its events.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(flush)
}

fn main() -> anyhow::Result<()> {
    // Before any thread allocates (RELIABILITY.md, "Soak").
    let malloc = rerankd::malloc::tune();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(async {
        match Cli::parse().command {
            Command::Serve(args) => serve(args, malloc).await,
            Command::Bench(args) => {
                rerankd_bench::run(args).await?;
                Ok(())
            }
        }
    });
    // Dropping a runtime waits for every blocking task: tokenizing for a
    // request nobody waits for any more would keep the process alive past
    // its grace period. Serving has ended (and joined the model threads):
    // such work gets a moment to see it was abandoned, no more.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(args: ServeArgs, malloc: Option<i32>) -> anyhow::Result<()> {
    let _flush = init_logging(args.log_format)?;
    tracing::info!(
        mmap_threshold_bytes = ?malloc,
        "glibc malloc's mmap threshold fixed for a long run (None: the environment's own)"
    );
    // Renamed when several devices arrived; ignoring it would quietly serve
    // on the CPU a deployment that asked for a GPU.
    if std::env::var_os("RERANKD_DEVICE").is_some() {
        anyhow::bail!("RERANKD_DEVICE is no longer read: set RERANKD_DEVICES (a comma-separated list) instead");
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let metrics = match args.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let http = match args.http_addr.addr() {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the HTTP API (--http-addr; `off` turns it off)")
        })?),
        None => None,
    };
    let model = args.model_config();
    let infer = args.infer_config();
    serving::serve(
        serving::Listeners {
            grpc: listener,
            metrics,
            http,
        },
        args.server_config(),
        async move { server::load(&model, infer).await },
        shutdown_signal(),
    )
    .await
    .context("rerankd stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}
