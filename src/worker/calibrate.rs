//! Warm-up calibration: bytes of device memory per padded token, measured
//! once at start-up by scoring one window-length pair repeated 1, 2, 4, …
//! rows and reading the `MemoryProbe` before the first batch and after each.
//!
//! libtorch exposes no CUDA allocator statistics, so the measure is the
//! device's used memory (total − free) as NVML sees it. The caching
//! allocator keeps the blocks it reserved, so used memory read after a batch
//! reflects the largest peak so far, and it only grows; its slope over
//! padded tokens is what the controller divides free memory by. A step only
//! shows its own peak when it outgrew the cache: blocks cached before
//! calibration (the fp32 weights a cast to fp16 freed, the golden batches)
//! absorb the first steps and part of the one that outgrows them. So a slope
//! counts only between two steps that both grew used memory, and the caller
//! empties the cache first (`TorchScorer::release_cached_memory`).
//!
//! Owns: the doubling schedule, when it stops, and the estimate taken from
//! the readings. Must never: run on a tokio worker (it runs libtorch and
//! NVML: the model thread only); fail start-up (any failure, a probe read, a
//! score error other than out-of-memory, memory that never grew, means "no
//! measurement", and the controller keeps its assumed bytes per token); read
//! a clock or log (the caller logs the result).

use crate::gpu::{MemoryProbe, MemoryReading};
use crate::model::{EncodedPair, PaddedBatch, ScoreError, Scorer};

/// How far calibration may go, and how to build its batches.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationPlan {
    /// The largest batch tried, in pairs: the rows double from 1 and the
    /// last step is exactly this many when it is not a power of two.
    pub max_pairs: usize,
    /// Share of the free memory read before calibration that its batches
    /// may be predicted to use; a step predicted to go over is not run.
    pub safety_fraction: f64,
    /// The model's padding id (the rows are identical, so none is padded,
    /// but `PaddedBatch` takes it).
    pub pad_token_id: i64,
    /// Whether the model takes `token_type_ids`.
    pub uses_token_type_ids: bool,
}

/// What calibration measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Measured bytes per padded token (the slope of used memory over padded
    /// tokens; the largest between successive steps that both grew it).
    pub bytes_per_token: f64,
    /// (padded tokens, used bytes after the batch) for each step that ran.
    pub steps: Vec<(usize, u64)>,
    /// Padded tokens of the step that ran out of memory, if one did (the
    /// ceiling).
    pub out_of_memory_at: Option<usize>,
}

/// Measures bytes per padded token by scoring `pair` repeated 1, 2, 4, …
/// rows, up to `plan.max_pairs`, on `scorer`, reading `probe` before the
/// first step and after each.
///
/// The first step always runs (a single pair must fit anyway); each later one
/// runs only if the use predicted from the estimate so far stays within
/// `plan.safety_fraction` of the free memory read before the first step.
///
/// The estimate is the largest slope (Δ used ÷ Δ padded tokens) between
/// successive steps that both grew used memory, or (used − baseline) ÷
/// tokens when only one step ran.
/// The first forward pass also allocates workspaces (cuBLAS handles and the
/// like) that do not scale with the batch, and the caching allocator grows in
/// whole segments, so per-step slopes are noisy: the largest one is kept,
/// because over-estimating costs a smaller batch while under-estimating costs
/// an out-of-memory error.
///
/// An out-of-memory error at a step ends calibration with what the earlier
/// steps measured, and records the step as the ceiling. `None` when no step
/// ran, a probe read failed, any other score error happened, or no two
/// successive steps grew memory (the allocator's cache held most of them).
pub fn calibrate<S: Scorer + ?Sized>(
    scorer: &mut S,
    probe: &mut dyn MemoryProbe,
    pair: &EncodedPair,
    plan: &CalibrationPlan,
) -> Option<Calibration> {
    if pair.is_empty() || plan.max_pairs == 0 {
        return None;
    }
    let baseline = probe.read().ok()?;
    let baseline_used = used_bytes(baseline);
    let allowed_growth = baseline.free_bytes as f64 * plan.safety_fraction;
    let mut steps: Vec<(usize, u64)> = Vec::new();
    let mut out_of_memory_at = None;
    let mut pairs = 1;
    loop {
        let tokens = pairs * pair.len();
        if let (Some(&(last_tokens, last_used)), Some(slope)) =
            (steps.last(), estimate(baseline_used, &steps))
        {
            let predicted_used = last_used as f64 + slope.max(0.0) * (tokens - last_tokens) as f64;
            if predicted_used - baseline_used as f64 > allowed_growth {
                break;
            }
        }
        let rows = vec![pair; pairs];
        let batch = PaddedBatch::new(&rows, plan.pad_token_id, plan.uses_token_type_ids);
        match scorer.score(&batch) {
            Ok(_) => {}
            Err(ScoreError::OutOfMemory(_)) => {
                out_of_memory_at = Some(tokens);
                break;
            }
            Err(ScoreError::Failed(_) | ScoreError::DeviceFailed(_)) => return None,
        }
        steps.push((tokens, used_bytes(probe.read().ok()?)));
        if pairs == plan.max_pairs {
            break;
        }
        pairs = pairs.saturating_mul(2).min(plan.max_pairs);
    }
    let bytes_per_token = estimate(baseline_used, &steps)?;
    (bytes_per_token.is_finite() && bytes_per_token > 0.0).then_some(Calibration {
        bytes_per_token,
        steps,
        out_of_memory_at,
    })
}

