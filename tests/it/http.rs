//! The HTTP API end to end, on real servers (real model, real ports on
//! 127.0.0.1:0) through a real HTTP/1.1 connection: every shape scores as
//! gRPC `Rerank` does for the same input (within 1e-6, same order, ties in
//! input order), `max_tokens_per_doc` and `max_chunks_per_doc` do what the
//! gRPC fields do, fields not asked for are left out, every error status
//! with its JSON body, keep-alive, CORS, health, info and metrics on the
//! HTTP port; and the real clients (the Cohere Python SDK, requests, Node's
//! fetch) through scripts/ci/test-http-clients.sh.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::web::{call, post, Conn};
use crate::common::*;
use rerankd::config::{HttpConfig, InferConfig, ServerConfig};
use rerankd::grpc::pb;
use rerankd::serving;

const QUERY: &str = "where is the market";
/// The last repeats the second: a tie, which must stay in input order.
const DOCUMENTS: [&str; 5] = [
    "a stone bridge over the river",
    "the market is by the river, open on saturdays",
    "bread and cheese",
    "the old town hall",
    "a stone bridge over the river",
];

/// gRPC `Rerank`'s (index, score) for `request`, best first.
async fn grpc_ranking(addr: SocketAddr, request: pb::RerankRequest) -> (Vec<(usize, f32)>, u64) {
    let response = client(addr)
        .await
        .rerank(request)
        .await
        .unwrap()
        .into_inner();
    let ranking = response
        .results
        .iter()
        .map(|r| (r.index as usize, r.score))
        .collect();
    (ranking, response.usage.unwrap().tokens)
}

/// (index, score) from an HTTP answer's results.
fn ranking(results: &Value, field: &str) -> Vec<(usize, f32)> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("no results: {results}"))
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap() as usize,
                r[field].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// The same documents in the same order, each score within 1e-6.
fn same_ranking(http: &[(usize, f32)], grpc: &[(usize, f32)], what: &str) {
    let order = |r: &[(usize, f32)]| r.iter().map(|(i, _)| *i).collect::<Vec<_>>();
    assert_eq!(order(http), order(grpc), "{what}: order");
    for ((index, h), (_, g)) in http.iter().zip(grpc) {
        assert!(
            (h - g).abs() <= 1e-6,
            "{what}: document {index}: {h} over HTTP, {g} over gRPC"
        );
    }
}

