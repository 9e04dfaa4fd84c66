//! The HTTP API's server: the app (`router::router` with CORS outermost,
//! so that a browser's preflight is answered before any middleware layered
//! on the routes) served by axum over HTTP/1.1 with keep-alive, until told
//! to stop accepting.
//!
//! Owns: the outer layers and the accept loop's life. Must never: decide
//! when to stop (`serving.rs` owns the server's life), or answer a request
//! itself.

use axum::http::{header, HeaderValue, Method};
use axum::Router;
use tokio::sync::oneshot;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::router::{router, HttpState};
use crate::auth::ApiKeys;
use crate::config::HttpConfig;
use crate::error::Error;
use crate::listener::Incoming;

/// The routes with CORS around them when `--cors-allow-origin` is set.
pub fn app(state: HttpState, config: &HttpConfig, keys: &ApiKeys) -> Result<Router, Error> {
    let routes = router(state, keys);
    Ok(match cors(&config.cors_allow_origins)? {
        Some(cors) => routes.layer(cors),
        None => routes,
    })
}

/// CORS for `origins` (`*`: any); `None` when there are none.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, Error> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| {
                    Error::Config(format!(
                        "--cors-allow-origin {origin:?} is not a valid origin"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-request-id"),
            ]),
    ))
}

/// Serves `app` on `listener` (HTTP/1.1, keep-alive; its connections
/// limited and timed as the gRPC port's) until `stop`; then accepts no more
/// connections, lets each answer the request it is on, and returns once
/// they have closed.
pub async fn serve(
    listener: Incoming,
    app: Router,
    stop: oneshot::Receiver<()>,
) -> Result<(), Error> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await
        .map_err(|e| Error::Server(format!("the HTTP server failed: {e}")))
}
