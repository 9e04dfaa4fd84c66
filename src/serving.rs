//! Serving: `rerank.v1.Reranker`, `grpc.health.v1` and gRPC reflection (v1
//! and v1alpha) on one port, the transport settings (TLS or mutual TLS,
//! HTTP/2 keepalive, concurrent streams, connection age), the Prometheus
//! endpoint, and the server's life.
//!
//! The life: the port is bound before the model loads, and health says
//! NOT_SERVING (Reranker calls get UNAVAILABLE) until every replica is warm;
//! then SERVING — until the batcher has taken every worker out of service
//! (their devices failed), when it says NOT_SERVING for good while the
//! server, still up, answers UNAVAILABLE. On the shutdown signal health
//! flips to NOT_SERVING at once,
//! the server keeps accepting for the drain delay (so that load balancers
//! notice), then stops accepting and finishes every accepted request within
//! the grace period, and the model threads are joined.
//!
//! Owns: that order. Must never: load the model itself (`server::load`
//! does), say SERVING before the model is warm, after shutdown began or
//! with no worker left, or drop an accepted request on a shutdown that
//! finishes within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::config::{ServerConfig, TlsFiles};
use crate::error::Error;
use crate::grpc::pb::reranker_server::RerankerServer;
use crate::grpc::service::{Ready, RerankService};
use crate::grpc::{deadline, pb};
use crate::metrics::Metrics;
use crate::server::{Loaded, Parts};

/// The health service names that follow the model: the whole server ("")
/// and the Reranker.
const RERANKER: &str = <RerankerServer<RerankService> as NamedService>::NAME;
const HEALTH_NAMES: [&str; 2] = ["", RERANKER];

/// Serves on `listener` (and Prometheus on `metrics`) while `load` loads the
/// model, until `shutdown` resolves; then drains as the module says.
/// Returns an error when loading fails, or when the grace period ends with
/// requests unfinished.
pub async fn serve<L, S>(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: ServerConfig,
    load: L,
    shutdown: S,
) -> Result<(), Error>
where
    L: Future<Output = Result<Loaded, Error>>,
    S: Future<Output = ()>,
{
    serve_model(
        listener,
        metrics_listener,
        config,
        Model::Loading(load),
        shutdown,
    )
    .await
}

/// `serve` with a model already loaded: SERVING from the first connection.
pub async fn serve_loaded<S>(
    listener: TcpListener,
    config: ServerConfig,
    loaded: Loaded,
    shutdown: S,
) -> Result<(), Error>
where
    S: Future<Output = ()>,
{
    let model = Model::<std::future::Ready<Result<Loaded, Error>>>::Loaded(Box::new(loaded));
    serve_model(listener, None, config, model, shutdown).await
}

enum Model<L> {
    Loaded(Box<Loaded>),
    Loading(L),
}

