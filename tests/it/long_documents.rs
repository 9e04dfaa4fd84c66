//! End to end for long documents over a real port with the real model:
//! truncation on either side keeps the end it says, and chunking scores a
//! document five windows long as the max (or mean) of its windows scored
//! alone, in Rerank, ScorePairs and RerankProgressive alike; bad options
//! get INVALID_ARGUMENT saying what to fix.

use crate::common::*;
use rerankd::grpc::pb;
use rerankd::grpc::pb::rerank_progress::Update;
use rerankd::tokenize::{Fit, Overflow, PairTokenizer};
use tokio_stream::StreamExt;
use tonic::Code;

const MODEL: &str = "tiny-bert";
const QUERY: &str = "where is the market";
const WORDS: [&str; 8] = [
    "river", "city", "market", "stone", "light", "bread", "paris", "france",
];

/// `count` words, each one token, in a pattern that makes windows differ.
fn words(count: usize) -> Vec<&'static str> {
    (0..count)
        .map(|i| WORDS[(i * i / 7 + i / 13) % WORDS.len()])
        .collect()
}

fn tokenizer() -> PairTokenizer {
    let window = golden(MODEL).max_length;
    PairTokenizer::from_file(&model_dir(MODEL).join("tokenizer.json"), window).unwrap()
}

/// Tokens a pair of QUERY and `document` makes, special tokens included.
fn pair_tokens(document: &str) -> usize {
    let tokenizer = tokenizer();
    let fit = Fit {
        max_length: usize::MAX,
        overflow: Overflow::Refuse,
        max_document_tokens: None,
    };
    tokenizer.encode_pair(QUERY, document, 0, fit).unwrap()[0].len()
}

/// Document tokens one window holds: the window less the query and the
/// template.
fn room() -> usize {
    tokenizer().max_length() - pair_tokens("")
}

fn raw(documents: Vec<String>) -> pb::RerankRequest {
    pb::RerankRequest {
        query: QUERY.into(),
        documents,
        raw_scores: true,
        ..Default::default()
    }
}

fn chunked(documents: Vec<String>, overlap: u32, aggregate: pb::Aggregate) -> pb::RerankRequest {
    pb::RerankRequest {
        chunking: Some(pb::Chunking {
            overlap_tokens: Some(overlap),
            aggregate: aggregate as i32,
        }),
        ..raw(documents)
    }
}

