//! TEI's gRPC API (`tei.v1.Rerank`, `tei.v1.Info`) end to end over a real
//! port with the real model: a Python client on stubs that grpcio-tools
//! compiles from TEI's own `tei.proto` (scripts/ci/test-tei-client.sh) for
//! `Rerank` and `RerankStream`, `Info`, errors with TEI's codes, health per
//! service and reflection; a tonic client of `tei.v1` for the detailed
//! cases (truncation, the limits, a stream mixing queries and truncation).
//! Every score equals rerankd's own `Rerank`'s for the same input within
//! 1e-6, raw and normalised, and ranks come in the same order.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::common::*;
use rerankd::config::InferConfig;
use rerankd::grpc::{pb, tei_pb};
use tonic::transport::Channel;
use tonic::Code;

type TeiClient = tei_pb::rerank_client::RerankClient<Channel>;

const TOLERANCE: f64 = 1e-6;
const QUERY: &str = "what is the capital of France";
const TEXTS: [&str; 4] = [
    "Berlin is the capital and largest city of Germany.",
    "Paris is the capital and largest city of France.",
    "Photosynthesis turns sunlight, water and carbon dioxide into glucose.",
    "France is a country in Western Europe; its capital is Paris.",
];
const OTHER_QUERY: &str = "how do plants make food";

/// A text whose pair is longer than tiny-bert's 512-token window.
fn long_text() -> String {
    (0..700)
        .map(|i| format!("w{}", i % 50))
        .collect::<Vec<_>>()
        .join(" ")
}

/// rerankd's own `Rerank` of `request`: scores by index, and the ranked
/// indices.
async fn own(addr: SocketAddr, request: pb::RerankRequest) -> (Vec<f32>, Vec<u32>) {
    let count = request.documents.len();
    let response = client(addr)
        .await
        .rerank(request)
        .await
        .unwrap()
        .into_inner();
    let order = response.results.iter().map(|r| r.index).collect();
    (scores_by_index(&response, count), order)
}

fn own_request(query: &str, texts: &[&str], raw_scores: bool) -> pb::RerankRequest {
    pb::RerankRequest {
        raw_scores,
        ..request(query, texts)
    }
}

/// rerankd's own scores for each (query, text) of a stream, in stream
/// order: one `Rerank` per query.
async fn own_pair_scores(addr: SocketAddr, pairs: &[(&str, &str)], raw_scores: bool) -> Vec<f32> {
    let mut by_query: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, (query, _)) in pairs.iter().enumerate() {
        by_query.entry(query).or_default().push(index);
    }
    let mut scores = vec![f32::NAN; pairs.len()];
    for (query, members) in by_query {
        let texts: Vec<&str> = members.iter().map(|&i| pairs[i].1).collect();
        let (own, _) = own(addr, own_request(query, &texts, raw_scores)).await;
        for (&i, score) in members.iter().zip(own) {
            scores[i] = score;
        }
    }
    scores
}

/// Scores (by index) and indices in rank order of TEI ranks.
fn by_index(ranks: &[(u32, f64)], count: usize) -> (Vec<f64>, Vec<u32>) {
    let mut scores = vec![f64::NAN; count];
    for &(index, score) in ranks {
        scores[index as usize] = score;
    }
    (scores, ranks.iter().map(|&(index, _)| index).collect())
}

fn assert_close(what: &str, got: &[f64], own: &[f32]) {
    assert_eq!(got.len(), own.len(), "{what}");
    for (index, (&got, &own)) in got.iter().zip(own).enumerate() {
        assert!(
            (got - own as f64).abs() <= TOLERANCE,
            "{what}: text {index} scored {got} through TEI's API, {own} through Rerank"
        );
    }
}

fn tei_ranks(response: &tei_pb::RerankResponse) -> Vec<(u32, f64)> {
    response
        .ranks
        .iter()
        .map(|rank| (rank.index, rank.score as f64))
        .collect()
}

/// Runs the Python TEI client against `addr` with these inputs; its JSON.
async fn python_client(addr: SocketAddr, cases: serde_json::Value) -> serde_json::Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), cases.to_string()).unwrap();
    let path = file.path().to_path_buf();
    let args = vec![addr.to_string(), path.display().to_string()];
    let run = run_script("scripts/ci/test-tei-client.sh", args, vec![]).await;
    assert!(run.success, "the TEI client failed:\n{}", run.log());
    let line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", run.log()))
}

