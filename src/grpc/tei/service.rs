//! `TeiService`: the `tei.v1.Rerank` and `tei.v1.Info` handlers.
//!
//! Owns: each handler's steps, as the Reranker's (`grpc/service.rs`) take
//! them: the deadline (`grpc-timeout`, stamped by the same interceptor),
//! a span and the metrics (`grpc/trace.rs`; RPCs `tei.Rerank` and
//! `tei.RerankStream`), UNAVAILABLE while the model loads, the same `Infer`,
//! and errors as TEI's codes through `Error::into_status(Api::Tei)`.
//! Must never: hold model state, block, or map an error to a `Status`
//! other than through that one mapping.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use super::super::deadline;
use super::super::service::Ready;
use super::super::tei_pb::{self as pb, info_server::Info, rerank_server::Rerank};
use super::super::trace::{traceparent, RequestTrace};
use super::convert::{to_info, to_query, to_response};
use super::{stream, tei_status};
use crate::error::Error;
use crate::infer::{Infer, Timings};
use crate::metrics::Metrics;

/// Serves both TEI services; cheap to clone (one per tonic service).
#[derive(Clone)]
pub struct TeiService {
    ready: Ready,
    metrics: Arc<Metrics>,
    /// True once the server stops accepting: a `RerankStream` still being
    /// sent ends with UNAVAILABLE rather than holding the drain open.
    draining: watch::Receiver<bool>,
}

impl TeiService {
    pub fn new(ready: Ready, metrics: Arc<Metrics>, draining: watch::Receiver<bool>) -> Self {
        TeiService {
            ready,
            metrics,
            draining,
        }
    }

    fn infer(&self) -> Result<&Infer, Status> {
        self.ready.get().ok_or_else(|| tei_status(Error::Loading))
    }

    /// Ends a request: records its outcome on its span and in the metrics.
    fn answer<T>(
        &self,
        trace: &RequestTrace,
        outcome: Result<T, Status>,
        timings: impl FnOnce(&T) -> Option<&Timings>,
    ) -> Result<T, Status> {
        match &outcome {
            Ok(value) => trace.finish(&self.metrics, Code::Ok, timings(value)),
            Err(status) => trace.finish(&self.metrics, status.code(), None),
        }
        outcome
    }
}

#[tonic::async_trait]
impl Rerank for TeiService {
    async fn rerank(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline::of(&request);
        let parent = traceparent(request.metadata());
        let trace = RequestTrace::start("tei.Rerank", "", parent.as_deref());
        let outcome = async {
            let infer = self.infer()?;
            let (query, chars) = to_query(request.into_inner(), deadline).map_err(tei_status)?;
            let reranked = crate::infer::within(deadline, infer.rerank(query))
                .await
                .map_err(tei_status)?;
            Ok((reranked, chars))
        }
        .instrument(trace.span.clone())
        .await;
        let (reranked, chars) = self.answer(&trace, outcome, |(r, _)| Some(&r.timings))?;
        Ok(Response::new(to_response(reranked, chars, started)))
    }

    async fn rerank_stream(
        &self,
        request: Request<Streaming<pb::RerankStreamRequest>>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline::of(&request);
        let parent = traceparent(request.metadata());
        let trace = RequestTrace::start("tei.RerankStream", "", parent.as_deref());
        let mut inbound = request.into_inner();
        let mut draining = self.draining.clone();
        let outcome = async {
            let infer = self.infer()?;
            // The client's deadline covers its sending too.
            let read = crate::infer::within(deadline, async {
                Ok(stream::read(&mut inbound, infer, &mut draining).await)
            })
            .await
            .map_err(tei_status)??;
            crate::infer::within(deadline, stream::rank_read(read, infer, deadline, started))
                .await
                .map_err(tei_status)
        }
        .instrument(trace.span.clone())
        .await;
        let (response, _) = self.answer(&trace, outcome, |(_, timings)| Some(timings))?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl Info for TeiService {
    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let infer = self.infer()?;
        let budget_tokens = infer
            .stats()
            .workers
            .iter()
            .map(|worker| worker.controller.budget_tokens)
            .max()
            .unwrap_or(0);
        Ok(Response::new(to_info(
            infer.info(),
            infer.config(),
            budget_tokens,
        )))
    }
}