fn documents() -> Vec<String> {
    DOCUMENTS.iter().map(|d| d.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_shape_scores_as_grpc_rerank() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let (grpc, tokens) = grpc_ranking(addrs.grpc, request(QUERY, &DOCUMENTS)).await;
    let raw_request = pb::RerankRequest {
        raw_scores: true,
        ..request(QUERY, &DOCUMENTS)
    };
    let (grpc_raw, _) = grpc_ranking(addrs.grpc, raw_request).await;
    let tie = grpc.iter().position(|(i, _)| *i == 0).unwrap();
    assert_eq!(grpc[tie + 1].0, 4, "the tie in input order: {grpc:?}");

    // Cohere v1 / Jina: strings, nothing optional asked for.
    let v1 = post(
        addrs.http,
        "/v1/rerank",
        &json!({"query": QUERY, "documents": DOCUMENTS}),
    )
    .await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    let body = v1.json();
    same_ranking(&ranking(&body["results"], "relevance_score"), &grpc, "v1");
    assert!(body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("document").is_none()));
    assert_eq!(body["meta"]["api_version"]["version"], "1");
    assert_eq!(body["meta"]["billed_units"]["search_units"], 1);
    assert_eq!(body["usage"]["total_tokens"], tokens);
    assert_eq!(body["meta"]["tokens"]["input_tokens"], tokens);
    assert_eq!(
        body["id"].as_str().unwrap(),
        v1.header("x-request-id").unwrap()
    );
    assert!(!body["model"].as_str().unwrap().is_empty());

    // Objects, top_n, return_documents.
    let objects: Vec<Value> = DOCUMENTS
        .iter()
        .map(|d| json!({"text": d, "id": 7}))
        .collect();
    let v1 = post(
        addrs.http,
        "/v1/rerank",
        &json!({"model": "anything", "query": QUERY, "documents": objects, "top_n": 2,
                "return_documents": true}),
    )
    .await
    .json();
    same_ranking(
        &ranking(&v1["results"], "relevance_score"),
        &grpc[..2],
        "v1 top_n",
    );
    for result in v1["results"].as_array().unwrap() {
        let index = result["index"].as_u64().unwrap() as usize;
        assert_eq!(result["document"], json!({"text": DOCUMENTS[index]}));
    }

    // Cohere v2.
    let v2 = post(
        addrs.http,
        "/v2/rerank",
        &json!({"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 3}),
    )
    .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    let v2 = v2.json();
    same_ranking(
        &ranking(&v2["results"], "relevance_score"),
        &grpc[..3],
        "v2",
    );
    assert_eq!(v2["meta"]["api_version"]["version"], "2");
    assert!(v2.get("usage").is_none());

    // TEI: a bare array, normalised unless raw_scores.
    let tei = post(
        addrs.http,
        "/rerank",
        &json!({"query": QUERY, "texts": DOCUMENTS}),
    )
    .await;
    assert_eq!(tei.status, 200, "{}", tei.body);
    let tei = tei.json();
    same_ranking(&ranking(&tei, "score"), &grpc, "tei");
    assert!(tei
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("text").is_none()));
    let raw = post(
        addrs.http,
        "/rerank",
        &json!({"query": QUERY, "texts": DOCUMENTS, "raw_scores": true, "return_text": true}),
    )
    .await
    .json();
    same_ranking(&ranking(&raw, "score"), &grpc_raw, "tei raw_scores");
    for rank in raw.as_array().unwrap() {
        assert_eq!(
            rank["text"],
            DOCUMENTS[rank["index"].as_u64().unwrap() as usize]
        );
    }
}

/// A document far over tiny-bert's window, its relevant part at its end.
fn long_document() -> String {
    format!(
        "{} the market is by the river",
        "bread and cheese ".repeat(300)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_per_doc_is_the_grpc_fields_limit() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let long = long_document();
    let docs = [DOCUMENTS[1], DOCUMENTS[2], long.as_str()];
    for limit in [3u32, 40] {
        let (grpc, tokens) = grpc_ranking(
            addrs.grpc,
            pb::RerankRequest {
                max_tokens_per_document: Some(limit),
                ..request(QUERY, &docs)
            },
        )
        .await;
        let v2 = post(
            addrs.http,
            "/v2/rerank",
            &json!({"model": "m", "query": QUERY, "documents": docs, "max_tokens_per_doc": limit}),
        )
        .await
        .json();
        same_ranking(
            &ranking(&v2["results"], "relevance_score"),
            &grpc,
            "max_tokens_per_doc",
        );
        assert_eq!(v2["meta"]["tokens"]["input_tokens"], tokens);
    }
    // The limit changes what is scored: 3 tokens of each document leave
    // "the market is" of the second only.
    let (cut, cut_tokens) = grpc_ranking(
        addrs.grpc,
        pb::RerankRequest {
            max_tokens_per_document: Some(3),
            ..request(QUERY, &docs)
        },
    )
    .await;
    let (whole, whole_tokens) = grpc_ranking(addrs.grpc, request(QUERY, &docs)).await;
    assert!(cut_tokens < whole_tokens, "{cut_tokens} vs {whole_tokens}");
    assert_ne!(cut, whole);
    let zero = post(
        addrs.http,
        "/v2/rerank",
        &json!({"model": "m", "query": QUERY, "documents": docs, "max_tokens_per_doc": 0}),
    )
    .await;
    assert_eq!(zero.status, 400);
    assert!(zero.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens_per_doc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_chunks_per_doc_chunks_with_the_max_aggregate() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let long = long_document();
    let docs = [DOCUMENTS[2], long.as_str()];
    let v1 = |max_chunks: usize| async move {
        let body = json!({"query": QUERY, "documents": docs, "max_chunks_per_doc": max_chunks});
        post(addrs.http, "/v1/rerank", &body).await
    };
    // Enough windows for the whole document: gRPC chunking, MAX aggregate.
    let (chunked, _) = grpc_ranking(
        addrs.grpc,
        pb::RerankRequest {
            chunking: Some(pb::Chunking {
                overlap_tokens: None,
                aggregate: pb::Aggregate::Max as i32,
            }),
            ..request(QUERY, &docs)
        },
    )
    .await;
    let all = v1(64).await.json();
    same_ranking(
        &ranking(&all["results"], "relevance_score"),
        &chunked,
        "64 windows",
    );
    // One window: the document's first window, which is what truncation keeps.
    let (truncated, _) = grpc_ranking(addrs.grpc, request(QUERY, &docs)).await;
    let first = v1(1).await.json();
    same_ranking(
        &ranking(&first["results"], "relevance_score"),
        &truncated,
        "1 window",
    );
    assert!(
        all["meta"]["tokens"]["input_tokens"].as_u64()
            > first["meta"]["tokens"]["input_tokens"].as_u64()
    );
    let over = v1(65).await;
    assert_eq!(over.status, 400, "{}", over.body);
    assert!(
        over.body.contains("--max-chunks-per-document"),
        "{}",
        over.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_or_413_with_the_grpc_message_naming_the_field() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let check = |status: u16, fragment: &'static str, body: &str| {
        let body = body.to_string();
        async move {
            let answer = call(addrs.http, "POST", "/v1/rerank", Some(&body)).await;
            assert_eq!(answer.status, status, "{body}: {}", answer.body);
            let json = answer.json();
            assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
            let message = json["message"].as_str().unwrap().to_string();
            assert!(message.contains(fragment), "{body}: {message}");
            message
        }
    };
    check(
        400,
        "`top_n` is not valid: invalid type",
        r#"{"query": "q", "documents": ["a"], "top_n": "two"}"#,
    )
    .await;
    check(400, "missing field `query`", r#"{"documents": ["a"]}"#).await;
    check(
        400,
        "`documents[1]` is not valid",
        r#"{"query": "q", "documents": ["a", 7]}"#,
    )
    .await;
    check(400, "not valid", r#"{"query": "q", "#).await;
    check(
        400,
        "top_n is 0",
        r#"{"query": "q", "documents": ["a"], "top_n": 0}"#,
    )
    .await;
    // The same message as the gRPC status for the same request.
    let message = check(
        400,
        "query is empty",
        r#"{"query": " ", "documents": ["a"]}"#,
    )
    .await;
    let status = client(addrs.grpc)
        .await
        .rerank(request(" ", &["a"]))
        .await
        .unwrap_err();
    assert_eq!(status.message(), message);
    let many = vec!["a"; 1001];
    let body = json!({"query": "q", "documents": many}).to_string();
    let message = check(413, "over this server's limit of 1000", &body).await;
    let status = client(addrs.grpc)
        .await
        .rerank(request("q", &many))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, message.as_str())
    );

    // TEI's error shape on TEI's route.
    let tei = post(addrs.http, "/rerank", &json!({"query": "q", "texts": []})).await;
    assert_eq!(tei.status, 400);
    assert_eq!(
        tei.json(),
        json!({"error": "`texts` cannot be empty", "error_type": "Validation"})
    );
    // Routes and methods that do not exist answer JSON too.
    let missing = call(addrs.http, "GET", "/v3/rerank", None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["message"]
        .as_str()
        .unwrap()
        .contains("POST /v2/rerank"));
    let wrong = call(addrs.http, "GET", "/v1/rerank", None).await;
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["message"]
        .as_str()
        .unwrap()
        .contains("does not take GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_info_and_metrics_answer_on_the_http_port_over_one_kept_alive_connection() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let mut conn = Conn::open(addrs.http).await;
    let health = conn.request("GET", "/health", None, &[]).await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "serving"}))
    );
    let info = conn.request("GET", "/info", None, &[]).await.json();
    let grpc_info = client(addrs.grpc)
        .await
        .model_info(pb::ModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info["model"], grpc_info.name.as_str());
    assert_eq!(info["model_id"], grpc_info.name.as_str());
    assert_eq!(info["max_length"], grpc_info.max_length);
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["precision"], grpc_info.dtype.as_str());
    assert_eq!(info["limits"]["max_documents"], 1000);
    assert_eq!(info["limits"]["max_body_bytes"], 32 << 20);
    let body = json!({"query": QUERY, "documents": DOCUMENTS}).to_string();
    for _ in 0..2 {
        let answer = conn
            .request(
                "POST",
                "/v1/rerank",
                Some(&body),
                &[("x-request-id", "kept-alive")],
            )
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["id"], "kept-alive");
    }
    let metrics = conn.request("GET", "/metrics", None, &[]).await;
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(
        metrics
            .body
            .contains(r#"rerankd_requests_total{rpc="POST /v1/rerank",code="200"}"#),
        "{}",
        metrics.body
    );
}

