//! `RerankService`: the `rerank.v1.Reranker` handlers.
//!
//! Owns: converting requests and responses between protobuf and `infer`'s
//! types. Must never: hold model state, block (everything heavy happens
//! behind `Infer`), or map an error to a `Status` other than through
//! `From<Error> for Status`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use super::pb::{self, reranker_server::Reranker};
use super::trace::{traceparent, RequestTrace};
use super::{deadline, progressive, stream};
use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::infer::{
    Chunking, Infer, LongDocuments, PairsQuery, RerankQuery, Reranked, Timings, Usage,
};
use crate::metrics::Metrics;
use crate::tokenize::Side;

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

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn to_usage(usage: &Usage) -> pb::Usage {
    pb::Usage {
        pairs: usage.pairs as u32,
        tokens: usage.tokens as u64,
        truncated: usage.truncated as u32,
        chunks: usage.chunks as u32,
    }
}

fn to_timings(timings: &Timings) -> pb::Timings {
    pb::Timings {
        tokenize_us: micros(timings.tokenize),
        queue_us: micros(timings.queue),
        inference_us: micros(timings.inference),
        total_us: micros(timings.total),
    }
}

/// The long-document options of a request; unknown enum values are
/// INVALID_ARGUMENT.
fn to_long(
    truncate: Option<bool>,
    side: i32,
    chunking: Option<pb::Chunking>,
) -> Result<LongDocuments, Error> {
    let side = match pb::TruncationSide::try_from(side) {
        Ok(pb::TruncationSide::Unspecified | pb::TruncationSide::Right) => Side::Right,
        Ok(pb::TruncationSide::Left) => Side::Left,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "truncation_side {side} is not a side this server knows; send \
                 TRUNCATION_SIDE_RIGHT (1) or TRUNCATION_SIDE_LEFT (2)"
            )))
        }
    };
    let chunking = chunking
        .map(|chunking| {
            let aggregate = match pb::Aggregate::try_from(chunking.aggregate) {
                Ok(pb::Aggregate::Unspecified | pb::Aggregate::Max) => Aggregate::Max,
                Ok(pb::Aggregate::Mean) => Aggregate::Mean,
                Err(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "chunking.aggregate {} is not an aggregate this server knows; send \
                         AGGREGATE_MAX (1) or AGGREGATE_MEAN (2)",
                        chunking.aggregate
                    )))
                }
            };
            Ok(Chunking {
                overlap: chunking.overlap_tokens.map(|o| o as usize),
                aggregate,
            })
        })
        .transpose()?;
    Ok(LongDocuments {
        truncate: truncate.unwrap_or(true),
        side,
        chunking,
    })
}

/// A RerankRequest as `infer` takes it.
pub(super) fn to_query(
    request: pb::RerankRequest,
    deadline: Option<Instant>,
) -> Result<RerankQuery, Error> {
    Ok(RerankQuery {
        long: to_long(request.truncate, request.truncation_side, request.chunking)?,
        query: request.query,
        documents: request.documents,
        top_n: request.top_n as usize,
        return_documents: request.return_documents,
        raw_scores: request.raw_scores,
        deadline,
    })
}

pub(super) fn to_response(
    reranked: Reranked,
    request_id: String,
    model: &str,
) -> pb::RerankResponse {
    pb::RerankResponse {
        results: reranked
            .results
            .into_iter()
            .map(|r| pb::RerankResult {
                index: r.index as u32,
                score: r.score,
                document: r.document,
            })
            .collect(),
        usage: Some(to_usage(&reranked.usage)),
        timings: Some(to_timings(&reranked.timings)),
        request_id,
        model: model.to_string(),
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
                deadline::within(deadline, reranked).await?,
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
        let trace = RequestTrace::start("ScorePairs", &request.request_id, parent.as_deref());
        let outcome = async {
            let infer = self.infer()?;
            let query = PairsQuery {
                pairs: request
                    .pairs
                    .into_iter()
                    .map(|pair| (pair.query, pair.document))
                    .collect(),
                normalize: request.normalize,
                long: to_long(request.truncate, request.truncation_side, request.chunking)?,
                max_length: (request.max_length > 0).then_some(request.max_length as usize),
                deadline,
            };
            let scored = deadline::within(deadline, infer.score_pairs(query)).await?;
            Ok((scored, infer.info().name.clone()))
        }
        .instrument(trace.span.clone())
        .await;
        let (scored, model) = self.answer(&trace, outcome, |(s, _)| Some(&s.timings))?;
        Ok(Response::new(pb::ScorePairsResponse {
            scores: scored.scores,
            usage: Some(to_usage(&scored.usage)),
            timings: Some(to_timings(&scored.timings)),
            request_id: request.request_id,
            model,
        }))
    }

    async fn stats(
        &self,
        _request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.infer()?.stats();
        let devices = stats
            .workers
            .iter()
            .map(|worker| {
                let controller = &worker.controller;
                let reading = controller.last_reading;
                let efficiency = if worker.padded_tokens == 0 {
                    1.0
                } else {
                    worker.real_tokens as f64 / worker.padded_tokens as f64
                };
                pb::DeviceStats {
                    device: worker.device.clone(),
                    budget_tokens: controller.budget_tokens as u64,
                    bytes_per_token: controller.bytes_per_token,
                    bytes_per_token_measured: controller.bytes_per_token_measured,
                    memory_known: reading.is_some(),
                    free_bytes: reading.map_or(0, |r| r.free_bytes),
                    total_bytes: reading.map_or(0, |r| r.total_bytes),
                    ceiling_tokens: controller.ceiling.map_or(0, |c| c.tokens as u64),
                    oom_count: controller.oom_count,
                    splits: worker.splits,
                    batches: worker.batches,
                    pairs: worker.pairs,
                    real_tokens: worker.real_tokens,
                    padded_tokens: worker.padded_tokens,
                    padding_efficiency: efficiency,
                    busy_micros: worker.busy.as_micros() as u64,
                    out_of_service: worker.out_of_service.clone().unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::StatsResponse {
            devices,
            queued_pairs: stats.queued_pairs as u64,
        }))
    }

    async fn model_info(
        &self,
        _request: Request<pb::ModelInfoRequest>,
    ) -> Result<Response<pb::ModelInfoResponse>, Status> {
        let info = self.infer()?.info();
        Ok(Response::new(pb::ModelInfoResponse {
            name: info.name.clone(),
            max_length: info.max_length as u32,
            device: info.devices[0].to_string(),
            devices: info.devices.iter().map(|d| d.to_string()).collect(),
            dtype: info.dtype.to_string(),
            mode: info.mode.clone(),
            activation: info.activation.as_str().to_string(),
            architecture: info.architecture.clone(),
        }))
    }
}
