//! Making one planned call over gRPC and naming how it ended.
//!
//! Owns: the wire side of each kind: deadlines on every call, reading
//! streams to their end, dropping a cancelled call, telling the client's
//! own deadline timer from the server's DEADLINE_EXCEEDED. Must never:
//! decide which outcomes are expected (`mix`), judge an answer's contents
//! (`check`), or record anything (the caller does).

use std::time::Duration;

use tokio_stream::StreamExt;

use rerankd_api::pb;

use super::check;
use super::mix::{Call, CLIENT_CANCELLED, CLIENT_DEADLINE, WRONG_ANSWER};
use crate::driver::Client;

/// How a call ended: a gRPC code name or one of `mix`'s client outcomes,
/// and the message that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: &'static str,
    pub message: String,
}

impl Outcome {
    fn ok() -> Self {
        Outcome {
            code: "OK",
            message: String::new(),
        }
    }

    fn of(result: Result<(), check::Wrong>) -> Self {
        match result {
            Ok(()) => Outcome::ok(),
            Err(wrong) => Outcome {
                code: WRONG_ANSWER,
                message: wrong,
            },
        }
    }
}

impl From<tonic::Status> for Outcome {
    fn from(status: tonic::Status) -> Self {
        // tonic's client ends a call whose grpc-timeout passed with its own
        // CANCELLED "Timeout expired" when its timer fires first.
        let code =
            if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" {
                CLIENT_DEADLINE
            } else {
                rerankd_api::code_name(status.code())
            };
        Outcome {
            code,
            message: status.message().to_string(),
        }
    }
}

/// Makes `call` on `client`; every call without a short deadline of its own
/// gets `deadline`.
pub async fn make(client: Client, call: Call, deadline: Duration) -> Outcome {
    match call {
        Call::Cancel { call, after } => {
            match tokio::time::timeout(after, simple(client, *call, deadline)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome {
                    code: CLIENT_CANCELLED,
                    message: format!("dropped after {} ms", after.as_millis()),
                },
            }
        }
        Call::Bad { call, .. } => simple(client, *call, deadline).await,
        call => simple(client, call, deadline).await,
    }
}

/// A call that holds no other call.
async fn simple(client: Client, call: Call, deadline: Duration) -> Outcome {
    let result = match call {
        Call::Rerank(request) => rerank(client, request, deadline).await,
        Call::Deadline { request, deadline } => rerank(client, request, deadline).await,
        Call::Pairs(request) => pairs(client, request, deadline).await,
        Call::Progressive(request) => progressive(client, request, deadline).await,
        Call::Stream { requests, bad } => stream(client, requests, bad, deadline).await,
        Call::Cancel { .. } | Call::Bad { .. } => {
            unreachable!("the mix never nests a cancel or bad call (a bug in mix.rs)")
        }
    };
    result.unwrap_or_else(Outcome::from)
}

fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

async fn rerank(
    mut client: Client,
    request: pb::RerankRequest,
    deadline: Duration,
) -> Result<Outcome, tonic::Status> {
    let response = client
        .rerank(with_deadline(request.clone(), deadline))
        .await?;
    Ok(Outcome::of(check::rerank(&request, response.get_ref())))
}

async fn pairs(
    mut client: Client,
    request: pb::ScorePairsRequest,
    deadline: Duration,
) -> Result<Outcome, tonic::Status> {
    let response = client
        .score_pairs(with_deadline(request.clone(), deadline))
        .await?;
    Ok(Outcome::of(check::pairs(&request, response.get_ref())))
}

async fn progressive(
    mut client: Client,
    request: pb::RerankRequest,
    deadline: Duration,
) -> Result<Outcome, tonic::Status> {
    let mut updates = client
        .rerank_progressive(with_deadline(request.clone(), deadline))
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(progress) = updates.message().await? {
        match progress.update {
            Some(update) => seen.push(update),
            None => {
                return Ok(Outcome {
                    code: WRONG_ANSWER,
                    message: "an empty progress message".into(),
                })
            }
        }
    }
    Ok(Outcome::of(check::progressive(&request, &seen)))
}

async fn stream(
    mut client: Client,
    requests: Vec<pb::RerankRequest>,
    bad: usize,
    deadline: Duration,
) -> Result<Outcome, tonic::Status> {
    let outgoing = tokio_stream::iter(requests.clone());
    let mut answers = client
        .rerank_stream(with_deadline(outgoing, deadline))
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(answer) = answers.next().await {
        seen.push(answer?);
    }
    Ok(Outcome::of(check::stream(&requests, bad, &seen)))
}
