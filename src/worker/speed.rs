//! Start-up speed measurement: model time of one pair repeated 1, 2, 4, …
//! rows, and the batch target chosen from it: the smallest batch, in padded
//! tokens, whose throughput reaches `PLATEAU_SHARE` of the best measured.
//! On a CPU throughput is flat from a few pairs up (BENCHMARKS.md), so the
//! target is small and every batch short, which is what a request arriving
//! behind one waits for; on a GPU throughput grows with the batch, and the
//! target stays large (or absent, when it was still growing at the largest
//! step, and memory alone sizes batches).
//!
//! Owns: the doubling schedule, when it stops, and the choice (`choose`,
//! pure). Must never: run on a tokio worker (it runs libtorch: the model
//! thread only), or fail start-up (a failed step ends the measurement with
//! what it has; none at all is "not measured").

use std::time::{Duration, Instant};

use crate::model::{EncodedPair, PaddedBatch, Scorer};

/// The share of the best throughput a target batch must reach.
pub const PLATEAU_SHARE: f64 = 0.95;

/// What the measurement chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// The smallest batch, in padded tokens, whose throughput reached the
    /// plateau's share; `usize::MAX` when throughput still grew at the
    /// largest step measured (memory alone then sizes batches).
    pub target_tokens: usize,
    /// Model time per padded token at that batch (at the largest step when
    /// there is no target).
    pub secs_per_token: f64,
}

/// How far the measurement goes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedPlan {
    /// Tokens of the pair each row repeats (the window pair is cut to it).
    pub pair_tokens: usize,
    /// The largest batch tried, in pairs.
    pub max_pairs: usize,
    /// No step is run once one has taken this long (its best repeat).
    pub step_limit: Duration,
    /// Runs of each step; the fastest counts (a shared machine's noise only
    /// ever slows one down).
    pub repeats: usize,
    pub pad_token_id: i64,
    pub uses_token_type_ids: bool,
}

impl SpeedPlan {
    /// The plan start-up uses: pairs of 128 tokens (a typical query and
    /// passage), up to `max_pairs`, no step past 0.25 s, 3 runs each (with
    /// 2, a noisy 2-core machine put the target anywhere from 1,024 to
    /// 2,048 tokens on a curve whose 95% point is 512).
    pub fn new(max_pairs: usize, pad_token_id: i64, uses_token_type_ids: bool) -> SpeedPlan {
        SpeedPlan {
            pair_tokens: 128,
            max_pairs,
            step_limit: Duration::from_millis(250),
            repeats: 3,
            pad_token_id,
            uses_token_type_ids,
        }
    }
}

/// Times batches of `pair` (cut to `plan.pair_tokens`) repeated 1, 2, 4, …
/// rows up to `plan.max_pairs`, and chooses the target; `None` when not
/// even one row could be scored.
pub fn measure<S: Scorer + ?Sized>(
    scorer: &mut S,
    pair: &EncodedPair,
    plan: &SpeedPlan,
) -> Option<Speed> {
    let tokens = plan.pair_tokens.clamp(1, pair.len().max(1));
    let pair = EncodedPair {
        input_ids: pair.input_ids.iter().take(tokens).copied().collect(),
        token_type_ids: pair.token_type_ids.iter().take(tokens).copied().collect(),
        truncated: pair.truncated,
    };
    let mut steps = Vec::new();
    let mut rows = 1;
    loop {
        let batch = PaddedBatch::new(
            &vec![&pair; rows],
            plan.pad_token_id,
            plan.uses_token_type_ids,
        );
        let mut best: Option<Duration> = None;
        for _ in 0..plan.repeats.max(1) {
            let started = Instant::now();
            if scorer.score(&batch).is_err() {
                return choose(&steps, PLATEAU_SHARE);
            }
            let took = started.elapsed();
            best = Some(best.map_or(took, |b| b.min(took)));
        }
        let took = best.expect("at least one repeat ran");
        steps.push((batch.padded_tokens(), took.as_secs_f64()));
        if rows >= plan.max_pairs || took >= plan.step_limit {
            break;
        }
        rows = (rows * 2).min(plan.max_pairs);
    }
    choose(&steps, PLATEAU_SHARE)
}

