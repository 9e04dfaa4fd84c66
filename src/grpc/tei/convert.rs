//! Conversions between TEI's wire types (`tei_pb`, from `tei.proto`) and
//! the core's: the one place each `tei.v1` mapping is written, shared by
//! the unary `Rerank`, `RerankStream` and `Info` handlers.
//!
//! Owns: TEI's field names and defaults as rerankd reads them (`truncate`
//! false unless sent, as a proto3 bool; `truncation_direction` RIGHT unless
//! sent; ranks best first with `text` only when `return_text`), TEI's
//! `Metadata` and `InfoResponse`, and refusing what TEI's router refuses
//! before scoring (empty `texts`, an unknown direction). Must never: call
//! `Infer`, hold state, or turn an error into a `Status` (the handlers do,
//! through `Error::into_status(Api::Tei)`).

use std::time::{Duration, Instant};

use super::super::tei_pb as pb;
use crate::config::InferConfig;
use crate::error::Error;
use crate::infer::{LongDocuments, ModelInfo, RerankQuery, Reranked, Timings, Usage};
use crate::model::Dtype;
use crate::tokenize::Side;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// TEI's truncation options as rerankd's: TEI cuts only when asked
/// (`truncate` is a plain proto3 bool, false unless sent), and never
/// chunks.
pub(super) fn to_long(truncate: bool, direction: i32) -> Result<LongDocuments, Error> {
    let side = match pb::TruncationDirection::try_from(direction) {
        Ok(pb::TruncationDirection::Right) => Side::Right,
        Ok(pb::TruncationDirection::Left) => Side::Left,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "truncation_direction {direction} is not a direction this server knows; send \
                 TRUNCATION_DIRECTION_RIGHT (0) or TRUNCATION_DIRECTION_LEFT (1)"
            )))
        }
    };
    Ok(LongDocuments {
        truncate,
        side,
        chunking: None,
        // TEI has no per-document token limit: the window decides.
        max_document_tokens: None,
    })
}

/// Characters the model was asked to read, as TEI counts them: the query
/// once per text, and every text.
pub(super) fn compute_chars<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u32 {
    let chars: usize = pairs
        .into_iter()
        .map(|(query, text)| query.chars().count() + text.chars().count())
        .sum();
    u32::try_from(chars).unwrap_or(u32::MAX)
}

/// A TEI `RerankRequest` as `infer` takes it (every text ranked, none cut
/// off), and its `compute_chars`.
pub(super) fn to_query(
    request: pb::RerankRequest,
    deadline: Option<Instant>,
) -> Result<(RerankQuery, u32), Error> {
    if request.texts.is_empty() {
        // TEI's own message for it.
        return Err(Error::InvalidArgument("`texts` cannot be empty".into()));
    }
    let chars = compute_chars(
        request
            .texts
            .iter()
            .map(|text| (request.query.as_str(), text.as_str())),
    );
    let query = RerankQuery {
        long: to_long(request.truncate, request.truncation_direction)?,
        query: request.query,
        documents: request.texts,
        top_n: 0,
        return_documents: request.return_text,
        raw_scores: request.raw_scores,
        deadline,
        // TEI's API has no priority: every TEI call is at the normal level.
        priority: 0,
    };
    Ok((query, chars))
}

/// TEI's `Metadata`: rerankd's usage and timings of the whole request
/// (TEI averages its per-pair times; rerankd scores the request's pairs
/// together, so its times are the request's).
pub(super) fn to_metadata(
    chars: u32,
    usage: &Usage,
    timings: &Timings,
    started: Instant,
) -> pb::Metadata {
    pb::Metadata {
        compute_chars: chars,
        compute_tokens: u32::try_from(usage.tokens).unwrap_or(u32::MAX),
        total_time_ns: nanos(started.elapsed()),
        tokenization_time_ns: nanos(timings.tokenize),
        queue_time_ns: nanos(timings.queue),
        inference_time_ns: nanos(timings.inference),
    }
}

/// One rank: its index in the request (or the stream), its score, and its
/// text when the client asked for it.
pub(super) fn to_rank(index: usize, score: f32, text: Option<String>) -> pb::Rank {
    pb::Rank {
        index: index as u32,
        text,
        score,
    }
}

/// A ranked unary request as TEI's answer.
pub(super) fn to_response(reranked: Reranked, chars: u32, started: Instant) -> pb::RerankResponse {
    pb::RerankResponse {
        metadata: Some(to_metadata(
            chars,
            &reranked.usage,
            &reranked.timings,
            started,
        )),
        ranks: reranked
            .results
            .into_iter()
            .map(|r| to_rank(r.index, r.score, r.document))
            .collect(),
    }
}

/// TEI's spelling of a precision (`model_dtype`: what TEI's `--dtype`
/// takes).
fn tei_dtype(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Fp32 => "float32",
        Dtype::Bf16 => "bfloat16",
        Dtype::Fp16 => "float16",
    }
}

/// `Info` in TEI's fields, from rerankd's model and limits. Where rerankd
/// has no such setting the nearest one stands in (README.md, "TEI gRPC",
/// says which): requests are admitted by queued pairs, batches are cut by a
/// token budget that `budget_tokens` gives as it is now, and tokenizing
/// runs on tokio's blocking pool rather than a fixed number of workers.
pub(super) fn to_info(
    info: &ModelInfo,
    config: &InferConfig,
    budget_tokens: usize,
) -> pb::InfoResponse {
    let count = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    pb::InfoResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        sha: None,
        docker_label: None,
        model_id: info.name.clone(),
        model_sha: None,
        model_dtype: tei_dtype(info.dtype).to_string(),
        model_type: pb::ModelType::Reranker.into(),
        max_concurrent_requests: count(config.batcher.max_queued_pairs),
        max_input_length: count(info.max_length),
        max_batch_tokens: count(budget_tokens),
        max_batch_requests: Some(count(config.batcher.max_batch_pairs)),
        max_client_batch_size: count(config.max_documents),
        tokenization_workers: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(texts: &[&str]) -> pb::RerankRequest {
        pb::RerankRequest {
            query: "où est le marché".into(),
            texts: texts.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn teis_defaults_are_no_truncation_from_the_right_and_raw_false() {
        let (query, chars) = to_query(request(&["a", "bc"]), None).unwrap();
        assert_eq!(
            query.long,
            LongDocuments {
                truncate: false,
                side: Side::Right,
                chunking: None,
                max_document_tokens: None,
            }
        );
        assert!(!query.raw_scores && !query.return_documents);
        assert_eq!(query.top_n, 0);
        // 16 characters of query (not bytes) per text, and the texts.
        assert_eq!(chars, 16 + 1 + 16 + 2);
    }

    #[test]
    fn fields_map_by_teis_names() {
        let mut asked = request(&["a"]);
        asked.truncate = true;
        asked.raw_scores = true;
        asked.return_text = true;
        asked.truncation_direction = pb::TruncationDirection::Left.into();
        let (query, _) = to_query(asked, None).unwrap();
        assert!(query.long.truncate && query.raw_scores && query.return_documents);
        assert_eq!(query.long.side, Side::Left);
    }

    #[test]
    fn what_teis_router_refuses_is_refused() {
        let empty = to_query(request(&[]), None).unwrap_err();
        assert_eq!(empty.to_string(), "`texts` cannot be empty");
        let mut unknown = request(&["a"]);
        unknown.truncation_direction = 7;
        let error = to_query(unknown, None).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    }
}
