//! The crate's error type and its one mapping to `tonic::Status`.
//!
//! The mapping has one adapter per API served: rerankd's own
//! (`rerank.v1`, `From<Error> for Status`) and TEI's (`tei.v1`,
//! `Error::into_status(Api::Tei)`), whose clients expect the codes of TEI's
//! router. They differ only where TEI's router gives an error class another
//! code (see [`Api::Tei`]); both are written in the one match below.
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

    /// The request could not be answered before its deadline (or, without
    /// one, `--max-queue-time`): the work queued before it and its own, at
    /// the server's measured pace, take longer. Refused before it costs any
    /// model time.
    #[error(
        "this request would be answered in about {} ms ({} ms of it its own work) but its \
         deadline is {} ms away (without a deadline, --max-queue-time is one); retry after {} \
         ms, or send fewer documents, a longer deadline or a more urgent priority",
        needed.as_millis(),
        own.as_millis(),
        left.as_millis(),
        retry_after.as_millis()
    )]
    TooLate {
        needed: std::time::Duration,
        own: std::time::Duration,
        left: std::time::Duration,
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

    /// A call to a guarded service carried no API key, or one the server
    /// does not accept (`auth`). The message names the header, never what
    /// it held.
    #[error("{0}")]
    Unauthenticated(crate::auth::Refusal),

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

/// The API a status goes out on: its clients expect its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `rerank.v1`: rerankd's own codes.
    Rerankd,
    /// `tei.v1` (text-embeddings-inference's gRPC API): TEI's router maps a
    /// backend error and a tokenizer error to FAILED_PRECONDITION, where
    /// rerankd says INTERNAL (`Inference`, `Tokenizer`) or, for a pair that
    /// cannot fit in device memory (TEI has no such case: to it, a failed
    /// forward pass is a backend error), RESOURCE_EXHAUSTED. Every other
    /// error gets the same code on both: validation INVALID_ARGUMENT,
    /// overload RESOURCE_EXHAUSTED, not ready UNAVAILABLE, as TEI's router
    /// does; the deadline and cancellation codes are gRPC's own.
    Tei,
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        error.into_status(Api::Rerankd)
    }
}

impl Error {
    /// This error as the status that `api`'s clients get: the one mapping.
    pub fn into_status(self, api: Api) -> tonic::Status {
        let message = self.to_string();
        match self {
            Error::InvalidArgument(_) | Error::TooLarge(_) | Error::PairTooLong { .. } => {
                tonic::Status::invalid_argument(message)
            }
            Error::Config(_) | Error::ModelDir { .. } | Error::ModelLoad(_) => {
                tonic::Status::failed_precondition(message)
            }
            Error::Inference(_) | Error::Tokenizer(_) => match api {
                Api::Rerankd => tonic::Status::internal(message),
                Api::Tei => tonic::Status::failed_precondition(message),
            },
            Error::Server(_) => tonic::Status::internal(message),
            Error::UnknownModel { .. } => tonic::Status::not_found(message),
            Error::OutOfMemory { .. } => match api {
                Api::Rerankd => tonic::Status::resource_exhausted(message),
                Api::Tei => tonic::Status::failed_precondition(message),
            },
            Error::Overloaded { retry_after, .. }
            | Error::InflightFull { retry_after, .. }
            | Error::TooLate { retry_after, .. } => {
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
            Error::Unauthenticated(_) => tonic::Status::unauthenticated(message),
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
            Error::Unauthenticated(crate::auth::Refusal::Unknown),
            Code::Unauthenticated,
            "the API key in the `authorization` header is not one",
        );
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
        let late = tonic::Status::from(Error::TooLate {
            needed: std::time::Duration::from_secs(30),
            own: std::time::Duration::from_secs(25),
            left: std::time::Duration::from_secs(20),
            retry_after: std::time::Duration::from_millis(4200),
        });
        assert_eq!(late.code(), Code::ResourceExhausted);
        assert!(late.message().contains("about 30000 ms"), "{late:?}");
        assert!(
            late.message().contains("deadline is 20000 ms away"),
            "{late:?}"
        );
        assert_eq!(late.metadata().get("retry-after").unwrap(), "5");
    }

    /// TEI's codes differ from rerankd's only for a backend or tokenizer
    /// failure (FAILED_PRECONDITION in TEI's router); everything else,
    /// message and `retry-after` included, is the same status.
    #[test]
    fn tei_clients_get_teis_codes_and_the_same_messages() {
        let differs = |error: fn() -> Error, rerankd: Code| {
            assert_eq!(tonic::Status::from(error()).code(), rerankd);
            let tei = error().into_status(Api::Tei);
            assert_eq!(tei.code(), Code::FailedPrecondition, "{tei:?}");
            assert_eq!(tei.message(), error().to_string());
        };
        differs(|| Error::Inference("index".into()), Code::Internal);
        differs(|| Error::Tokenizer("x".into()), Code::Internal);
        differs(
            || Error::OutOfMemory {
                index: 0,
                tokens: 512,
                message: "CUDA out of memory".into(),
            },
            Code::ResourceExhausted,
        );
        let same: [fn() -> Error; 9] = [
            || Error::InvalidArgument("`texts` cannot be empty".into()),
            || Error::PairTooLong {
                index: 1,
                tokens: 700,
                max_length: 512,
            },
            || Error::Loading,
            || Error::Unavailable("stopped".into()),
            || Error::DeadlineExceeded,
            || Error::Cancelled,
            || Error::Server("x".into()),
            || Error::Overloaded {
                queued_pairs: 10,
                retry_after: std::time::Duration::from_millis(200),
            },
            || Error::SlowMessage {
                timeout: std::time::Duration::from_secs(1),
            },
        ];
        for error in same {
            let (ours, tei) = (tonic::Status::from(error()), error().into_status(Api::Tei));
            assert_eq!(ours.code(), tei.code(), "{ours:?}");
            assert_eq!(ours.message(), tei.message());
            assert_eq!(
                ours.metadata().get("retry-after"),
                tei.metadata().get("retry-after")
            );
        }
    }
}
