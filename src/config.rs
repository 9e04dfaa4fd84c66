//! Command-line flags (every one also an environment variable) and the typed
//! configs they become.
//!
//! Owns: flag names, help texts, and the device-dependent defaults (the
//! bench's flags are the `rerankd-bench` crate's; `bench` only wraps them).
//! Every other default lives once, in the `Default` of the config that
//! takes it (`InferConfig`, the batcher's `BatcherConfig` and
//! `ControllerConfig`, `ServerConfig`), and the flags read theirs from
//! there; the configs built here are the ones the layers take, not
//! repacked on the way. Must never: act on a flag (no loading, binding or
//! logging here); the rest of the crate sees only the typed configs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use rerankd_bench::BenchArgs;

use crate::auth::{ApiKey, KeyError, KeySource};
use crate::batcher::controller::ControllerConfig;
use crate::batcher::scheduler::BatcherConfig;
use crate::model::{DeviceSpec, DtypeRequest};

/// rerankd: a gRPC inference server for cross-encoder rerankers on libtorch.
#[derive(Debug, Parser)]
#[command(name = "rerankd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up and taken apart at once: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a model directory and serve rerank.v1.Reranker over gRPC.
    Serve(ServeArgs),
    /// Drive a running rerankd with concurrent clients and report
    /// throughput, latency and what its batcher did (table, JSON, SVG plot).
    // The same as the `rerankd-bench` binary: that crate owns the flags.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model directory written by scripts/export/export_model.py: model.pt (TorchScript),
    /// tokenizer.json, rerankd.json and, optionally, golden.json.
    #[arg(long, env = "RERANKD_MODEL")]
    pub model: PathBuf,

    /// Address the gRPC server listens on.
    #[arg(long, env = "RERANKD_ADDR", default_value = "0.0.0.0:50051")]
    pub addr: SocketAddr,

    /// Devices to run the model on, comma-separated: cpu, cuda or cuda:N.
    /// Each entry is a worker with its own model replica and batch sizing;
    /// a batch goes to the first idle one (`cuda:0,cuda:1`, or `cpu,cpu` to
    /// split the cores between two CPU workers). All of one kind.
    #[arg(
        long,
        alias = "device",
        env = "RERANKD_DEVICES",
        default_value = "cpu",
        value_delimiter = ','
    )]
    pub devices: Vec<DeviceSpec>,

    /// Precision: auto, fp32, bf16 or fp16. auto picks fp16 on CUDA, bf16 on a
    /// CPU with native bf16 (avx512_bf16 or AMX) and fp32 elsewhere. A lower
    /// precision serves only if it ranks the model's golden set as fp32 does;
    /// otherwise the server falls back to fp32 and says so.
    #[arg(long, env = "RERANKD_DTYPE", default_value = "auto")]
    pub dtype: DtypeRequest,

    /// libtorch intra-op threads per worker; 0 keeps libtorch's default for
    /// one worker, and shares the logical CPUs out between several CPU
    /// workers.
    #[arg(long, env = "RERANKD_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Whether libtorch's graph executor optimises the TorchScript graph
    /// (its profiling executor and fusers): on or off. Off runs the graph as
    /// exported; scores are the same either way, only speed may differ.
    #[arg(
        long,
        env = "RERANKD_GRAPH_OPTIMIZATION",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub graph_optimization: bool,

    /// Most documents one request may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RERANKD_MAX_DOCUMENTS", default_value_t = InferConfig::default().max_documents)]
    pub max_documents: usize,

    /// Largest document (or query) one request may carry, in bytes of
    /// UTF-8; more is INVALID_ARGUMENT naming the document. Texts past the
    /// model's window are cut anyway, so this only bounds tokenizing work.
    #[arg(long, env = "RERANKD_MAX_DOCUMENT_BYTES", default_value_t = InferConfig::default().max_document_bytes)]
    pub max_document_bytes: usize,

    /// Most windows one document may be split into when a request asks for
    /// chunking; more is INVALID_ARGUMENT naming the document. 64 windows of
    /// a 512-token model cover about 24,000 tokens of document.
    #[arg(
        long,
        env = "RERANKD_MAX_CHUNKS_PER_DOCUMENT",
        default_value_t = InferConfig::default().max_chunks_per_document
    )]
    pub max_chunks_per_document: usize,

    /// Most bytes of requests the server holds at once: messages while they
    /// arrive, then their text and token ids until answered. Past it a
    /// request gets RESOURCE_EXHAUSTED with retry-after; the last eighth is
    /// kept for requests of at most 1/64 of it, so a storm of large ones
    /// never shuts out ordinary ones. Peak RSS stays under the idle RSS plus
    /// three times this (README, "Memory").
    #[arg(long, env = "RERANKD_MAX_INFLIGHT_BYTES", default_value_t = InferConfig::default().max_inflight_bytes)]
    pub max_inflight_bytes: usize,

    /// Most pairs the model runs in one forward pass. Batches hold pairs of
    /// every queued request, up to this many and up to the token budget.
    #[arg(long, env = "RERANKD_MAX_BATCH_PAIRS", default_value_t = BatcherConfig::default().max_batch_pairs)]
    pub max_batch_pairs: usize,

    /// How long a batch may wait for more pairs when the queue cannot fill
    /// it, in milliseconds.
    #[arg(
        long,
        env = "RERANKD_MAX_QUEUE_DELAY_MS",
        default_value_t = BatcherConfig::default().max_queue_delay.as_millis() as u64
    )]
    pub max_queue_delay_ms: u64,

    /// Admission bound: a request that would take the queue past this many
    /// pairs gets RESOURCE_EXHAUSTED with a retry-after header.
    #[arg(long, env = "RERANKD_MAX_QUEUED_PAIRS", default_value_t = BatcherConfig::default().max_queued_pairs)]
    pub max_queued_pairs: usize,

    /// Lowest share of real tokens (real ÷ padded) a batch may grow to: a
    /// pair joins a batch only if padding stays under this. Unset, it is
    /// 0.95 on CPU (where a small well-matched batch costs no more per pair
    /// than a large one: benches/batcher.rs) and 0.85 on CUDA.
    #[arg(long, env = "RERANKD_MIN_PADDING_EFFICIENCY", value_parser = parse_fraction)]
    pub min_padding_efficiency: Option<f64>,

    /// What one forward pass costs beyond its tokens, in tokens' worth. A
    /// small batch (under ten times this many padded tokens) takes a pair
    /// past --min-padding-efficiency when the padding that pair adds is at
    /// most this: cheaper than a forward pass of its own. Unset, it is 48
    /// on CPU (MiniLM-L6 on 2 cores: BENCHMARKS.md) and 0 (off) on CUDA.
    #[arg(long, env = "RERANKD_BATCH_OVERHEAD_TOKENS")]
    pub batch_overhead_tokens: Option<usize>,

    /// A worker whose model fails this many batches in a row (a panic, or
    /// an error that is neither out-of-memory nor a broken device; each such
    /// batch's requests get INTERNAL) is taken out of service, as a broken
    /// device is; a batch scored resets the count. With no worker left,
    /// health says NOT_SERVING. 0: never.
    #[arg(
        long,
        env = "RERANKD_MAX_FAILED_BATCHES",
        default_value_t = BatcherConfig::default().max_failed_batches
    )]
    pub max_failed_batches: usize,

    /// A request with no deadline of its own (no grpc-timeout) gets this
    /// many seconds as one: admission refuses it (RESOURCE_EXHAUSTED, HTTP
    /// 503, with retry-after) when the work queued ahead and its own would
    /// take longer, and the queue drops it (DEADLINE_EXCEEDED) once it
    /// passes.
    #[arg(
        long,
        env = "RERANKD_MAX_QUEUE_TIME_SECS",
        default_value_t = BatcherConfig::default().max_queue_time.as_secs_f64(),
        value_parser = parse_positive_secs
    )]
    pub max_queue_time_secs: f64,

    /// Megabytes of an exact score cache shared by every API: a pair the
    /// model has scored (as it saw it: after tokenizing, truncation and
    /// windowing, in the serving precision) is answered from it without
    /// queueing. Least recently used entries go first; 128 bytes an entry.
    /// 0: off.
    #[arg(
        long,
        env = "RERANKD_SCORE_CACHE_MB",
        default_value_t = InferConfig::default().score_cache_bytes >> 20
    )]
    pub score_cache_mb: usize,

    /// Refuse a request at admission when the work queued ahead of it and
    /// its own would not finish before its deadline (or --max-queue-time):
    /// RESOURCE_EXHAUSTED, HTTP 503, with retry-after, before it costs any
    /// model time. Off, such a request queues and may end
    /// DEADLINE_EXCEEDED after using model time.
    #[arg(
        long,
        env = "RERANKD_REFUSE_LATE",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub refuse_late: bool,

    /// The aging guard of the shortest-work-first order: a request whose
    /// (time waited + estimated time left) ÷ its time alone passes this goes
    /// ahead of every request of its priority that has not.
    #[arg(
        long,
        env = "RERANKD_MAX_SLOWDOWN",
        default_value_t = BatcherConfig::default().max_slowdown,
        value_parser = parse_slowdown
    )]
    pub max_slowdown: f64,

    /// Most padded tokens per batch by time, whatever memory allows. 0
    /// measures it at start-up: the smallest batch whose throughput reaches
    /// 95% of the plateau (small on a CPU, large or none on a GPU).
    #[arg(
        long,
        env = "RERANKD_BATCH_TARGET_TOKENS",
        default_value_t = BatcherConfig::default().batch_target_tokens
    )]
    pub batch_target_tokens: usize,

    /// Token budget per batch (pairs × padded length) when device memory
    /// cannot be read (CPU, or no NVIDIA driver).
    #[arg(
        long,
        env = "RERANKD_FALLBACK_BUDGET_TOKENS",
        default_value_t = ControllerConfig::default().fallback_tokens
    )]
    pub fallback_budget_tokens: usize,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "RERANKD_MAX_MESSAGE_BYTES", default_value_t = ServerConfig::default().max_message_bytes)]
    pub max_message_bytes: usize,

    /// Address of the Prometheus endpoint (GET /metrics); off unless set.
    #[arg(long, env = "RERANKD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Address of the HTTP API (Cohere's /v1/rerank and /v2/rerank, Jina's
    /// /v1/rerank, TEI's /rerank, /health, /info, /metrics), or `off`.
    #[arg(long, env = "RERANKD_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR, value_parser = parse_http_addr)]
    pub http_addr: HttpAddr,

    /// Largest HTTP request body, in bytes; more is 413. Unset: the same as
    /// --max-message-bytes, so that a request too large for one API is too
    /// large for the other.
    #[arg(long, env = "RERANKD_HTTP_MAX_BODY_BYTES")]
    pub http_max_body_bytes: Option<usize>,

    /// Seconds an HTTP request may take, from its arrival (its body's
    /// upload included) to its answer; past it the answer is 504 and its
    /// work is dropped (0: no limit).
    #[arg(
        long,
        env = "RERANKD_HTTP_REQUEST_TIMEOUT_SECS",
        default_value_t = HttpConfig::default().request_timeout.map_or(0.0, |d| d.as_secs_f64()),
        value_parser = parse_seconds
    )]
    pub http_request_timeout_secs: f64,

    /// Origins that browsers may call the HTTP API from (CORS), repeated or
    /// comma-separated; `*` for any. Off unless set.
    #[arg(long, env = "RERANKD_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// The model's name in the HTTP API: answers carry it, and a request
    /// whose `model` names another gets 404. Unset: the model directory's
    /// name is reported and any `model` is accepted.
    #[arg(long, env = "RERANKD_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,

    /// After SIGTERM or SIGINT: seconds to keep accepting requests while
    /// health already says NOT_SERVING, so that load balancers stop sending
    /// before the port closes.
    #[arg(
        long,
        env = "RERANKD_DRAIN_DELAY_SECS",
        default_value_t = ServerConfig::default().drain_delay.as_secs_f64(),
        value_parser = parse_seconds
    )]
    pub drain_delay_secs: f64,

    /// After SIGTERM or SIGINT: seconds until the server exits at the latest
    /// (drain delay included). Every accepted request is finished within
    /// it; what is still running when it ends is abandoned and the exit
    /// status is 1.
    #[arg(
        long,
        env = "RERANKD_GRACE_PERIOD_SECS",
        default_value_t = ServerConfig::default().grace_period.as_secs_f64(),
        value_parser = parse_seconds
    )]
    pub grace_period_secs: f64,

    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "RERANKD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "RERANKD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates that client certificates must chain to: mutual
    /// TLS (needs --tls-cert). Clients without such a certificate are
    /// refused during the handshake.
    #[arg(long, env = "RERANKD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// An API key that every rerank.v1.Reranker call must carry as
    /// `authorization: Bearer <key>` (UNAUTHENTICATED without one; health
    /// and reflection stay open). Repeat the flag for several keys; in the
    /// environment variable, separate them with commas. The variable is
    /// read only when no --api-key is given. No key: every call passes.
    /// Prefer the variable or --api-key-file: a flag's value shows in the
    /// process list.
    #[arg(
        long = "api-key",
        env = "RERANKD_API_KEY",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = ApiKeyParser
    )]
    pub api_keys: Vec<ApiKey>,

    /// A file of API keys, one a line (blank lines and lines starting with
    /// # skipped), accepted beside --api-key's. Read at start-up; a file
    /// that holds no key stops the server.
    #[arg(long, env = "RERANKD_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Seconds between HTTP/2 pings on idle connections (0: no pings).
    #[arg(
        long,
        env = "RERANKD_HTTP2_KEEPALIVE_INTERVAL_SECS",
        default_value_t = ServerConfig::default().keepalive_interval.map_or(0, |d| d.as_secs())
    )]
    pub http2_keepalive_interval_secs: u64,

    /// Seconds to wait for a ping's answer before closing the connection.
    #[arg(
        long,
        env = "RERANKD_HTTP2_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = ServerConfig::default().keepalive_timeout.as_secs()
    )]
    pub http2_keepalive_timeout_secs: u64,

    /// Most concurrent streams (calls) per HTTP/2 connection.
    #[arg(
        long,
        env = "RERANKD_MAX_CONCURRENT_STREAMS",
        default_value_t = ServerConfig::default().max_concurrent_streams
    )]
    pub max_concurrent_streams: u32,

    /// HTTP/2 rapid-reset protection (CVE-2023-44487): most calls on one
    /// connection that the client may cancel before the server has taken
    /// them up (RST_STREAM right behind their HEADERS) at one time; past it
    /// the connection is closed with GOAWAY (ENHANCE_YOUR_CALM,
    /// too_many_resets). Cancelling calls the server has taken up never
    /// counts. h2's own default, 20, closed connections of clients that
    /// cancel bursts of stale calls.
    #[arg(
        long,
        env = "RERANKD_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS",
        default_value_t = ServerConfig::default().max_pending_accept_reset_streams
    )]
    pub http2_max_pending_accept_reset_streams: usize,

    /// Seconds after which a connection is asked to close (GOAWAY once its
    /// calls finish), so that clients re-resolve and spread over replicas
    /// (0: never). 300 is a good value behind DNS or a headless Service.
    #[arg(
        long,
        env = "RERANKD_MAX_CONNECTION_AGE_SECS",
        default_value_t = ServerConfig::default().max_connection_age.map_or(0, |d| d.as_secs())
    )]
    pub max_connection_age_secs: u64,

    /// Most open client connections, the gRPC and HTTP ports' together;
    /// one more is closed as soon as it is accepted (a gRPC client sees
    /// UNAVAILABLE, an HTTP client a closed connection), until one closes.
    #[arg(long, env = "RERANKD_MAX_CONNECTIONS", default_value_t = ServerConfig::default().max_connections)]
    pub max_connections: usize,

    /// Seconds a new connection, on the gRPC or the HTTP port, has to send
    /// its first 24 bytes (the HTTP/2 preface, the start of a TLS handshake
    /// or of an HTTP/1.1 request) before it is closed, so connections that
    /// never speak do not pile up (0: no limit).
    #[arg(
        long,
        env = "RERANKD_HANDSHAKE_TIMEOUT_SECS",
        default_value_t = ServerConfig::default().handshake_timeout.map_or(0, |d| d.as_secs())
    )]
    pub handshake_timeout_secs: u64,

    /// Seconds a request message may take to arrive once its first byte
    /// has; past it the call ends with DEADLINE_EXCEEDED and its bytes are
    /// released (0: no limit). 32 MiB at 10 Mbit/s takes 27 s.
    #[arg(
        long,
        env = "RERANKD_MESSAGE_READ_TIMEOUT_SECS",
        default_value_t = ServerConfig::default().message_read_timeout.map_or(0, |d| d.as_secs())
    )]
    pub message_read_timeout_secs: u64,

    /// Log format on stderr: human or json (one object a line).
    #[arg(long, env = "RERANKD_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
}

