//! The gRPC surface: the code generated from `proto/rerank/v1/rerank.proto`
//! and the service that serves it, and TEI's `tei.v1` API beside it
//! (`tei/`).
//!
//! Owns: the wire types and their conversion to and from `infer`'s types.
//! Must never: touch libtorch, the tokenizer or NVML (handlers validate,
//! convert and call `Infer`).

pub(crate) mod convert;
pub(crate) mod deadline;
pub(crate) mod progressive;
pub(crate) mod receive;
pub(crate) mod service;
pub(crate) mod stream;
pub(crate) mod tei;
pub(crate) mod trace;

/// Generated from `proto/rerank/v1/rerank.proto`, in the API crate that
/// the bench shares.
pub use rerankd_api::pb;

/// Generated from TEI's `tei.proto` (vendored in the API crate), for TEI's
/// clients.
pub use rerankd_api::tei as tei_pb;
