//! `tei.v1.Rerank/RerankStream` with TEI's semantics: the client streams
//! (query, text) pairs, each with its own query and truncation, and gets one
//! answer once it has finished sending: every pair ranked best first, its
//! index its place in the stream. `raw_scores` and `return_text` are read
//! from the first message only, as TEI does.
//!
//! Owns: reading the stream (at most `--max-documents` pairs, the text held
//! charged on the in-flight byte budget while it arrives, UNAVAILABLE if the
//! server drains before the client has finished), and scoring what it read
//! through `Infer::score_pairs`: pairs that ask for the same truncation in
//! one request, one such request after another, then one ranking
//! (`infer::rank`, as `Rerank` ranks). Must never: buffer without bound,
//! answer before the client has finished sending, or turn an error into a
//! `Status` other than through `Error::into_status(Api::Tei)`.

use std::time::Instant;

use tokio::sync::watch;
use tonic::{Status, Streaming};

use super::super::tei_pb as pb;
use super::convert::{compute_chars, to_long, to_metadata, to_rank};
use super::tei_status;
use crate::error::Error;
use crate::infer::{rank, Infer, LongDocuments, PairsQuery, Timings, Usage};
use crate::inflight::Charge;

/// What a stream sent, once it has ended.
pub(super) struct Read {
    /// (query, text), in stream order.
    pairs: Vec<(String, String)>,
    /// Each pair's truncation.
    long: Vec<LongDocuments>,
    /// From the first message.
    raw_scores: bool,
    return_text: bool,
    chars: u32,
    /// The text read, held on the budget until it is scored.
    charge: Charge,
}

/// Bytes a pair's text holds in memory, as `Infer` counts a request's text.
fn pair_bytes(query: &str, text: &str) -> usize {
    query.len() + text.len() + 2 * std::mem::size_of::<String>()
}

/// Reads the stream to its end. Fails with the stream's own status (a
/// message refused on the budget or too slow, a malformed message), with
/// INVALID_ARGUMENT past `--max-documents` pairs or an unknown direction,
/// or with UNAVAILABLE when the server starts draining first.
pub(super) async fn read(
    inbound: &mut Streaming<pb::RerankStreamRequest>,
    infer: &Infer,
    draining: &mut watch::Receiver<bool>,
) -> Result<Read, Status> {
    let limit = infer.config().max_documents;
    let mut charge = infer.inflight().charge(0).map_err(tei_status)?;
    let (mut pairs, mut long) = (Vec::new(), Vec::new());
    let mut first: Option<(bool, bool)> = None;
    loop {
        let message = tokio::select! {
            message = inbound.message() => message?,
            Ok(_) = draining.wait_for(|draining| *draining) => {
                return Err(tei_status(Error::Unavailable(
                    "the server began shutting down before the stream ended; send it again \
                     (to another replica)"
                        .into(),
                )));
            }
        };
        let Some(message) = message else { break };
        if pairs.len() == limit {
            return Err(tei_status(Error::InvalidArgument(format!(
                "the stream sent more than {limit} pairs, over this server's limit per \
                 request; split it (the limit is --max-documents)"
            ))));
        }
        first.get_or_insert((message.raw_scores, message.return_text));
        charge
            .grow(pair_bytes(&message.query, &message.text))
            .map_err(tei_status)?;
        long.push(to_long(message.truncate, message.truncation_direction).map_err(tei_status)?);
        pairs.push((message.query, message.text));
    }
    let (raw_scores, return_text) = first.unwrap_or_default();
    let chars = compute_chars(pairs.iter().map(|(q, t)| (q.as_str(), t.as_str())));
    Ok(Read {
        pairs,
        long,
        raw_scores,
        return_text,
        chars,
        charge,
    })
}

/// Scores and ranks what a stream sent: TEI's answer, and the timings
/// (`total` unset) for the request's trace.
pub(super) async fn rank_read(
    read: Read,
    infer: &Infer,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<(pb::RerankResponse, Timings), Error> {
    let Read {
        mut pairs,
        long,
        raw_scores,
        return_text,
        chars,
        charge,
    } = read;
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(
            "the stream sent no pairs; send at least one (query, text) message before \
             closing it"
                .into(),
        ));
    }
    // `score_pairs` charges the text it takes; only the answer's copy of
    // the texts stays charged here.
    drop(charge);
    let mut texts = None;
    let _texts_charge = if return_text {
        let copy: Vec<String> = pairs.iter().map(|(_, text)| text.clone()).collect();
        let bytes = copy.iter().map(|t| t.len() + std::mem::size_of::<String>());
        let held = infer.inflight().charge(bytes.sum())?;
        texts = Some(copy);
        Some(held)
    } else {
        None
    };
    let mut raw = vec![0.0; pairs.len()];
    let mut usage = Usage::default();
    let mut timings = Timings::default();
    for (group_long, members) in groups(&long) {
        let query = PairsQuery {
            pairs: members
                .iter()
                .map(|&pair| std::mem::take(&mut pairs[pair]))
                .collect(),
            normalize: false,
            long: group_long,
            max_length: None,
            deadline,
            // TEI's API has no priority.
            priority: 0,
        };
        let scored = infer.score_pairs(query).await?;
        for (&pair, score) in members.iter().zip(scored.scores) {
            raw[pair] = score;
        }
        usage.pairs += scored.usage.pairs;
        usage.tokens += scored.usage.tokens;
        usage.truncated += scored.usage.truncated;
        usage.chunks += scored.usage.chunks;
        timings.tokenize += scored.timings.tokenize;
        timings.queue += scored.timings.queue;
        timings.inference += scored.timings.inference;
    }
    let activation = (!raw_scores).then_some(infer.info().activation);
    let ranks = rank(&raw, 0, activation)
        .into_iter()
        .map(|(pair, score)| {
            let text = texts.as_mut().map(|texts| std::mem::take(&mut texts[pair]));
            to_rank(pair, score, text)
        })
        .collect();
    let response = pb::RerankResponse {
        ranks,
        metadata: Some(to_metadata(chars, &usage, &timings, started)),
    };
    Ok((response, timings))
}

/// The stream's pairs grouped by their truncation, groups in order of first
/// appearance, pairs in stream order.
fn groups(long: &[LongDocuments]) -> Vec<(LongDocuments, Vec<usize>)> {
    let mut groups: Vec<(LongDocuments, Vec<usize>)> = Vec::new();
    for (pair, &options) in long.iter().enumerate() {
        match groups.iter_mut().find(|(group, _)| *group == options) {
            Some((_, members)) => members.push(pair),
            None => groups.push((options, vec![pair])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::Side;

    #[test]
    fn pairs_are_grouped_by_truncation_in_order_of_first_appearance() {
        let long = |truncate, side| LongDocuments {
            truncate,
            side,
            chunking: None,
            max_document_tokens: None,
        };
        let (cut, keep, left) = (
            long(true, Side::Right),
            long(false, Side::Right),
            long(true, Side::Left),
        );
        assert_eq!(
            groups(&[keep, cut, keep, left, cut]),
            vec![(keep, vec![0, 2]), (cut, vec![1, 4]), (left, vec![3])]
        );
        assert!(groups(&[]).is_empty());
    }
}