/// `[[index, score, text], ...]` from the Python client.
fn python_ranks(value: &serde_json::Value) -> Vec<(u32, f64)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|rank| (rank[0].as_u64().unwrap() as u32, rank[1].as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tei_python_client_works_unchanged_and_gets_rerankds_scores() {
    let addr = shared_server("tiny-bert", "fp32");
    let stream: Vec<(&str, &str)> = vec![
        (QUERY, TEXTS[0]),
        (OTHER_QUERY, TEXTS[2]),
        (QUERY, TEXTS[1]),
        (OTHER_QUERY, TEXTS[3]),
        (QUERY, TEXTS[3]),
    ];
    let got = python_client(
        addr,
        serde_json::json!({
            "query": QUERY,
            "texts": TEXTS,
            "stream": stream,
            "long_text": long_text(),
        }),
    )
    .await;

    for (key, raw) in [("unary_raw", true), ("unary_normalised", false)] {
        let (scores, order) = by_index(&python_ranks(&got[key]), TEXTS.len());
        let (own_scores, own_order) = own(addr, own_request(QUERY, &TEXTS, raw)).await;
        assert_close(key, &scores, &own_scores);
        assert_eq!(order, own_order, "{key}");
    }
    for (key, raw) in [("stream_raw", true), ("stream_normalised", false)] {
        let (scores, order) = by_index(&python_ranks(&got[key]), stream.len());
        assert_close(key, &scores, &own_pair_scores(addr, &stream, raw).await);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..stream.len() as u32).collect::<Vec<_>>());
    }

    let model = client(addr)
        .await
        .model_info(pb::ModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let info = &got["info"];
    assert_eq!(info["model_id"], model.name.as_str(), "{info}");
    assert_eq!(info["model_type"], "MODEL_TYPE_RERANKER", "{info}");
    assert_eq!(info["model_dtype"], "float32", "{info}");
    assert_eq!(info["max_input_length"], model.max_length, "{info}");
    assert_eq!(
        info["max_client_batch_size"],
        InferConfig::default().max_documents,
        "{info}"
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert!(info["max_batch_tokens"].as_u64().unwrap() > 0, "{info}");

    let errors = &got["errors"];
    for (case, code) in [
        ("empty_texts", "INVALID_ARGUMENT"),
        ("too_long", "INVALID_ARGUMENT"),
        ("too_long_truncated", "OK"),
        ("too_long_in_stream", "INVALID_ARGUMENT"),
        ("embed", "UNIMPLEMENTED"),
    ] {
        assert_eq!(errors[case], code, "{case}: {errors}");
    }
    assert_eq!(
        got["health"],
        serde_json::json!({"tei.v1.Rerank": "SERVING", "tei.v1.Info": "SERVING"})
    );
    let services: Vec<&str> = got["reflection_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for served in ["tei.v1.Rerank", "tei.v1.Info", "rerank.v1.Reranker"] {
        assert!(services.contains(&served), "{services:?}");
    }
    for unserved in ["tei.v1.Embed", "tei.v1.Predict", "tei.v1.Tokenize"] {
        assert!(!services.contains(&unserved), "{services:?}");
    }
    assert_eq!(
        got["reflection_rerank_methods"],
        serde_json::json!(["Rerank", "RerankStream"])
    );
}

async fn tei_client(addr: SocketAddr) -> TeiClient {
    TeiClient::new(channel(addr).await)
}

fn tei_request(texts: &[&str]) -> tei_pb::RerankRequest {
    tei_pb::RerankRequest {
        query: QUERY.into(),
        texts: texts.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn stream_message(query: &str, text: &str) -> tei_pb::RerankStreamRequest {
    tei_pb::RerankStreamRequest {
        query: query.into(),
        text: text.into(),
        ..Default::default()
    }
}

async fn rerank_stream(
    addr: SocketAddr,
    messages: Vec<tei_pb::RerankStreamRequest>,
) -> Result<tei_pb::RerankResponse, tonic::Status> {
    tei_client(addr)
        .await
        .rerank_stream(tokio_stream::iter(messages))
        .await
        .map(|response| response.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_follows_teis_flag_and_direction() {
    let addr = shared_server("tiny-bert", "fp32");
    let long = long_text();
    let texts = [TEXTS[1], long.as_str()];
    let mut tei = tei_client(addr).await;

    // TEI's default is not to truncate: the long pair is refused.
    let refused = tei.rerank(tei_request(&texts)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("truncate"), "{refused:?}");

    for (direction, side) in [
        (
            tei_pb::TruncationDirection::Right,
            pb::TruncationSide::Right,
        ),
        (tei_pb::TruncationDirection::Left, pb::TruncationSide::Left),
    ] {
        let response = tei
            .rerank(tei_pb::RerankRequest {
                truncate: true,
                raw_scores: true,
                truncation_direction: direction.into(),
                ..tei_request(&texts)
            })
            .await
            .unwrap()
            .into_inner();
        let (scores, _) = by_index(&tei_ranks(&response), texts.len());
        let (own_scores, _) = own(
            addr,
            pb::RerankRequest {
                truncate: Some(true),
                truncation_side: side.into(),
                ..own_request(QUERY, &texts, true)
            },
        )
        .await;
        assert_close(&format!("{direction:?}"), &scores, &own_scores);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_takes_each_pairs_query_and_truncation_and_the_first_messages_flags() {
    let addr = shared_server("tiny-bert", "fp32");
    let long = long_text();
    let messages = vec![
        tei_pb::RerankStreamRequest {
            raw_scores: true,
            return_text: true,
            ..stream_message(QUERY, TEXTS[1])
        },
        tei_pb::RerankStreamRequest {
            truncate: true,
            truncation_direction: tei_pb::TruncationDirection::Left.into(),
            ..stream_message(OTHER_QUERY, &long)
        },
        // Its flags are not the first message's: TEI ignores them.
        tei_pb::RerankStreamRequest {
            raw_scores: false,
            return_text: false,
            ..stream_message(OTHER_QUERY, TEXTS[2])
        },
    ];
    let response = rerank_stream(addr, messages).await.unwrap();
    assert_eq!(response.ranks.len(), 3);
    let texts = [TEXTS[1], long.as_str(), TEXTS[2]];
    for rank in &response.ranks {
        assert_eq!(rank.text.as_deref(), Some(texts[rank.index as usize]));
    }
    let (scores, _) = by_index(&tei_ranks(&response), 3);
    let first = own_pair_scores(addr, &[(QUERY, TEXTS[1]), (OTHER_QUERY, TEXTS[2])], true).await;
    let (cut_left, _) = own(
        addr,
        pb::RerankRequest {
            truncation_side: pb::TruncationSide::Left.into(),
            ..own_request(OTHER_QUERY, &[long.as_str()], true)
        },
    )
    .await;
    assert_close("stream", &scores, &[first[0], cut_left[0], first[1]]);
    let metadata = response.metadata.unwrap();
    assert!(metadata.compute_tokens > 512, "{metadata:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teis_refusals_get_teis_codes() {
    let addr = start_server_with(
        model_config(model_dir("tiny-bert"), "fp32"),
        InferConfig {
            max_documents: 3,
            ..test_infer()
        },
    )
    .unwrap();
    let mut tei = tei_client(addr).await;
    fn refused<T>(outcome: Result<T, tonic::Status>, fragment: &str) {
        let status = outcome.map(|_| ()).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(fragment), "{status:?}");
    }

    refused(
        tei.rerank(tei_request(&[])).await,
        "`texts` cannot be empty",
    );
    refused(
        tei.rerank(tei_request(&TEXTS)).await,
        "over this server's limit of 3",
    );
    refused(
        tei.rerank(tei_pb::RerankRequest {
            truncation_direction: 9,
            ..tei_request(&TEXTS[..1])
        })
        .await,
        "truncation_direction 9",
    );
    let four = TEXTS.iter().map(|t| stream_message(QUERY, t)).collect();
    refused(rerank_stream(addr, four).await, "more than 3 pairs");
    refused(
        rerank_stream(addr, vec![]).await,
        "the stream sent no pairs",
    );
    let ok = rerank_stream(addr, vec![stream_message(QUERY, TEXTS[0])]).await;
    assert_eq!(ok.unwrap().ranks.len(), 1);
}
