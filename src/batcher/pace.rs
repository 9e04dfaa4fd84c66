//! `Pace`: how fast the workers score, as the scheduler's running estimate
//! of model time per real token, and the admission rule built on it.
//!
//! Owns: the estimate (seeded by the start-up measurement, then an
//! exponentially weighted average of each batch's model time over its real
//! tokens, so padding and per-batch overhead are part of the cost), the time
//! a given amount of work takes on the live workers, whether a request can
//! finish before its deadline, and `TokenizePace`, the same kind of running
//! estimate for tokenizing (what a request spends before it reaches the
//! queue). Must never: read a clock (time is passed in), hold requests, or
//! block.

use std::time::Duration;

/// Weight of the newest batch in the running estimate: about the last
/// twenty batches count.
const WEIGHT: f64 = 0.1;

/// The estimate never goes below this (a batch measured at zero time would
/// make every deadline look feasible).
const FLOOR_SECS_PER_TOKEN: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    secs_per_token: f64,
}

/// Why a request cannot be admitted: what it would need against what its
/// deadline leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Infeasible {
    /// Estimated time until it would be answered: the work ahead of it and
    /// its own.
    pub needed: Duration,
    /// Its own share of that.
    pub own: Duration,
    /// Time left before its deadline.
    pub left: Duration,
    /// When the work now ahead of it would be done: a retry then finds
    /// that much less ahead.
    pub drained_in: Duration,
}

impl Pace {
    /// Starts from `secs_per_token`, the start-up measurement (model time per
    /// real token of one worker at its batch target).
    pub fn new(secs_per_token: f64) -> Pace {
        Pace {
            secs_per_token: secs_per_token.max(FLOOR_SECS_PER_TOKEN),
        }
    }

    /// Model time per real token of one worker, as now estimated.
    pub fn secs_per_token(&self) -> f64 {
        self.secs_per_token
    }

    /// Folds in one batch: `real_tokens` scored in `busy` model time.
    pub fn on_batch(&mut self, real_tokens: usize, busy: Duration) {
        if real_tokens == 0 {
            return;
        }
        let sample = busy.as_secs_f64() / real_tokens as f64;
        self.secs_per_token = (self.secs_per_token + WEIGHT * (sample - self.secs_per_token))
            .max(FLOOR_SECS_PER_TOKEN);
    }

    /// Model time of `tokens` real tokens spread over `workers` workers.
    pub fn time_of(&self, tokens: usize, workers: usize) -> Duration {
        Duration::from_secs_f64(tokens as f64 * self.secs_per_token / workers.max(1) as f64)
    }

    /// Whether a request of `own_tokens` behind `ahead_tokens` (queued
    /// before it, and in flight) finishes on `workers` workers within
    /// `left`: `Err` says by how much it would not.
    pub fn admit(
        &self,
        ahead_tokens: usize,
        own_tokens: usize,
        workers: usize,
        left: Duration,
    ) -> Result<(), Infeasible> {
        let drained_in = self.time_of(ahead_tokens, workers);
        let own = self.time_of(own_tokens, workers);
        let needed = drained_in + own;
        if needed <= left {
            Ok(())
        } else {
            Err(Infeasible {
                needed,
                own,
                left,
                drained_in,
            })
        }
    }
}

/// Tokenizing time per token of a request's lower bound
/// (`token_bound`), learned from every request tokenized, shared by every
/// handler: admission before tokenizing takes this much off the time a
/// deadline leaves, so a deadline that tokenizing alone would pass is
/// refused up front instead of expiring on the tokenizing thread.
#[derive(Debug, Default)]
pub struct TokenizePace {
    /// Seconds per token, as f64 bits; 0 until a request was tokenized.
    secs_per_token: std::sync::atomic::AtomicU64,
}

impl TokenizePace {
    /// Expected tokenizing time of a request of at least `tokens`.
    pub fn time_of(&self, tokens: usize) -> Duration {
        let secs_per_token = f64::from_bits(
            self.secs_per_token
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        Duration::from_secs_f64(tokens as f64 * secs_per_token)
    }

    /// Folds in one request: `tokens` (its lower bound) tokenized in `took`.
    /// Concurrent updates may lose one another's sample; the average
    /// stays an average.
    pub fn on_request(&self, tokens: usize, took: Duration) {
        if tokens == 0 {
            return;
        }
        let sample = took.as_secs_f64() / tokens as f64;
        let order = std::sync::atomic::Ordering::Relaxed;
        let old = f64::from_bits(self.secs_per_token.load(order));
        let new = if old == 0.0 {
            sample
        } else {
            old + WEIGHT * (sample - old)
        };
        self.secs_per_token.store(new.to_bits(), order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizing_time_is_learned_per_token() {
        let pace = TokenizePace::default();
        assert_eq!(pace.time_of(1000), Duration::ZERO);
        pace.on_request(1000, Duration::from_millis(10));
        assert_eq!(pace.time_of(500), Duration::from_millis(5));
        // A tenth of the way to a slower sample.
        pace.on_request(1000, Duration::from_millis(20));
        assert_eq!(pace.time_of(1000), Duration::from_millis(11));
        pace.on_request(0, Duration::from_secs(5));
        assert_eq!(pace.time_of(1000), Duration::from_millis(11));
    }

    #[test]
    fn the_estimate_follows_the_batches_and_never_reaches_zero() {
        let mut pace = Pace::new(0.001);
        for _ in 0..100 {
            pace.on_batch(1000, Duration::from_millis(500));
        }
        assert!((pace.secs_per_token() - 0.0005).abs() < 1e-6, "{pace:?}");
        // One odd batch moves it by a tenth of the difference.
        pace.on_batch(1000, Duration::from_millis(1500));
        assert!((pace.secs_per_token() - 0.0006).abs() < 1e-6, "{pace:?}");
        pace.on_batch(0, Duration::from_secs(100));
        assert!((pace.secs_per_token() - 0.0006).abs() < 1e-6, "{pace:?}");
        for _ in 0..1000 {
            pace.on_batch(1000, Duration::ZERO);
        }
        assert!(pace.secs_per_token() >= FLOOR_SECS_PER_TOKEN);
        assert!(Pace::new(0.0).secs_per_token() > 0.0);
    }

    #[test]
    fn admission_compares_the_work_ahead_and_its_own_with_the_deadline() {
        let pace = Pace::new(0.001);
        // 1,000 tokens ahead and 500 of its own: 1.5 s on one worker.
        assert!(pace
            .admit(1000, 500, 1, Duration::from_millis(1500))
            .is_ok());
        let refused = pace
            .admit(1000, 500, 1, Duration::from_millis(1499))
            .unwrap_err();
        assert_eq!(refused.needed, Duration::from_millis(1500));
        assert_eq!(refused.own, Duration::from_millis(500));
        assert_eq!(refused.drained_in, Duration::from_secs(1));
        // Two workers halve it.
        assert!(pace.admit(1000, 500, 2, Duration::from_millis(750)).is_ok());
        assert!(pace
            .admit(1000, 500, 2, Duration::from_millis(749))
            .is_err());
    }
}