/// From (padded tokens, seconds) steps in growing size: the smallest step
/// whose tokens per second reach `share` of the best; no target when the
/// best is the last step and still `1 / share` over the one before it
/// (throughput had not levelled off). `None` for no steps.
pub fn choose(steps: &[(usize, f64)], share: f64) -> Option<Speed> {
    let rate = |&(tokens, secs): &(usize, f64)| tokens as f64 / secs.max(1e-9);
    let best = steps.iter().map(rate).fold(None, |best: Option<f64>, r| {
        Some(best.map_or(r, |b| b.max(r)))
    })?;
    let last = steps.len() - 1;
    let still_growing = last > 0
        && rate(&steps[last]) >= best
        && rate(&steps[last]) * share > rate(&steps[last - 1]);
    if still_growing {
        return Some(Speed {
            target_tokens: usize::MAX,
            secs_per_token: 1.0 / best,
        });
    }
    let chosen = steps
        .iter()
        .find(|step| rate(step) >= share * best)
        .expect("the best step reaches its own share");
    Some(Speed {
        target_tokens: chosen.0,
        secs_per_token: 1.0 / rate(chosen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_smallest_batch_near_the_plateau() {
        // A CPU: 1,000 tokens/s at one row, flat from two.
        let cpu = [(128, 0.128), (256, 0.1335), (512, 0.26), (1024, 0.52)];
        let speed = choose(&cpu, 0.95).unwrap();
        assert_eq!(speed.target_tokens, 256);
        assert!((speed.secs_per_token - 0.1335 / 256.0).abs() < 1e-12);
        // Only a step at 95% of the best counts: 1024 at 1969 tokens/s
        // makes 256 (1918) too slow, 512 (1969) the target.
        let later = [
            (128, 0.128),
            (256, 0.1335),
            (512, 0.26),
            (1024, 0.52),
            (2048, 1.04),
        ];
        assert_eq!(choose(&later, 0.99).unwrap().target_tokens, 512);
    }

    #[test]
    fn throughput_still_growing_at_the_largest_step_sets_no_target() {
        // A GPU: every doubling nearly doubles the rate.
        let gpu = [(128, 0.010), (256, 0.0105), (512, 0.011), (1024, 0.012)];
        let speed = choose(&gpu, 0.95).unwrap();
        assert_eq!(speed.target_tokens, usize::MAX);
        assert!((speed.secs_per_token - 0.012 / 1024.0).abs() < 1e-12);
        // Levelled off at the last step (within 1 / 0.95 of the one before):
        // a target.
        let level = [(128, 0.010), (256, 0.0105), (512, 0.011), (1024, 0.0215)];
        assert_eq!(choose(&level, 0.95).unwrap().target_tokens, 512);
        assert_eq!(choose(&[], 0.95), None);
        assert_eq!(choose(&[(64, 0.01)], 0.95).unwrap().target_tokens, 64);
    }

    /// Records each batch's rows; a batch of `fail_at` rows fails.
    struct Rows {
        seen: Vec<usize>,
        fail_at: usize,
    }

    impl Scorer for Rows {
        fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, crate::model::ScoreError> {
            self.seen.push(batch.pairs);
            assert_eq!(batch.padded_len, 128);
            if batch.pairs == self.fail_at {
                return Err(crate::model::ScoreError::OutOfMemory("full".into()));
            }
            Ok(vec![0.0; batch.pairs])
        }
    }

    #[test]
    fn measuring_doubles_rows_until_the_cap_or_a_failure() {
        let pair = EncodedPair {
            input_ids: vec![1; 300],
            token_type_ids: vec![0; 300],
            truncated: false,
        };
        let plan = SpeedPlan {
            pair_tokens: 128,
            max_pairs: 12,
            step_limit: Duration::from_secs(60),
            repeats: 2,
            pad_token_id: 0,
            uses_token_type_ids: true,
        };
        let mut scorer = Rows {
            seen: Vec::new(),
            fail_at: 0,
        };
        let speed = measure(&mut scorer, &pair, &plan).unwrap();
        // Rows 1, 2, 4, 8, then the cap of 12, of 128 tokens, twice each.
        assert_eq!(scorer.seen, [1, 1, 2, 2, 4, 4, 8, 8, 12, 12]);
        assert!(speed.secs_per_token > 0.0);
        // A step that fails ends the measurement with what it has.
        let mut scorer = Rows {
            seen: Vec::new(),
            fail_at: 4,
        };
        assert!(measure(&mut scorer, &pair, &plan).is_some());
        assert_eq!(scorer.seen, [1, 1, 2, 2, 4]);
        let mut scorer = Rows {
            seen: Vec::new(),
            fail_at: 1,
        };
        assert_eq!(measure(&mut scorer, &pair, &plan), None);
    }
}
