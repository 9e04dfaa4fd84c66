//! The exact score cache (`--score-cache-mb`) end to end: a pair scored
//! once is answered again without the model (no queue, no inference time)
//! and with the same score, whichever API asks; a setting that changes what
//! the model sees misses; a partly known request scores only what is new;
//! progressive calls get every document.
//!
//! Owns: those behaviours through the real server. Must never: look inside
//! the cache (the answers' timings and scores say what happened).

use rerankd::grpc::pb;
use rerankd::grpc::pb::rerank_progress::Update;
use tokio_stream::StreamExt;

use crate::common::*;

fn cached_server() -> std::net::SocketAddr {
    let infer = rerankd::config::InferConfig {
        score_cache_bytes: 1 << 20,
        ..Default::default()
    };
    start_server_with(model_config(model_dir("tiny-bert"), "fp32"), infer).unwrap()
}

fn raw(mut request: pb::RerankRequest) -> pb::RerankRequest {
    request.raw_scores = true;
    request
}

fn scores(response: &pb::RerankResponse) -> Vec<(u32, f32)> {
    let mut scores: Vec<(u32, f32)> = response
        .results
        .iter()
        .map(|r| (r.index, r.score))
        .collect();
    scores.sort_by_key(|(index, _)| *index);
    scores
}

#[tokio::test]
async fn a_pair_scored_once_is_answered_from_the_cache_by_every_api() {
    let addr = cached_server();
    let uncached = shared_server("tiny-bert", "fp32");
    let documents = [
        "the market by the river",
        "a museum in the north",
        "winter harbour",
    ];
    let request = raw(request("where is the market", &documents));

    let mut client = client(addr).await;
    let first = client.rerank(request.clone()).await.unwrap().into_inner();
    assert!(first.timings.unwrap().inference_us > 0);
    let again = client.rerank(request.clone()).await.unwrap().into_inner();
    let timings = again.timings.unwrap();
    assert_eq!(
        (timings.inference_us, timings.queue_us),
        (0, 0),
        "{timings:?}"
    );
    assert_eq!(scores(&again), scores(&first));
    // The same scores as a server without a cache.
    let plain = client_of(uncached)
        .rerank(request.clone())
        .await
        .unwrap()
        .into_inner();
    for ((_, cached), (_, fresh)) in scores(&again).iter().zip(scores(&plain)) {
        assert!((cached - fresh).abs() <= 1e-6, "{cached} vs {fresh}");
    }

    // ScorePairs shares it: the same (query, document) pairs hit.
    let pairs = pb::ScorePairsRequest {
        pairs: documents
            .iter()
            .map(|d| pb::Pair {
                query: "where is the market".into(),
                document: d.to_string(),
            })
            .collect(),
        ..Default::default()
    };
    let scored = client.score_pairs(pairs).await.unwrap().into_inner();
    assert_eq!(scored.timings.unwrap().inference_us, 0);
    let by_index = scores(&first);
    for (i, score) in scored.scores.iter().enumerate() {
        assert_eq!(*score, by_index[i].1, "pair {i}");
    }
}

#[tokio::test]
async fn a_changed_setting_misses_and_new_documents_alone_are_scored() {
    let addr = cached_server();
    let mut client = client(addr).await;
    // Far over the window of 512 tokens: cut on either side.
    let long: String = (0..400).map(|i| format!("word{i} ")).collect();
    let documents = [long.as_str(), "a market", "a river"];
    let request = raw(request("where is the market", &documents));
    let first = client.rerank(request.clone()).await.unwrap().into_inner();

    // Keeping the document's end instead of its beginning: the long
    // document's pair is another pair to the model, so it misses.
    let mut left = request.clone();
    left.truncation_side = pb::TruncationSide::Left as i32;
    let cut_left = client.rerank(left).await.unwrap().into_inner();
    assert!(cut_left.timings.unwrap().inference_us > 0);
    assert_ne!(scores(&cut_left)[0], scores(&first)[0]);
    // The short documents are the same pairs either way: they hit.
    assert_eq!(scores(&cut_left)[1..], scores(&first)[1..]);

    // A request that adds one document: only it is scored, and the known
    // ones keep their scores.
    let mut more = request.clone();
    more.documents.push("a harbour in winter".into());
    let grown = client.rerank(more.clone()).await.unwrap().into_inner();
    assert_eq!(grown.usage.unwrap().pairs, 4);
    assert!(grown.timings.unwrap().inference_us > 0);
    assert_eq!(scores(&grown)[..3], scores(&first)[..]);
    let again = client.rerank(more).await.unwrap().into_inner();
    assert_eq!(again.timings.unwrap().inference_us, 0);
}

#[tokio::test]
async fn progressive_calls_get_every_document_from_the_cache_and_the_model() {
    let addr = cached_server();
    let mut client = client(addr).await;
    let documents: Vec<String> = (0..40)
        .map(|i| format!("document {i} about the river"))
        .collect();
    let half: Vec<&str> = documents[..20].iter().map(String::as_str).collect();
    client
        .rerank(raw(request("the river", &half)))
        .await
        .unwrap();
    let all: Vec<&str> = documents.iter().map(String::as_str).collect();
    let expected = client
        .rerank(raw(request("the river", &all)))
        .await
        .unwrap()
        .into_inner();

    // A fresh server's cache holds the first 20 only.
    let addr = cached_server();
    let mut client = client_of(addr);
    client
        .rerank(raw(request("the river", &half)))
        .await
        .unwrap();
    let mut stream = client
        .rerank_progressive(raw(request("the river", &all)))
        .await
        .unwrap()
        .into_inner();
    let mut partial = std::collections::HashMap::new();
    let mut last = None;
    while let Some(message) = stream.next().await {
        match message.unwrap().update.unwrap() {
            Update::Partial(p) => {
                for r in p.results {
                    assert!(
                        partial.insert(r.index, r.score).is_none(),
                        "{} twice",
                        r.index
                    );
                }
            }
            Update::Final(response) => last = Some(response),
        }
    }
    assert_eq!(partial.len(), 40);
    let last = last.expect("a final message");
    for ((index, score), (_, want)) in scores(&last).into_iter().zip(scores(&expected)) {
        assert_eq!(partial[&index], score, "document {index}");
        assert!(
            (score - want).abs() <= 1e-5,
            "document {index}: {score} vs {want}"
        );
    }
}

/// A client on a fresh connection, without awaiting the connect.
fn client_of(
    addr: std::net::SocketAddr,
) -> pb::reranker_client::RerankerClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    pb::reranker_client::RerankerClient::new(channel)
}