/// The HTTP API's default address (`--http-addr`).
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

/// Where the HTTP API listens, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAddr {
    Off,
    On(SocketAddr),
}

impl HttpAddr {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            HttpAddr::Off => None,
            HttpAddr::On(addr) => Some(addr),
        }
    }
}

fn parse_http_addr(value: &str) -> Result<HttpAddr, String> {
    match value.trim() {
        "off" | "none" | "" => Ok(HttpAddr::Off),
        addr => addr
            .parse()
            .map(HttpAddr::On)
            .map_err(|_| format!("expected HOST:PORT or off, got {value:?}")),
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Parses `--api-key` without echoing it: clap's error for a value a
/// plain parser refuses quotes the value.
#[derive(Clone)]
struct ApiKeyParser;

impl clap::builder::TypedValueParser for ApiKeyParser {
    type Value = ApiKey;

    fn parse_ref(
        &self,
        _command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<ApiKey, clap::Error> {
        let refused = |why: KeyError| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--api-key (or RERANKD_API_KEY): {why}\n"),
            )
        };
        value
            .to_str()
            .ok_or(refused(KeyError::NotVisibleAscii))?
            .parse()
            .map_err(refused)
    }
}

fn parse_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("expected seconds (0 or more), got {value:?}")),
    }
}