/// A server with tight limits: 8 documents, 64 KiB in flight, a 50 kB
/// body, a 2 s request timeout, a served model name and CORS for one
/// origin.
fn limits_server() -> Addrs {
    static SERVER: OnceLock<Addrs> = OnceLock::new();
    *SERVER.get_or_init(|| {
        start_servers(
            model_config(model_dir("tiny-bert"), "fp32"),
            InferConfig {
                max_documents: 8,
                max_inflight_bytes: 64 << 10,
                ..test_infer()
            },
            ServerConfig {
                http: HttpConfig {
                    max_body_bytes: 50_000,
                    request_timeout: Some(Duration::from_secs(2)),
                    cors_allow_origins: vec!["https://app.example".into()],
                    served_model_name: Some("tiny".into()),
                },
                ..ServerConfig::default()
            },
            |scorer| scorer,
        )
        .unwrap()
    })
}

/// Held by the tests that fill the limits server's in-flight budget (this
/// module's and the Python client's), so that they do not fill it for
/// each other.
static LIMITS_BUDGET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The HTTP port of a server whose model never finishes loading.
fn loading_server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let (bound, addr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                bound.send(http.local_addr().unwrap()).unwrap();
                let listeners = serving::Listeners {
                    grpc,
                    metrics: None,
                    http: Some(http),
                };
                let never = std::future::pending();
                let _ = serving::serve(
                    listeners,
                    ServerConfig::default(),
                    never,
                    std::future::pending(),
                )
                .await;
            });
        });
        addr.recv().unwrap()
    })
}

