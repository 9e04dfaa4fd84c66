//! End to end through the batcher: a real model on a real port, with an
//! out-of-memory injector at the `Scorer` seam (`server::load_with`) moved
//! mid-run, several CPU workers sharing one queue, a device that breaks
//! (a sticky CUDA error) under one of them or under the only one, and a
//! model that panics or fails batches (once, or until its worker is taken
//! out).
//!
//! The injectors wrap the real libtorch scorer: batches above the limit
//! fail as a GPU's would ("out of memory"), a broken device fails every
//! batch with libtorch's real text of an illegal memory access, a faulty
//! model panics or fails the batches it is told to, and every other batch
//! is scored by the real model, so the scores compared are real.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rerankd::config::InferConfig;
use rerankd::grpc::pb;
use rerankd::model::torch::TorchScorer;
use rerankd::model::{DeviceSpec, PaddedBatch, ScoreError, Scorer};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Fails every batch over `limit` padded tokens with an out-of-memory error.
struct OutOfMemoryAbove<S> {
    inner: S,
    limit: Arc<AtomicUsize>,
    injected: Arc<AtomicUsize>,
}

impl<S: Scorer> Scorer for OutOfMemoryAbove<S> {
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
        let limit = self.limit.load(Ordering::SeqCst);
        if batch.padded_tokens() > limit {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(ScoreError::OutOfMemory(format!(
                "CUDA out of memory (injected: {} padded tokens over {limit})",
                batch.padded_tokens()
            )));
        }
        self.inner.score(batch)
    }
}

/// libtorch 2.11's text for an illegal memory access, as tch reports it.
const ILLEGAL_ADDRESS: &str = "Internal torch error: CUDA error: an illegal memory access was \
encountered\nSearch for `cudaErrorIllegalAddress' in \
https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information.\n\
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace \
below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with \
`TORCH_USE_CUDA_DSA` to enable device-side assertions.\n\nException raised from \
c10_cuda_check_implementation at /pytorch/c10/cuda/CUDAException.cpp:44 (most recent call \
first):\n";

/// Scores `healthy` batches with the real model, then breaks: every later
/// batch fails with a sticky CUDA error, classified as libtorch's are.
struct BreaksAfter<S> {
    inner: S,
    healthy: usize,
    scored: usize,
}

impl<S: Scorer> Scorer for BreaksAfter<S> {
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
        if self.scored >= self.healthy {
            return Err(ScoreError::from_torch_message(ILLEGAL_ADDRESS.into()));
        }
        self.scored += 1;
        self.inner.score(batch)
    }
}

/// The first replica wrapped breaks after `healthy` batches; the others
/// never do (`load_with` wraps replicas in `--devices` order).
fn first_replica_breaks_after(
    healthy: usize,
) -> impl Fn(TorchScorer) -> BreaksAfter<TorchScorer> + Clone + Send + 'static {
    let wrapped = Arc::new(AtomicUsize::new(0));
    move |inner| BreaksAfter {
        inner,
        healthy: if wrapped.fetch_add(1, Ordering::SeqCst) == 0 {
            healthy
        } else {
            usize::MAX
        },
        scored: 0,
    }
}

/// No padding floor: requests share batches and pad, which is what the
/// injector and the comparison with scores alone need.
fn padding_config() -> InferConfig {
    let mut config = test_infer();
    config.batcher.min_padding_efficiency = 0.0;
    config.batcher.max_batch_pairs = 16;
    config
}

