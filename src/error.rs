//! The crate's error type and its one mapping to `tonic::Status`.
//!
//! Owns: every failure a caller of rerankd can see, and which gRPC code it
//! gets. Must never: be mapped to a `Status` anywhere else (its one mapping
//! to an HTTP status is `http::error`'s); carry a panic message or a Rust
//! debug dump to a client.

use std::path::PathBuf;

/// Everything that can go wrong in rerankd, from start-up to a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client sent something we will not score; the message says what to
    /// fix.
    #[error("{0}")]
    InvalidArgument(String),

    /// The request is over one of the server's size limits (documents per
    /// request, bytes per text, windows per document, pairs, bytes in
    /// flight for one request); the message names the limit's flag. A
    /// bad argument to gRPC (INVALID_ARGUMENT), 413 over HTTP.
    #[error("{0}")]
    TooLarge(String),

    /// The request names a model this server does not serve (only when
    /// `--served-model-name` is set; otherwise any name is accepted).
    #[error("model {asked:?} is not served here; this server serves {served:?}")]
    UnknownModel { asked: String, served: String },

    /// A pair is longer than the model's window and the client asked not to
    /// truncate.
    #[error(
        "document {index} makes a pair of {tokens} tokens, over the model's max_length of \
         {max_length}; shorten it or set truncate = true"
    )]
    PairTooLong {
        index: usize,
        tokens: usize,
        max_length: usize,
    },

    /// The server's configuration cannot work (a flag value, the device).
    #[error("configuration: {0}")]
    Config(String),

    /// The model directory is missing, unreadable or inconsistent.
    #[error("model directory {}: {reason}", path.display())]
    ModelDir { path: PathBuf, reason: String },

    /// libtorch failed to load the model or to run its warm-up.
    #[error("model failed to load: {0}")]
    ModelLoad(String),

    /// The model failed while scoring a request.
    #[error("model failed during inference: {0}")]
    Inference(String),

    /// One pair did not fit in the device's memory even alone (batches that
    /// do not fit are split and retried; only a single pair can fail).
    #[error(
        "document {index} makes a pair of {tokens} tokens that does not fit in device memory \
         even on its own; shorten it or retry later: {message}"
    )]
    OutOfMemory {
        index: usize,
        tokens: usize,
        message: String,
    },

    /// Too much work is queued; the client should retry after a while.
    #[error(
        "the server is overloaded ({queued_pairs} pairs queued); retry after {} ms",
        retry_after.as_millis()
    )]
    Overloaded {
        queued_pairs: usize,
        retry_after: std::time::Duration,
    },

    /// The server holds as many bytes of requests as `--max-inflight-bytes`
    /// allows; the client should retry after a while.
    #[error(
        "the server holds {in_flight} bytes of requests in flight and this request's {bytes} \
         more would pass its limit of {limit} (--max-inflight-bytes); retry after {} ms",
        retry_after.as_millis()
    )]
    InflightFull {
        bytes: usize,
        in_flight: usize,
        limit: usize,
        retry_after: std::time::Duration,
    },

    /// A request's message, once begun, did not arrive within
    /// `--message-read-timeout-secs`: the server stops waiting for it.
    #[error(
        "the request's message did not arrive within {} s of its first byte \
         (--message-read-timeout-secs); send it faster or raise the limit",
        timeout.as_secs()
    )]
    SlowMessage { timeout: std::time::Duration },

    /// The request's deadline passed before it was scored.
    #[error("the request's deadline passed before its documents were scored")]
    DeadlineExceeded,

    /// The client went away (cancelled, or its connection closed) while
    /// the request was being worked on; nobody reads this answer, but the
    /// work stops.
    #[error("the client cancelled the request")]
    Cancelled,

    /// The tokenizer rejected an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The model is still loading or warming up; health says NOT_SERVING.
    #[error(
        "the model is still loading; retry when grpc.health.v1 reports SERVING for \
         rerank.v1.Reranker"
    )]
    Loading,

    /// The model thread has stopped (the server is shutting down or the thread
    /// died), or no worker is left in service; the request was not scored.
    #[error("the model is not running: {0}")]
    Unavailable(String),

    /// The server itself failed: its transport or listener, joining its
    /// threads, or a shutdown whose grace period ended with work unfinished.
    /// It ends the process, and reaches no client.
    #[error("server: {0}")]
    Server(String),

    /// The worker that held part of the request was taken out of service:
    /// its device failed (a sticky CUDA error corrupts the device's context
    /// for the whole process) or its model thread stopped. Other workers, if
    /// any are left, go on serving.
    #[error(
        "the worker on {device} was taken out of service: {reason}; this request was not \
         scored, retry it (another worker or replica may serve it)"
    )]
    WorkerOut { device: String, reason: String },
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(_) | Error::TooLarge(_) | Error::PairTooLong { .. } => {
                tonic::Status::invalid_argument(message)
            }
            Error::Config(_) | Error::ModelDir { .. } | Error::ModelLoad(_) => {
                tonic::Status::failed_precondition(message)
            }
            Error::Inference(_) | Error::Tokenizer(_) | Error::Server(_) => {
                tonic::Status::internal(message)
            }
            Error::UnknownModel { .. } => tonic::Status::not_found(message),
            Error::OutOfMemory { .. } => tonic::Status::resource_exhausted(message),
            Error::Overloaded { retry_after, .. } | Error::InflightFull { retry_after, .. } => {
                let mut status = tonic::Status::resource_exhausted(message);
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(value) = seconds.to_string().parse() {
                    status.metadata_mut().insert("retry-after", value);
                }
                status
            }
            Error::DeadlineExceeded | Error::SlowMessage { .. } => {
                tonic::Status::deadline_exceeded(message)
            }
            Error::Cancelled => tonic::Status::cancelled(message),
            Error::Unavailable(_) | Error::Loading | Error::WorkerOut { .. } => {
                tonic::Status::unavailable(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn check(error: Error, code: Code, fragment: &str) {
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(fragment),
            "{:?} lacks {fragment:?}",
            status.message()
        );
    }

    #[test]
    fn every_variant_has_its_code_and_a_useful_message() {
        check(
            Error::InvalidArgument("query is empty".into()),
            Code::InvalidArgument,
            "query is empty",
        );
        check(
            Error::UnknownModel {
                asked: "rerank-v3.5".into(),
                served: "minilm".into(),
            },
            Code::NotFound,
            "model \"rerank-v3.5\" is not served here",
        );
        check(
            Error::TooLarge("3 documents is over".into()),
            Code::InvalidArgument,
            "3 documents is over",
        );
        check(
            Error::PairTooLong {
                index: 3,
                tokens: 700,
                max_length: 512,
            },
            Code::InvalidArgument,
            "document 3 makes a pair of 700 tokens",
        );
        check(
            Error::Config("fp16 on cpu".into()),
            Code::FailedPrecondition,
            "fp16 on cpu",
        );
        check(
            Error::ModelDir {
                path: "/nope".into(),
                reason: "not found".into(),
            },
            Code::FailedPrecondition,
            "/nope: not found",
        );
        check(
            Error::ModelLoad("bad".into()),
            Code::FailedPrecondition,
            "bad",
        );
        check(Error::Inference("index".into()), Code::Internal, "index");
        check(Error::Tokenizer("x".into()), Code::Internal, "tokenizer: x");
        check(
            Error::Server("the gRPC server failed".into()),
            Code::Internal,
            "server: the gRPC server failed",
        );
        check(
            Error::OutOfMemory {
                index: 4,
                tokens: 512,
                message: "CUDA out of memory".into(),
            },
            Code::ResourceExhausted,
            "document 4 makes a pair of 512 tokens",
        );
        check(
            Error::Unavailable("stopped".into()),
            Code::Unavailable,
            "stopped",
        );
        check(
            Error::WorkerOut {
                device: "cuda:1".into(),
                reason: "its device failed (CUDA error: an illegal memory access was \
                         encountered)"
                    .into(),
            },
            Code::Unavailable,
            "the worker on cuda:1 was taken out of service: its device failed (CUDA error: \
             an illegal memory access was encountered)",
        );
        check(
            Error::DeadlineExceeded,
            Code::DeadlineExceeded,
            "deadline passed",
        );
        check(Error::Cancelled, Code::Cancelled, "cancelled");
        check(
            Error::SlowMessage {
                timeout: std::time::Duration::from_secs(60),
            },
            Code::DeadlineExceeded,
            "did not arrive within 60 s",
        );
        let full = tonic::Status::from(Error::InflightFull {
            bytes: 3 << 20,
            in_flight: 250 << 20,
            limit: 256 << 20,
            retry_after: std::time::Duration::from_secs(1),
        });
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert!(full.message().contains("--max-inflight-bytes"), "{full:?}");
        assert_eq!(full.metadata().get("retry-after").unwrap(), "1");
        let overloaded = tonic::Status::from(Error::Overloaded {
            queued_pairs: 9000,
            retry_after: std::time::Duration::from_millis(1500),
        });
        assert_eq!(overloaded.code(), Code::ResourceExhausted);
        assert!(overloaded.message().contains("9000 pairs queued"));
        assert_eq!(
            overloaded
                .metadata()
                .get("retry-after")
                .unwrap()
                .to_str()
                .unwrap(),
            "2"
        );
    }
}
