//! The `rerankd` binary: parse flags, set up logging, serve until SIGTERM or
//! Ctrl-C. Must never: hold logic that tests cannot reach (all of it lives in
//! the library; `server::load` and `server::run` are what tests call too).

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

use rerankd::config::{Cli, Command};
use rerankd::server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // Renamed when several devices arrived; ignoring it would quietly serve
    // on the CPU a deployment that asked for a GPU.
    if std::env::var_os("RERANKD_DEVICE").is_some() {
        anyhow::bail!("RERANKD_DEVICE is no longer read: set RERANKD_DEVICES (a comma-separated list) instead");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let loaded = server::load(&args.model_config(), args.infer_config())
                .await
                .context("cannot start rerankd")?;
            let listener = TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.addr))?;
            tracing::info!(addr = %listener.local_addr()?, "serving rerank.v1.Reranker");
            server::run(listener, loaded, args.server_config(), shutdown_signal()).await?;
            tracing::info!("stopped");
        }
    }
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
    tracing::info!("shutdown signal received; finishing accepted requests");
}
