//! rerankd: a gRPC inference server for cross-encoder rerankers on libtorch.
//!
//! # Layout
//! - [`config`]: command-line flags and the typed configs they become.
//! - [`error`]: the error type and its one mapping to `tonic::Status`.
//! - [`auth`]: API keys: the key set and the one check of a call's
//!   `authorization: Bearer` (gRPC interceptor, HTTP middleware).
//! - [`server`]: start-up (load, warm up) and serving until shutdown.
//! - [`grpc`]: generated protobuf code, the `rerank.v1.Reranker` handlers and
//!   TEI's `tei.v1.Rerank` and `tei.v1.Info` (for TEI's gRPC clients).
//! - `http`: the HTTP API (Cohere, Jina and TEI shapes, health, info,
//!   metrics) on its own port, beside gRPC.
//! - `status`: the status page on the HTTP port (`GET /`, `GET
//!   /status.json`): the model and each worker's batch controller, live.
//! - [`infer`]: one request from text to ranked results.
//! - [`tokenize`]: (query, document) text to token ids: truncation and
//!   splitting long documents into windows.
//! - [`token_bound`]: a lower bound on a request's tokens from its text,
//!   for admission before tokenizing.
//! - [`aggregate`]: window scores back into one score per document.
//! - [`inflight`]: the in-flight byte budget (`--max-inflight-bytes`).
//! - [`listener`]: accepting connections: their limit and handshake timeout.
//! - [`batcher`]: batch sizing (controller), batch cutting and the serving
//!   order (queue), the pace and admission rule (pace), and the scheduler
//!   that feeds every worker.
//! - [`worker`]: what runs on a model thread: the thread, split-and-retry on
//!   out-of-memory, warm-up calibration.
//! - [`gpu`]: the `MemoryProbe` seam and its NVML implementation.
//! - [`model`]: the model directory, precision, padded batches, the `Scorer`
//!   seam and its libtorch implementation.
//! - [`logging`]: the log writer, which never blocks or fails the code that
//!   logs.
//! - [`malloc`]: the model thread's periodic `malloc_trim`, which keeps a
//!   long run's RSS from creeping up with heap fragmentation.
//! - `fuzzing` (hidden): the entry the fuzz targets in `fuzz/` and their
//!   stable property and corpus tests call; never on the serving path.
//!
//! Beside it in the workspace: `rerankd-api` (the generated gRPC code, which
//! [`grpc::pb`] re-exports) and `rerankd-bench` (the load generator behind
//! `rerankd bench`, a client that builds without libtorch; only `main.rs`
//! and `config` name it).
//!
//! See ARCHITECTURE.md for the invariants that hold these together.

// The crate's surface: what `main.rs`, the integration tests (tests/it) and
// the benches (benches/) use. The rest is the crate's own.
pub mod auth;
pub mod batcher;
pub mod cache;
pub mod config;
pub mod error;
pub mod grpc;
pub mod logging;
pub mod model;
pub mod server;
pub mod serving;
pub mod token_bound;
pub mod tokenize;

/// For `fuzz/` and the tests only: reaches the crate's own pieces (request
/// conversion and validation, the queue, the controller) with fuzzer bytes.
#[doc(hidden)]
pub mod fuzzing;

pub(crate) mod aggregate;
pub(crate) mod gpu;
pub(crate) mod http;
pub(crate) mod infer;
pub(crate) mod inflight;
pub(crate) mod listener;
pub(crate) mod malloc;
pub(crate) mod metrics;
pub(crate) mod status;
pub(crate) mod worker;

pub use error::Error;