fn used_bytes(reading: MemoryReading) -> u64 {
    reading.total_bytes.saturating_sub(reading.free_bytes)
}

/// The largest slope between successive steps that both grew used memory
/// (a step that did not grow it ran inside blocks cached earlier, so the
/// growth of the step after it is only part of that step's need); from the
/// baseline when only one step ran; `None` before any, or when no two
/// successive steps grew.
fn estimate(baseline_used: u64, steps: &[(usize, u64)]) -> Option<f64> {
    let slope = |(tokens_a, used_a): (usize, u64), (tokens_b, used_b): (usize, u64)| {
        (used_b as f64 - used_a as f64) / (tokens_b as f64 - tokens_a as f64)
    };
    match steps {
        [] => None,
        [only] => Some(slope((0, baseline_used), *only)),
        _ => {
            let points: Vec<(usize, u64)> = std::iter::once((0, baseline_used))
                .chain(steps.iter().copied())
                .collect();
            points
                .windows(3)
                .filter(|w| w[1].1 > w[0].1 && w[2].1 > w[1].1)
                .map(|w| slope(w[1], w[2]))
                .reduce(f64::max)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::worker::fake::{FakeMemory, FakeProbe, FakeScorer};

    const WINDOW: usize = 512;
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// An 80 GiB device with 2 GiB in use, a 300 MiB workspace taken by the
    /// first batch, and 200 KiB per padded token.
    fn device() -> FakeMemory {
        FakeMemory::new(80 * GIB, 2 * GIB, 300 * MIB, 200 * KIB)
    }

    fn plan(max_pairs: usize, safety_fraction: f64) -> CalibrationPlan {
        CalibrationPlan {
            max_pairs,
            safety_fraction,
            pad_token_id: 0,
            uses_token_type_ids: true,
        }
    }

    /// How a calibration run is set up, beyond the device.
    struct Run {
        plan: CalibrationPlan,
        /// The fake scorer's out-of-memory limit, in padded tokens.
        limit: usize,
        fail_with: Option<ScoreError>,
        probe_fails_from_read: Option<usize>,
    }

    impl Run {
        fn new(max_pairs: usize, safety_fraction: f64) -> Self {
            Run {
                plan: plan(max_pairs, safety_fraction),
                limit: usize::MAX,
                fail_with: None,
                probe_fails_from_read: None,
            }
        }
    }

    /// Calibrates on `memory` as `run` says; also the number of batches
    /// scored.
    fn check(memory: FakeMemory, run: Run) -> (Option<Calibration>, usize) {
        let memory = Arc::new(memory);
        let mut scorer = FakeScorer::with_limit(run.limit).with_memory(memory.clone());
        scorer.fail_with = run.fail_with;
        let mut probe = FakeProbe::new(memory);
        probe.fail_from_read = run.probe_fails_from_read;
        let pair = EncodedPair {
            input_ids: (1..=WINDOW as i64).collect(),
            token_type_ids: vec![0; WINDOW],
            truncated: false,
        };
        let calibration = calibrate(&mut scorer, &mut probe, &pair, &run.plan);
        (calibration, scorer.calls)
    }

    fn tokens_of(calibration: &Calibration) -> Vec<usize> {
        calibration
            .steps
            .iter()
            .map(|&(tokens, _)| tokens)
            .collect()
    }

    fn assert_close(measured: f64, expected: u64) {
        let error = (measured - expected as f64).abs() / expected as f64;
        assert!(error < 0.02, "measured {measured}, expected {expected}");
    }

    #[test]
    fn measures_the_slope_despite_the_first_batch_workspace() {
        let (calibration, calls) = check(device(), Run::new(64, 0.8));
        let calibration = calibration.expect("a measurement");
        assert_close(calibration.bytes_per_token, 200 * KIB);
        assert_eq!(
            tokens_of(&calibration),
            [1, 2, 4, 8, 16, 32, 64].map(|pairs| pairs * WINDOW)
        );
        assert_eq!(calibration.out_of_memory_at, None);
        assert_eq!(calls, 7);
        // Used memory as the device reported it, workspace included.
        assert_eq!(
            calibration.steps[0].1,
            2 * GIB + 300 * MIB + WINDOW as u64 * 200 * KIB
        );
    }

    #[test]
    fn a_single_step_measures_from_the_baseline() {
        let (calibration, _) = check(
            FakeMemory::new(80 * GIB, 2 * GIB, 0, 100 * KIB),
            Run::new(1, 0.8),
        );
        let calibration = calibration.expect("a measurement");
        assert_eq!(tokens_of(&calibration), [WINDOW]);
        assert_close(calibration.bytes_per_token, 100 * KIB);
        // With a workspace, one step over-estimates: conservative, as meant.
        let (calibration, _) = check(device(), Run::new(1, 0.8));
        assert_close(
            calibration.expect("a measurement").bytes_per_token,
            200 * KIB + 300 * MIB / WINDOW as u64,
        );
    }

    #[test]
    fn stops_at_max_pairs() {
        let (calibration, calls) = check(device(), Run::new(6, 0.8));
        let calibration = calibration.expect("a measurement");
        assert_eq!(
            tokens_of(&calibration),
            [1, 2, 4, 6].map(|pairs| pairs * WINDOW)
        );
        assert_close(calibration.bytes_per_token, 200 * KIB);
        assert_eq!(calls, 4);
        let (calibration, calls) = check(device(), Run::new(0, 0.8));
        assert_eq!((calibration, calls), (None, 0));
    }

    #[test]
    fn stops_before_the_safety_share_of_free_memory() {
        // 3 GiB free, half of it usable: 1.5 GiB / 200 KiB = 7864 tokens, so
        // 8 pairs (4096 tokens) run and 16 (8192 tokens) would not fit.
        let memory = FakeMemory::new(4 * GIB, GIB, 0, 200 * KIB);
        let (calibration, calls) = check(memory, Run::new(64, 0.5));
        let calibration = calibration.expect("a measurement");
        assert_eq!(
            tokens_of(&calibration),
            [1, 2, 4, 8].map(|pairs| pairs * WINDOW)
        );
        assert_eq!(calls, 4);
        let grown = calibration.steps.last().unwrap().1 - GIB;
        assert!(grown as f64 <= 0.5 * (3 * GIB) as f64, "grew {grown}");
        assert_close(calibration.bytes_per_token, 200 * KIB);
    }

    #[test]
    fn out_of_memory_keeps_what_earlier_steps_measured() {
        let run = Run {
            limit: 4 * WINDOW,
            ..Run::new(64, 0.8)
        };
        let (calibration, calls) = check(device(), run);
        let calibration = calibration.expect("a measurement");
        assert_eq!(
            tokens_of(&calibration),
            [1, 2, 4].map(|pairs| pairs * WINDOW)
        );
        assert_eq!(calibration.out_of_memory_at, Some(8 * WINDOW));
        assert_close(calibration.bytes_per_token, 200 * KIB);
        assert_eq!(calls, 4);
    }

    #[test]
    fn out_of_memory_at_the_first_step_measures_nothing() {
        let run = Run {
            limit: WINDOW - 1,
            ..Run::new(64, 0.8)
        };
        assert_eq!(check(device(), run), (None, 1));
    }

    #[test]
    fn a_failed_read_or_score_measures_nothing() {
        for fails_from in [0, 1, 3] {
            let run = Run {
                probe_fails_from_read: Some(fails_from),
                ..Run::new(64, 0.8)
            };
            assert_eq!(check(device(), run).0, None, "read {fails_from} fails");
        }
        let run = Run {
            fail_with: Some(ScoreError::Failed("fake: broken".into())),
            ..Run::new(64, 0.8)
        };
        assert_eq!(check(device(), run), (None, 1));
    }

    #[test]
    fn memory_that_never_grows_measures_nothing() {
        // The allocator already holds more than calibration's largest batch.
        let memory = device();
        memory.ran(128 * WINDOW);
        assert_eq!(check(memory, Run::new(64, 0.8)), (None, 7));
        // A device whose use does not move with the batch at all.
        let memory = FakeMemory::new(80 * GIB, 2 * GIB, 0, 0);
        assert_eq!(check(memory, Run::new(8, 0.8)).0, None);
    }

    #[test]
    fn steps_inside_blocks_cached_before_do_not_count() {
        // Blocks cached before calibration (the fp32 weights freed by a cast)
        // hold 40 pairs' worth: only the 64-pair step grows used memory, by
        // 24 pairs' worth. Its slope from the 32-pair step would be 0.75 of
        // the truth; with no two growing steps nothing is measured.
        let memory = device();
        memory.ran(40 * WINDOW);
        let (calibration, calls) = check(memory, Run::new(64, 0.8));
        assert_eq!((calibration, calls), (None, 7));
        // Cached blocks of 5 pairs' worth: the 8-pair step grows partly, and
        // the slopes from it on are whole.
        let memory = device();
        memory.ran(5 * WINDOW);
        let (calibration, _) = check(memory, Run::new(64, 0.8));
        assert_close(
            calibration.expect("a measurement").bytes_per_token,
            200 * KIB,
        );
    }
}