/// How to load and run the model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub dir: PathBuf,
    /// One worker per entry; never empty, all of one kind.
    pub devices: Vec<DeviceSpec>,
    pub dtype: DtypeRequest,
    /// 0 = libtorch's default.
    pub threads: usize,
    /// Whether libtorch optimises the TorchScript graph (`--graph-optimization`).
    pub graph_optimization: bool,
}

/// Per-request limits and how requests are batched.
#[derive(Debug, Clone, PartialEq)]
pub struct InferConfig {
    pub max_documents: usize,
    /// Longest query or document, in bytes.
    pub max_document_bytes: usize,
    /// Most windows per chunked document; at least 1.
    pub max_chunks_per_document: usize,
    /// The in-flight byte budget (`inflight`).
    pub max_inflight_bytes: usize,
    /// Bytes of the exact score cache (`cache`); 0: off.
    pub score_cache_bytes: usize,
    /// What the batcher takes, as it takes it. Start-up fills in only what
    /// the model decides (padding id, token types, the window as the
    /// smallest budget).
    pub batcher: BatcherConfig,
}

/// A forward pass's cost beyond its tokens when none is configured, in
/// tokens' worth: on 2 CPU cores a MiniLM-L6 forward costs about 14 ms plus
/// 0.28 ms a token (BENCHMARKS.md). On CUDA it is not measured yet: off.
pub fn default_batch_overhead(device: DeviceSpec) -> usize {
    match device {
        DeviceSpec::Cpu => 48,
        DeviceSpec::Cuda(_) => 0,
    }
}

