//! `Metrics`: rerankd's Prometheus metrics, every one named `rerankd_*`,
//! and their text exposition.
//!
//! Names follow Prometheus conventions: units as suffixes (`_seconds`,
//! `_bytes`, `_tokens`), counters end in `_total` (the encoder adds it),
//! and ratios are left to PromQL over counters (padding efficiency is
//! `rate(real_tokens_total) / rate(padded_tokens_total)`), since a lifetime
//! ratio hides what happens now.
//!
//! Owns: metric names, help texts and labels; counting requests by RPC and
//! status code with their durations; turning the batcher's stats into
//! metrics at scrape time. Must never: block a request (observing is a few
//! atomic adds), hold model or device state, or serve HTTP (`serving`
//! does).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::batcher::scheduler::BatcherStats;
use crate::cache::CacheStats;
use crate::infer::Timings;

/// Where the batcher's stats and the in-flight bytes come from at scrape
/// time; `None` while the model is loading.
pub type StatsSource = Arc<dyn Fn() -> Option<ScrapeStats> + Send + Sync>;

/// What a scrape reads of the loaded model.
pub struct ScrapeStats {
    pub batcher: BatcherStats,
    /// The score cache's counters; `None` when it is off.
    pub cache: Option<CacheStats>,
    /// Bytes of requests held now, and `--max-inflight-bytes`.
    pub inflight_bytes: usize,
    pub max_inflight_bytes: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rpc: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

/// The server's metrics. Cheap to share: handlers hold an `Arc`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RpcLabels, Histogram>,
    queue_seconds: Family<RpcLabels, Histogram>,
    inference_seconds: Family<RpcLabels, Histogram>,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new(stats: StatsSource) -> Self {
        let mut registry = Registry::with_prefix("rerankd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by RPC and gRPC status code (each request of a RerankStream \
             counts), and by HTTP route and status",
            requests.clone(),
        );
        let histogram = || Family::<RpcLabels, Histogram>::new_with_constructor(seconds_histogram);
        let request_seconds = histogram();
        registry.register(
            "request_duration_seconds",
            "From a request's arrival to its answer, by RPC",
            request_seconds.clone(),
        );
        let queue_seconds = histogram();
        registry.register(
            "queue_duration_seconds",
            "Time a successful request waited for the model, by RPC",
            queue_seconds.clone(),
        );
        let inference_seconds = histogram();
        registry.register(
            "inference_duration_seconds",
            "Model time of the batches that held a successful request's pairs, by RPC",
            inference_seconds.clone(),
        );
        registry.register_collector(Box::new(BatcherCollector { stats }));
        Metrics {
            registry,
            requests,
            request_seconds,
            queue_seconds,
            inference_seconds,
        }
    }

    /// Counts one answered request: its RPC, its status code, how long it
    /// took, and for a success where its time went.
    pub fn observe(
        &self,
        rpc: &'static str,
        code: tonic::Code,
        elapsed: std::time::Duration,
        timings: Option<&Timings>,
    ) {
        self.observe_code(rpc, code_name(code), elapsed, timings);
    }

    /// `observe` with the code as its label reads: an HTTP route's requests
    /// are counted by their HTTP status (`"200"`, `"429"`, ...).
    pub fn observe_code(
        &self,
        rpc: &'static str,
        code: &'static str,
        elapsed: std::time::Duration,
        timings: Option<&Timings>,
    ) {
        self.requests
            .get_or_create(&RequestLabels { rpc, code })
            .inc();
        let labels = RpcLabels { rpc };
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(timings) = timings {
            self.queue_seconds
                .get_or_create(&labels)
                .observe(timings.queue.as_secs_f64());
            self.inference_seconds
                .get_or_create(&labels)
                .observe(timings.inference.as_secs_f64());
        }
    }

    /// The exposition's content type, as `render` writes it.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A status code's canonical name: the API crate's, which the bench's
/// failure counts spell alike.
pub use rerankd_api::code_name;

/// The batcher's state, read at each scrape.
struct BatcherCollector {
    stats: StatsSource,
}

impl std::fmt::Debug for BatcherCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatcherCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
}

