//! End to end for `RerankProgressive`: partial results arrive before the
//! final message, cover every document once, and the final top_n equals
//! unary `Rerank`'s.

use std::collections::HashMap;

use crate::common::*;
use rerankd::grpc::pb;
use rerankd::grpc::pb::rerank_progress::Update;
use tokio_stream::StreamExt;
use tonic::Code;

fn documents(count: usize) -> Vec<String> {
    (0..count)
        .map(|d| {
            (0..1 + (d * 7) % 40)
                .map(|w| ["river", "city", "market", "stone", "light"][(w + d) % 5])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_results_come_first_and_the_final_top_n_equals_rerank() {
    let mut client = client(shared_server("tiny-bert", "fp32")).await;
    let request = pb::RerankRequest {
        query: "where is the market".into(),
        documents: documents(300),
        top_n: 10,
        request_id: "big".into(),
        ..Default::default()
    };
    let mut stream = client
        .rerank_progressive(request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut partial_scores: HashMap<u32, f32> = HashMap::new();
    let mut partials = 0;
    let mut last_scored = 0;
    let mut last = None;
    while let Some(message) = stream.next().await {
        match message.unwrap().update.unwrap() {
            Update::Partial(partial) => {
                assert!(last.is_none(), "a partial after the final message");
                partials += 1;
                assert_eq!(partial.total, 300);
                assert_eq!(partial.scored, last_scored + partial.results.len() as u32);
                last_scored = partial.scored;
                for result in partial.results {
                    assert!(result.document.is_none());
                    assert!(
                        partial_scores.insert(result.index, result.score).is_none(),
                        "document {} sent twice",
                        result.index
                    );
                }
            }
            Update::Final(response) => last = Some(response),
        }
    }
    let last = last.expect("no final message");
    assert!(partials >= 2, "only {partials} partial messages");
    assert_eq!(partial_scores.len(), 300, "every document scored once");
    assert_eq!(last.request_id, "big");

    let unary = client.rerank(request).await.unwrap().into_inner();
    assert_eq!(last.results.len(), 10);
    for (progressive, alone) in last.results.iter().zip(&unary.results) {
        assert_eq!(progressive.index, alone.index);
        assert!((progressive.score - alone.score).abs() <= 1e-4);
        // The partial score of a document is its final (normalised) score.
        assert!((partial_scores[&progressive.index] - progressive.score).abs() <= 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_ends_the_stream_with_its_status() {
    let mut client = client(shared_server("tiny-bert", "fp32")).await;
    let mut stream = client
        .rerank_progressive(request(" ", &["a"]))
        .await
        .unwrap()
        .into_inner();
    let status = stream.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("query is empty"), "{status:?}");
}
