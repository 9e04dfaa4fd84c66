//! End to end for serving in the real stack (real model, real port): health
//! (of the server, the Reranker and TEI's services) says NOT_SERVING while
//! the model loads, SERVING once warm, NOT_SERVING again from shutdown, and
//! `Watch` and the HTTP port's /health follow it; reflection (v1 and v1alpha)
//! lists the services; the metrics endpoint exposes every metric README
//! documents, with plausible values after traffic (TEI's calls counted
//! too), and a TEI `RerankStream` still being sent ends UNAVAILABLE on the
//! drain; TLS and mutual TLS
//! connect with good certificates and refuse bad ones.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::web;
use crate::common::*;
use rerankd::config::{InferConfig, ServerConfig, TlsFiles};
use rerankd::grpc::{pb, tei_pb};
use rerankd::{server, serving};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A server started through `serving::serve`, whose load waits for
/// `release` and which stops on `shutdown`.
struct Served {
    addr: SocketAddr,
    metrics: SocketAddr,
    /// The HTTP API's port.
    http: SocketAddr,
    release: Option<oneshot::Sender<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<Result<(), rerankd::Error>>,
}

fn serve(config: ServerConfig) -> Served {
    let (release, released) = oneshot::channel::<()>();
    let (shutdown, shutdown_seen) = oneshot::channel::<()>();
    let (addrs, bound) = std::sync::mpsc::channel();
    let (finished, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs
                .send((
                    listener.local_addr().unwrap(),
                    metrics.local_addr().unwrap(),
                    http.local_addr().unwrap(),
                ))
                .unwrap();
            let model = model_config(model_dir("tiny-bert"), "fp32");
            let load = async move {
                let _ = released.await;
                server::load(&model, test_infer()).await
            };
            let shutdown = async move {
                let _ = shutdown_seen.await;
            };
            let listeners = serving::Listeners {
                grpc: listener,
                metrics: Some(metrics),
                http: Some(http),
            };
            let outcome = serving::serve(listeners, config, load, shutdown).await;
            let _ = finished.send(outcome);
        });
    });
    let (addr, metrics, http) = bound.recv().unwrap();
    Served {
        addr,
        metrics,
        http,
        release: Some(release),
        shutdown: Some(shutdown),
        done,
    }
}

/// Lets the model load and waits until health says SERVING.
async fn release_and_wait(served: &mut Served) {
    served.release.take().unwrap().send(()).unwrap();
    let mut watch = watch_health(channel(served.addr).await).await;
    while next_status(&mut watch).await != Some(ServingStatus::Serving as i32) {}
}

fn quick_drain() -> ServerConfig {
    ServerConfig {
        drain_delay: Duration::from_millis(300),
        grace_period: Duration::from_secs(60),
        ..ServerConfig::default()
    }
}

/// The health names that follow the model: the whole server and each API.
const SERVICES: [&str; 4] = ["", "rerank.v1.Reranker", "tei.v1.Rerank", "tei.v1.Info"];

