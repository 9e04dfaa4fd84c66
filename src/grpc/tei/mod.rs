//! TEI's gRPC API on rerankd's port: `tei.v1.Rerank` (`Rerank`,
//! `RerankStream`) and `tei.v1.Info` from Hugging Face
//! text-embeddings-inference's `tei.proto` (vendored unchanged in
//! `rerankd-api`), beside `rerank.v1.Reranker`, so that a TEI gRPC client
//! pointed at rerankd works unchanged. TEI's other services (Embed,
//! Predict, Tokenize) are not served: a call to them gets UNIMPLEMENTED.
//!
//! - `convert.rs`: TEI's fields, defaults and answers, to and from the
//!   core's types.
//! - `stream.rs`: `RerankStream`'s reading and ranking.
//! - `service.rs`: the handlers.
//!
//! Owns: the TEI services as the server mounts them (`Services`: behind the
//! same deadline interceptor and in-flight byte budget as the Reranker).
//! Must never: score other than through `Infer`, as the Reranker does, or
//! map an error to a status other than through `Error::into_status(Api::Tei)`.

mod convert;
mod service;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use super::receive::Receive;
use super::service::Ready;
use super::tei_pb::info_server::InfoServer;
use super::tei_pb::rerank_server::RerankServer;
use crate::error::{Api, Error};
use crate::metrics::Metrics;

pub use service::TeiService;

/// An error as TEI's clients get it.
fn tei_status(error: Error) -> Status {
    error.into_status(Api::Tei)
}

/// The deadline interceptor, as a type the services can name.
type Stamp = fn(Request<()>) -> Result<Request<()>, Status>;

/// The two TEI services, ready for the router.
pub struct Services {
    /// `tei.v1.Rerank`: request bodies charged on the in-flight budget and
    /// timed as they arrive (`grpc/receive.rs`), deadlines stamped.
    pub rerank: Receive<InterceptedService<RerankServer<TeiService>, Stamp>>,
    /// `tei.v1.Info`: an empty request, nothing to budget or time.
    pub info: InfoServer<TeiService>,
}

/// What the TEI services take from the server's settings.
pub struct Limits {
    pub max_message_bytes: usize,
    pub message_read_timeout: Option<Duration>,
}

impl Services {
    pub fn new(
        ready: &Ready,
        metrics: &Arc<Metrics>,
        draining: tokio::sync::watch::Receiver<bool>,
        limits: Limits,
    ) -> Self {
        let service = TeiService::new(Arc::clone(ready), Arc::clone(metrics), draining);
        let rerank = RerankServer::new(service.clone())
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
        let rerank = Receive::new(
            InterceptedService::new(rerank, super::deadline::stamp as Stamp),
            Arc::clone(ready),
            limits.max_message_bytes,
            limits.message_read_timeout,
        );
        Services {
            rerank,
            info: InfoServer::new(service),
        }
    }
}
