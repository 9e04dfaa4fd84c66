//! The bench's numbers: what the clients saw (`Tally`), the server's Stats
//! samples, the summary of a run (rates, latency percentiles, what the
//! batcher did between the first and last sample), the per-interval series,
//! the stdout table and the JSON document.
//!
//! Owns: every statistic the bench reports and how it is worded. Must
//! never: do I/O, read a clock (durations and sample times are passed in)
//! or know about gRPC (the driver converts the wire types).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// What the clients saw, summed over all of them.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Send-to-answer latency of each successful request, in microseconds.
    pub latencies_us: Vec<u64>,
    pub succeeded: u64,
    /// From the answers' usage.
    pub pairs: u64,
    pub tokens: u64,
    pub truncated_pairs: u64,
    /// Failed requests by gRPC code name (`RESOURCE_EXHAUSTED`, …).
    pub failures: BTreeMap<String, Failures>,
}

/// The requests that failed with one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failures {
    pub count: u64,
    /// The first one's status message, to say what went wrong.
    pub first_message: String,
}

/// A successful request's usage, as its answer reported it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answered {
    pub pairs: u64,
    pub tokens: u64,
    pub truncated_pairs: u64,
}

impl Tally {
    pub fn record_success(&mut self, latency: Duration, answered: Answered) {
        self.latencies_us.push(latency.as_micros() as u64);
        self.succeeded += 1;
        self.pairs += answered.pairs;
        self.tokens += answered.tokens;
        self.truncated_pairs += answered.truncated_pairs;
    }

    pub fn record_failure(&mut self, code: &str, message: &str) {
        self.failures
            .entry(code.to_string())
            .or_insert_with(|| Failures {
                count: 0,
                first_message: message.to_string(),
            })
            .count += 1;
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().map(|f| f.count).sum()
    }

    /// Requests answered, successfully or not.
    pub fn requests(&self) -> u64 {
        self.succeeded + self.failed()
    }
}

/// One reading of the server's Stats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since measuring started.
    pub t_secs: f64,
    pub queued_pairs: u64,
    pub devices: Vec<DeviceSample>,
}

/// One worker's counters and controller state in a `Sample`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSample {
    pub device: String,
    pub budget_tokens: u64,
    /// Whether free/total bytes were read from the device (false on CPU).
    pub memory_known: bool,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub batches: u64,
    pub pairs: u64,
    pub padded_tokens: u64,
    pub real_tokens: u64,
    pub oom_count: u64,
    pub splits: u64,
    pub busy_micros: u64,
}

/// A sample and what the batcher did since the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub t_secs: f64,
    pub queued_pairs: u64,
    pub devices: Vec<DevicePoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevicePoint {
    #[serde(flatten)]
    pub sample: DeviceSample,
    /// Mean batch size over the interval since the previous sample; `None`
    /// for the first sample and for intervals without a batch.
    pub pairs_per_batch: Option<f64>,
    pub padded_tokens_per_batch: Option<f64>,
}

/// Each sample with its interval's mean batch size (pairs and padded
/// tokens per batch) derived from the difference to the previous sample.
pub fn series(samples: &[Sample]) -> Vec<SeriesPoint> {
    samples
        .iter()
        .enumerate()
        .map(|(i, sample)| SeriesPoint {
            t_secs: sample.t_secs,
            queued_pairs: sample.queued_pairs,
            devices: sample
                .devices
                .iter()
                .enumerate()
                .map(|(d, device)| {
                    let before = i
                        .checked_sub(1)
                        .and_then(|p| samples[p].devices.get(d))
                        .filter(|b| b.device == device.device);
                    device_point(before, device)
                })
                .collect(),
        })
        .collect()
}

fn device_point(before: Option<&DeviceSample>, now: &DeviceSample) -> DevicePoint {
    let per_batch = |field: fn(&DeviceSample) -> u64| {
        let before = before?;
        let batches = now.batches.checked_sub(before.batches)?;
        (batches > 0).then(|| field(now).saturating_sub(field(before)) as f64 / batches as f64)
    };
    DevicePoint {
        sample: now.clone(),
        pairs_per_batch: per_batch(|s| s.pairs),
        padded_tokens_per_batch: per_batch(|s| s.padded_tokens),
    }
}