/// Documents of 1 to 30 words, different per request.
fn documents(request: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|d| {
            let words = 1 + (request * 7 + d * 11) % 30;
            (0..words)
                .map(|w| ["river", "city", "market", "stone", "light"][(w + d + request) % 5])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

async fn raw_scores(
    client: &mut pb::reranker_client::RerankerClient<tonic::transport::Channel>,
    query: &str,
    documents: &[String],
) -> Result<Vec<f32>, tonic::Status> {
    let documents: Vec<&str> = documents.iter().map(String::as_str).collect();
    let mut request = request(query, &documents);
    request.raw_scores = true;
    let response = client.rerank(request).await?.into_inner();
    Ok(scores_by_index(&response, documents.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_memory_mid_run_loses_no_request_and_changes_no_score() {
    let limit = Arc::new(AtomicUsize::new(usize::MAX));
    let injected = Arc::new(AtomicUsize::new(0));
    let (wrap_limit, wrap_injected) = (Arc::clone(&limit), Arc::clone(&injected));
    let addr = start_server_wrapped(
        model_config(model_dir("tiny-bert"), "fp32"),
        padding_config(),
        move |inner| OutOfMemoryAbove {
            inner,
            limit: Arc::clone(&wrap_limit),
            injected: Arc::clone(&wrap_injected),
        },
    )
    .unwrap();
    let requests: Vec<(String, Vec<String>)> = (0..12)
        .map(|r| (format!("where is the {r} market"), documents(r, 4 + r % 5)))
        .collect();
    let mut alone = Vec::new();
    let mut client0 = client(addr).await;
    for (query, documents) in &requests {
        alone.push(raw_scores(&mut client0, query, documents).await.unwrap());
    }
    assert_eq!(injected.load(Ordering::SeqCst), 0);

    // Every pair here is under 48 tokens; from now on any batch over 48
    // padded tokens runs out of memory, i.e. nearly every batch of two or
    // more pairs. The limit moves while the first requests are in flight.
    let mut tasks = Vec::new();
    for (r, (query, documents)) in requests.iter().enumerate() {
        if r == 3 {
            limit.store(48, Ordering::SeqCst);
        }
        let (query, documents) = (query.clone(), documents.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = client(addr).await;
            raw_scores(&mut client, &query, &documents).await
        }));
    }
    for (r, (task, alone)) in tasks.into_iter().zip(&alone).enumerate() {
        let together = task
            .await
            .unwrap()
            .unwrap_or_else(|s| panic!("request {r}: {s:?}"));
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4,
                "request {r} document {i}: {a} vs {b}"
            );
        }
    }
    assert!(
        injected.load(Ordering::SeqCst) > 0,
        "the injector never fired"
    );
    let stats = client0
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let device = &stats.devices[0];
    assert!(device.oom_count > 0 && device.splits > 0, "{device:?}");
    assert!(device.ceiling_tokens > 48, "{device:?}");
    assert_eq!(stats.queued_pairs, 0);

    // A pair that cannot fit even alone fails its own request only, with
    // RESOURCE_EXHAUSTED naming its tokens; the server keeps serving.
    let long = vec!["stone ".repeat(60)];
    let status = raw_scores(&mut client0, "query", &long).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("tokens"), "{status:?}");
    let again = raw_scores(&mut client0, &requests[0].0, &requests[0].1)
        .await
        .unwrap();
    assert_eq!(again.len(), alone[0].len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cpu_workers_share_the_queue_and_agree_on_every_score() {
    let mut config = model_config(model_dir("tiny-bert"), "fp32");
    config.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
    let mut infer = padding_config();
    infer.batcher.max_batch_pairs = 4;
    let addr = start_server_with(config, infer).unwrap();
    let mut client = client(addr).await;
    let info = client
        .model_info(pb::ModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.devices, vec!["cpu".to_string(), "cpu".to_string()]);

    // 40 documents in batches of at most 4: while the first worker runs a
    // batch, the queue still holds more, so the second worker gets some.
    let documents = documents(1, 40);
    let together = raw_scores(&mut client, "where is the market", &documents)
        .await
        .unwrap();
    for (i, document) in documents.iter().enumerate() {
        let alone = raw_scores(
            &mut client,
            "where is the market",
            std::slice::from_ref(document),
        )
        .await
        .unwrap();
        assert!((alone[0] - together[i]).abs() <= 1e-4, "document {i}");
    }
    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.devices.len(), 2);
    let pairs: Vec<u64> = stats.devices.iter().map(|d| d.pairs).collect();
    assert_eq!(pairs.iter().sum::<u64>(), 80, "{stats:?}");
    assert!(
        pairs.iter().all(|&p| p > 0),
        "both workers ran batches: {pairs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_cpu_workers_one_broken_device_loses_only_its_batch() {
    let mut config = model_config(model_dir("tiny-bert"), "fp32");
    config.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
    let addr =
        start_server_wrapped(config, padding_config(), first_replica_breaks_after(2)).unwrap();
    let mut client = client(addr).await;
    let query = "where is the market";
    let documents = documents(3, 3);
    let alone = raw_scores(&mut client, query, &documents).await.unwrap();

    // One request at a time, each one batch, each to the first idle
    // worker: worker 0 ran the one above and runs the next, then breaks on
    // the third. Its request fails UNAVAILABLE; the others are scored.
    let same = |scores: Vec<f32>| {
        scores.len() == alone.len()
            && scores
                .iter()
                .zip(&alone)
                .all(|(a, b)| (a - b).abs() <= 1e-4)
    };
    assert!(same(
        raw_scores(&mut client, query, &documents).await.unwrap()
    ));
    let status = raw_scores(&mut client, query, &documents)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    for fragment in [
        "the worker on cpu was taken out of service",
        "its device failed (CUDA error: an illegal memory access was encountered)",
    ] {
        assert!(status.message().contains(fragment), "{status:?}");
    }
    for _ in 0..5 {
        let scores = raw_scores(&mut client, query, &documents).await.unwrap();
        assert!(same(scores.clone()), "{scores:?} vs {alone:?}");
    }

    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (broken, sound) = (&stats.devices[0], &stats.devices[1]);
    assert!(
        broken.out_of_service.contains("an illegal memory access"),
        "{stats:?}"
    );
    assert_eq!(broken.batches, 3, "{stats:?}");
    assert_eq!(sound.out_of_service, "", "{stats:?}");
    assert_eq!(sound.pairs, 15, "{stats:?}");
    // One worker is left: the server still says SERVING.
    let health = tonic_health::pb::health_client::HealthClient::new(channel(addr).await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rerank.v1.Reranker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_only_device_breaks_health_says_not_serving_and_rerank_unavailable() {
    let config = model_config(model_dir("tiny-bert"), "fp32");
    let addr =
        start_server_wrapped(config, padding_config(), first_replica_breaks_after(1)).unwrap();
    let mut watch = watch_health(channel(addr).await).await;
    assert_eq!(
        next_status(&mut watch).await,
        Some(ServingStatus::Serving as i32)
    );
    let mut client = client(addr).await;
    let documents = documents(4, 2);
    raw_scores(&mut client, "a market", &documents)
        .await
        .unwrap();

    let status = raw_scores(&mut client, "a market", &documents)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("its device failed"), "{status:?}");
    // Health follows: NOT_SERVING, seen by a watcher.
    let next = tokio::time::timeout(Duration::from_secs(10), next_status(&mut watch))
        .await
        .expect("health changed within 10 s");
    assert_eq!(next, Some(ServingStatus::NotServing as i32));
    // Every later request is refused at once, saying why.
    let status = raw_scores(&mut client, "a market", &documents)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("every worker has been taken out of service")
            && status.message().contains("cpu: its device failed"),
        "{status:?}"
    );
    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!stats.devices[0].out_of_service.is_empty(), "{stats:?}");
    assert_eq!(stats.queued_pairs, 0);
}

/// What a faulty model does to a batch.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Panic,
    /// An error that is neither out-of-memory nor a broken device.
    Fail,
}

