//! Making one planned call over gRPC, naming how it ended and reading what
//! its answers' Usage counted.
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
/// the message that goes with it, and what its answers' Usage counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: &'static str,
    pub message: String,
    /// Set when an answer came with a Usage.
    pub usage: Option<Counted>,
}

/// What a call's answers' Usage counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Pairs scored, each window of a chunked document one.
    pub pairs: u32,
    /// Tokens fed to the model.
    pub tokens: u64,
}

impl Counted {
    fn of(usage: Option<&pb::Usage>) -> Option<Self> {
        usage.map(|u| Counted {
            pairs: u.pairs,
            tokens: u.tokens,
        })
    }
}

impl Outcome {
    fn of(result: Result<(), check::Wrong>, usage: Option<Counted>) -> Self {
        match result {
            Ok(()) => Outcome {
                code: "OK",
                message: String::new(),
                usage,
            },
            Err(wrong) => Outcome {
                code: WRONG_ANSWER,
                message: wrong,
                usage,
            },
        }
    }

    /// The call's pairs: what its answers' Usage counted, or else the
    /// `sent` documents or pairs.
    pub fn pairs(&self, sent: u32) -> u32 {
        self.usage.map_or(sent, |u| u.pairs)
    }

    /// The call's tokens, from an OK answer's Usage.
    pub fn tokens(&self) -> Option<u64> {
        self.usage.filter(|_| self.code == "OK").map(|u| u.tokens)
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
            usage: None,
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
                    usage: None,
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
    let answer = response.get_ref();
    Ok(Outcome::of(
        check::rerank(&request, answer),
        Counted::of(answer.usage.as_ref()),
    ))
}

async fn pairs(
    mut client: Client,
    request: pb::ScorePairsRequest,
    deadline: Duration,
) -> Result<Outcome, tonic::Status> {
    let response = client
        .score_pairs(with_deadline(request.clone(), deadline))
        .await?;
    let answer = response.get_ref();
    Ok(Outcome::of(
        check::pairs(&request, answer),
        Counted::of(answer.usage.as_ref()),
    ))
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
                    usage: None,
                })
            }
        }
    }
    let usage = match seen.last() {
        Some(pb::rerank_progress::Update::Final(last)) => Counted::of(last.usage.as_ref()),
        _ => None,
    };
    Ok(Outcome::of(check::progressive(&request, &seen), usage))
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
    Ok(Outcome::of(
        check::stream(&requests, bad, &seen),
        stream_usage(&requests, &seen),
    ))
}

/// What a stream's answers counted: each request answered with a Usage
/// counts its pairs and tokens, any other (the bad one, refused) the
/// documents it sent and no tokens. `None` when no answer had a Usage.
fn stream_usage(
    requests: &[pb::RerankRequest],
    answers: &[pb::RerankStreamResponse],
) -> Option<Counted> {
    use pb::rerank_stream_response::Outcome;
    let usage_of = |request: &pb::RerankRequest| {
        answers
            .iter()
            .filter(|a| a.request_id == request.request_id)
            .find_map(|a| match &a.outcome {
                Some(Outcome::Response(response)) => Counted::of(response.usage.as_ref()),
                _ => None,
            })
    };
    let counted: Vec<Option<Counted>> = requests.iter().map(usage_of).collect();
    if counted.iter().all(Option::is_none) {
        return None;
    }
    let sum = requests.iter().zip(&counted).fold(
        Counted {
            pairs: 0,
            tokens: 0,
        },
        |sum, (request, usage)| {
            let this = usage.unwrap_or(Counted {
                pairs: u32::try_from(request.documents.len()).unwrap_or(u32::MAX),
                tokens: 0,
            });
            Counted {
                pairs: sum.pairs.saturating_add(this.pairs),
                tokens: sum.tokens + this.tokens,
            }
        },
    );
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pairs: u32, tokens: u64) -> Option<pb::Usage> {
        Some(pb::Usage {
            pairs,
            tokens,
            ..Default::default()
        })
    }

    #[test]
    fn pairs_come_from_usage_and_tokens_only_from_an_ok_answer() {
        let counted = Some(Counted {
            pairs: 9,
            tokens: 700,
        });
        let ok = Outcome::of(Ok(()), counted);
        assert_eq!((ok.pairs(6), ok.tokens()), (9, Some(700)));
        let wrong = Outcome::of(Err("2 results".into()), counted);
        assert_eq!(
            (wrong.code, wrong.pairs(6), wrong.tokens()),
            (WRONG_ANSWER, 9, None)
        );
        let no_usage = Outcome::of(Ok(()), None);
        assert_eq!((no_usage.pairs(6), no_usage.tokens()), (6, None));
        let refused = Outcome::from(tonic::Status::deadline_exceeded("late"));
        assert_eq!(
            (refused.code, refused.pairs(6), refused.tokens()),
            ("DEADLINE_EXCEEDED", 6, None)
        );
        let timer = Outcome::from(tonic::Status::cancelled("Timeout expired"));
        assert_eq!(timer.code, CLIENT_DEADLINE);
    }

    #[test]
    fn a_stream_counts_its_answers_usage_and_the_refused_requests_documents() {
        use pb::rerank_stream_response::Outcome as Answer;
        let request = |id: &str, documents: usize| pb::RerankRequest {
            request_id: id.into(),
            documents: vec!["d".into(); documents],
            ..Default::default()
        };
        let requests = [request("r0", 4), request("r1", 5), request("r2", 6)];
        let answered = |id: &str, usage: Option<pb::Usage>| pb::RerankStreamResponse {
            request_id: id.into(),
            outcome: Some(Answer::Response(pb::RerankResponse {
                usage,
                ..Default::default()
            })),
        };
        let refused = pb::RerankStreamResponse {
            request_id: "r1".into(),
            outcome: Some(Answer::Error(pb::RequestError {
                code: tonic::Code::InvalidArgument as i32,
                message: "empty query".into(),
            })),
        };
        // r0 chunked into 7 windows, r1 refused (its 5 documents), r2 6.
        let answers = [
            answered("r2", usage(6, 600)),
            refused.clone(),
            answered("r0", usage(7, 900)),
        ];
        assert_eq!(
            stream_usage(&requests, &answers),
            Some(Counted {
                pairs: 18,
                tokens: 1500
            })
        );
        let bare = [answered("r2", None), refused, answered("r0", None)];
        assert_eq!(stream_usage(&requests, &bare), None);
    }
}