/// The `q` quantile (0 < q ≤ 1) of sorted values, by nearest rank: the
/// smallest value with at least `q` of the values at or below it.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latencies of the successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    /// `None` when there are no latencies.
    pub fn of(latencies_us: &[u64]) -> Option<Self> {
        let mut sorted = latencies_us.to_vec();
        sorted.sort_unstable();
        let ms = |q: f64| percentile(&sorted, q).map(|us| us as f64 / 1000.0);
        let mean = sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64 / 1000.0;
        Some(LatencyMs {
            p50: ms(0.50)?,
            p95: ms(0.95)?,
            p99: ms(0.99)?,
            max: ms(1.0)?,
            mean,
        })
    }
}

/// The median of latencies in milliseconds, without sorting them all.
pub fn median_ms(mut latencies_us: Vec<u64>) -> Option<f64> {
    if latencies_us.is_empty() {
        return None;
    }
    let rank = latencies_us.len().div_ceil(2) - 1;
    let (_, median, _) = latencies_us.select_nth_unstable(rank);
    Some(*median as f64 / 1000.0)
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// From the first request sent to the last answer.
    pub duration_secs: f64,
    /// Requests answered (succeeded + failed).
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, Failures>,
    pub pairs: u64,
    pub tokens: u64,
    pub truncated_pairs: u64,
    pub requests_per_second: f64,
    pub pairs_per_second: f64,
    pub tokens_per_second: f64,
    /// Successful requests only; `None` when none succeeded.
    pub latency_ms: Option<LatencyMs>,
    /// The rest comes from the server's Stats, first sample to last, over
    /// every device (and counts other clients' work, if any).
    pub batches: u64,
    /// Real ÷ padded tokens of the run's batches; `None` without a batch.
    pub padding_efficiency: Option<f64>,
    pub mean_pairs_per_batch: Option<f64>,
    pub mean_padded_tokens_per_batch: Option<f64>,
    pub oom_count: u64,
    pub splits: u64,
    /// Model busy time ÷ (wall time × devices): the devices' utilisation.
    /// A batch counts when it ends, so one that began before measuring can
    /// take a saturated device slightly past 1.
    pub busy_share: Option<f64>,
}