/// The windows chunking makes of `document` (as word ranges, one token
/// each), by the rule the proto documents.
fn windows(length: usize, room: usize, overlap: usize) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + room).min(length);
        windows.push(start..end);
        if end == length {
            return windows;
        }
        start += room - overlap;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_five_windows_long_scores_as_its_windows_scored_alone() {
    let mut client = client(shared_server(MODEL, "fp32")).await;
    let window = tokenizer().max_length();
    let room = room();
    let long = words(5 * window);
    let text = long.join(" ");
    assert_eq!(
        pair_tokens(&text),
        pair_tokens("") + long.len(),
        "one token a word"
    );
    let overlap = 64;
    let ranges = windows(long.len(), room, overlap);
    assert!(ranges.len() >= 5, "{} windows", ranges.len());

    // Every window alone, as an ordinary document that fits the window.
    let alone = raw(ranges.iter().map(|r| long[r.clone()].join(" ")).collect());
    let alone = client
        .rerank(pb::RerankRequest {
            truncate: Some(false),
            ..alone
        })
        .await
        .unwrap()
        .into_inner();
    let alone = scores_by_index(&alone, ranges.len());
    let max = alone.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mean = alone.iter().sum::<f32>() / alone.len() as f32;
    assert!(
        max - mean > 1e-3,
        "the windows score differently: {alone:?}"
    );

    let documents = vec!["a market by the river".to_string(), text];
    for (aggregate, expected) in [(pb::Aggregate::Max, max), (pb::Aggregate::Mean, mean)] {
        let response = client
            .rerank(chunked(documents.clone(), overlap as u32, aggregate))
            .await
            .unwrap()
            .into_inner();
        let scores = scores_by_index(&response, 2);
        assert!(
            (scores[1] - expected).abs() <= 1e-4,
            "{aggregate:?}: {} vs {expected}",
            scores[1]
        );
        let usage = response.usage.unwrap();
        assert_eq!(usage.chunks as usize, ranges.len());
        assert_eq!(usage.pairs as usize, ranges.len() + 1);
        assert_eq!(usage.truncated, 0);
        // The short document scores as it does without chunking.
        let plain = client
            .rerank(raw(documents[..1].to_vec()))
            .await
            .unwrap()
            .into_inner();
        assert!((scores[0] - plain.results[0].score).abs() <= 1e-4);
    }

    // ScorePairs chunks the same way.
    let pairs = client
        .score_pairs(pb::ScorePairsRequest {
            pairs: vec![pb::Pair {
                query: QUERY.into(),
                document: documents[1].clone(),
            }],
            chunking: Some(pb::Chunking {
                overlap_tokens: Some(overlap as u32),
                aggregate: pb::Aggregate::Max as i32,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!((pairs.scores[0] - max).abs() <= 1e-4);
    assert_eq!(pairs.usage.unwrap().chunks as usize, ranges.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_keeps_the_beginning_or_the_end_as_asked() {
    let mut client = client(shared_server(MODEL, "fp32")).await;
    let room = room();
    let long = words(room + 200);
    let cut = |side: pb::TruncationSide| pb::RerankRequest {
        truncation_side: side as i32,
        ..raw(vec![long.join(" ")])
    };
    let beginning = long[..room].join(" ");
    let end = long[long.len() - room..].join(" ");
    let expected = client
        .rerank(raw(vec![beginning, end]))
        .await
        .unwrap()
        .into_inner();
    let expected = scores_by_index(&expected, 2);
    assert!((expected[0] - expected[1]).abs() > 1e-4, "{expected:?}");
    for (side, want) in [
        (pb::TruncationSide::Unspecified, expected[0]),
        (pb::TruncationSide::Right, expected[0]),
        (pb::TruncationSide::Left, expected[1]),
    ] {
        let response = client.rerank(cut(side)).await.unwrap().into_inner();
        assert!(
            (response.results[0].score - want).abs() <= 1e-4,
            "{side:?}: {} vs {want}",
            response.results[0].score
        );
        assert_eq!(response.usage.unwrap().truncated, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_results_of_chunked_documents_name_documents_once() {
    let mut client = client(shared_server(MODEL, "fp32")).await;
    let window = tokenizer().max_length();
    let documents: Vec<String> = (0..12)
        .map(|d| words(if d % 3 == 0 { 2 * window } else { 20 + d }).join(" "))
        .collect();
    let request = chunked(documents, 32, pb::Aggregate::Max);
    let unary = client.rerank(request.clone()).await.unwrap().into_inner();
    let mut stream = client
        .rerank_progressive(request)
        .await
        .unwrap()
        .into_inner();
    let mut seen = [None; 12];
    let mut last = None;
    while let Some(message) = stream.next().await {
        match message.unwrap().update.unwrap() {
            Update::Partial(partial) => {
                assert!(last.is_none(), "a partial after the final message");
                assert_eq!(partial.total, 12);
                for result in partial.results {
                    let slot = &mut seen[result.index as usize];
                    assert!(slot.is_none(), "document {} twice", result.index);
                    *slot = Some(result.score);
                }
            }
            Update::Final(response) => last = Some(response),
        }
    }
    let last = last.expect("a final message");
    // Equal to unary within float noise (batches differ); identical
    // documents tie, so compare by index.
    assert_eq!(last.results.len(), unary.results.len());
    let last_scores = scores_by_index(&last, 12);
    for result in &unary.results {
        assert!((last_scores[result.index as usize] - result.score).abs() <= 1e-4);
    }
    for result in &unary.results {
        let partial = seen[result.index as usize].expect("every document in a partial");
        assert!((partial - result.score).abs() <= 1e-4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_long_document_options_say_what_to_fix() {
    let mut client = client(shared_server(MODEL, "fp32")).await;
    let long = words(3 * tokenizer().max_length()).join(" ");
    let room = room() as u32;
    let refused = |request: pb::RerankRequest| {
        let mut client = client.clone();
        async move {
            let status = client.rerank(request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            status.message().to_string()
        }
    };
    let message = refused(pb::RerankRequest {
        truncation_side: 9,
        ..raw(vec![long.clone()])
    })
    .await;
    assert!(message.contains("truncation_side 9"), "{message}");
    let mut bad_aggregate = chunked(vec![long.clone()], 0, pb::Aggregate::Max);
    bad_aggregate.chunking.as_mut().unwrap().aggregate = 7;
    let message = refused(bad_aggregate).await;
    assert!(message.contains("chunking.aggregate 7"), "{message}");
    let message = refused(chunked(vec![long.clone()], room, pb::Aggregate::Max)).await;
    assert!(
        message.contains("document 0 cannot be chunked") && message.contains("overlap_tokens"),
        "{message}"
    );
    // A step of one token makes more windows than the server allows.
    let message = refused(chunked(vec![long], room - 1, pb::Aggregate::Max)).await;
    assert!(message.contains("--max-chunks-per-document"), "{message}");
    // The server goes on serving.
    let response = client
        .rerank(request(QUERY, &["a market", "a river"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
}
