//! End to end for `ScorePairs`: arbitrary (query, document) pairs through the
//! real server and model, scores in input order, FlagReranker-style
//! `normalize` and `max_length`, and its errors.

use crate::common::*;
use rerankd::grpc::pb;
use tonic::Code;

fn pairs_request(pairs: &[(&str, &str)]) -> pb::ScorePairsRequest {
    pb::ScorePairsRequest {
        pairs: pairs
            .iter()
            .map(|(query, document)| pb::Pair {
                query: query.to_string(),
                document: document.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn scores_every_golden_pair_as_the_export_did_in_input_order() {
    for model in ["tiny-bert", "tiny-xlmr", "minilm-pair"] {
        let golden = golden(model);
        // All groups' pairs in one request, interleaved across queries.
        let mut pairs = Vec::new();
        let mut expected = Vec::new();
        let longest = golden
            .groups
            .iter()
            .map(|g| g.documents.len())
            .max()
            .unwrap();
        for d in 0..longest {
            for group in &golden.groups {
                if let Some(document) = group.documents.get(d) {
                    pairs.push((group.query.as_str(), document.as_str()));
                    expected.push(group.scores[d]);
                }
            }
        }
        let mut client = client(shared_server(model, "fp32")).await;
        let mut request = pairs_request(&pairs);
        request.request_id = "golden".into();
        let response = client.score_pairs(request).await.unwrap().into_inner();
        assert_eq!(response.request_id, "golden");
        assert_eq!(response.scores.len(), expected.len(), "{model}");
        for (i, (got, want)) in response.scores.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= 1e-4,
                "{model} pair {i}: {got} vs {want}"
            );
        }
        let usage = response.usage.unwrap();
        assert_eq!(usage.pairs as usize, expected.len());
        assert!(usage.tokens > 0 && response.timings.unwrap().total_us > 0);
    }
}

#[tokio::test]
async fn normalize_applies_the_models_activation() {
    let mut client = client(shared_server("tiny-bert", "fp32")).await;
    let pairs = [
        ("what is a river", "water flowing"),
        ("what is a river", "a stone"),
    ];
    let raw = client
        .score_pairs(pairs_request(&pairs))
        .await
        .unwrap()
        .into_inner()
        .scores;
    let mut request = pairs_request(&pairs);
    request.normalize = true;
    let normalized = client
        .score_pairs(request)
        .await
        .unwrap()
        .into_inner()
        .scores;
    for (r, n) in raw.iter().zip(&normalized) {
        let sigmoid = 1.0 / (1.0 + (-r).exp());
        assert!((n - sigmoid).abs() <= 1e-6, "raw {r}, normalized {n}");
    }
}

#[tokio::test]
async fn max_length_cuts_pairs_at_the_requested_window() {
    let mut client = client(shared_server("tiny-bert", "fp32")).await;
    let long = "river stone light market ".repeat(40);
    let mut request = pairs_request(&[("query", &long), ("query", "short")]);
    request.max_length = 16;
    let response = client.score_pairs(request).await.unwrap().into_inner();
    let usage = response.usage.unwrap();
    assert_eq!(usage.truncated, 1);
    // 16 for the cut pair, and the short pair's own length (under 16).
    assert!(usage.tokens > 16 && usage.tokens < 32, "{usage:?}");

    // Over the window, or refusing to truncate at the requested one, fails.
    let mut request = pairs_request(&[("query", &long)]);
    request.max_length = 16;
    request.truncate = Some(false);
    let status = client.score_pairs(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("16"), "{status:?}");
    let mut request = pairs_request(&[("query", "short")]);
    request.max_length = 100_000;
    let status = client.score_pairs(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("window of 512"), "{status:?}");
}

#[tokio::test]
async fn malformed_requests_are_refused_naming_the_problem() {
    let mut client = client(shared_server("tiny-bert", "fp32")).await;
    let cases = [
        (pairs_request(&[]), "pairs is empty"),
        (
            pairs_request(&[("q", "d"), (" ", "d")]),
            "pair 1 has an empty query",
        ),
    ];
    for (request, fragment) in cases {
        let status = client.score_pairs(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(fragment), "{status:?}");
    }
}
