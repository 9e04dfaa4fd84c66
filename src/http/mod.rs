//! The HTTP API, on its own port (`--http-addr`, 0.0.0.0:8080 by default):
//! the shapes the clients people already have speak — Cohere's
//! `/v1/rerank` and `/v2/rerank`, Jina's `/v1/rerank`, Hugging Face TEI's
//! `/rerank` — plus `/health`, `/info` and `/metrics`, on the same `Infer`,
//! batcher and limits as gRPC.
//!
//! Owns: HTTP. `router.rs` (the routes and their handlers), `server.rs`
//! (CORS and the accept loop), `body.rs` (the body limit, its in-flight
//! charge, JSON errors that name the field), `cohere.rs` and `tei.rs` (each
//! API's types and their conversion), `info.rs` (`/info`), `error.rs` (the
//! one mapping of `Error` to an HTTP status, and the error bodies),
//! `trace.rs` (request spans, ids and metrics). Must never: touch tch, the
//! tokenizer, NVML, tonic or protobuf (it calls `Infer` as the gRPC
//! handlers do, and names nothing of `grpc`).

pub(crate) mod body;
pub(crate) mod cohere;
pub(crate) mod error;
pub(crate) mod info;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod tei;
pub(crate) mod trace;

/// What unknown routes are told this server serves.
const ROUTES: &str = "POST /v1/rerank (Cohere v1, Jina), POST /v2/rerank (Cohere v2), POST \
                      /rerank (TEI), GET /health, GET /info, GET /metrics";
