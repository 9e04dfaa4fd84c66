//! Serving: `rerank.v1.Reranker`, TEI's `tei.v1.Rerank` and `tei.v1.Info`
//! (`grpc::tei`; all three behind the API keys, when set), `grpc.health.v1`
//! and gRPC reflection (v1 and v1alpha) on one port, the transport settings
//! (TLS or mutual TLS,
//! HTTP/2 keepalive, concurrent streams, connection age, the reset limits
//! that guard against rapid reset, the connection limit and handshake
//! timeout of `listener`, shared with the HTTP port, the Reranker's message budget and read timeout of
//! `grpc::receive`), the Prometheus endpoint, the HTTP API (`http`, on its
//! own port: its health follows gRPC's), and the server's life.
//!
//! The life: the port is bound before the model loads, and health says
//! NOT_SERVING (Reranker calls get UNAVAILABLE) until every replica is warm;
//! then SERVING — until the batcher has taken every worker out of service
//! (their devices failed), when it says NOT_SERVING for good while the
//! server, still up, answers UNAVAILABLE. On the shutdown signal health
//! flips to NOT_SERVING at once (and HTTP's `/health` to 503),
//! the server keeps accepting on both ports for the drain delay (so that
//! load balancers notice), then stops accepting and finishes every accepted
//! request within the grace period, and the model threads are joined.
//!
//! Owns: that order. Must never: load the model itself (`server::load`
//! does), say SERVING before the model is warm, after shutdown began or
//! with no worker left, or drop an accepted request on a shutdown that
//! finishes within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::auth::ApiKeys;
use crate::config::{ServerConfig, TlsFiles};
use crate::error::Error;
use crate::grpc::pb::reranker_server::RerankerServer;
use crate::grpc::receive::Receive;
use crate::grpc::service::{Ready, RerankService};
use crate::grpc::tei::{self, TeiService};
use crate::grpc::{deadline, pb, tei_pb};
use crate::http::router::HttpState;
use crate::listener::{Connections, Limits};
use crate::metrics::{Metrics, ScrapeStats};
use crate::server::{Loaded, Parts};
use crate::worker::thread::ModelThread;

/// The health service names that follow the model: the Reranker, the TEI
/// services and, last, the whole server (""). The whole server changes last
/// so that whoever sees it change (a watch on "") finds every service
/// already changed.
const RERANKER: &str = <RerankerServer<RerankService> as NamedService>::NAME;
const TEI_RERANK: &str = <tei_pb::rerank_server::RerankServer<TeiService> as NamedService>::NAME;
const TEI_INFO: &str = <tei_pb::info_server::InfoServer<TeiService> as NamedService>::NAME;
const HEALTH_NAMES: [&str; 4] = [RERANKER, TEI_RERANK, TEI_INFO, ""];

/// Streams the server may reset on one connection for the client's protocol
/// errors before it closes the connection (ENHANCE_YOUR_CALM): hyper's
/// default, set because tonic would otherwise switch the limit off.
const LOCAL_ERROR_RESETS: usize = 1024;

/// The ports the server serves, bound by its caller (so that a test can
/// bind 127.0.0.1:0 and know the addresses first). A bare gRPC listener
/// converts into one with neither of the others.
pub struct Listeners {
    /// gRPC: the Reranker, health and reflection.
    pub grpc: TcpListener,
    /// Prometheus' `GET /metrics` alone (`--metrics-addr`).
    pub metrics: Option<TcpListener>,
    /// The HTTP API (`--http-addr`).
    pub http: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Self {
        Listeners {
            grpc,
            metrics: None,
            http: None,
        }
    }
}

/// Serves on `listeners` while `load` loads the model, until `shutdown`
/// resolves; then drains as the module says. Returns an error when loading
/// fails, or when the grace period ends with requests unfinished.
pub async fn serve<L, S>(
    listeners: impl Into<Listeners>,
    config: ServerConfig,
    load: L,
    shutdown: S,
) -> Result<(), Error>
where
    L: Future<Output = Result<Loaded, Error>>,
    S: Future<Output = ()>,
{
    serve_model(listeners.into(), config, Model::Loading(load), shutdown).await
}

/// `serve` with a model already loaded: SERVING from the first connection.
pub async fn serve_loaded<S>(
    listeners: impl Into<Listeners>,
    config: ServerConfig,
    loaded: Loaded,
    shutdown: S,
) -> Result<(), Error>
where
    S: Future<Output = ()>,
{
    let model = Model::<std::future::Ready<Result<Loaded, Error>>>::Loaded(Box::new(loaded));
    serve_model(listeners.into(), config, model, shutdown).await
}

enum Model<L> {
    Loaded(Box<Loaded>),
    Loading(L),
}

