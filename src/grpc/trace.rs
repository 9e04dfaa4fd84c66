//! Request spans: one `tracing` span per request, carrying its RPC, its
//! request id and the caller's W3C trace context, and the one place a
//! request's outcome is logged and counted.
//!
//! Owns: reading `traceparent` from gRPC metadata (kept only when it is
//! well formed) and recording a request's code and timings on its span and
//! in the metrics. Must never: fail a request over its tracing headers, or
//! log a request's texts.

use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Span;

use crate::infer::Timings;
use crate::metrics::Metrics;

/// A request's span and when it arrived.
pub struct RequestTrace {
    pub span: Span,
    rpc: &'static str,
    started: Instant,
}

/// The `traceparent` header when it has the W3C form
/// `version-traceid(32 hex)-parentid(16 hex)-flags(2 hex)`.
pub fn traceparent(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get("traceparent")?.to_str().ok()?.trim();
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = parts.len() >= 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0');
    well_formed.then(|| value.to_ascii_lowercase())
}

impl RequestTrace {
    pub fn start(rpc: &'static str, request_id: &str, traceparent: Option<&str>) -> Self {
        let trace_id = traceparent.and_then(|t| t.split('-').nth(1));
        let span = tracing::info_span!(
            "request",
            rpc,
            request_id,
            traceparent = traceparent.unwrap_or(""),
            trace_id = trace_id.unwrap_or(""),
            code = Empty,
            total_us = Empty,
            queue_us = Empty,
            inference_us = Empty,
        );
        RequestTrace {
            span,
            rpc,
            started: Instant::now(),
        }
    }

    /// Records the outcome on the span, logs it once, and counts it.
    pub fn finish(&self, metrics: &Metrics, code: tonic::Code, timings: Option<&Timings>) {
        let elapsed = self.started.elapsed();
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.span.record("code", tracing::field::debug(code));
        self.span.record("total_us", micros(elapsed));
        if let Some(timings) = timings {
            self.span.record("queue_us", micros(timings.queue));
            self.span.record("inference_us", micros(timings.inference));
        }
        self.span.in_scope(|| {
            if code == tonic::Code::Ok {
                tracing::info!("request answered");
            } else {
                tracing::info!("request failed");
            }
        });
        metrics.observe(self.rpc, code, elapsed, timings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        let with = |value: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("traceparent", value.parse().unwrap());
            traceparent(&metadata)
        };
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(with(good).as_deref(), Some(good));
        assert_eq!(with(&good.to_uppercase()).as_deref(), Some(good));
        assert_eq!(with("00-abc-00f067aa0ba902b7-01"), None);
        assert_eq!(
            with("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(traceparent(&tonic::metadata::MetadataMap::new()), None);
    }
}
