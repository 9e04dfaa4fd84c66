//! Latency under contention, end to end on a real server: a
//! small query sent while large requests are queued waits for a few
//! batches, not for the large requests, and a more urgent priority goes
//! ahead. Counted in batches the server cut while the query waited (Stats),
//! not in wall-clock time: the time figures are the contention bench's
//! (`scripts/bench/contention.sh`, BENCHMARKS.md), and this test only prints
//! them.
//!
//! Owns: those end-to-end orderings. Must never: assert a duration.

use std::time::Instant;

use rerankd::grpc::pb;
use rerankd::grpc::pb::rerank_progress::Update;
use tokio_stream::StreamExt;

use crate::common::*;

/// `count` documents of about `words` words, distinct.
fn documents(count: usize, words: usize) -> Vec<String> {
    let vocabulary = [
        "river", "market", "city", "capital", "bridge", "museum", "harbour", "garden", "north",
        "winter", "history", "people",
    ];
    (0..count)
        .map(|d| {
            (0..words)
                .map(|w| vocabulary[(d * 7 + w * 5) % vocabulary.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

async fn batches_cut(
    client: &mut pb::reranker_client::RerankerClient<tonic::transport::Channel>,
) -> u64 {
    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    stats.devices.iter().map(|d| d.batches).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_query_waits_for_a_few_batches_not_for_the_large_requests_queued() {
    // Its own server: the batch counts must be this test's alone (its
    // --max-queue-time of an hour, `test_infer`'s, keeps admission from
    // refusing the deadline-less large requests on a crowded machine).
    let addr =
        start_server_with(model_config(model_dir("minilm-pair"), "fp32"), test_infer()).unwrap();
    let mut stats = client(addr).await;
    let small_documents = documents(8, 30);
    let small: Vec<&str> = small_documents.iter().map(String::as_str).collect();
    let small = request("where is the capital by the river", &small);

    // Alone first: the time to compare with (printed, not asserted).
    let mut alone = client(addr).await;
    alone.rerank(small.clone()).await.unwrap();
    let started = Instant::now();
    alone.rerank(small.clone()).await.unwrap();
    let time_alone = started.elapsed();

    // Two large requests of 200 documents, through the progressive API: its
    // first partial answer says the request is queued and being scored.
    let mut large = Vec::new();
    for client_index in 0..2 {
        let mut client = client(addr).await;
        let request = pb::RerankRequest {
            query: format!("large request {client_index}"),
            documents: documents(200, 60),
            ..Default::default()
        };
        let mut stream = client
            .rerank_progressive(request)
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert!(matches!(first.update, Some(Update::Partial(_))));
        large.push(stream);
    }

    let mut waited = Vec::new();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let before = batches_cut(&mut stats).await;
        let started = Instant::now();
        let answer = alone.rerank(small.clone()).await.unwrap().into_inner();
        latencies.push(started.elapsed());
        let after = batches_cut(&mut stats).await;
        assert_eq!(answer.results.len(), 8);
        waited.push(after - before);
        // The large requests are still queued: the count above was cut
        // while they waited, so it is not vacuous.
        let queued = stats
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner()
            .queued_pairs;
        assert!(
            queued > 8,
            "the large requests finished first ({queued} pairs queued)"
        );
    }
    eprintln!(
        "small query alone {time_alone:?}; under two 200-document requests {latencies:?}; \
         batches cut while it waited {waited:?}"
    );
    // The batch computing and the one cut ahead when it arrived, then its
    // own 8 pairs (at most 4 batches under the padding floor and the batch
    // target): never the large requests' 400 pairs. Round-robin anchoring
    // took one batch in three for it, dozens in all.
    for (call, &count) in waited.iter().enumerate() {
        assert!(
            count <= 6,
            "call {call}: {count} batches were cut while it waited: {waited:?}"
        );
    }
    for mut stream in large {
        let mut last = None;
        while let Some(message) = stream.next().await {
            last = message.unwrap().update;
        }
        assert!(matches!(last, Some(Update::Final(_))));
    }
}
