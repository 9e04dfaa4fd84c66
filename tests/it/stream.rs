//! End to end for `RerankStream`: many reranks on one bidirectional stream
//! over a real port with the real model, answered by id in completion
//! order; one bad request answered with its error while the others succeed;
//! a client that goes away frees its queued work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use rerankd::grpc::pb;
use rerankd::grpc::pb::rerank_stream_response::Outcome;
use tokio_stream::StreamExt;
use tonic::Code;

fn words(seed: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|d| {
            let length = 1 + (seed * 5 + d * 3) % 25;
            (0..length)
                .map(|w| ["river", "city", "market", "stone", "light", "bread"][(w + d + seed) % 6])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn stream_request(id: &str, query: &str, documents: Vec<String>) -> pb::RerankRequest {
    pb::RerankRequest {
        query: query.into(),
        documents,
        request_id: id.into(),
        raw_scores: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_interleaved_requests_are_answered_by_id_as_unary_would() {
    let addr = shared_server("tiny-bert", "fp32");
    let mut client = client(addr).await;
    // Mixed sizes; request 17 is malformed (an empty query).
    let requests: Vec<pb::RerankRequest> = (0..50)
        .map(|r| {
            let query = if r == 17 { "  " } else { "where is the market" };
            stream_request(&format!("r{r}"), query, words(r, 1 + (r * 7) % 23))
        })
        .collect();
    let mut answers = client
        .rerank_stream(tokio_stream::iter(requests.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut by_id = HashMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer.unwrap();
        assert!(
            by_id.insert(answer.request_id.clone(), answer).is_none(),
            "an id answered twice"
        );
    }
    assert_eq!(by_id.len(), 50);
    for (r, request) in requests.into_iter().enumerate() {
        let answer = &by_id[&format!("r{r}")];
        match (&answer.outcome, r) {
            (Some(Outcome::Error(error)), 17) => {
                assert_eq!(error.code, Code::InvalidArgument as i32);
                assert!(error.message.contains("query is empty"), "{error:?}");
            }
            (Some(Outcome::Response(response)), _) => {
                assert_eq!(response.request_id, format!("r{r}"));
                let unary = client.rerank(request).await.unwrap().into_inner();
                let streamed: Vec<(u32, f32)> = response
                    .results
                    .iter()
                    .map(|x| (x.index, x.score))
                    .collect();
                let alone: Vec<(u32, f32)> =
                    unary.results.iter().map(|x| (x.index, x.score)).collect();
                assert_eq!(streamed.len(), alone.len(), "r{r}");
                for ((si, ss), (ai, a)) in streamed.iter().zip(&alone) {
                    assert!((ss - a).abs() <= 1e-4, "r{r}: {ss} vs {a}");
                    // Same order, unless two scores tie within float noise.
                    assert!(si == ai || (ss - a).abs() <= 1e-4, "r{r}");
                }
            }
            (other, _) => panic!("r{r}: unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_request_behind_a_huge_one_is_answered_first() {
    let addr = shared_server("tiny-bert", "fp32");
    let mut client = client(addr).await;
    let requests = vec![
        stream_request("huge", "where is the market", words(3, 800)),
        stream_request("small", "where is the market", words(4, 3)),
    ];
    let mut answers = client
        .rerank_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let first = answers.next().await.unwrap().unwrap();
    assert_eq!(
        first.request_id, "small",
        "answers come in completion order"
    );
    let second = answers.next().await.unwrap().unwrap();
    assert_eq!(second.request_id, "huge");
    assert!(answers.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_queued_work() {
    // Its own server, so no other test's work shows in its Stats; the slow
    // default model, so the request is still queued when the client leaves.
    let addr = start_server(model_config(model_dir("minilm-pair"), "fp32")).unwrap();
    let mut client = client(addr).await;
    let (send, outgoing) = tokio::sync::mpsc::channel(1);
    let answers = client
        .rerank_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();
    send.send(stream_request("big", "where is the market", words(5, 1000)))
        .await
        .unwrap();
    let mut stats_client = crate::common::client(addr).await;
    let stats = |mut c: pb::reranker_client::RerankerClient<_>| async move {
        let s = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
        (s, c)
    };
    // Wait (bounded) until the server has queued it.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, c) = stats(stats_client).await;
        stats_client = c;
        if s.queued_pairs > 0 {
            break;
        }
        assert!(Instant::now() < until, "the request never queued");
        tokio::task::yield_now().await;
    }
    // The client goes away with its request unanswered.
    drop(send);
    drop(answers);
    drop(client);
    let until = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let (s, c) = stats(stats_client).await;
        stats_client = c;
        if s.queued_pairs == 0 {
            break s;
        }
        assert!(
            Instant::now() < until,
            "the queued work was never freed: {s:?}"
        );
        tokio::task::yield_now().await;
    };
    assert!(
        after.devices[0].pairs < 1000,
        "the abandoned pairs were not all scored: {:?}",
        after.devices[0]
    );
    // The server goes on serving; once this answers, the batch that was
    // computing when the client left has finished too (the test process
    // must not exit while libtorch computes).
    let mut client = crate::common::client(addr).await;
    let response = client
        .rerank(request("where is the market", &["a market", "a river"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
}