/// Sums a counter's growth from `first` to `last` over every device (the
/// server lists its workers in a fixed order; two may share a name).
fn growth(first: &Sample, last: &Sample, counter: fn(&DeviceSample) -> u64) -> u64 {
    last.devices
        .iter()
        .enumerate()
        .map(|(d, now)| {
            let before = first
                .devices
                .get(d)
                .filter(|b| b.device == now.device)
                .map_or(0, counter);
            counter(now).saturating_sub(before)
        })
        .sum()
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn per_second(count: u64, duration: Duration) -> f64 {
    let secs = duration.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// The summary of a run that took `duration`, between two Stats samples.
pub fn summarize(tally: &Tally, first: &Sample, last: &Sample, duration: Duration) -> Summary {
    let batches = growth(first, last, |d| d.batches);
    let padded = growth(first, last, |d| d.padded_tokens);
    let busy_micros = growth(first, last, |d| d.busy_micros);
    let device_micros = duration.as_micros() as u64 * last.devices.len() as u64;
    Summary {
        duration_secs: duration.as_secs_f64(),
        requests: tally.requests(),
        succeeded: tally.succeeded,
        failed: tally.failed(),
        failures: tally.failures.clone(),
        pairs: tally.pairs,
        tokens: tally.tokens,
        truncated_pairs: tally.truncated_pairs,
        requests_per_second: per_second(tally.requests(), duration),
        pairs_per_second: per_second(tally.pairs, duration),
        tokens_per_second: per_second(tally.tokens, duration),
        latency_ms: LatencyMs::of(&tally.latencies_us),
        batches,
        padding_efficiency: ratio(growth(first, last, |d| d.real_tokens), padded),
        mean_pairs_per_batch: ratio(growth(first, last, |d| d.pairs), batches),
        mean_padded_tokens_per_batch: ratio(padded, batches),
        oom_count: growth(first, last, |d| d.oom_count),
        splits: growth(first, last, |d| d.splits),
        busy_share: ratio(busy_micros, device_micros),
    }
}

/// The summary as a two-column table for stdout.
pub fn table(summary: &Summary) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "duration (s)".into(),
            format!("{:.2}", summary.duration_secs),
        ),
        ("requests".into(), summary.requests.to_string()),
        ("failed".into(), summary.failed.to_string()),
        ("pairs".into(), summary.pairs.to_string()),
        (
            "requests/s".into(),
            format!("{:.1}", summary.requests_per_second),
        ),
        ("pairs/s".into(), format!("{:.1}", summary.pairs_per_second)),
        (
            "tokens/s".into(),
            format!("{:.0}", summary.tokens_per_second),
        ),
    ];
    let latency = summary.latency_ms;
    for (name, value) in [
        ("p50", latency.map(|l| l.p50)),
        ("p95", latency.map(|l| l.p95)),
        ("p99", latency.map(|l| l.p99)),
        ("max", latency.map(|l| l.max)),
    ] {
        rows.push((format!("latency {name} (ms)"), optional(value, 1)));
    }
    rows.extend([
        (
            "padding efficiency".into(),
            optional(summary.padding_efficiency, 3),
        ),
        ("batches".into(), summary.batches.to_string()),
        (
            "mean pairs per batch".into(),
            optional(summary.mean_pairs_per_batch, 2),
        ),
        (
            "mean padded tokens per batch".into(),
            optional(summary.mean_padded_tokens_per_batch, 0),
        ),
        (
            "model busy".into(),
            optional(summary.busy_share.map(|s| s * 100.0), 1) + " %",
        ),
        (
            "out-of-memory batches".into(),
            summary.oom_count.to_string(),
        ),
        ("splits".into(), summary.splits.to_string()),
        (
            "truncated pairs".into(),
            summary.truncated_pairs.to_string(),
        ),
    ]);
    if summary.failures.is_empty() {
        rows.push(("failures".into(), "none".into()));
    }
    for (code, failures) in &summary.failures {
        rows.push((
            format!("failures {code}"),
            format!("{} (first: {})", failures.count, failures.first_message),
        ));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<width$}  {value}");
    }
    out
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

/// The run's settings as they took effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    pub addr: String,
    pub clients: usize,
    pub documents: usize,
    /// `fixed`, `uniform` or `long-tail`.
    pub lengths: String,
    /// Shortest and longest document the distribution draws, in words.
    pub min_words: usize,
    pub max_words: usize,
    /// Measured requests asked for (`None`: stopped by duration).
    pub requests: Option<u64>,
    /// Measuring time asked for (`None`: stopped by request count).
    pub duration_secs: Option<f64>,
    pub warmup_secs: f64,
    pub seed: u64,
    pub deadline_secs: f64,
    pub sample_ms: u64,
}

/// What the server said it runs (ModelInfo).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedModel {
    pub name: String,
    pub device: String,
    pub devices: Vec<String>,
    pub dtype: String,
    pub max_length: u32,
    pub mode: String,
}