/// The padding-efficiency floor when none is configured.
pub fn default_padding_floor(device: DeviceSpec) -> f64 {
    match device {
        DeviceSpec::Cpu => 0.95,
        DeviceSpec::Cuda(_) => 0.85,
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a number from 0 to 1, got {value:?}")),
    }
}

/// Seconds above 0 (and at most a day: `Duration` takes them as given).
fn parse_positive_secs(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!(
            "expected seconds above 0 and at most 86400, got {value:?}"
        )),
    }
}

/// A slowdown bound: at least 1 (a request's latency is never under its
/// time alone).
fn parse_slowdown(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(bound) if bound >= 1.0 && bound.is_finite() => Ok(bound),
        _ => Err(format!("expected a number of at least 1, got {value:?}")),
    }
}

impl Default for InferConfig {
    /// The defaults of `--devices cpu`, the server's default device.
    fn default() -> Self {
        InferConfig {
            max_documents: 1000,
            max_document_bytes: 64 * 1024,
            max_chunks_per_document: 64,
            max_inflight_bytes: 256 * 1024 * 1024,
            score_cache_bytes: 0,
            batcher: BatcherConfig {
                min_padding_efficiency: default_padding_floor(DeviceSpec::Cpu),
                batch_overhead_tokens: default_batch_overhead(DeviceSpec::Cpu),
                ..BatcherConfig::default()
            },
        }
    }
}

