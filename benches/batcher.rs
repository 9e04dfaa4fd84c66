//! Batcher benchmark: the same pairs through raw libtorch at fixed batch
//! sizes (the limit: no gRPC, no queue, pairs pre-sorted by length as
//! FlagReranker does), then through the real server over gRPC with the
//! adaptive batcher and many concurrent clients. Prints pairs/s, the ratio
//! to the best static batch, padding efficiency, model utilisation and
//! request latency.
//!
//! The measurements alternate over several rounds and each keeps its best:
//! a shared 2-core machine drifts by ±15% within a minute, which one pass
//! of each would read as a difference between them.
//!
//! Run: `scripts/bench/batcher.sh` (or `cargo bench --bench batcher` with
//! RERANKD_BENCH_MODEL set to a model directory). RERANKD_BENCH_ROUNDS
//! (default 3), RERANKD_BENCH_THREADS (libtorch threads, default libtorch's)
//! and RERANKD_BENCH_DTYPE (default fp32) change the run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rerankd::batcher::queue::Queue;
use rerankd::config::{InferConfig, ModelConfig, ServerConfig};
use rerankd::grpc::pb;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use rerankd::model::torch::TorchScorer;
use rerankd::model::{DeviceSpec, DtypeRequest, EncodedPair, ModelDir, PaddedBatch, Scorer};
use rerankd::server;
use rerankd::tokenize::{Abandon, Overflow, PairTokenizer, Side};
use tonic::transport::Channel;

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 4;
const DOCUMENTS_PER_REQUEST: usize = 8;
const STATIC_BATCHES: [usize; 3] = [8, 16, 32];
const QUERY: &str = "what is the capital of the country by the river";

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

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Batches of the sorted pairs, and their padding efficiency.
fn static_batches(
    pairs: &[EncodedPair],
    size: usize,
    pad: i64,
    types: bool,
) -> (Vec<PaddedBatch>, f64) {
    let mut sorted: Vec<_> = pairs.iter().collect();
    sorted.sort_by_key(|p| p.len());
    let batches: Vec<PaddedBatch> = sorted
        .chunks(size)
        .map(|chunk| PaddedBatch::new(chunk, pad, types))
        .collect();
    let real: usize = pairs.iter().map(EncodedPair::len).sum();
    let padded: usize = batches.iter().map(PaddedBatch::padded_tokens).sum();
    (batches, real as f64 / padded as f64)
}

/// The queue's own rule on the same pairs, one round of client requests at a
/// time: what batch composition alone costs, without concurrency.
fn queue_batches(
    pairs: &[EncodedPair],
    config: &InferConfig,
    efficiency_floor: f64,
    pad: i64,
    types: bool,
) -> (Vec<PaddedBatch>, f64) {
    let now = Instant::now();
    let mut batches = Vec::new();
    let (mut real, mut padded) = (0, 0);
    for round in 0..REQUESTS_PER_CLIENT {
        let overhead = config.batcher.batch_overhead_tokens;
        let mut queue = Queue::new(256, efficiency_floor).with_batch_overhead(overhead);
        for client in 0..CLIENTS {
            let first = (client * REQUESTS_PER_CLIENT + round) * DOCUMENTS_PER_REQUEST;
            let lengths: Vec<usize> = pairs[first..first + DOCUMENTS_PER_REQUEST]
                .iter()
                .map(EncodedPair::len)
                .collect();
            queue.push(first as u64, now, None, &lengths);
        }
        while let Some(batch) = queue.cut(
            config.batcher.controller.fallback_tokens,
            config.batcher.max_batch_pairs,
        ) {
            let rows: Vec<_> = batch
                .items
                .iter()
                .map(|i| &pairs[i.request as usize + i.index])
                .collect();
            real += batch.real_tokens();
            padded += batch.padded_tokens();
            batches.push(PaddedBatch::new(&rows, pad, types));
        }
    }
    (batches, real as f64 / padded as f64)
}

fn run_raw(scorer: &mut TorchScorer, batches: &[PaddedBatch], pairs: usize) -> f64 {
    let started = Instant::now();
    for batch in batches {
        scorer.score(batch).unwrap();
    }
    pairs as f64 / started.elapsed().as_secs_f64()
}

struct ServerRound {
    rate: f64,
    batches: u64,
    pairs: u64,
    efficiency: f64,
    busy_fraction: f64,
    p50: Duration,
    p99: Duration,
}

async fn stats(channel: &Channel) -> pb::DeviceStats {
    RerankerClient::new(channel.clone())
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
        .devices
        .remove(0)
}

