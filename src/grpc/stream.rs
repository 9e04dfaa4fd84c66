//! `RerankStream`: many reranks multiplexed on one bidirectional stream,
//! each answered as soon as it is done, tagged with its request id.
//!
//! Owns: reading the inbound stream, the per-stream bound on requests in
//! work, turning one request's error into an answer (the stream goes on),
//! dropping a stream's work when the client goes away, and ending the
//! stream when the server drains. Must never:
//! buffer without bound (at most `MAX_IN_WORK` requests are worked on and
//! at most `ANSWER_BUFFER` answers wait to be read; past either, it stops
//! reading the client), or map an error to a status other than through
//! `From<Error> for Status`.

use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use tracing::Instrument;

use super::convert::{to_query, to_response};
use super::pb;
use super::trace::RequestTrace;
use crate::infer::Infer;
use crate::metrics::Metrics;

/// Requests of one stream worked on at once.
pub const MAX_IN_WORK: usize = 64;
/// Answers waiting for the client to read them.
const ANSWER_BUFFER: usize = 16;

pub type AnswerStream = ReceiverStream<Result<pb::RerankStreamResponse, Status>>;

/// Serves one stream: spawns its reader and returns the answers. Each
/// request gets its own span, under the stream's `traceparent`.
/// Once `draining` turns true the stream reads no more requests: it answers
/// those it has read, then ends (OK), so a server that drains is not held
/// open by a client that never closes its stream.
pub fn serve(
    infer: Infer,
    metrics: Arc<Metrics>,
    traceparent: Option<String>,
    mut draining: watch::Receiver<bool>,
    mut inbound: Streaming<pb::RerankRequest>,
) -> AnswerStream {
    let (answers, stream) = mpsc::channel(ANSWER_BUFFER);
    tokio::spawn(async move {
        let in_work = Arc::new(Semaphore::new(MAX_IN_WORK));
        loop {
            // Wait for room before reading on: a client that floods the
            // stream, or stops reading answers, is held back by HTTP/2 flow
            // control instead of by our memory.
            let permit = tokio::select! {
                permit = Arc::clone(&in_work).acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
                _ = answers.closed() => return,
            };
            let request = tokio::select! {
                request = inbound.next() => request,
                _ = answers.closed() => return,
                _ = draining.wait_for(|draining| *draining) => return,
            };
            let request = match request {
                None => return, // The client finished sending; answers go on.
                Some(Ok(request)) => request,
                Some(Err(status)) => {
                    let _ = answers.send(Err(status)).await;
                    return;
                }
            };
            let infer = infer.clone();
            let answers = answers.clone();
            let metrics = Arc::clone(&metrics);
            let trace =
                RequestTrace::start("RerankStream", &request.request_id, traceparent.as_deref());
            let span = trace.span.clone();
            let work = async move {
                let _permit = permit;
                let request_id = request.request_id.clone();
                let model = infer.info().name.clone();
                // The client going away drops the rerank, and with it the
                // request's queued work.
                let outcome = match to_query(request, None) {
                    Ok(query) => tokio::select! {
                        reranked = infer.rerank(query) => reranked,
                        _ = answers.closed() => return,
                    },
                    Err(error) => Err(error),
                };
                let outcome = match outcome {
                    Ok(reranked) => {
                        trace.finish(&metrics, tonic::Code::Ok, Some(&reranked.timings));
                        pb::rerank_stream_response::Outcome::Response(to_response(
                            reranked,
                            request_id.clone(),
                            &model,
                        ))
                    }
                    Err(error) => {
                        let status = Status::from(error);
                        trace.finish(&metrics, status.code(), None);
                        pb::rerank_stream_response::Outcome::Error(pb::RequestError {
                            code: status.code() as i32,
                            message: status.message().to_string(),
                        })
                    }
                };
                let _ = answers
                    .send(Ok(pb::RerankStreamResponse {
                        request_id,
                        outcome: Some(outcome),
                    }))
                    .await;
            };
            tokio::spawn(work.instrument(span));
        }
    });
    ReceiverStream::new(stream)
}
