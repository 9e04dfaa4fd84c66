//! The status page's history: one sample per worker every interval, for the
//! last few minutes, as the batch controller saw it (token budget, free
//! memory) and what the worker did in the interval (batches, their mean
//! pairs and padded tokens, out-of-memory errors, splits).
//!
//! Owns: turning the batcher's lifetime counters into per-interval deltas,
//! and the bound on how many samples are kept. Must never: read a clock, a
//! device or the batcher itself (the sampler passes the time and the stats
//! in), or grow past its capacity.

use std::collections::VecDeque;

use serde::Serialize;

use crate::batcher::scheduler::WorkerStats;

/// One worker over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSample {
    /// When the interval ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The controller's token budget at the end of the interval.
    pub budget_tokens: usize,
    /// Free device memory at the controller's last reading; `None` when the
    /// device's memory cannot be read (CPU, or no NVML).
    pub free_bytes: Option<u64>,
    pub batches: u64,
    /// Mean pairs, and padded tokens, per batch in the interval; `None`
    /// when no batch ran.
    pub mean_pairs: Option<f64>,
    pub mean_padded_tokens: Option<f64>,
    pub ooms: u64,
    pub splits: u64,
}

/// A worker's lifetime counters at the previous sample.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    batches: u64,
    pairs: u64,
    padded_tokens: u64,
    ooms: u64,
    splits: u64,
}

impl Counters {
    fn of(stats: &WorkerStats) -> Self {
        Counters {
            batches: stats.batches,
            pairs: stats.pairs,
            padded_tokens: stats.padded_tokens,
            ooms: stats.controller.oom_count,
            splits: stats.splits,
        }
    }
}

/// The last `capacity` samples of each worker, oldest first.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    previous: Vec<Counters>,
    workers: Vec<VecDeque<WorkerSample>>,
}

impl History {
    /// Keeps at most `capacity` samples per worker (at least one).
    pub fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            previous: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// Adds one sample per worker, taken at `at_unix_ms`. The first call
    /// only sets where counting starts: its samples count nothing, so that
    /// start-up's warm-up batches do not show as one interval's work.
    pub fn record(&mut self, at_unix_ms: u64, workers: &[WorkerStats]) {
        let first = self.previous.is_empty();
        self.previous.resize(workers.len(), Counters::default());
        self.workers.resize_with(workers.len(), VecDeque::new);
        for (index, stats) in workers.iter().enumerate() {
            let now = Counters::of(stats);
            let before = if first { now } else { self.previous[index] };
            self.previous[index] = now;
            let batches = now.batches.saturating_sub(before.batches);
            let per_batch = |total: u64| (batches > 0).then(|| total as f64 / batches as f64);
            let sample = WorkerSample {
                at_unix_ms,
                budget_tokens: stats.controller.budget_tokens,
                free_bytes: stats.controller.last_reading.map(|r| r.free_bytes),
                batches,
                mean_pairs: per_batch(now.pairs.saturating_sub(before.pairs)),
                mean_padded_tokens: per_batch(
                    now.padded_tokens.saturating_sub(before.padded_tokens),
                ),
                ooms: now.ooms.saturating_sub(before.ooms),
                splits: now.splits.saturating_sub(before.splits),
            };
            let samples = &mut self.workers[index];
            if samples.len() == self.capacity {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// Worker `index`'s samples, oldest first (empty for an unknown worker).
    pub fn worker(&self, index: usize) -> Vec<WorkerSample> {
        self.workers
            .get(index)
            .map(|samples| samples.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batcher::controller::ControllerState;
    use crate::batcher::histogram::{Histogram, BATCH_PAIRS, BATCH_TOKENS};
    use crate::gpu::MemoryReading;

    fn stats(batches: u64, pairs: u64, padded: u64, ooms: u64, splits: u64) -> WorkerStats {
        WorkerStats {
            device: "cuda:0".into(),
            controller: ControllerState {
                budget_tokens: 4096 + batches as usize,
                bytes_per_token: 1000.0,
                bytes_per_token_measured: true,
                last_reading: Some(MemoryReading {
                    free_bytes: 1 << 30,
                    total_bytes: 1 << 32,
                }),
                ceiling: None,
                oom_count: ooms,
                batches,
            },
            batches,
            pairs,
            real_tokens: 0,
            padded_tokens: padded,
            batch_pairs: Histogram::new(BATCH_PAIRS),
            batch_tokens: Histogram::new(BATCH_TOKENS),
            splits,
            busy: Default::default(),
            target_tokens: None,
            out_of_service: None,
        }
    }

    #[test]
    fn the_first_sample_counts_nothing_and_later_ones_count_their_interval() {
        let mut history = History::new(10);
        history.record(1_000, &[stats(5, 50, 500, 1, 1)]);
        history.record(3_000, &[stats(9, 70, 900, 3, 2)]);
        history.record(5_000, &[stats(9, 70, 900, 3, 2)]);
        let samples = history.worker(0);
        assert_eq!(samples.len(), 3);
        assert_eq!(
            (samples[0].batches, samples[0].ooms, samples[0].splits),
            (0, 0, 0)
        );
        assert_eq!(samples[0].mean_pairs, None);
        assert_eq!(samples[0].budget_tokens, 4101);
        let second = &samples[1];
        assert_eq!(second.at_unix_ms, 3_000);
        assert_eq!((second.batches, second.ooms, second.splits), (4, 2, 1));
        assert_eq!(second.mean_pairs, Some(5.0));
        assert_eq!(second.mean_padded_tokens, Some(100.0));
        assert_eq!(second.free_bytes, Some(1 << 30));
        assert_eq!((samples[2].batches, samples[2].mean_pairs), (0, None));
    }

    #[test]
    fn it_keeps_only_the_last_capacity_samples() {
        let mut history = History::new(3);
        for i in 0..10u64 {
            history.record(i, &[stats(i, i, i, 0, 0), stats(2 * i, 0, 0, 0, 0)]);
        }
        let times = |w| {
            history
                .worker(w)
                .iter()
                .map(|s| s.at_unix_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(0), [7, 8, 9]);
        assert_eq!(times(1), [7, 8, 9]);
        assert_eq!(history.worker(1)[2].batches, 2);
        assert!(history.worker(2).is_empty());
    }

    #[test]
    fn a_device_without_readings_has_no_free_bytes() {
        let mut history = History::new(2);
        let mut cpu = stats(1, 1, 1, 0, 0);
        cpu.controller.last_reading = None;
        history.record(0, &[cpu]);
        assert_eq!(history.worker(0)[0].free_bytes, None);
    }
}
