//! rerankd-api: rerankd's gRPC API as Rust, shared by the server (the
//! `rerankd` crate re-exports it as `rerankd::grpc::pb`) and its clients
//! (`rerankd-bench`).
//!
//! # Layout
//! - [`pb`]: the messages, client and server generated from
//!   `proto/rerank/v1/rerank.proto`, and the file descriptor set that
//!   the server's reflection serves.
//! - [`tei`]: the same for Hugging Face TEI's `tei.v1` API
//!   (`proto/tei/tei.proto`, vendored unchanged), which the server serves
//!   in part (`tei.v1.Rerank`, `tei.v1.Info`) for TEI's gRPC clients.
//! - [`code_name`]: a gRPC status code's canonical name, the one spelling
//!   that the server's metrics and the bench's failure counts share.
//!
//! Owns: the wire types and what both ends must spell alike. Must never:
//! depend on libtorch, a tokenizer, NVML or the server crate, or start a
//! runtime (a client that builds on it needs nothing but tonic).

/// Generated from `proto/rerank/v1/rerank.proto`.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("rerank.v1");

    /// The file descriptor set, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rerank_descriptor");
}

/// Generated from `proto/tei/tei.proto`, text-embeddings-inference's gRPC
/// API (see `proto/tei/README.md` for its origin).
#[allow(clippy::all)]
pub mod tei {
    tonic::include_proto!("tei.v1");

    /// The file descriptor set for reflection: `tei.proto` with only the
    /// services rerankd serves (`Rerank`, `Info`).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tei_descriptor");
}

/// The canonical name of a gRPC status code, as the gRPC specification
/// spells it (`RESOURCE_EXHAUSTED`): a metric label on the server, a key of
/// the bench's failure counts.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code by its number in the gRPC specification (statuscodes.md).
    #[test]
    fn code_names_follow_the_grpc_numbering() {
        let names = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        for (number, name) in names.iter().enumerate() {
            assert_eq!(code_name(tonic::Code::from_i32(number as i32)), *name);
        }
    }
}