/// Every client sends its requests one after another; all clients at once.
async fn server_round(channel: &Channel, docs: &[String]) -> ServerRound {
    let before = stats(channel).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let mut client = RerankerClient::new(channel.clone());
        let docs = docs.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for r in 0..REQUESTS_PER_CLIENT {
                let first = (client_index * REQUESTS_PER_CLIENT + r) * DOCUMENTS_PER_REQUEST;
                let request = pb::RerankRequest {
                    query: QUERY.into(),
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
    let after = stats(channel).await;
    latencies.sort();
    let busy = Duration::from_micros(after.busy_micros - before.busy_micros);
    ServerRound {
        rate: docs.len() as f64 / elapsed.as_secs_f64(),
        batches: after.batches - before.batches,
        pairs: after.pairs - before.pairs,
        efficiency: (after.real_tokens - before.real_tokens) as f64
            / (after.padded_tokens - before.padded_tokens) as f64,
        busy_fraction: busy.as_secs_f64() / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    }
}

fn main() {
    let model: PathBuf = std::env::var_os("RERANKD_BENCH_MODEL")
        .expect("set RERANKD_BENCH_MODEL to a model directory (scripts/bench/batcher.sh does)")
        .into();
    let dtype = std::env::var("RERANKD_BENCH_DTYPE").unwrap_or_else(|_| "fp32".into());
    let rounds = env_number("RERANKD_BENCH_ROUNDS", 3).max(1);
    let threads = env_number("RERANKD_BENCH_THREADS", 0);
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    let dir = ModelDir::open(&model).unwrap();
    let spec = dir.spec.clone();
    let (pad, types) = (spec.pad_token_id, spec.uses_token_type_ids);
    let tokenizer = PairTokenizer::from_file(&dir.tokenizer_file(), spec.max_length).unwrap();
    let total = CLIENTS * REQUESTS_PER_CLIENT * DOCUMENTS_PER_REQUEST;
    let docs = documents(total);
    let encoded = tokenizer
        .encode_request(
            QUERY,
            &docs,
            tokenizer.fit(Overflow::Truncate(Side::Right)),
            &Abandon::default(),
        )
        .unwrap();
    println!(
        "model {} ({}), {total} pairs, {} tokens, {dtype}, {} libtorch threads, best of {rounds} rounds",
        spec.name,
        model.display(),
        encoded.tokens,
        tch::get_num_threads()
    );

    let _no_grad = tch::no_grad_guard();
    let mut scorer = TorchScorer::load(&dir.model_file(), tch::Device::Cpu, types).unwrap();
    if dtype == "bf16" {
        scorer.cast(rerankd::model::Dtype::Bf16).unwrap();
    }
    let statics: Vec<(usize, Vec<PaddedBatch>, f64)> = STATIC_BATCHES
        .iter()
        .map(|&size| {
            let (batches, efficiency) = static_batches(&encoded.pairs, size, pad, types);
            (size, batches, efficiency)
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut infer_config = InferConfig::default();
    if let Ok(floor) = std::env::var("RERANKD_MIN_PADDING_EFFICIENCY") {
        infer_config.batcher.min_padding_efficiency = floor
            .parse()
            .expect("RERANKD_MIN_PADDING_EFFICIENCY is a number");
    }
    let config = ModelConfig {
        dir: model.clone(),
        devices: vec![DeviceSpec::Cpu],
        dtype: dtype.parse::<DtypeRequest>().unwrap(),
        threads,
        graph_optimization: true,
    };
    let loaded = runtime
        .block_on(server::load(&config, infer_config.clone()))
        .unwrap();
    let floor = infer_config.batcher.min_padding_efficiency;
    let (queued, queued_efficiency) =
        queue_batches(&encoded.pairs, &infer_config, floor, pad, types);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(rerankd::serving::serve_loaded(
        listener,
        ServerConfig::default(),
        loaded,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // Warm the path once.
        RerankerClient::new(channel.clone())
            .rerank(pb::RerankRequest {
                query: QUERY.into(),
                documents: docs[..8].to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        channel
    });
    run_raw(&mut scorer, &statics[0].1[..1], 8);

    let mut best_static = vec![0.0f64; statics.len()];
    let mut best_queued = 0.0f64;
    let mut best_server: Option<ServerRound> = None;
    for round in 0..rounds {
        for (i, (_, batches, _)) in statics.iter().enumerate() {
            best_static[i] = best_static[i].max(run_raw(&mut scorer, batches, total));
        }
        best_queued = best_queued.max(run_raw(&mut scorer, &queued, total));
        let served = runtime.block_on(server_round(&channel, &docs));
        println!(
            "round {round}: static {:?} pairs/s, queue's batches {:.1}, server {:.1}",
            best_static
                .iter()
                .map(|r| (r * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            best_queued,
            served.rate
        );
        if best_server.as_ref().is_none_or(|b| served.rate > b.rate) {
            best_server = Some(served);
        }
    }

    for ((size, _, efficiency), rate) in statics.iter().zip(&best_static) {
        println!(
            "raw libtorch, static batch {size:>3}: {rate:7.1} pairs/s, padding efficiency {efficiency:.3}"
        );
    }
    let best = best_static.iter().copied().fold(0.0, f64::max);
    println!(
        "raw libtorch, the queue's own batches ({} of {:.1} pairs, floor {floor}): {best_queued:7.1} pairs/s \
         = {:.3} × best static, padding efficiency {queued_efficiency:.3}",
        queued.len(),
        total as f64 / queued.len() as f64,
        best_queued / best,
    );
    let s = best_server.expect("at least one round");
    println!(
        "server, adaptive batcher, {CLIENTS} clients × {REQUESTS_PER_CLIENT} requests × \
         {DOCUMENTS_PER_REQUEST} documents: {:7.1} pairs/s = {:.3} × best static; \
         {} batches, {:.1} pairs/batch, padding efficiency {:.3}; model busy {:.3} of the time; \
         latency p50 {:?}, p99 {:?}",
        s.rate,
        s.rate / best,
        s.batches,
        s.pairs as f64 / s.batches as f64,
        s.efficiency,
        s.busy_fraction,
        s.p50,
        s.p99,
    );
    let _ = stop.send(());
    drop(channel);
    runtime.block_on(serving).unwrap().unwrap();
}