/// The JSON file: settings, model, summary and the time series.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub config: &'a RunConfig,
    pub model: &'a ServedModel,
    pub summary: &'a Summary,
    pub series: &'a [SeriesPoint],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(batches: u64, pairs: u64, padded: u64, real: u64) -> DeviceSample {
        DeviceSample {
            device: "cpu".into(),
            budget_tokens: 16_384,
            memory_known: false,
            free_bytes: 0,
            total_bytes: 0,
            batches,
            pairs,
            padded_tokens: padded,
            real_tokens: real,
            oom_count: 0,
            splits: 0,
            busy_micros: batches * 1000,
        }
    }

    fn sample(t_secs: f64, devices: Vec<DeviceSample>) -> Sample {
        Sample {
            t_secs,
            queued_pairs: 0,
            devices,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        for (q, expected) in [(0.5, 50), (0.95, 95), (0.99, 99), (1.0, 100), (0.001, 1)] {
            assert_eq!(percentile(&values, q), Some(expected), "q = {q}");
        }
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[1, 2], 0.5), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(median_ms(vec![3000, 1000, 2000, 9000]), Some(2.0));
        assert_eq!(median_ms(vec![]), None);
    }

    #[test]
    fn latency_summary_is_in_milliseconds_and_ordered() {
        let latencies: Vec<u64> = (1..=1000).rev().map(|i| i * 100).collect();
        let l = LatencyMs::of(&latencies).unwrap();
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert!((l.mean - 50.05).abs() < 1e-9);
        assert_eq!(LatencyMs::of(&[]), None);
    }

    #[test]
    fn the_tally_counts_successes_and_failures_by_code() {
        let mut tally = Tally::default();
        let answered = Answered {
            pairs: 8,
            tokens: 400,
            truncated_pairs: 1,
        };
        tally.record_success(Duration::from_millis(12), answered);
        tally.record_failure("RESOURCE_EXHAUSTED", "too much work queued");
        tally.record_failure("RESOURCE_EXHAUSTED", "another message");
        assert_eq!(
            (tally.requests(), tally.succeeded, tally.failed()),
            (3, 1, 2)
        );
        assert_eq!(tally.latencies_us, vec![12_000]);
        assert_eq!(
            tally.failures["RESOURCE_EXHAUSTED"],
            Failures {
                count: 2,
                first_message: "too much work queued".into()
            }
        );
    }

    #[test]
    fn series_derives_batch_sizes_from_consecutive_samples() {
        let samples = [
            sample(0.0, vec![device(10, 40, 4000, 3000)]),
            sample(0.1, vec![device(14, 72, 7200, 6000)]),
            sample(0.2, vec![device(14, 72, 7200, 6000)]),
        ];
        let points = series(&samples);
        let sizes: Vec<_> = points
            .iter()
            .map(|p| {
                let d = &p.devices[0];
                (d.pairs_per_batch, d.padded_tokens_per_batch)
            })
            .collect();
        assert_eq!(
            sizes,
            vec![(None, None), (Some(8.0), Some(800.0)), (None, None)]
        );
    }

    #[test]
    fn summary_takes_rates_from_the_clients_and_batches_from_the_server() {
        let mut tally = Tally::default();
        for ms in [10, 20, 30, 40] {
            let answered = Answered {
                pairs: 8,
                tokens: 100,
                truncated_pairs: 0,
            };
            tally.record_success(Duration::from_millis(ms), answered);
        }
        let first = sample(0.0, vec![device(10, 40, 4000, 3000)]);
        let last = sample(2.0, vec![device(14, 72, 8000, 6000)]);
        let summary = summarize(&tally, &first, &last, Duration::from_secs(2));
        assert_eq!(
            (summary.requests, summary.pairs, summary.failed),
            (4, 32, 0)
        );
        assert_eq!(summary.pairs_per_second, 16.0);
        assert_eq!(summary.requests_per_second, 2.0);
        assert_eq!(summary.batches, 4);
        assert_eq!(summary.padding_efficiency, Some(0.75));
        assert_eq!(summary.mean_pairs_per_batch, Some(8.0));
        assert_eq!(summary.mean_padded_tokens_per_batch, Some(1000.0));
        assert_eq!(summary.busy_share, Some(0.002));
        assert_eq!(summary.latency_ms.unwrap().p50, 20.0);

        let table = table(&summary);
        for row in [
            "pairs/s",
            "16.0",
            "latency p99 (ms)",
            "padding efficiency",
            "0.750",
        ] {
            assert!(table.contains(row), "{row} missing from\n{table}");
        }
    }

    #[test]
    fn an_idle_run_has_no_ratios_instead_of_nan() {
        let idle = sample(0.0, vec![device(3, 3, 30, 30)]);
        let summary = summarize(&Tally::default(), &idle, &idle, Duration::ZERO);
        assert_eq!(summary.padding_efficiency, None);
        assert_eq!(summary.mean_pairs_per_batch, None);
        assert_eq!(summary.pairs_per_second, 0.0);
        assert!(table(&summary).contains("padding efficiency"));
    }
}