impl Collector for BatcherCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = (self.stats)();
        ConstGauge::new(i64::from(stats.is_some())).encode(encoder.encode_descriptor(
            "model_ready",
            "1 once the model is loaded and warm on every device, 0 while it loads",
            None,
            MetricType::Gauge,
        )?)?;
        let Some(ScrapeStats {
            batcher: stats,
            cache,
            inflight_bytes,
            max_inflight_bytes,
        }) = stats
        else {
            return Ok(());
        };
        if let Some(cache) = cache {
            for (name, help, value) in [
                (
                    "score_cache_hits",
                    "Pairs answered from the score cache",
                    cache.hits,
                ),
                (
                    "score_cache_misses",
                    "Pairs looked up in the score cache and not found",
                    cache.misses,
                ),
                (
                    "score_cache_evictions",
                    "Score cache entries dropped for newer ones",
                    cache.evictions,
                ),
            ] {
                ConstCounter::new(value).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Counter,
                )?)?;
            }
            for (name, help, value) in [
                (
                    "score_cache_entries",
                    "Pairs held in the score cache",
                    cache.entries,
                ),
                (
                    "score_cache_bytes",
                    "Bytes the score cache's entries count for",
                    cache.bytes,
                ),
                (
                    "score_cache_capacity_bytes",
                    "--score-cache-mb, in bytes",
                    cache.capacity_bytes,
                ),
            ] {
                ConstGauge::new(value as i64).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }
        ConstGauge::new(inflight_bytes as i64).encode(encoder.encode_descriptor(
            "inflight_bytes",
            "Bytes of requests held now: messages arriving, then text and token ids until answered",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(max_inflight_bytes as i64).encode(encoder.encode_descriptor(
            "max_inflight_bytes",
            "--max-inflight-bytes: past it a request gets RESOURCE_EXHAUSTED",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(stats.queued_pairs as i64).encode(encoder.encode_descriptor(
            "queued_pairs",
            "Pairs admitted and not yet answered (the queue depth)",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(stats.refused_late).encode(encoder.encode_descriptor(
            "admission_refused_late",
            "Requests refused at admission because the work ahead and their own would not \
             finish before their deadline (or --max-queue-time)",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(stats.secs_per_token).encode(encoder.encode_descriptor(
            "seconds_per_token",
            "The scheduler's running estimate of model time per real token, one worker",
            None,
            MetricType::Gauge,
        )?)?;
        let workers = &stats.workers;
        let labels = |device: &str| DeviceLabels {
            device: device.to_string(),
        };

        macro_rules! per_device {
            ($name:expr, $help:expr, $kind:expr, |$w:ident| $value:expr) => {{
                let mut family = encoder.encode_descriptor($name, $help, None, $kind)?;
                for $w in workers {
                    let labels = labels(&$w.device);
                    $value.encode(family.encode_family(&labels)?)?;
                }
            }};
        }
        per_device!(
            "batch_budget_tokens",
            "Padded tokens (pairs x padded length) the next batch may hold",
            MetricType::Gauge,
            |w| ConstGauge::new(w.controller.budget_tokens as i64)
        );
        per_device!(
            "batch_target_tokens",
            "Most padded tokens per batch by time (0: none, memory alone sizes batches)",
            MetricType::Gauge,
            |w| ConstGauge::new(w.target_tokens.unwrap_or(0) as i64)
        );
        per_device!(
            "padded_token_size_bytes",
            "Device bytes one padded token is assumed to cost",
            MetricType::Gauge,
            |w| ConstGauge::new(w.controller.bytes_per_token)
        );
        per_device!(
            "device_memory_free_bytes",
            "Free device memory at the last reading (0 where it cannot be read: CPU)",
            MetricType::Gauge,
            |w| ConstGauge::new(w.controller.last_reading.map_or(0, |r| r.free_bytes) as i64)
        );
        per_device!(
            "device_memory_total_bytes",
            "Total device memory (0 where it cannot be read: CPU)",
            MetricType::Gauge,
            |w| ConstGauge::new(w.controller.last_reading.map_or(0, |r| r.total_bytes) as i64)
        );
        per_device!(
            "out_of_memory_errors",
            "Batches that ran out of device memory",
            MetricType::Counter,
            |w| ConstCounter::new(w.controller.oom_count)
        );
        per_device!(
            "batch_splits",
            "Times a batch was split in two after running out of memory",
            MetricType::Counter,
            |w| ConstCounter::new(w.splits)
        );
        per_device!("batches", "Batches run", MetricType::Counter, |w| {
            ConstCounter::new(w.batches)
        });
        per_device!(
            "batch_pairs",
            "Pairs scored in batches",
            MetricType::Counter,
            |w| ConstCounter::new(w.pairs)
        );
        per_device!(
            "real_tokens",
            "Real (non-padding) tokens in batches",
            MetricType::Counter,
            |w| ConstCounter::new(w.real_tokens)
        );
        per_device!(
            "padded_tokens",
            "Padded tokens (pairs x padded length) in batches",
            MetricType::Counter,
            |w| ConstCounter::new(w.padded_tokens)
        );
        per_device!(
            "worker_in_service",
            "1 while the worker serves, 0 once it is taken out of service (its device \
             failed or its model thread stopped)",
            MetricType::Gauge,
            |w| ConstGauge::new(i64::from(w.out_of_service.is_none()))
        );
        per_device!(
            "busy_seconds",
            "Model time spent scoring batches",
            MetricType::Counter,
            |w| ConstCounter::new(w.busy.as_secs_f64())
        );
        for (name, help, pick) in [
            (
                "batch_size_pairs",
                "Pairs per batch",
                (|w: &crate::batcher::scheduler::WorkerStats| &w.batch_pairs)
                    as fn(&crate::batcher::scheduler::WorkerStats) -> &_,
            ),
            ("batch_size_padded_tokens", "Padded tokens per batch", |w| {
                &w.batch_tokens
            }),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for worker in workers {
                let histogram = pick(worker);
                let labels = labels(&worker.device);
                family
                    .encode_family(&labels)?
                    .encode_histogram::<DeviceLabels>(
                        histogram.sum,
                        histogram.count,
                        &histogram.cumulative(),
                        None,
                    )?;
            }
        }
        Ok(())
    }
}
