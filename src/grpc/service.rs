//! `RerankService`: the `rerank.v1.Reranker` handlers.
//!
//! Owns: each handler's steps (deadline, trace, call `Infer`, answer); the
//! conversions live in `convert.rs`. Must never: hold model state, block (everything heavy happens
//! behind `Infer`), or map an error to a `Status` other than through
//! `From<Error> for Status`.

use std::sync::{Arc, OnceLock};

use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use super::convert::{
    to_model_info, to_pairs_query, to_pairs_response, to_query, to_response, to_stats,
};
use super::pb::{self, reranker_server::Reranker};
use super::trace::{traceparent, RequestTrace};
use super::{deadline, progressive, stream};
use crate::error::Error;
use crate::infer::{Infer, Timings};
use crate::metrics::Metrics;

/// The model once it is warm: empty while it loads.
pub type Ready = Arc<OnceLock<Infer>>;

pub struct RerankService {
    ready: Ready,
    metrics: Arc<Metrics>,
    /// True once the server stops accepting (streams stop reading).
    draining: tokio::sync::watch::Receiver<bool>,
}

impl RerankService {
    pub fn new(
        ready: Ready,
        metrics: Arc<Metrics>,
        draining: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        RerankService {
            ready,
            metrics,
            draining,
        }
    }

    fn infer(&self) -> Result<&Infer, Error> {
        self.ready.get().ok_or(Error::Loading)
    }

    /// Ends a request: records its outcome on its span and in the metrics,
    /// and turns an error into its status.
    fn answer<T>(
        &self,
        trace: &RequestTrace,
        outcome: Result<T, Error>,
        timings: impl FnOnce(&T) -> Option<&Timings>,
    ) -> Result<T, Status> {
        match outcome {
            Ok(value) => {
                trace.finish(&self.metrics, Code::Ok, timings(&value));
                Ok(value)
            }
            Err(error) => {
                let status = Status::from(error);
                trace.finish(&self.metrics, status.code(), None);
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl Reranker for RerankService {
    async fn rerank(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let deadline = deadline::of(&request);
        let parent = traceparent(request.metadata());
        let request = request.into_inner();
        let request_id = request.request_id.clone();
        let trace = RequestTrace::start("Rerank", &request_id, parent.as_deref());
        let outcome = async {
            let infer = self.infer()?;
            let reranked = infer.rerank(to_query(request, deadline)?);
            Ok((
                crate::infer::within(deadline, reranked).await?,
                infer.info().name.clone(),
            ))
        }
        .instrument(trace.span.clone())
        .await;
        let (reranked, model) = self.answer(&trace, outcome, |(r, _)| Some(&r.timings))?;
        Ok(Response::new(to_response(reranked, request_id, &model)))
    }

    type RerankProgressiveStream = progressive::ProgressStream;

    async fn rerank_progressive(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<Self::RerankProgressiveStream>, Status> {
        let deadline = deadline::of(&request);
        let parent = traceparent(request.metadata());
        let request = request.into_inner();
        let request_id = request.request_id.clone();
        let trace = RequestTrace::start("RerankProgressive", &request_id, parent.as_deref());
        let started = self
            .infer()
            .and_then(|infer| Ok((infer.clone(), to_query(request, deadline)?)));
        // Counted here only when it fails now; otherwise when it ends.
        let (infer, query) = match started {
            Ok(started) => started,
            Err(error) => {
                return Err(self
                    .answer(&trace, Err::<(), _>(error), |_| None)
                    .unwrap_err())
            }
        };
        Ok(Response::new(progressive::serve(
            infer,
            Arc::clone(&self.metrics),
            trace,
            query,
            request_id,
        )))
    }

    type RerankStreamStream = stream::AnswerStream;

    async fn rerank_stream(
        &self,
        request: Request<Streaming<pb::RerankRequest>>,
    ) -> Result<Response<Self::RerankStreamStream>, Status> {
        let parent = traceparent(request.metadata());
        let infer = self.infer().map_err(Status::from)?.clone();
        Ok(Response::new(stream::serve(
            infer,
            Arc::clone(&self.metrics),
            parent,
            self.draining.clone(),
            request.into_inner(),
        )))
    }

    async fn score_pairs(
        &self,
        request: Request<pb::ScorePairsRequest>,
    ) -> Result<Response<pb::ScorePairsResponse>, Status> {
        let deadline = deadline::of(&request);
        let parent = traceparent(request.metadata());
        let request = request.into_inner();
        let request_id = request.request_id.clone();
        let trace = RequestTrace::start("ScorePairs", &request_id, parent.as_deref());
        let outcome = async {
            let infer = self.infer()?;
            let query = to_pairs_query(request, deadline)?;
            let scored = crate::infer::within(deadline, infer.score_pairs(query)).await?;
            Ok((scored, infer.info().name.clone()))
        }
        .instrument(trace.span.clone())
        .await;
        let (scored, model) = self.answer(&trace, outcome, |(s, _)| Some(&s.timings))?;
        Ok(Response::new(to_pairs_response(scored, request_id, model)))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let infer = self.infer()?;
        Ok(Response::new(to_stats(&infer.stats(), infer.inflight())))
    }

    async fn model_info(
        &self,
        _request: Request<pb::ModelInfoRequest>,
    ) -> Result<Response<pb::ModelInfoResponse>, Status> {
        Ok(Response::new(to_model_info(self.infer()?.info())))
    }
}
