//! Batcher benchmark: the same pairs through raw libtorch at fixed batch
//! sizes (the limit: no gRPC, no queue, pairs pre-sorted by length as
//! FlagReranker does), then through the real server over gRPC with the
//! adaptive batcher and many concurrent clients. Prints pairs/s, the ratio
//! to the best static batch, padding efficiency and request latency.
//!
//! Run: `scripts/bench.sh` (or `cargo bench --bench batcher` with
//! RERANKD_BENCH_MODEL set to a model directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rerankd::config::{InferConfig, ModelConfig, ServerConfig};
use rerankd::grpc::pb;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use rerankd::model::torch::TorchScorer;
use rerankd::model::{DeviceSpec, DtypeRequest, ModelDir, PaddedBatch, Scorer};
use rerankd::server;
use rerankd::tokenize::PairTokenizer;

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 4;
const DOCUMENTS_PER_REQUEST: usize = 8;
const STATIC_BATCHES: [usize; 4] = [8, 16, 32, 64];

fn documents(count: usize) -> Vec<String> {
    let words = [
        "the", "city", "river", "market", "capital", "science", "energy", "history", "museum",
        "people", "north", "winter", "language", "computer", "garden", "ocean",
    ];
    let mut state: u64 = 42;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let length = 10 + (state >> 33) as usize % 90;
            (0..length)
                .map(|i| words[(i * 7 + (state >> 40) as usize) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let model: PathBuf = std::env::var_os("RERANKD_BENCH_MODEL")
        .expect("set RERANKD_BENCH_MODEL to a model directory (scripts/bench.sh does)")
        .into();
    let dtype = std::env::var("RERANKD_BENCH_DTYPE").unwrap_or_else(|_| "fp32".into());
    let dir = ModelDir::open(&model).unwrap();
    let spec = &dir.spec;
    let tokenizer = PairTokenizer::from_file(&dir.tokenizer_file(), spec.max_length).unwrap();
    let query = "what is the capital of the country by the river";
    let total = CLIENTS * REQUESTS_PER_CLIENT * DOCUMENTS_PER_REQUEST;
    let docs = documents(total);
    let encoded = tokenizer.encode_request(query, &docs, true).unwrap();
    println!(
        "model {} ({}), {total} pairs, {} tokens, {dtype}, {} libtorch threads",
        spec.name,
        model.display(),
        encoded.tokens,
        tch::get_num_threads()
    );

    // 1. Raw libtorch at fixed batch sizes, pairs sorted by length.
    let best_static = {
        let _no_grad = tch::no_grad_guard();
        let mut scorer = TorchScorer::load(
            &dir.model_file(),
            tch::Device::Cpu,
            spec.uses_token_type_ids,
        )
        .unwrap();
        if dtype == "bf16" {
            scorer.cast(rerankd::model::Dtype::Bf16).unwrap();
        }
        let mut sorted: Vec<_> = encoded.pairs.iter().collect();
        sorted.sort_by_key(|p| p.len());
        let warm = PaddedBatch::new(&sorted[..8], spec.pad_token_id, spec.uses_token_type_ids);
        scorer.score(&warm).unwrap();
        let mut best = 0.0f64;
        for size in STATIC_BATCHES {
            let batches: Vec<PaddedBatch> = sorted
                .chunks(size)
                .map(|chunk| PaddedBatch::new(chunk, spec.pad_token_id, spec.uses_token_type_ids))
                .collect();
            let started = Instant::now();
            for batch in &batches {
                scorer.score(batch).unwrap();
            }
            let rate = total as f64 / started.elapsed().as_secs_f64();
            let real: usize = sorted.iter().map(|p| p.len()).sum();
            let padded: usize = batches.iter().map(|b| b.padded_tokens()).sum();
            println!(
                "raw libtorch, static batch {size:>3}: {rate:7.1} pairs/s, padding efficiency {:.3}",
                real as f64 / padded as f64
            );
            best = best.max(rate);
        }
        best
    };

    // 2. The server over gRPC, adaptive batcher, concurrent clients.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = ModelConfig {
            dir: model.clone(),
            device: DeviceSpec::Cpu,
            dtype: dtype.parse::<DtypeRequest>().unwrap(),
            threads: 0,
        };
        let loaded = server::load(&config, InferConfig::default()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server::run(
            listener,
            loaded,
            ServerConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // Warm the path once.
        RerankerClient::new(channel.clone())
            .rerank(pb::RerankRequest {
                query: query.into(),
                documents: docs[..8].to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        let before = RerankerClient::new(channel.clone())
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner();

        let started = Instant::now();
        let mut tasks = Vec::new();
        for client_index in 0..CLIENTS {
            let mut client = RerankerClient::new(channel.clone());
            let docs = docs.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for r in 0..REQUESTS_PER_CLIENT {
                    let first = (client_index * REQUESTS_PER_CLIENT + r) * DOCUMENTS_PER_REQUEST;
                    let request = pb::RerankRequest {
                        query: query.into(),
                        documents: docs[first..first + DOCUMENTS_PER_REQUEST].to_vec(),
                        ..Default::default()
                    };
                    let sent = Instant::now();
                    client.rerank(request).await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        let after = RerankerClient::new(channel.clone())
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner();
        latencies.sort();
        let rate = total as f64 / elapsed.as_secs_f64();
        let (b, a) = (&before.devices[0], &after.devices[0]);
        let real = a.real_tokens - b.real_tokens;
        let padded = a.padded_tokens - b.padded_tokens;
        let batches = a.batches - b.batches;
        println!(
            "server, adaptive batcher, {CLIENTS} clients × {REQUESTS_PER_CLIENT} requests × \
             {DOCUMENTS_PER_REQUEST} documents: {rate:7.1} pairs/s = {:.3} × best static; \
             {batches} batches, {:.1} pairs/batch, padding efficiency {:.3}; \
             latency p50 {:?}, p99 {:?}",
            rate / best_static,
            (a.pairs - b.pairs) as f64 / batches as f64,
            real as f64 / padded as f64,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
        let _ = stop.send(());
        drop(channel);
        serving.await.unwrap().unwrap();
    });
}
