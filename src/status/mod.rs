//! The status page on the HTTP port: `GET /` (one HTML file with its CSS
//! and JavaScript inline, embedded in the binary) and `GET /status.json`
//! (what the page shows: the model, and each worker's batch controller now
//! and over the last minutes), with a form that tries a rerank through
//! `POST /v1/rerank`.
//!
//! Owns: `router`, the routes above, which `serving` merges into the HTTP
//! API's; `history.rs` (per-interval samples, pure), `sampler.rs` (the task
//! that records them), `json.rs` (the JSON's shape), `page.html`. Must
//! never: touch tch, NVML or tonic, change what it reports on (it only
//! reads stats), load anything from elsewhere into the page (no external
//! assets; its Content-Security-Policy forbids them), or insert server or
//! user text into the page as HTML.

mod history;
mod json;
mod sampler;

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub use sampler::{Sampler, SamplerConfig};

use crate::infer::Infer;
use sampler::SharedHistory;

/// The page, embedded at build time: no build step, no files to ship.
const PAGE: &str = include_str!("page.html");

/// Only this page's own inline style and script, and requests back to this
/// server: the browser refuses any external asset.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src \
                           'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
                           base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct StatusState {
    /// The model once it is loaded (empty while it loads: 503).
    ready: Arc<OnceLock<Infer>>,
    /// `--served-model-name`, else the model directory's name is shown.
    served_model_name: Option<String>,
    history: SharedHistory,
    sampling: SamplerConfig,
}

/// `GET /` and `GET /status.json`, on `ready` and `sampler`'s history.
pub fn router(
    ready: Arc<OnceLock<Infer>>,
    served_model_name: Option<String>,
    sampler: &Sampler,
) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status))
        .with_state(StatusState {
            ready,
            served_model_name,
            history: sampler.history(),
            sampling: sampler.config(),
        })
}

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response()
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

async fn status(State(state): State<StatusState>) -> Response {
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    let Some(infer) = state.ready.get() else {
        let message = "the model is loading";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            no_store,
            Json(Message { message }),
        )
            .into_response();
    };
    let model = state
        .served_model_name
        .clone()
        .unwrap_or_else(|| infer.info().name.clone());
    let body = json::status(infer, model, &state.history, state.sampling);
    (no_store, Json(body)).into_response()
}