async fn health(addr: SocketAddr) -> HealthClient<Channel> {
    HealthClient::new(channel(addr).await)
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// GET /metrics, over a plain HTTP/1.1 connection.
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample `name{labels}` (labels as printed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_loading_serving_when_warm_and_not_serving_on_shutdown() {
    // Long enough a drain to ask the HTTP port's /health during it.
    let mut served = serve(ServerConfig {
        drain_delay: Duration::from_secs(2),
        ..quick_drain()
    });
    let mut health = health(served.addr).await;
    let mut watch = watch_health(channel(served.addr).await).await;
    assert_eq!(
        next_status(&mut watch).await,
        Some(ServingStatus::NotServing as i32)
    );
    for service in SERVICES {
        assert_eq!(
            check(&mut health, service).await,
            ServingStatus::NotServing as i32,
            "{service}"
        );
    }
    let mut rerank = client(served.addr).await;
    let status = rerank
        .rerank(request("q", &["a document"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("still loading"), "{status:?}");
    let mut tei = tei_pb::info_client::InfoClient::new(channel(served.addr).await);
    let status = tei.info(tei_pb::InfoRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The HTTP port says the same.
    let http_health = web::call(served.http, "GET", "/health", None).await;
    assert_eq!(http_health.status, 503);
    assert_eq!(http_health.json()["message"], status.message());
    assert_eq!(
        sample(&scrape(served.metrics).await, "rerankd_model_ready"),
        Some(0.0)
    );

    served.release.take().unwrap().send(()).unwrap();
    assert_eq!(
        next_status(&mut watch).await,
        Some(ServingStatus::Serving as i32)
    );
    for service in SERVICES {
        assert_eq!(
            check(&mut health, service).await,
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
    assert_eq!(
        web::call(served.http, "GET", "/health", None).await.status,
        200
    );
    let response = rerank
        .rerank(request("q", &["a document", "another"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);

    served.shutdown.take().unwrap().send(()).unwrap();
    assert_eq!(
        next_status(&mut watch).await,
        Some(ServingStatus::NotServing as i32)
    );
    // Draining: /health is 503 at once, and requests are still served
    // while the drain delay runs.
    let draining = web::call(served.http, "GET", "/health", None).await;
    assert_eq!(draining.status, 503, "{}", draining.body);
    let body = serde_json::json!({"query": "q", "documents": ["a document"]});
    assert_eq!(
        web::post(served.http, "/v1/rerank", &body).await.status,
        200
    );
    // The drain ends the watch instead of waiting on it.
    assert_eq!(next_status(&mut watch).await, None);
    let outcome = tokio::task::spawn_blocking(move || served.done.recv().unwrap())
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha;

    let mut served = serve(quick_drain());
    release_and_wait(&mut served).await;
    let channel = channel(served.addr).await;
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut v1 = ServerReflectionClient::new(channel.clone());
    let mut answers = v1
        .server_reflection_info(tokio_stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "rerank.v1.Reranker".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let listed = answers.next().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("{listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "rerank.v1.Reranker",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == service), "{names:?}");
    }
    let file = answers.next().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::FileDescriptorResponse(file)) = file else {
        panic!("{file:?}");
    };
    assert!(!file.file_descriptor_proto.is_empty());

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        }]))
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{:?}", answers.next().await.unwrap().unwrap());
    assert!(listed.contains("rerank.v1.Reranker"), "{listed}");
    stop(served).await;
}

async fn stop(mut served: Served) {
    // A request that completes first: no batch may still compute at exit.
    let mut rerank = client(served.addr).await;
    rerank.rerank(request("q", &["a"])).await.unwrap();
    served.shutdown.take().unwrap().send(()).unwrap();
    let outcome = tokio::task::spawn_blocking(move || served.done.recv().unwrap())
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// Metric names README's metrics table documents.
fn documented_metrics() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let names: Vec<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `rerankd_"))
        .map(|rest| format!("rerankd_{}", rest.split('`').next().unwrap()))
        .collect();
    assert!(names.len() >= 15, "README documents {names:?}");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_documented_metric_with_plausible_values() {
    let mut served = serve(quick_drain());
    release_and_wait(&mut served).await;
    let mut rerank = client(served.addr).await;
    for _ in 0..3 {
        rerank
            .rerank(request(
                "where is the market",
                &["a market", "a river", "stone"],
            ))
            .await
            .unwrap();
    }
    let bad = rerank.rerank(request(" ", &["a"])).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let text = scrape(served.metrics).await;
    for name in documented_metrics() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&name) && !l.starts_with('#')),
            "{name} is documented but not exposed:\n{text}"
        );
    }
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        value(r#"rerankd_requests_total{rpc="Rerank",code="OK"}"#),
        3.0
    );
    assert_eq!(
        value(r#"rerankd_requests_total{rpc="Rerank",code="INVALID_ARGUMENT"}"#),
        1.0
    );
    assert_eq!(
        value(r#"rerankd_request_duration_seconds_count{rpc="Rerank"}"#),
        4.0
    );
    assert_eq!(value("rerankd_model_ready"), 1.0);
    assert_eq!(value("rerankd_queued_pairs"), 0.0);
    assert_eq!(value("rerankd_inflight_bytes"), 0.0);
    assert_eq!(
        value("rerankd_max_inflight_bytes"),
        InferConfig::default().max_inflight_bytes as f64
    );
    let cpu = |name: &str| value(&format!(r#"{name}{{device="cpu"}}"#));
    assert!(cpu("rerankd_batches_total") >= 1.0);
    assert_eq!(cpu("rerankd_batch_pairs_total"), 9.0);
    assert_eq!(cpu("rerankd_batch_size_pairs_sum"), 9.0);
    assert!(cpu("rerankd_padded_tokens_total") >= cpu("rerankd_real_tokens_total"));
    assert!(cpu("rerankd_batch_budget_tokens") > 0.0);
    assert!(cpu("rerankd_padded_token_size_bytes") > 0.0);
    assert!(cpu("rerankd_busy_seconds_total") > 0.0);
    assert_eq!(cpu("rerankd_out_of_memory_errors_total"), 0.0);
    // Prometheus conventions: no lifetime ratio gauges, no `_sum` inside a
    // counter's name.
    assert!(!text.contains("padding_efficiency"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("rerankd_") && l.contains("_sum_total")),
        "{text}"
    );
    stop(served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_calls_are_counted_and_a_tei_stream_unfinished_at_the_drain_ends_unavailable() {
    let mut served = serve(quick_drain());
    release_and_wait(&mut served).await;
    let mut tei = tei_pb::rerank_client::RerankClient::new(channel(served.addr).await);
    let texts = vec!["a market".to_string(), "a river".to_string()];
    let asked = tei_pb::RerankRequest {
        query: "where is the market".into(),
        texts,
        ..Default::default()
    };
    assert_eq!(tei.rerank(asked).await.unwrap().into_inner().ranks.len(), 2);
    let empty = tei_pb::RerankRequest {
        query: "q".into(),
        ..Default::default()
    };
    assert_eq!(
        tei.rerank(empty).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let text = scrape(served.metrics).await;
    for (code, count) in [("OK", 1.0), ("INVALID_ARGUMENT", 1.0)] {
        let series = format!(r#"rerankd_requests_total{{rpc="tei.Rerank",code="{code}"}}"#);
        assert_eq!(sample(&text, &series), Some(count), "{series}\n{text}");
    }

    // A stream whose client has not finished sending when the drain begins.
    let (messages, inbound) = tokio::sync::mpsc::channel(1);
    let message = tei_pb::RerankStreamRequest {
        query: "q".into(),
        text: "a document".into(),
        ..Default::default()
    };
    messages.send(message).await.unwrap();
    let mut streaming = tei.clone();
    let call = tokio::spawn(async move {
        streaming
            .rerank_stream(tokio_stream::wrappers::ReceiverStream::new(inbound))
            .await
    });
    // The server holds the message's bytes once it has it.
    let mut rerank = client(served.addr).await;
    while rerank
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
        .inflight_bytes
        == 0
    {}
    served.shutdown.take().unwrap().send(()).unwrap();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    drop(messages);
    let outcome = tokio::task::spawn_blocking(move || served.done.recv().unwrap())
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A CA, a server certificate for localhost signed by it, and a client
/// certificate signed by it, as PEM (also used by tests/it/auth.rs).
pub(crate) struct Pki {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) client_cert: String,
    pub(crate) client_key: String,
}

impl Pki {
    /// The server's certificate and key written into `dir`, as the TLS
    /// files a server takes; with `mutual`, this CA checks its clients.
    pub(crate) fn files(&self, dir: &std::path::Path, mutual: bool) -> TlsFiles {
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TlsFiles {
            cert: write("server.pem", &self.cert),
            key: write("server.key", &self.key),
            client_ca: mutual.then(|| write("client-ca.pem", &self.ca)),
        }
    }
}

pub(crate) fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf("localhost");
    let (client_cert, client_key) = leaf("client");
    Pki {
        ca: ca.pem(),
        cert,
        key,
        client_cert,
        client_key,
    }
}

/// A TLS channel to `addr` trusting `ca`, with a client identity if given.
pub(crate) async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn tls_rerank(
    addr: SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<usize, String> {
    let channel = tls_channel(addr, ca, identity).await?;
    let mut client = rerankd::grpc::pb::reranker_client::RerankerClient::new(channel);
    client
        .rerank(request("q", &["a", "b"]))
        .await
        .map(|r| r.into_inner().results.len())
        .map_err(|e| format!("{e:?}"))
}

/// Waits over TLS until health says SERVING.
async fn wait_tls_ready(addr: SocketAddr, ca: &str, identity: Option<(&str, &str)>) {
    let mut watch = watch_health(tls_channel(addr, ca, identity).await.unwrap()).await;
    while next_status(&mut watch).await != Some(ServingStatus::Serving as i32) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_accept_good_certificates_and_refuse_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki();
    let other = pki();
    let files = good.files(dir.path(), false);

    // TLS: a client trusting the server's CA connects; one trusting
    // another CA, or speaking plaintext, does not.
    let mut served = serve(ServerConfig {
        tls: Some(files.clone()),
        ..quick_drain()
    });
    served.release.take().unwrap().send(()).unwrap();
    wait_tls_ready(served.addr, &good.ca, None).await;
    assert_eq!(tls_rerank(served.addr, &good.ca, None).await, Ok(2));
    assert!(tls_rerank(served.addr, &other.ca, None).await.is_err());
    let plaintext = rerankd::grpc::pb::reranker_client::RerankerClient::connect(format!(
        "http://{}",
        served.addr
    ))
    .await;
    if let Ok(mut plaintext) = plaintext {
        assert!(plaintext.rerank(request("q", &["a"])).await.is_err());
    }
    tls_rerank(served.addr, &good.ca, None).await.unwrap();
    served.shutdown.take().unwrap().send(()).unwrap();
    let done = tokio::task::spawn_blocking(move || served.done.recv().unwrap());
    assert!(done.await.unwrap().is_ok());

    // Mutual TLS: only a client certificate from the client CA gets in.
    let mut served = serve(ServerConfig {
        tls: Some(good.files(dir.path(), true)),
        ..quick_drain()
    });
    served.release.take().unwrap().send(()).unwrap();
    let good_identity = Some((good.client_cert.as_str(), good.client_key.as_str()));
    wait_tls_ready(served.addr, &good.ca, good_identity).await;
    assert_eq!(
        tls_rerank(served.addr, &good.ca, good_identity).await,
        Ok(2)
    );
    assert!(tls_rerank(served.addr, &good.ca, None).await.is_err());
    let stranger = Some((other.client_cert.as_str(), other.client_key.as_str()));
    assert!(tls_rerank(served.addr, &good.ca, stranger).await.is_err());
    tls_rerank(served.addr, &good.ca, good_identity)
        .await
        .unwrap();
    served.shutdown.take().unwrap().send(()).unwrap();
    let done = tokio::task::spawn_blocking(move || served.done.recv().unwrap());
    assert!(done.await.unwrap().is_ok());
}