/// Panics on, or fails, the batches `fault` names (counted from 0, after
/// warm-up); scores every other batch with the real model.
struct Faulty<S> {
    inner: S,
    batches: usize,
    fault: fn(usize) -> Option<Fault>,
}

impl<S: Scorer> Scorer for Faulty<S> {
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
        let index = self.batches;
        self.batches += 1;
        match (self.fault)(index) {
            Some(Fault::Panic) => panic!("injected: the model panics on batch {index}"),
            Some(Fault::Fail) => Err(ScoreError::from_torch_message(format!(
                "injected: the model failed on batch {index}"
            ))),
            None => self.inner.score(batch),
        }
    }
}

/// Every batch fails: a panic, then an error, in turn.
fn every_batch(index: usize) -> Option<Fault> {
    Some(if index % 2 == 0 {
        Fault::Panic
    } else {
        Fault::Fail
    })
}

/// The first replica wrapped is faulty as `fault` says; the others never
/// are (`load_with` wraps replicas in `--devices` order).
fn first_replica_faulty(
    fault: fn(usize) -> Option<Fault>,
) -> impl Fn(TorchScorer) -> Faulty<TorchScorer> + Clone + Send + 'static {
    let wrapped = Arc::new(AtomicUsize::new(0));
    move |inner| Faulty {
        inner,
        batches: 0,
        fault: if wrapped.fetch_add(1, Ordering::SeqCst) == 0 {
            fault
        } else {
            |_| None
        },
    }
}

/// `padding_config` taking a worker out after `max_failed_batches`.
fn failing_config(max_failed_batches: usize) -> InferConfig {
    let mut config = padding_config();
    config.batcher.max_failed_batches = max_failed_batches;
    config
}

