//! Conversions between the wire types (`pb`) and the core's (`infer`,
//! the batcher's stats): the one place each mapping is written, shared by
//! the unary handlers (`service.rs`) and the streaming ones (`stream.rs`,
//! `progressive.rs`).
//!
//! Owns: field-by-field mappings, and refusing enum values this server does
//! not know (INVALID_ARGUMENT). Must never: call `Infer`, touch a `Status`
//! other than through `Error`, or hold state.

use std::time::{Duration, Instant};

use super::pb;
use crate::aggregate::Aggregate;
use crate::batcher::scheduler::BatcherStats;
use crate::error::Error;
use crate::infer::{
    self, Chunking, LongDocuments, ModelInfo, PairsQuery, RerankQuery, Reranked, ScoredPairs,
    Timings, Usage,
};
use crate::inflight::InflightBytes;
use crate::tokenize::Side;

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

pub(super) fn to_usage(usage: &Usage) -> pb::Usage {
    pb::Usage {
        pairs: usage.pairs as u32,
        tokens: usage.tokens as u64,
        truncated: usage.truncated as u32,
        chunks: usage.chunks as u32,
    }
}

pub(super) fn to_timings(timings: &Timings) -> pb::Timings {
    pb::Timings {
        tokenize_us: micros(timings.tokenize),
        queue_us: micros(timings.queue),
        inference_us: micros(timings.inference),
        total_us: micros(timings.total),
    }
}

/// The long-document options of a request; unknown enum values are
/// INVALID_ARGUMENT.
pub(super) fn to_long(
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
                max_chunks: None,
            })
        })
        .transpose()?;
    Ok(LongDocuments {
        truncate: truncate.unwrap_or(true),
        side,
        chunking,
        max_document_tokens: None,
    })
}

/// A RerankRequest as `infer` takes it.
pub(crate) fn to_query(
    request: pb::RerankRequest,
    deadline: Option<Instant>,
) -> Result<RerankQuery, Error> {
    let mut long = to_long(request.truncate, request.truncation_side, request.chunking)?;
    long.max_document_tokens = request.max_tokens_per_document.map(|t| t as usize);
    Ok(RerankQuery {
        long,
        query: request.query,
        documents: request.documents,
        top_n: request.top_n as usize,
        return_documents: request.return_documents,
        raw_scores: request.raw_scores,
        deadline,
        priority: infer::priority(request.priority.into())?,
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

/// A ScorePairsRequest as `infer` takes it.
pub(crate) fn to_pairs_query(
    request: pb::ScorePairsRequest,
    deadline: Option<Instant>,
) -> Result<PairsQuery, Error> {
    Ok(PairsQuery {
        long: to_long(request.truncate, request.truncation_side, request.chunking)?,
        pairs: request
            .pairs
            .into_iter()
            .map(|pair| (pair.query, pair.document))
            .collect(),
        normalize: request.normalize,
        max_length: (request.max_length > 0).then_some(request.max_length as usize),
        deadline,
        priority: infer::priority(request.priority.into())?,
    })
}

pub(super) fn to_pairs_response(
    scored: ScoredPairs,
    request_id: String,
    model: String,
) -> pb::ScorePairsResponse {
    pb::ScorePairsResponse {
        scores: scored.scores,
        usage: Some(to_usage(&scored.usage)),
        timings: Some(to_timings(&scored.timings)),
        request_id,
        model,
    }
}

pub(super) fn to_stats(stats: &BatcherStats, inflight: &InflightBytes) -> pb::StatsResponse {
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
                target_tokens: worker.target_tokens.map_or(0, |t| t as u64),
            }
        })
        .collect();
    pb::StatsResponse {
        devices,
        queued_pairs: stats.queued_pairs as u64,
        inflight_bytes: inflight.used() as u64,
        max_inflight_bytes: inflight.limit() as u64,
        seconds_per_token: stats.secs_per_token,
        refused_late: stats.refused_late,
    }
}

pub(super) fn to_model_info(info: &ModelInfo) -> pb::ModelInfoResponse {
    pb::ModelInfoResponse {
        name: info.name.clone(),
        max_length: info.max_length as u32,
        device: info.devices[0].to_string(),
        devices: info.devices.iter().map(|d| d.to_string()).collect(),
        dtype: info.dtype.to_string(),
        mode: info.mode.clone(),
        activation: info.activation.as_str().to_string(),
        architecture: info.architecture.clone(),
    }
}