async fn serve_model<L, S>(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: ServerConfig,
    model: Model<L>,
    shutdown: S,
) -> Result<(), Error>
where
    L: Future<Output = Result<Loaded, Error>>,
    S: Future<Output = ()>,
{
    let addr = local_addr(&listener)?;
    let ready = Ready::default();
    // Weak: a scrape still in flight at exit must not keep the model alive.
    let stats_source = Arc::downgrade(&ready);
    let metrics = Arc::new(Metrics::new(Arc::new(move || {
        stats_source.upgrade()?.get().map(|infer| infer.stats())
    })));
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let (preloaded, load) = match model {
        Model::Loaded(loaded) => {
            let Parts {
                infer,
                model_threads,
                live_workers,
            } = loaded.into_parts();
            let _ = ready.set(infer);
            set_health(&health, ServingStatus::Serving).await;
            (Some((model_threads, live_workers)), None)
        }
        Model::Loading(load) => (None, Some(load)),
    };

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| Error::Server(format!("gRPC reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let (draining, draining_seen) = tokio::sync::watch::channel(false);
    let reranker = RerankerServer::new(RerankService::new(
        Arc::clone(&ready),
        Arc::clone(&metrics),
        draining_seen,
    ))
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    let reranker = InterceptedService::new(reranker, deadline::stamp);

    let mut builder = Server::builder()
        .http2_keepalive_interval(config.keepalive_interval)
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .max_concurrent_streams(config.max_concurrent_streams);
    if let Some(age) = config.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(files) = &config.tls {
        builder = builder
            .tls_config(tls_config(files)?)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    }
    let (stop_accepting, stopped_accepting) = oneshot::channel::<()>();
    let grpc = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(reranker)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped_accepting.await;
        });
    let mut grpc = tokio::spawn(grpc);
    if preloaded.is_none() {
        tracing::info!(%addr, tls = config.tls.is_some(), "listening; the model is loading (health: NOT_SERVING)");
    }

    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    let metrics_task = match metrics_listener {
        Some(listener) => {
            let metrics_addr = local_addr(&listener)?;
            tracing::info!(addr = %metrics_addr, "serving Prometheus metrics at /metrics");
            Some(tokio::spawn(serve_metrics(
                listener,
                Arc::clone(&metrics),
                metrics_stopped,
            )))
        }
        None => None,
    };

    // Load, noting a shutdown signal that comes meanwhile: the load goes on
    // to its end (a replica may be mid-forward on its thread), then the
    // server stops without ever saying SERVING.
    tokio::pin!(shutdown);
    let mut shutdown_seen = false;
    let (model_threads, mut live_workers) = match (preloaded, load) {
        (Some(parts), _) => parts,
        (None, load) => {
            let load = load.expect("a model is either loaded or loading");
            tokio::pin!(load);
            let loaded = loop {
                tokio::select! {
                    loaded = &mut load => break loaded,
                    _ = &mut shutdown, if !shutdown_seen => {
                        shutdown_seen = true;
                        tracing::info!("shutdown signal received while loading; stopping once loaded");
                    }
                }
            };
            match loaded {
                Ok(loaded) => {
                    let Parts {
                        infer,
                        model_threads,
                        live_workers,
                    } = loaded.into_parts();
                    let _ = ready.set(infer);
                    (model_threads, live_workers)
                }
                Err(error) => {
                    let _ = stop_accepting.send(());
                    end_health_watches(health).await;
                    let _ = grpc.await;
                    stop(metrics_task, stop_metrics).await;
                    return Err(error);
                }
            }
        }
    };
    if !shutdown_seen {
        set_health(&health, ServingStatus::Serving).await;
        tracing::info!(%addr, "serving rerank.v1.Reranker");
        tokio::select! {
            _ = &mut shutdown => {}
            _ = no_worker_left(&mut live_workers) => {
                // The batcher logged why; requests now get UNAVAILABLE.
                set_health(&health, ServingStatus::NotServing).await;
                tracing::error!("health says NOT_SERVING: no worker is left in service");
                shutdown.await;
            }
        }
    }

    set_health(&health, ServingStatus::NotServing).await;
    tracing::info!(
        drain_delay_ms = config.drain_delay.as_millis() as u64,
        grace_period_ms = config.grace_period.as_millis() as u64,
        "draining: health says NOT_SERVING; still accepting for the drain delay"
    );
    // A deliberate wait: load balancers need this long to see NOT_SERVING.
    tokio::time::sleep(config.drain_delay).await;
    tracing::info!("no longer accepting; finishing accepted requests");
    let _ = stop_accepting.send(());
    // Long-lived calls would hold the drain open until the grace period:
    // health watches end, and streams answer what they have read and end.
    let _ = draining.send(true);
    end_health_watches(health).await;
    let left = config.grace_period.saturating_sub(config.drain_delay);
    let finished = match tokio::time::timeout(left, &mut grpc).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Error::Server(format!("the gRPC server failed: {e}"))),
        Ok(Err(e)) => Err(Error::Server(format!("the gRPC server task failed: {e}"))),
        Err(_) => {
            grpc.abort();
            let _ = grpc.await;
            Err(Error::Server(format!(
                "the grace period ({} s) ended with requests unfinished; they were dropped",
                config.grace_period.as_secs_f64()
            )))
        }
    };
    stop(metrics_task, stop_metrics).await;
    // Every handler, and with them every ModelClient, is gone once `ready`
    // is (the metrics hold it weakly): the model threads finish their last
    // job and end.
    drop(ready);
    tokio::task::spawn_blocking(move || drop(model_threads))
        .await
        .map_err(|e| Error::Server(format!("joining the model threads failed: {e}")))?;
    finished
}

/// Resolves once the batcher has no worker in service; never, if the
/// batcher ends first (it only ends once the server stops).
async fn no_worker_left(live_workers: &mut tokio::sync::watch::Receiver<usize>) {
    if live_workers.wait_for(|&live| live == 0).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(|e| Error::Server(format!("the listener has no address: {e}")))
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for name in HEALTH_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Ends every `Watch` call: a watched status that is cleared closes its
/// stream.
async fn end_health_watches(mut health: tonic_health::server::HealthReporter) {
    for name in HEALTH_NAMES {
        health.clear_service_status(name).await;
    }
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, Error> {
    let read = |path: &std::path::Path, flag: &str| {
        std::fs::read(path)
            .map_err(|e| Error::Config(format!("{flag} {}: cannot be read: {e}", path.display())))
    };
    let identity = Identity::from_pem(
        read(&files.cert, "--tls-cert")?,
        read(&files.key, "--tls-key")?,
    );
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "--tls-client-ca")?));
    }
    Ok(tls)
}

/// GET /metrics in the Prometheus text format, until `stop`.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, stop: oneshot::Receiver<()>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics endpoint failed");
    }
}

async fn stop(task: Option<tokio::task::JoinHandle<()>>, stop: oneshot::Sender<()>) {
    let _ = stop.send(());
    if let Some(task) = task {
        // Scrapers hold keep-alive connections; do not wait on them long.
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
}