/// What a sound server scores: the reference for the faulty servers'.
async fn sound_scores(query: &str, documents: &[String]) -> Vec<f32> {
    let mut sound = client(shared_server("tiny-bert", "fp32")).await;
    raw_scores(&mut sound, query, documents).await.unwrap()
}

fn assert_close(scores: &[f32], expected: &[f32]) {
    assert_eq!(scores.len(), expected.len(), "{scores:?} vs {expected:?}");
    for (a, b) in scores.iter().zip(expected) {
        assert!((a - b).abs() <= 1e-4, "{scores:?} vs {expected:?}");
    }
}

async fn serving_status(addr: std::net::SocketAddr) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(channel(addr).await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rerank.v1.Reranker".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_cpu_workers_one_whose_model_keeps_failing_is_taken_out_and_the_other_serves() {
    let mut config = model_config(model_dir("tiny-bert"), "fp32");
    config.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
    let addr =
        start_server_wrapped(config, failing_config(3), first_replica_faulty(every_batch)).unwrap();
    let mut client = client(addr).await;
    let query = "where is the market";
    let documents = documents(5, 3);
    let expected = sound_scores(query, &documents).await;

    // One request at a time, each one batch, each to the first idle worker:
    // worker 0, whose model panics, fails, panics. Each request gets
    // INTERNAL; after the third failure in a row the worker is out.
    for attempt in 0..3 {
        let status = raw_scores(&mut client, query, &documents)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{attempt}: {status:?}");
        assert!(
            status.message().contains("model failed during inference"),
            "{attempt}: {status:?}"
        );
    }
    // Every request from now on is scored, by worker 1, as a sound model does.
    for _ in 0..5 {
        let scores = raw_scores(&mut client, query, &documents).await.unwrap();
        assert_close(&scores, &expected);
    }

    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (faulty, sound) = (&stats.devices[0], &stats.devices[1]);
    assert!(
        faulty
            .out_of_service
            .contains("its scorer failed 3 batches in a row"),
        "{stats:?}"
    );
    assert_eq!(faulty.batches, 3, "no batch went to it after: {stats:?}");
    assert_eq!(sound.out_of_service, "", "{stats:?}");
    assert_eq!(sound.pairs, 15, "{stats:?}");
    assert_eq!(stats.queued_pairs, 0);
    // One worker is left: the server still says SERVING.
    assert_eq!(serving_status(addr).await, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_only_model_keeps_failing_health_says_not_serving_and_rerank_unavailable() {
    let config = model_config(model_dir("tiny-bert"), "fp32");
    let addr =
        start_server_wrapped(config, failing_config(2), first_replica_faulty(every_batch)).unwrap();
    let mut watch = watch_health(channel(addr).await).await;
    assert_eq!(
        next_status(&mut watch).await,
        Some(ServingStatus::Serving as i32)
    );
    let mut client = client(addr).await;
    let documents = documents(6, 2);
    for attempt in 0..2 {
        let status = raw_scores(&mut client, "a market", &documents)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{attempt}: {status:?}");
    }
    // Health follows: NOT_SERVING, seen by a watcher.
    let next = tokio::time::timeout(Duration::from_secs(10), next_status(&mut watch))
        .await
        .expect("health changed within 10 s");
    assert_eq!(next, Some(ServingStatus::NotServing as i32));
    // Every later request is refused at once, saying why.
    let status = raw_scores(&mut client, "a market", &documents)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("every worker has been taken out of service")
            && status
                .message()
                .contains("cpu: its scorer failed 2 batches in a row"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_panics_once_fails_only_that_batch_and_goes_on() {
    let config = model_config(model_dir("tiny-bert"), "fp32");
    // The default limit of failures in a row.
    let addr = start_server_wrapped(
        config,
        padding_config(),
        first_replica_faulty(|index| (index == 1).then_some(Fault::Panic)),
    )
    .unwrap();
    let mut client = client(addr).await;
    let query = "where is the stone";
    let documents = documents(7, 4);
    let expected = sound_scores(query, &documents).await;

    assert_close(
        &raw_scores(&mut client, query, &documents).await.unwrap(),
        &expected,
    );
    let status = raw_scores(&mut client, query, &documents)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    for _ in 0..4 {
        assert_close(
            &raw_scores(&mut client, query, &documents).await.unwrap(),
            &expected,
        );
    }
    let stats = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.devices[0].out_of_service, "", "{stats:?}");
    assert_eq!(stats.devices[0].batches, 6, "{stats:?}");
    assert_eq!(serving_status(addr).await, ServingStatus::Serving as i32);
}
