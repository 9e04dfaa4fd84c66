//! A minimal rerank.v1 client: `cargo run --release --example client --
//! [--addr http://127.0.0.1:50051] QUERY DOCUMENT...` prints the documents
//! best first with their scores.

use rerankd::grpc::pb::reranker_client::RerankerClient;
use rerankd::grpc::pb::{ModelInfoRequest, RerankRequest};

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
    let mut client = RerankerClient::connect(addr).await?;
    let info = client.model_info(ModelInfoRequest {}).await?.into_inner();
    println!(
        "model {} on {} in {} (window {} tokens)",
        info.name, info.device, info.dtype, info.max_length
    );
    let response = client
        .rerank(RerankRequest {
            query,
            documents: args,
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
    if let (Some(usage), Some(timings)) = (response.usage, response.timings) {
        println!(
            "{} pairs, {} tokens; tokenize {} us, queue {} us, inference {} us",
            usage.pairs, usage.tokens, timings.tokenize_us, timings.queue_us, timings.inference_us
        );
    }
    Ok(())
}
