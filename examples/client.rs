//! A rerank.v1 client in Rust: `cargo run --release --example client --
//! [--addr http://127.0.0.1:50051] QUERY DOCUMENT...` prints the documents
//! best first with their scores (unary `Rerank`), then reranks the same
//! documents again on one `RerankStream` — every document alone, plus one
//! request with an empty query to show a per-request error — and prints
//! the answers as they come, matched by request id. Exits non-zero if an
//! answer is missing or wrong.

use std::collections::HashMap;
use std::time::Duration;

use rerankd::grpc::pb::rerank_stream_response::Outcome;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use rerankd::grpc::pb::{ModelInfoRequest, RerankRequest};
use tokio_stream::StreamExt;
use tonic::transport::Endpoint;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut addr = "http://127.0.0.1:50051".to_string();
    if args.first().map(String::as_str) == Some("--addr") && args.len() > 1 {
        addr = args.remove(1);
        args.remove(0);
    }
    if args.len() < 2 {
        anyhow::bail!("usage: client [--addr URL] QUERY DOCUMENT...");
    }
    let query = args.remove(0);
    let channel = Endpoint::from_shared(addr)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await?;
    let mut client = RerankerClient::new(channel);
    let info = client.model_info(ModelInfoRequest {}).await?.into_inner();
    println!(
        "model {} on {} in {} (window {} tokens)",
        info.name, info.device, info.dtype, info.max_length
    );
    let response = client
        .rerank(RerankRequest {
            query: query.clone(),
            documents: args.clone(),
            return_documents: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    for result in &response.results {
        println!(
            "{:>3}  {:.4}  {}",
            result.index,
            result.score,
            result.document.as_deref().unwrap_or("")
        );
    }
    if let (Some(usage), Some(timings)) = (&response.usage, &response.timings) {
        println!(
            "{} pairs, {} tokens; tokenize {} us, queue {} us, inference {} us",
            usage.pairs, usage.tokens, timings.tokenize_us, timings.queue_us, timings.inference_us
        );
    }
    let unary: HashMap<u32, f32> = response
        .results
        .iter()
        .map(|r| (r.index, r.score))
        .collect();

    // The stream: document d alone as request "doc-d", and one bad request.
    let mut requests: Vec<RerankRequest> = args
        .iter()
        .enumerate()
        .map(|(d, document)| RerankRequest {
            query: query.clone(),
            documents: vec![document.clone()],
            request_id: format!("doc-{d}"),
            ..Default::default()
        })
        .collect();
    requests.push(RerankRequest {
        query: String::new(),
        documents: vec!["x".into()],
        request_id: "bad".into(),
        ..Default::default()
    });
    let expected = requests.len();
    let mut answers = client
        .rerank_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut seen = HashMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        match &answer.outcome {
            Some(Outcome::Response(r)) => {
                println!(
                    "stream {:>6}: score {:.4}",
                    answer.request_id, r.results[0].score
                )
            }
            Some(Outcome::Error(e)) => {
                println!(
                    "stream {:>6}: error {} {}",
                    answer.request_id, e.code, e.message
                )
            }
            None => anyhow::bail!("{} came back with no outcome", answer.request_id),
        }
        if seen.insert(answer.request_id.clone(), answer).is_some() {
            anyhow::bail!("a request id was answered twice");
        }
    }
    if seen.len() != expected {
        anyhow::bail!("{} of {expected} stream requests were answered", seen.len());
    }
    for d in 0..args.len() {
        let Some(Outcome::Response(r)) = &seen[&format!("doc-{d}")].outcome else {
            anyhow::bail!("doc-{d} failed on the stream");
        };
        // Batching never changes a score beyond float noise.
        if (r.results[0].score - unary[&(d as u32)]).abs() > 1e-4 {
            anyhow::bail!("doc-{d} scored differently alone and in the unary request");
        }
    }
    match &seen["bad"].outcome {
        Some(Outcome::Error(e)) if e.code == tonic::Code::InvalidArgument as i32 => {}
        other => anyhow::bail!("the empty query should be INVALID_ARGUMENT, got {other:?}"),
    }
    println!("stream: {expected} answers, matched by id");
    Ok(())
}
