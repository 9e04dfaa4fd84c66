//! HTTP request spans: one `tracing` span per request on the HTTP API,
//! carrying its route and request id, and the one place such a request's
//! outcome is logged and counted (`rerankd_requests_total{rpc="POST
//! /v1/rerank", code="200"}`).
//!
//! Owns: request ids (the client's `x-request-id` when it sends a sane one,
//! otherwise a fresh UUID-shaped id) and recording a request's status and
//! timings. Must never: fail a request over its headers, or log a
//! request's texts.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use tracing::field::Empty;
use tracing::Span;

use crate::infer::Timings;
use crate::metrics::Metrics;

/// A request's span and when it arrived.
pub(crate) struct HttpTrace {
    pub span: Span,
    pub request_id: String,
    route: &'static str,
    started: Instant,
}

impl HttpTrace {
    pub fn start(route: &'static str, headers: &HeaderMap) -> Self {
        let request_id = client_request_id(headers).unwrap_or_else(fresh_id);
        let span = tracing::info_span!(
            "request",
            rpc = route,
            request_id = request_id.as_str(),
            code = Empty,
            total_us = Empty,
            queue_us = Empty,
            inference_us = Empty,
        );
        HttpTrace {
            span,
            request_id,
            route,
            started: Instant::now(),
        }
    }

    /// Records the outcome on the span, logs it once, and counts it.
    pub fn finish(&self, metrics: &Metrics, status: StatusCode, timings: Option<&Timings>) {
        let elapsed = self.started.elapsed();
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.span.record("code", status.as_u16());
        self.span.record("total_us", micros(elapsed));
        if let Some(timings) = timings {
            self.span.record("queue_us", micros(timings.queue));
            self.span.record("inference_us", micros(timings.inference));
        }
        self.span.in_scope(|| {
            if status.is_success() {
                tracing::info!("request answered");
            } else {
                tracing::info!("request failed");
            }
        });
        metrics.observe_code(self.route, status_label(status), elapsed, timings);
    }
}

/// The metrics label of a status this API answers with.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        404 => "404",
        413 => "413",
        429 => "429",
        499 => "499",
        500 => "500",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// The client's `x-request-id`, when it is short printable ASCII.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-request-id")?.to_str().ok()?.trim();
    let sane =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_string())
}

/// A fresh id in a UUID's shape (Cohere's answers carry one): 128 bits
/// from the process's random hasher keys and a counter.
fn fresh_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(count ^ salt);
        hasher.finish()
    };
    let (high, low) = (random(0), random(u64::MAX));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        ((low >> 48) & 0x3fff) | 0x8000,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_clients_when_sane_and_fresh_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(client_request_id(&headers).as_deref(), Some("abc-123"));
        headers.insert("x-request-id", "has space".parse().unwrap());
        assert_eq!(client_request_id(&headers), None);
        let (a, b) = (fresh_id(), fresh_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
