//! The HTTP API's routes and their handlers: `POST /v1/rerank` (Cohere v1,
//! Jina), `POST /v2/rerank` (Cohere v2), `POST /rerank` (TEI), `GET
//! /health`, `GET /info`, `GET /metrics`, and JSON answers for unknown
//! routes and methods.
//!
//! Owns: each rerank route's steps (trace, deadline, body, model name,
//! `Infer::rerank`, answer) in one function they share, and `router`, the
//! one function that builds the routes (middleware such as API keys is
//! added to what it returns). Must never: hold model state, map an `Error`
//! to a status (`error.rs` does), parse JSON itself (`body.rs` does), or
//! know one API's field names (`cohere.rs`, `tei.rs`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use super::body::read_json;
use super::cohere::{self, V1Request, V2Request};
use super::error::{ApiError, Shape};
use super::tei::{self, TeiRequest};
use super::trace::HttpTrace;
use super::{info, ROUTES};
use crate::auth::ApiKeys;
use crate::config::HttpConfig;
use crate::error::Error;
use crate::infer::{within, Infer, RerankQuery, Reranked};
use crate::metrics::Metrics;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    /// The model once it is warm: empty while it loads (answers 503).
    ready: Arc<OnceLock<Infer>>,
    metrics: Arc<Metrics>,
    /// True while health says SERVING (`serving.rs` owns the sender).
    serving: watch::Receiver<bool>,
    config: Arc<HttpConfig>,
}

impl HttpState {
    pub fn new(
        ready: Arc<OnceLock<Infer>>,
        metrics: Arc<Metrics>,
        serving: watch::Receiver<bool>,
        config: HttpConfig,
    ) -> Self {
        HttpState {
            ready,
            metrics,
            serving,
            config: Arc::new(config),
        }
    }

    fn infer(&self) -> Result<&Infer, Error> {
        self.ready.get().ok_or(Error::Loading)
    }

    /// The model's name to HTTP clients.
    fn model_name(&self, infer: &Infer) -> String {
        self.config
            .served_model_name
            .clone()
            .unwrap_or_else(|| infer.info().name.clone())
    }

    /// The name to answer with, or 404 for a `model` this server does not
    /// serve (only checked when `--served-model-name` is set).
    fn check_model(&self, asked: Option<&str>, infer: &Infer) -> Result<String, Error> {
        let served = self.model_name(infer);
        match (asked, &self.config.served_model_name) {
            (Some(asked), Some(_)) if asked != served => Err(Error::UnknownModel {
                asked: asked.to_string(),
                served,
            }),
            _ => Ok(served),
        }
    }
}

/// A rerank route's request: its model (if it names one) and its
/// conversion to `infer`'s query.
trait RerankBody: DeserializeOwned + Send {
    fn model(&self) -> Option<&str>;
    fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error>;
}

impl RerankBody for V1Request {
    fn model(&self) -> Option<&str> {
        V1Request::model(self)
    }
    fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        V1Request::into_query(self, deadline)
    }
}

impl RerankBody for V2Request {
    fn model(&self) -> Option<&str> {
        V2Request::model(self)
    }
    fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        V2Request::into_query(self, deadline)
    }
}

impl RerankBody for TeiRequest {
    fn model(&self) -> Option<&str> {
        None
    }
    fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        TeiRequest::into_query(self, deadline)
    }
}

/// What an answer needs besides the ranking.
struct Answer {
    id: String,
    model: String,
}

/// The routes, with their state. `server::app` adds the outer layers
/// (CORS); another middleware (API keys) is layered on what this returns.
pub fn router(state: HttpState, keys: &ApiKeys) -> Router {
    // Behind the API keys (when set): what the Reranker's methods serve
    // over gRPC, `/info` as `ModelInfo`. Open: what probes and scrapers
    // call without a key.
    let guarded = keys.guard_routes(
        Router::new()
            .route("/v1/rerank", post(rerank_v1))
            .route("/v2/rerank", post(rerank_v2))
            .route("/rerank", post(rerank_tei))
            .route("/info", get(model_info)),
    );
    guarded
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

async fn rerank_v1(State(state): State<HttpState>, request: Request) -> Response {
    rerank::<V1Request, _>(
        &state,
        "POST /v1/rerank",
        Shape::Message,
        request,
        |r, a| cohere::v1_response(r, a.id, a.model),
    )
    .await
}

async fn rerank_v2(State(state): State<HttpState>, request: Request) -> Response {
    rerank::<V2Request, _>(
        &state,
        "POST /v2/rerank",
        Shape::Message,
        request,
        |r, a| cohere::v2_response(r, a.id),
    )
    .await
}

async fn rerank_tei(State(state): State<HttpState>, request: Request) -> Response {
    rerank::<TeiRequest, _>(&state, "POST /rerank", Shape::Tei, request, |r, _| {
        tei::response(r)
    })
    .await
}

/// One rerank request, whatever its shape: the deadline starts when it
/// arrives and covers its body's upload; the body is read within the
/// limits; the answer is `answer`'s, or the error in the route's `shape`.
async fn rerank<B, T>(
    state: &HttpState,
    route: &'static str,
    shape: Shape,
    request: Request,
    answer: impl FnOnce(Reranked, Answer) -> T,
) -> Response
where
    B: RerankBody,
    T: Serialize,
{
    let trace = HttpTrace::start(route, request.headers());
    let deadline = state.config.request_timeout.map(|t| Instant::now() + t);
    let work = async {
        let infer = state.infer()?;
        let (parts, body) = request.into_parts();
        let limit = state.config.max_body_bytes;
        let body: B = read_json(&parts.headers, body, infer.inflight(), limit).await?;
        let model = state.check_model(body.model(), infer)?;
        let reranked = infer.rerank(body.into_query(deadline)?).await?;
        Ok((reranked, model))
    };
    let outcome = within(deadline, work).instrument(trace.span.clone()).await;
    let mut response = match outcome {
        Ok((reranked, model)) => {
            trace.finish(&state.metrics, StatusCode::OK, Some(&reranked.timings));
            let id = trace.request_id.clone();
            Json(answer(reranked, Answer { id, model })).into_response()
        }
        Err(error) => {
            let error = ApiError { error, shape };
            trace.finish(&state.metrics, error.status(), None);
            error.into_response()
        }
    };
    if let Ok(id) = HeaderValue::from_str(&trace.request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// 200 while health says SERVING; 503 while loading, draining, or with no
/// worker left.
async fn health(State(state): State<HttpState>) -> Response {
    if *state.serving.borrow() {
        return Json(Health { status: "serving" }).into_response();
    }
    let error = match state.ready.get() {
        None => Error::Loading,
        Some(_) => Error::Unavailable(
            "the server is not serving: it is shutting down, or no worker is left in service"
                .into(),
        ),
    };
    ApiError {
        error,
        shape: Shape::Message,
    }
    .into_response()
}

async fn model_info(State(state): State<HttpState>) -> Response {
    match state.infer() {
        Ok(infer) => {
            let model = state.model_name(infer);
            Json(info::info(infer, &state.config, model)).into_response()
        }
        Err(error) => ApiError {
            error,
            shape: Shape::Message,
        }
        .into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct Message {
    message: String,
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let message = format!(
        "no route for {method} {}; this server serves {ROUTES}",
        uri.path()
    );
    (StatusCode::NOT_FOUND, Json(Message { message })).into_response()
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let message = format!(
        "{} does not take {method}; this server serves {ROUTES}",
        uri.path()
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(Message { message })).into_response()
}