/// The server's life, step by step: the transport, the model (loaded, or
/// loading while the port answers NOT_SERVING), serving until the
/// shutdown signal, the drain, and the model threads joined last.
async fn serve_model<L, S>(
    listeners: Listeners,
    config: ServerConfig,
    model: Model<L>,
    shutdown: S,
) -> Result<(), Error>
where
    L: Future<Output = Result<Loaded, Error>>,
    S: Future<Output = ()>,
{
    let Listeners {
        grpc: listener,
        metrics: metrics_listener,
        http: http_listener,
    } = listeners;
    let addr = local_addr(&listener)?;
    let ready = Ready::default();
    // Weak: a scrape still in flight at exit must not keep the model alive.
    let stats_source = Arc::downgrade(&ready);
    let metrics = Arc::new(Metrics::new(Arc::new(move || {
        stats_source.upgrade()?.get().map(|infer| ScrapeStats {
            batcher: infer.stats(),
            cache: infer.cache_stats(),
            inflight_bytes: infer.inflight().used(),
            max_inflight_bytes: infer.inflight().limit(),
        })
    })));
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let (serving, serving_seen) = tokio::sync::watch::channel(false);
    let health = Health { reporter, serving };
    set_health(&health, ServingStatus::NotServing).await;
    // Everything that can fail on a bad setting (TLS files, reflection)
    // fails before a model is taken in, so that no model thread is left
    // waiting for clients that an early return would still hold.
    let (draining, draining_seen) = tokio::sync::watch::channel(false);
    let keys = api_keys(&config)?;
    let router = grpc_router(
        &config,
        &keys,
        &ready,
        &metrics,
        health_service,
        draining_seen,
    )?;
    let http_state = HttpState::new(
        Arc::clone(&ready),
        Arc::clone(&metrics),
        serving_seen,
        config.http.clone(),
    );
    let status = crate::status::Sampler::start(Arc::downgrade(&ready), Default::default());
    let status_page = crate::status::router(
        Arc::clone(&ready),
        config.http.served_model_name.clone(),
        &status,
    );
    let http_app = crate::http::server::app(http_state, &config.http, &keys)?.merge(status_page);
    let model = match model {
        Model::Loaded(loaded) => {
            let parts = publish(&ready, *loaded);
            set_health(&health, ServingStatus::Serving).await;
            Ok(parts)
        }
        Model::Loading(load) => Err(load),
    };
    let (stop_accepting, stopped_accepting) = oneshot::channel::<()>();
    let connections = Connections::new(Limits {
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
    });
    let mut grpc = tokio::spawn(router.serve_with_incoming_shutdown(
        connections.incoming(listener),
        async {
            let _ = stopped_accepting.await;
        },
    ));
    let metrics_task = MetricsTask::start(metrics_listener, &metrics)?;
    let mut http = HttpTask::start(http_listener, http_app, &connections)?;

    tokio::pin!(shutdown);
    let (model_threads, live_workers, shutdown_seen) = match model {
        Ok((model_threads, live_workers)) => (model_threads, live_workers, false),
        Err(load) => {
            tracing::info!(%addr, tls = config.tls.is_some(), "listening; the model is loading (health: NOT_SERVING)");
            match load_noting_shutdown(load, shutdown.as_mut()).await {
                (Ok(loaded), shutdown_seen) => {
                    let (model_threads, live_workers) = publish(&ready, loaded);
                    if !shutdown_seen {
                        set_health(&health, ServingStatus::Serving).await;
                    }
                    (model_threads, live_workers, shutdown_seen)
                }
                (Err(error), _) => {
                    let _ = stop_accepting.send(());
                    http.stop_accepting();
                    end_health_watches(health).await;
                    let _ = grpc.await;
                    let _ = http.finish(Duration::from_secs(1)).await;
                    metrics_task.stop().await;
                    status.stop().await;
                    return Err(error);
                }
            }
        }
    };
    if !shutdown_seen {
        serve_until_shutdown(&health, addr, live_workers, shutdown).await;
    }

    let finished = drain(
        &config,
        health,
        Accepting {
            grpc: stop_accepting,
            http: &mut http,
        },
        draining,
        &mut grpc,
    )
    .await;
    metrics_task.stop().await;
    status.stop().await;
    // Every handler, and with them every ModelClient, is gone once `ready`
    // is (the metrics hold it weakly): the model threads finish their last
    // job and end.
    drop(ready);
    tokio::task::spawn_blocking(move || drop(model_threads))
        .await
        .map_err(|e| Error::Server(format!("joining the model threads failed: {e}")))?;
    finished
}

