//! `RerankProgressive`: one rerank streamed back as its batches finish —
//! partial scores, then the final sorted response.
//!
//! Owns: forwarding a request's per-batch scores (normalised unless raw
//! scores were asked for) and ending with the final response or the
//! request's status. Must never: send a partial after the final message,
//! buffer more than `ANSWER_BUFFER` messages for a client that does not read
//! (per-batch scores wait in the batcher's per-request channel, which holds
//! at most the request's own scores), or keep working for a client that has
//! gone.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument;

use super::convert::to_response;
use super::pb;
use super::pb::rerank_progress::Update;
use super::trace::RequestTrace;
use crate::infer::{Infer, RerankQuery};
use crate::metrics::Metrics;

const ANSWER_BUFFER: usize = 16;

pub type ProgressStream = ReceiverStream<Result<pb::RerankProgress, Status>>;

/// Serves one progressive rerank: spawns the work, returns the messages.
pub fn serve(
    infer: Infer,
    metrics: Arc<Metrics>,
    trace: RequestTrace,
    query: RerankQuery,
    request_id: String,
) -> ProgressStream {
    let (answers, stream) = mpsc::channel(ANSWER_BUFFER);
    let span = trace.span.clone();
    let work = async move {
        let total = query.documents.len() as u32;
        let activation = (!query.raw_scores).then_some(infer.info().activation);
        let (progress, mut partials) = mpsc::unbounded_channel::<Vec<(usize, f32)>>();
        // As a unary call: the work ends at its deadline, not at the next
        // batch cut that finds its pairs expired.
        let deadline = query.deadline;
        let rerank = crate::infer::within(deadline, infer.rerank_with_progress(query, progress));
        tokio::pin!(rerank);
        let mut scored = 0u32;
        let partial = |batch: Vec<(usize, f32)>, scored: &mut u32| {
            *scored += batch.len() as u32;
            pb::RerankProgress {
                update: Some(Update::Partial(pb::PartialResults {
                    results: batch
                        .into_iter()
                        .map(|(index, score)| pb::RerankResult {
                            index: index as u32,
                            score: activation.map_or(score, |a| a.apply(score)),
                            document: None,
                        })
                        .collect(),
                    scored: *scored,
                    total,
                })),
            }
        };
        let outcome = loop {
            tokio::select! {
                // Partials first: every batch's scores go out before the end.
                biased;
                Some(batch) = partials.recv() => {
                    if answers.send(Ok(partial(batch, &mut scored))).await.is_err() {
                        return; // The client has gone; dropping `rerank` drops its work.
                    }
                }
                outcome = &mut rerank => break outcome,
                _ = answers.closed() => return,
            }
        };
        // The batcher sends a batch's partial before its answer: drain them.
        while let Ok(batch) = partials.try_recv() {
            if answers.send(Ok(partial(batch, &mut scored))).await.is_err() {
                return;
            }
        }
        let last = match outcome {
            Ok(reranked) => {
                trace.finish(&metrics, tonic::Code::Ok, Some(&reranked.timings));
                Ok(pb::RerankProgress {
                    update: Some(Update::Final(to_response(
                        reranked,
                        request_id,
                        &infer.info().name,
                    ))),
                })
            }
            Err(error) => {
                let status = Status::from(error);
                trace.finish(&metrics, status.code(), None);
                Err(status)
            }
        };
        let _ = answers.send(last).await;
    };
    tokio::spawn(work.instrument(span));
    ReceiverStream::new(stream)
}
