//! The HTTP side of `Error`: its one mapping to an HTTP status, and the
//! JSON bodies an error is answered with.
//!
//! Owns: `status_of` (the only place an `Error` becomes an HTTP status,
//! beside `From<Error> for tonic::Status` in `error.rs`), the `Retry-After`
//! header of 429, `WWW-Authenticate` of 401, and the two error bodies: `{"message"}` (Cohere, Jina and
//! rerankd's own routes) and TEI's `{"error", "error_type"}` on `/rerank`.
//! Must never: write a message of its own (the text is `Error`'s, the same
//! a gRPC client reads), or answer with a status another way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// An error's HTTP status: exhaustive, so a new `Error` needs a decision
/// here. 499 is nginx's "client closed request": nobody reads it, but the
/// metrics and logs count it as what it was.
pub(crate) fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::InvalidArgument(_) | Error::PairTooLong { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::UnknownModel { .. } => StatusCode::NOT_FOUND,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Overloaded { .. } | Error::InflightFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        // Not 429: this client sent too much for the time it allows, not
        // too many requests; Retry-After says when the work ahead is done.
        Error::Loading
        | Error::Unavailable(_)
        | Error::WorkerOut { .. }
        | Error::TooLate { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::DeadlineExceeded | Error::SlowMessage { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Error::Config(_)
        | Error::ModelDir { .. }
        | Error::ModelLoad(_)
        | Error::Inference(_)
        | Error::Tokenizer(_)
        | Error::Server(_)
        | Error::OutOfMemory { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Which error body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{"message": "..."}`: Cohere's and Jina's routes, and rerankd's own.
    Message,
    /// TEI's `{"error": "...", "error_type": "Validation"}` (`/rerank`).
    Tei,
}

/// An error on its way to an HTTP client, in the body its route uses.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub error: Error,
    pub shape: Shape,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        status_of(&self.error)
    }
}

#[derive(Serialize)]
struct MessageBody {
    message: String,
}

#[derive(Serialize)]
struct TeiBody {
    error: String,
    error_type: &'static str,
}

/// TEI's `ErrorType` for an error's status (router/src/lib.rs).
fn tei_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 413 => "Validation",
        429 => "Overloaded",
        503 => "Unhealthy",
        _ => "Backend",
    }
}

/// Seconds to put in `Retry-After`: the error's own, rounded up, at least 1.
fn retry_after(error: &Error) -> Option<u64> {
    match error {
        Error::Overloaded { retry_after, .. }
        | Error::InflightFull { retry_after, .. }
        | Error::TooLate { retry_after, .. } => {
            Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
        }
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = retry_after(&self.error);
        let message = self.error.to_string();
        let mut response = match self.shape {
            Shape::Message => (status, axum::Json(MessageBody { message })).into_response(),
            Shape::Tei => (
                status,
                axum::Json(TeiBody {
                    error: message,
                    error_type: tei_error_type(status),
                }),
            )
                .into_response(),
        };
        if let Some(seconds) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(error: Error, status: u16) {
        assert_eq!(status_of(&error).as_u16(), status, "{error:?}");
    }

    #[test]
    fn every_error_has_its_status() {
        check(Error::InvalidArgument("query is empty".into()), 400);
        check(
            Error::PairTooLong {
                index: 1,
                tokens: 600,
                max_length: 512,
            },
            400,
        );
        check(
            Error::UnknownModel {
                asked: "a".into(),
                served: "b".into(),
            },
            404,
        );
        check(Error::TooLarge("1001 documents".into()), 413);
        check(Error::Unauthenticated(crate::auth::Refusal::Missing), 401);
        check(
            Error::Overloaded {
                queued_pairs: 1,
                retry_after: Duration::from_millis(1500),
            },
            429,
        );
        check(Error::Loading, 503);
        check(
            Error::TooLate {
                needed: Duration::from_secs(30),
                own: Duration::from_secs(25),
                left: Duration::from_secs(20),
                retry_after: Duration::from_secs(5),
            },
            503,
        );
        check(Error::Unavailable("stopped".into()), 503);
        check(Error::DeadlineExceeded, 504);
        check(Error::Inference("bad".into()), 500);
        check(
            Error::OutOfMemory {
                index: 0,
                tokens: 512,
                message: "CUDA out of memory".into(),
            },
            500,
        );
    }

    #[tokio::test]
    async fn bodies_carry_the_errors_message_and_429_its_retry_after() {
        let body = |response: Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let overloaded = || Error::Overloaded {
            queued_pairs: 9000,
            retry_after: Duration::from_millis(1500),
        };
        let response = ApiError {
            error: overloaded(),
            shape: Shape::Message,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let json = body(response).await;
        assert_eq!(json["message"], overloaded().to_string());
        assert_eq!(json.as_object().unwrap().len(), 1);

        let response = ApiError {
            error: Error::InvalidArgument("`texts` cannot be empty".into()),
            shape: Shape::Tei,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let json = body(response).await;
        assert_eq!(json["error"], "`texts` cannot be empty");
        assert_eq!(json["error_type"], "Validation");
    }
}