/// `rerankd_inflight_bytes` as the HTTP port's /metrics reads it.
async fn inflight_bytes(addr: SocketAddr) -> f64 {
    let metrics = call(addr, "GET", "/metrics", None).await.body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("rerankd_inflight_bytes "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_404_413_429_and_504_and_loading_503() {
    let addrs = limits_server();
    let body = |model: &str, documents: usize| json!({"model": model, "query": QUERY, "documents": vec!["a document"; documents]});
    let named = post(addrs.http, "/v2/rerank", &body("tiny", 3)).await;
    assert_eq!(named.status, 200, "{}", named.body);
    let other = post(addrs.http, "/v1/rerank", &body("rerank-v3.5", 3)).await;
    assert_eq!(other.status, 404);
    assert!(other.json()["message"]
        .as_str()
        .unwrap()
        .contains(r#"model "rerank-v3.5" is not served here; this server serves "tiny""#));
    let v1 = post(addrs.http, "/v1/rerank", &body("tiny", 3))
        .await
        .json();
    assert_eq!(v1["model"], "tiny");
    let over = post(addrs.http, "/v1/rerank", &body("tiny", 9)).await;
    assert_eq!(over.status, 413);
    assert!(over.body.contains("--max-documents"), "{}", over.body);

    // A body declared over the limit is refused before it is read.
    let mut large = Conn::open(addrs.http).await;
    large
        .send(b"POST /v1/rerank HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n")
        .await;
    let answer = large.answer().await;
    assert_eq!(answer.status, 413);
    assert!(answer.json()["message"]
        .as_str()
        .unwrap()
        .contains("--http-max-body-bytes"));

    // A body is charged at its declared length while it arrives: one that
    // holds 40,000 of the 64 KiB leaves too little for another of 20,000.
    let _budget = LIMITS_BUDGET.lock().await;
    let mut held = Conn::open(addrs.http).await;
    held.send(b"POST /v1/rerank HTTP/1.1\r\nHost: t\r\nContent-Length: 40000\r\n\r\n")
        .await;
    while inflight_bytes(addrs.http).await < 40_000.0 {}
    let mut second = Conn::open(addrs.http).await;
    second
        .send(b"POST /rerank HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n")
        .await;
    let refused = second.answer().await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error_type"], "Overloaded");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("--max-inflight-bytes"));
    // The held request's timeout covers its body's upload: 504, and its
    // bytes are given back.
    let timed_out = held.answer().await;
    assert_eq!(timed_out.status, 504, "{}", timed_out.body);
    assert!(timed_out.json()["message"]
        .as_str()
        .unwrap()
        .contains("deadline passed"));
    while inflight_bytes(addrs.http).await > 0.0 {}

    let loading = loading_server();
    for (method, path) in [("GET", "/health"), ("GET", "/info"), ("POST", "/v1/rerank")] {
        let body = (method == "POST").then(|| body("tiny", 1).to_string());
        let answer = call(loading, method, path, body.as_deref()).await;
        assert_eq!(answer.status, 503, "{path}: {}", answer.body);
        assert!(answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("still loading"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_allowed_origins() {
    let addrs = limits_server();
    let preflight = |origin: &'static str| async move {
        Conn::open(addrs.http)
            .await
            .request(
                "OPTIONS",
                "/v1/rerank",
                None,
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "content-type"),
                ],
            )
            .await
    };
    let allowed = preflight("https://app.example").await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(allowed
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let other = preflight("https://elsewhere.example").await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // The shared server has no CORS at all.
    let plain = Conn::open(shared_addrs("tiny-bert", "fp32").http)
        .await
        .request("GET", "/health", None, &[("Origin", "https://app.example")])
        .await;
    assert_eq!(plain.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cohere_sdk_requests_and_node_fetch_pass_against_live_servers() {
    let addrs = shared_addrs("tiny-bert", "fp32");
    let (grpc, _) = grpc_ranking(addrs.grpc, request(QUERY, &DOCUMENTS)).await;
    let raw_request = pb::RerankRequest {
        raw_scores: true,
        ..request(QUERY, &DOCUMENTS)
    };
    let (raw, _) = grpc_ranking(addrs.grpc, raw_request).await;
    let by_index = |ranking: &[(usize, f32)]| {
        let mut scores = vec![0.0f32; DOCUMENTS.len()];
        for (index, score) in ranking {
            scores[*index] = *score;
        }
        scores
    };
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.json");
    let case = json!({
        "query": QUERY,
        "documents": documents(),
        "scores": by_index(&grpc),
        "raw_scores": by_index(&raw),
    });
    std::fs::write(&expected, case.to_string()).unwrap();
    let limits = limits_server().http;
    let loading = loading_server();
    let _budget = LIMITS_BUDGET.lock().await;
    let args = vec![
        addrs.http.to_string(),
        limits.to_string(),
        loading.to_string(),
        expected.display().to_string(),
    ];
    let run = run_script("scripts/ci/test-http-clients.sh", args, vec![]).await;
    let log = run.log();
    assert!(run.success, "the http clients failed:\n{log}");
    assert!(
        log.contains("python http clients: every check passed"),
        "{log}"
    );
    assert!(
        log.contains("node fetch client: every check passed"),
        "{log}"
    );
}
