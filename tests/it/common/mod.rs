//! Shared helpers for the end-to-end tests: real model directories exported by
//! scripts/setup-models.sh, real servers on 127.0.0.1:0, real tonic clients.
//!
//! Also: a `rerankd serve` child process (`child`), raw HTTP/1.1 (`web`)
//! and HTTP/2 (`bare`) connections, and the client scripts under
//! scripts/ci run off the runtime (`run_script`).
//!
//! Servers are started once per (model, dtype) on their own thread and
//! runtime, and live until the test binary exits, so each test's own runtime
//! only holds its client.

#![allow(dead_code)]

pub mod bare;
pub mod child;
pub mod web;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};

use rerankd::config::{InferConfig, ModelConfig, ServerConfig};
use rerankd::grpc::pb;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use rerankd::model::torch::TorchScorer;
use rerankd::model::{DeviceSpec, DtypeRequest, Scorer};
use rerankd::{server, serving};
use tonic::transport::Channel;

/// The folder holding the exported test models (minilm-pair, tiny-bert,
/// tiny-xlmr).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("RERANKD_TEST_MODELS").unwrap_or_else(|| {
        panic!(
            "RERANKD_TEST_MODELS is not set: run scripts/test.sh, or set it to the folder \
             that `bash scripts/setup-models.sh` prints"
        )
    });
    PathBuf::from(dir)
}

pub fn model_dir(name: &str) -> PathBuf {
    let dir = models_dir().join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: re-run scripts/setup-models.sh",
        dir.display()
    );
    dir
}

pub fn model_config(dir: PathBuf, dtype: &str) -> ModelConfig {
    ModelConfig {
        dir,
        devices: vec![DeviceSpec::Cpu],
        dtype: dtype.parse::<DtypeRequest>().unwrap(),
        threads: 0,
        graph_optimization: true,
    }
}

/// The request limits tests serve with: the product's defaults but a
/// `--max-queue-time` of an hour. Tests share two cores with one another,
/// so a server's start-up speed measurement (the pace admission estimates
/// with) can read the model ten to a thousand times slower than it is, and
/// admission would refuse work without a deadline that a test means to
/// run; the tests of admission set their own deadlines.
pub fn test_infer() -> InferConfig {
    let mut infer = InferConfig::default();
    infer.batcher.max_queue_time = std::time::Duration::from_secs(3600);
    infer
}

/// Starts a server for `config` on its own thread; returns its address once
/// the model is warm and the port is bound, or the start-up error.
pub fn start_server(config: ModelConfig) -> Result<SocketAddr, rerankd::Error> {
    start_server_with(config, test_infer())
}

/// `start_server` with request limits of the test's choosing.
pub fn start_server_with(
    config: ModelConfig,
    infer: InferConfig,
) -> Result<SocketAddr, rerankd::Error> {
    start_server_wrapped(config, infer, |scorer| scorer)
}

/// `start_server_with`, every replica's real scorer passed through `wrap`
/// (`server::load_with`).
pub fn start_server_wrapped<S, W>(
    config: ModelConfig,
    infer: InferConfig,
    wrap: W,
) -> Result<SocketAddr, rerankd::Error>
where
    S: Scorer + 'static,
    W: Fn(TorchScorer) -> S + Clone + Send + 'static,
{
    start_server_serving(config, infer, ServerConfig::default(), wrap)
}

/// `start_server_wrapped` with transport settings of the test's choosing.
pub fn start_server_serving<S, W>(
    config: ModelConfig,
    infer: InferConfig,
    server_config: ServerConfig,
    wrap: W,
) -> Result<SocketAddr, rerankd::Error>
where
    S: Scorer + 'static,
    W: Fn(TorchScorer) -> S + Clone + Send + 'static,
{
    start_servers(config, infer, server_config, wrap).map(|addrs| addrs.grpc)
}

/// A server's ports: gRPC, and the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// `start_server_serving`, returning both ports' addresses.
pub fn start_servers<S, W>(
    config: ModelConfig,
    infer: InferConfig,
    server_config: ServerConfig,
    wrap: W,
) -> Result<Addrs, rerankd::Error>
where
    S: Scorer + 'static,
    W: Fn(TorchScorer) -> S + Clone + Send + 'static,
{
    let (ready, started) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let loaded = match server::load_with(&config, infer, wrap).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    ready.send(Err(error)).unwrap();
                    return;
                }
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ready
                .send(Ok(Addrs {
                    grpc: listener.local_addr().unwrap(),
                    http: http.local_addr().unwrap(),
                }))
                .unwrap();
            let listeners = serving::Listeners {
                grpc: listener,
                metrics: None,
                http: Some(http),
            };
            serving::serve_loaded(listeners, server_config, loaded, std::future::pending())
                .await
                .unwrap();
        });
    });
    started
        .recv()
        .expect("the server thread died during start-up")
}

/// One server per (model, dtype) for the whole test binary.
pub fn shared_server(model: &str, dtype: &str) -> SocketAddr {
    shared_addrs(model, dtype).grpc
}

/// `shared_server`'s gRPC and HTTP addresses.
pub fn shared_addrs(model: &str, dtype: &str) -> Addrs {
    static SERVERS: OnceLock<Mutex<HashMap<(String, String), Addrs>>> = OnceLock::new();
    let mut servers = SERVERS.get_or_init(Default::default).lock().unwrap();
    *servers
        .entry((model.to_string(), dtype.to_string()))
        .or_insert_with(|| {
            start_servers(
                model_config(model_dir(model), dtype),
                test_infer(),
                ServerConfig::default(),
                |scorer| scorer,
            )
            .unwrap_or_else(|e| panic!("starting {model} in {dtype}: {e}"))
        })
}

/// A `grpc.health.v1` Watch of the whole server ("") over `channel`: the
/// server changes "" after every service, so once it reports a status, every
/// service reports it too.
pub async fn watch_health(
    channel: Channel,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next status a health watch reports, or `None` when it has ended.
pub async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> Option<i32> {
    use tokio_stream::StreamExt;
    watch.next().await.map(|m| m.unwrap().status)
}

/// A plaintext channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn client(addr: SocketAddr) -> RerankerClient<Channel> {
    RerankerClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

pub fn request(query: &str, documents: &[&str]) -> pb::RerankRequest {
    pb::RerankRequest {
        query: query.to_string(),
        documents: documents.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

/// The exporter's golden set of a model directory.
#[derive(serde::Deserialize)]
pub struct Golden {
    pub max_length: usize,
    pub groups: Vec<GoldenGroup>,
}

#[derive(serde::Deserialize)]
pub struct GoldenGroup {
    pub query: String,
    pub documents: Vec<String>,
    pub scores: Vec<f32>,
}

pub fn golden(model: &str) -> Golden {
    let text = std::fs::read_to_string(model_dir(model).join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Scores in input order from a response's results.
pub fn scores_by_index(response: &pb::RerankResponse, documents: usize) -> Vec<f32> {
    let mut scores = vec![f32::NAN; documents];
    for result in &response.results {
        scores[result.index as usize] = result.score;
    }
    scores
}

/// What a client script printed, stdout and stderr apart.
pub struct ScriptRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    /// Both streams, for failure messages and searching.
    pub fn log(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `bash SCRIPT ARGS` (SCRIPT relative to the repository) with `env`,
/// off the runtime (the server under test may share it).
pub async fn run_script(script: &str, args: Vec<String>, env: Vec<(String, String)>) -> ScriptRun {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(&path)
            .args(args)
            .envs(env)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
    })
    .await
    .unwrap();
    ScriptRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