/// The gRPC services on one router, with the transport settings: health,
/// reflection (v1 and v1alpha), and the Reranker behind the API keys (when
/// set) and the deadline interceptor. Health and reflection stay open:
/// probes carry no key, and reflection serves only the public schema.
fn grpc_router(
    config: &ServerConfig,
    keys: &ApiKeys,
    ready: &Ready,
    metrics: &Arc<Metrics>,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    draining: tokio::sync::watch::Receiver<bool>,
) -> Result<tonic::transport::server::Router, Error> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tei_pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| Error::Server(format!("gRPC reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let tei = tei::Services::new(
        ready,
        metrics,
        draining.clone(),
        tei::Limits {
            max_message_bytes: config.max_message_bytes,
            message_read_timeout: config.message_read_timeout,
        },
    );
    let reranker = RerankerServer::new(RerankService::new(
        Arc::clone(ready),
        Arc::clone(metrics),
        draining,
    ))
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    let reranker = Receive::new(
        InterceptedService::new(reranker, deadline::stamp),
        Arc::clone(ready),
        config.max_message_bytes,
        config.message_read_timeout,
    );

    let mut builder = Server::builder()
        .http2_keepalive_interval(config.keepalive_interval)
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(config.max_pending_accept_reset_streams))
        // Unset, tonic 0.14 passes hyper `None`, which turns this limit off
        // (RUSTSEC-2024-0003); hyper's own default is 1024.
        .http2_max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS));
    if let Some(age) = config.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(files) = &config.tls {
        builder = builder
            .tls_config(tls_config(files)?)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    }
    Ok(builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Outermost, so a refused call's message is never read or charged.
        .add_service(keys.guard(reranker))
        .add_service(keys.guard(tei.rerank))
        .add_service(keys.guard(tei.info)))
}

/// The API keys (`auth`), read once for both ports; how many is logged,
/// never which.
fn api_keys(config: &ServerConfig) -> Result<ApiKeys, Error> {
    let keys = ApiKeys::load(&config.api_keys)?;
    tracing::info!(
        api_keys = keys.len(),
        "{}",
        if keys.is_empty() {
            "no API key set: rerank calls need none"
        } else {
            "rerank calls need one of the API keys (authorization: Bearer)"
        }
    );
    Ok(keys)
}

/// Hands a loaded model to the handlers; what is left is the server's to
/// keep: the model threads (joined last) and the live-worker count.
fn publish(
    ready: &Ready,
    loaded: Loaded,
) -> (Vec<ModelThread>, tokio::sync::watch::Receiver<usize>) {
    let Parts {
        infer,
        model_threads,
        live_workers,
    } = loaded.into_parts();
    let _ = ready.set(infer);
    (model_threads, live_workers)
}

/// Loads, noting a shutdown signal that comes meanwhile: the load goes on
/// to its end (a replica may be mid-forward on its thread), and the caller
/// stops without ever saying SERVING. The flag says whether one came.
async fn load_noting_shutdown<L, S>(
    load: L,
    mut shutdown: Pin<&mut S>,
) -> (Result<Loaded, Error>, bool)
where
    L: Future<Output = Result<Loaded, Error>>,
    S: Future<Output = ()>,
{
    tokio::pin!(load);
    let mut shutdown_seen = false;
    loop {
        tokio::select! {
            loaded = &mut load => return (loaded, shutdown_seen),
            _ = &mut shutdown, if !shutdown_seen => {
                shutdown_seen = true;
                tracing::info!("shutdown signal received while loading; stopping once loaded");
            }
        }
    }
}

/// Serves (health already says SERVING, once: a second SERVING would reach
/// every health watcher as a change) until the shutdown signal; NOT_SERVING
/// for good, still up, if the batcher takes every worker out of service
/// first.
async fn serve_until_shutdown<S>(
    health: &Health,
    addr: SocketAddr,
    mut live_workers: tokio::sync::watch::Receiver<usize>,
    shutdown: Pin<&mut S>,
) where
    S: Future<Output = ()>,
{
    tracing::info!(%addr, "serving rerank.v1.Reranker");
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        _ = no_worker_left(&mut live_workers) => {
            // The batcher logged why; requests now get UNAVAILABLE.
            set_health(health, ServingStatus::NotServing).await;
            tracing::error!("health says NOT_SERVING: no worker is left in service");
            shutdown.await;
        }
    }
}