/// How to serve gRPC.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_message_bytes: usize,
    /// After the shutdown signal, accepting goes on this long.
    pub drain_delay: Duration,
    /// After the shutdown signal, the server stops within this (at least
    /// `drain_delay`).
    pub grace_period: Duration,
    pub tls: Option<TlsFiles>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub max_connection_age: Option<Duration>,
    pub max_connections: usize,
    pub handshake_timeout: Option<Duration>,
    pub message_read_timeout: Option<Duration>,
    /// Calls a client may cancel before the server takes them up, at one
    /// time on one connection, before it is closed (rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// The HTTP API's settings (its port is bound in `main.rs`).
    pub http: HttpConfig,
    /// The API keys guarded services and routes require (none: open).
    /// Prints as a count, never the keys.
    pub api_keys: KeySource,
}

impl ServerConfig {
    /// `--max-message-bytes` by default, and with it the HTTP body limit's.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
}

/// How to serve the HTTP API (`src/http`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// From a request's arrival to its answer, at most; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Origins allowed by CORS (`*`: any); empty: no CORS headers.
    pub cors_allow_origins: Vec<String>,
    /// The model's name to HTTP clients; `None`: the model directory's,
    /// and any `model` in a request is accepted.
    pub served_model_name: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: ServerConfig::DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: Some(Duration::from_secs(60)),
            cors_allow_origins: Vec::new(),
            served_model_name: None,
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Mutual TLS: client certificates must chain to these.
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: ServerConfig::DEFAULT_MAX_MESSAGE_BYTES,
            drain_delay: Duration::from_secs(5),
            grace_period: Duration::from_secs(30),
            tls: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
            max_connection_age: None,
            max_connections: 10_000,
            handshake_timeout: Some(Duration::from_secs(10)),
            message_read_timeout: Some(Duration::from_secs(60)),
            max_pending_accept_reset_streams: 1024,
            http: HttpConfig::default(),
            api_keys: KeySource::default(),
        }
    }
}

impl ServeArgs {
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            dir: self.model.clone(),
            devices: self.devices.clone(),
            dtype: self.dtype,
            threads: self.threads,
            graph_optimization: self.graph_optimization,
        }
    }

    pub fn infer_config(&self) -> InferConfig {
        // Devices are all of one kind (start-up refuses a mix); the first
        // decides the device-dependent defaults.
        let device = self.devices.first().copied().unwrap_or(DeviceSpec::Cpu);
        InferConfig {
            max_documents: self.max_documents,
            max_document_bytes: self.max_document_bytes,
            max_chunks_per_document: self.max_chunks_per_document.max(1),
            max_inflight_bytes: self.max_inflight_bytes,
            score_cache_bytes: self.score_cache_mb.saturating_mul(1 << 20),
            batcher: BatcherConfig {
                max_batch_pairs: self.max_batch_pairs.max(1),
                max_queue_delay: Duration::from_millis(self.max_queue_delay_ms),
                max_queued_pairs: self.max_queued_pairs,
                min_padding_efficiency: self
                    .min_padding_efficiency
                    .unwrap_or_else(|| default_padding_floor(device)),
                batch_overhead_tokens: self
                    .batch_overhead_tokens
                    .unwrap_or_else(|| default_batch_overhead(device)),
                controller: ControllerConfig {
                    fallback_tokens: self.fallback_budget_tokens,
                    ..ControllerConfig::default()
                },
                max_failed_batches: self.max_failed_batches,
                max_queue_time: Duration::from_secs_f64(self.max_queue_time_secs),
                refuse_late: self.refuse_late,
                max_slowdown: self.max_slowdown,
                batch_target_tokens: self.batch_target_tokens,
                ..BatcherConfig::default()
            },
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let drain_delay = Duration::from_secs_f64(self.drain_delay_secs);
        ServerConfig {
            max_message_bytes: self.max_message_bytes,
            drain_delay,
            grace_period: Duration::from_secs_f64(self.grace_period_secs).max(drain_delay),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }),
                _ => None,
            },
            keepalive_interval: seconds(self.http2_keepalive_interval_secs),
            keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_secs),
            max_concurrent_streams: self.max_concurrent_streams.max(1),
            max_connection_age: seconds(self.max_connection_age_secs),
            max_connections: self.max_connections.max(1),
            handshake_timeout: seconds(self.handshake_timeout_secs),
            message_read_timeout: seconds(self.message_read_timeout_secs),
            max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams,
            api_keys: KeySource {
                keys: self.api_keys.clone(),
                file: self.api_key_file.clone(),
            },
            http: HttpConfig {
                max_body_bytes: self.http_max_body_bytes.unwrap_or(self.max_message_bytes),
                request_timeout: (self.http_request_timeout_secs > 0.0)
                    .then(|| Duration::from_secs_f64(self.http_request_timeout_secs)),
                cors_allow_origins: self
                    .cors_allow_origin
                    .iter()
                    .map(|origin| origin.trim().to_string())
                    .filter(|origin| !origin.is_empty())
                    .collect(),
                served_model_name: self.served_model_name.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dtype;

    #[test]
    fn serve_flags_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--dtype", "bf16"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed as another command")
        };
        let model = args.model_config();
        assert_eq!(model.dir, PathBuf::from("/m"));
        assert_eq!(model.devices, vec![DeviceSpec::Cpu]);
        assert_eq!(model.dtype, DtypeRequest::Exact(Dtype::Bf16));
        assert!(model.graph_optimization);
        assert_eq!(args.addr.port(), 50051);
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["rerankd", "serve", "--model", "/m"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            _ => panic!("parsed as another command"),
        }
    }

    #[test]
    fn flag_defaults_are_the_configs_defaults() {
        let args = serve_args(&[]);
        assert_eq!(args.infer_config(), InferConfig::default());
        let server = args.server_config();
        let default = ServerConfig::default();
        assert_eq!(
            format!("{server:?}"),
            format!("{default:?}"),
            "flags and ServerConfig::default disagree"
        );
    }

    #[test]
    fn device_dependent_defaults_follow_the_devices() {
        let cuda = serve_args(&["--devices", "cuda:0"]).infer_config();
        assert_eq!(cuda.batcher.min_padding_efficiency, 0.85);
        assert_eq!(cuda.batcher.batch_overhead_tokens, 0);
        let cpu = serve_args(&[]).infer_config();
        assert_eq!(cpu.batcher.min_padding_efficiency, 0.95);
        assert_eq!(cpu.batcher.batch_overhead_tokens, 48);
        let set = serve_args(&[
            "--devices",
            "cuda:0",
            "--min-padding-efficiency",
            "0.5",
            "--batch-overhead-tokens",
            "7",
            "--fallback-budget-tokens",
            "999",
        ])
        .infer_config();
        assert_eq!(set.batcher.min_padding_efficiency, 0.5);
        assert_eq!(set.batcher.batch_overhead_tokens, 7);
        assert_eq!(set.batcher.controller.fallback_tokens, 999);
    }

    #[test]
    fn the_http_api_is_on_by_default_and_turns_off() {
        let args = serve_args(&[]);
        assert_eq!(
            args.http_addr,
            HttpAddr::On(DEFAULT_HTTP_ADDR.parse().unwrap())
        );
        assert_eq!(serve_args(&["--http-addr", "off"]).http_addr, HttpAddr::Off);
        let set = serve_args(&[
            "--http-addr",
            "127.0.0.1:0",
            "--max-message-bytes",
            "1000",
            "--cors-allow-origin",
            "https://a.example, https://b.example",
            "--cors-allow-origin",
            "https://c.example",
            "--http-request-timeout-secs",
            "0",
        ]);
        assert_eq!(set.http_addr.addr().unwrap().port(), 0);
        let http = set.server_config().http;
        // The body limit follows the gRPC message limit unless set.
        assert_eq!(http.max_body_bytes, 1000);
        assert_eq!(
            http.cors_allow_origins,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert_eq!(http.request_timeout, None);
        let own = serve_args(&["--http-max-body-bytes", "77"]).server_config();
        assert_eq!(own.http.max_body_bytes, 77);
        assert!(
            Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--http-addr", "x"]).is_err()
        );
    }

    #[test]
    fn fault_limits_are_flags() {
        let args = serve_args(&[
            "--max-failed-batches",
            "2",
            "--http2-max-pending-accept-reset-streams",
            "64",
        ]);
        assert_eq!(args.infer_config().batcher.max_failed_batches, 2);
        assert_eq!(args.server_config().max_pending_accept_reset_streams, 64);
        let off = serve_args(&["--max-failed-batches", "0"]);
        assert_eq!(off.infer_config().batcher.max_failed_batches, 0);
    }

    #[test]
    fn api_keys_repeat_and_never_print() {
        let args = serve_args(&[
            "--api-key",
            "key-one",
            "--api-key",
            "key-two,key-three",
            "--api-key-file",
            "/keys",
        ]);
        let source = args.server_config().api_keys;
        assert_eq!(source.keys.len(), 3);
        assert_eq!(source.file, Some(PathBuf::from("/keys")));
        let printed = format!("{args:?} {:?}", args.server_config());
        assert!(!printed.contains("key-"), "a key was printed: {printed}");
        for empty in ["", "a,,b", "a,"] {
            let error =
                Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--api-key", empty])
                    .unwrap_err()
                    .to_string();
            assert!(error.contains("may not be empty"), "{empty:?}: {error}");
        }
    }

    #[test]
    fn graph_optimization_turns_off() {
        for off in ["off", "false", "0"] {
            let cli = Cli::try_parse_from([
                "rerankd",
                "serve",
                "--model",
                "/m",
                "--graph-optimization",
                off,
            ])
            .unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("parsed as another command")
            };
            assert!(!args.model_config().graph_optimization, "{off}");
        }
        let refused = Cli::try_parse_from([
            "rerankd",
            "serve",
            "--model",
            "/m",
            "--graph-optimization",
            "sometimes",
        ]);
        assert!(refused.is_err());
    }

    #[test]
    fn bench_is_a_subcommand_with_the_bench_crates_flags() {
        let cli =
            Cli::try_parse_from(["rerankd", "bench", "--clients", "4", "--no-progress"]).unwrap();
        let Command::Bench(args) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!((args.clients, args.no_progress), (4, true));
        assert!(Cli::try_parse_from(["rerankd", "bench", "--clients", "0"]).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_forms() {
        let error = Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--device", "tpu"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected cpu, cuda or cuda:N"), "{error}");
    }

    #[test]
    fn several_devices_are_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "rerankd",
            "serve",
            "--model",
            "/m",
            "--devices",
            "cuda:0,cuda:1",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(
            args.model_config().devices,
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        // The single-device spelling still works.
        let cli =
            Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--device", "cuda"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(args.model_config().devices, vec![DeviceSpec::Cuda(0)]);
    }
}