/// NOT_SERVING, accepting for the drain delay, then no longer accepting,
/// long-lived calls told to end, and every accepted request finished within
/// what is left of the grace period.
async fn drain(
    config: &ServerConfig,
    health: Health,
    accepting: Accepting<'_>,
    draining: tokio::sync::watch::Sender<bool>,
    grpc: &mut tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) -> Result<(), Error> {
    set_health(&health, ServingStatus::NotServing).await;
    tracing::info!(
        drain_delay_ms = config.drain_delay.as_millis() as u64,
        grace_period_ms = config.grace_period.as_millis() as u64,
        "draining: health says NOT_SERVING; still accepting for the drain delay"
    );
    // A deliberate wait: load balancers need this long to see NOT_SERVING.
    tokio::time::sleep(config.drain_delay).await;
    tracing::info!("no longer accepting; finishing accepted requests");
    let _ = accepting.grpc.send(());
    accepting.http.stop_accepting();
    // Long-lived calls would hold the drain open until the grace period:
    // health watches end, and streams answer what they have read and end.
    let _ = draining.send(true);
    end_health_watches(health).await;
    let left = config.grace_period.saturating_sub(config.drain_delay);
    let started = tokio::time::Instant::now();
    let grpc_finished = match tokio::time::timeout(left, &mut *grpc).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Error::Server(format!("the gRPC server failed: {e}"))),
        Ok(Err(e)) => Err(Error::Server(format!("the gRPC server task failed: {e}"))),
        Err(_) => {
            grpc.abort();
            let _ = (&mut *grpc).await;
            Err(Error::Server(format!(
                "the grace period ({} s) ended with requests unfinished; they were dropped",
                config.grace_period.as_secs_f64()
            )))
        }
    };
    let http_finished = accepting
        .http
        .finish(left.saturating_sub(started.elapsed()))
        .await
        .map_err(|e| {
            Error::Server(format!(
                "{e} (the grace period of {} s ended)",
                config.grace_period.as_secs_f64()
            ))
        });
    grpc_finished.and(http_finished)
}

/// How the drain stops each port accepting.
struct Accepting<'a> {
    grpc: oneshot::Sender<()>,
    http: &'a mut HttpTask,
}

/// Health as both APIs see it: gRPC's reporter and the flag HTTP's
/// `/health` reads (true while SERVING).
struct Health {
    reporter: tonic_health::server::HealthReporter,
    serving: tokio::sync::watch::Sender<bool>,
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

async fn set_health(health: &Health, status: ServingStatus) {
    health
        .serving
        .send_replace(status == ServingStatus::Serving);
    for name in HEALTH_NAMES {
        health.reporter.set_service_status(name, status).await;
    }
}

/// Ends every `Watch` call: a watched status that is cleared closes its
/// stream. HTTP's `/health` stays 503.
async fn end_health_watches(health: Health) {
    health.serving.send_replace(false);
    let mut reporter = health.reporter;
    for name in HEALTH_NAMES {
        reporter.clear_service_status(name).await;
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
                    [(axum::http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
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

/// The Prometheus endpoint's task, when `--metrics-addr` is set.
struct MetricsTask {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: oneshot::Sender<()>,
}

impl MetricsTask {
    fn start(listener: Option<TcpListener>, metrics: &Arc<Metrics>) -> Result<Self, Error> {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = match listener {
            Some(listener) => {
                let addr = local_addr(&listener)?;
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
                Some(tokio::spawn(serve_metrics(
                    listener,
                    Arc::clone(metrics),
                    stopped,
                )))
            }
            None => None,
        };
        Ok(MetricsTask { task, stop })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if let Some(task) = self.task {
            // Scrapers hold keep-alive connections; do not wait on them long.
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

/// The HTTP API's task, when `--http-addr` is set.
struct HttpTask {
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl HttpTask {
    fn start(
        listener: Option<TcpListener>,
        app: axum::Router,
        connections: &Connections,
    ) -> Result<Self, Error> {
        let Some(listener) = listener else {
            return Ok(HttpTask {
                task: None,
                stop: None,
            });
        };
        let addr = local_addr(&listener)?;
        tracing::info!(%addr, "serving the HTTP API (/v1/rerank, /v2/rerank, /rerank, /health, /info, /metrics)");
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = connections.incoming(listener);
        let task = tokio::spawn(crate::http::server::serve(incoming, app, stopped));
        Ok(HttpTask {
            task: Some(task),
            stop: Some(stop),
        })
    }

    /// No new connections; open ones finish the request they are on.
    fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits up to `left` for the accepted requests to be answered; past
    /// it they are dropped and this says so.
    async fn finish(&mut self, left: Duration) -> Result<(), Error> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let outcome = match tokio::time::timeout(left, &mut *task).await {
            Ok(Ok(served)) => served,
            Ok(Err(e)) => Err(Error::Server(format!("the HTTP server task failed: {e}"))),
            Err(_) => {
                task.abort();
                let _ = (&mut *task).await;
                Err(Error::Server(
                    "HTTP requests were unfinished when the grace period ended; they were \
                     dropped"
                        .into(),
                ))
            }
        };
        self.task = None;
        outcome
    }
}
