//! The controller target: arbitrary configurations (within what a config
//! may hold: `min_tokens <= max_tokens`), start-up readings, calibrations,
//! then arbitrary sequences of memory readings, successful batches and
//! out-of-memory errors on a real `Controller`.
//!
//! The promises checked (batcher/controller.rs and ARCHITECTURE.md):
//! - the budget stays within `min_tokens..=max_tokens`, at start and after
//!   every step;
//! - a reading never grows the budget (growth comes from successes only),
//!   and leaves it no larger than the reading allows: the allocator's
//!   reserve (the largest batch since the last error, or the warm-up's)
//!   plus the safety share of free memory, in tokens (ARCHITECTURE.md,
//!   "GPU memory"), or the floor;
//! - a success never shrinks it; it grows it only after
//!   `successes_before_growth` successes in a row, by a batch that used at
//!   least half of it;
//! - an out-of-memory error halves it below the failing batch (or puts it
//!   at the floor), counts the error and sets the ceiling at that batch;
//! - without any reading there is no evidence that memory grew, so growth
//!   never reaches a ceiling it started below;
//! - `state()` counts every success and every error.
//!
//! Owns: this script and its checks. Must never: reimplement the sizing
//! rule (only its promises are checked).

use super::Bytes;
use crate::batcher::controller::{Controller, ControllerConfig, MemoryReading};

const GIB: u64 = 1 << 30;

/// What one script did, so that tests can tell a vacuous run from a real
/// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub steps: usize,
    pub grew: usize,
    pub shrank_on_reading: usize,
    pub ooms: usize,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, other: Report) {
        self.steps += other.steps;
        self.grew += other.grew;
        self.shrank_on_reading += other.shrank_on_reading;
        self.ooms += other.ooms;
    }
}

fn config(bytes: &mut Bytes) -> ControllerConfig {
    let any = bytes.in_range(1, 100_000);
    let min_tokens = bytes.pick(&[1, 64, 512, any]);
    let max_tokens = match bytes.u8() % 3 {
        0 => min_tokens,
        1 => 1 << 20,
        _ => min_tokens.saturating_add(bytes.in_range(0, 1 << 22)),
    };
    ControllerConfig {
        safety_fraction: bytes.pick(&[0.8, 1.0, 0.5, 0.01, 0.0]),
        min_tokens,
        max_tokens,
        fallback_tokens: bytes.in_range(0, 1 << 21),
        initial_bytes_per_token: bytes.pick(&[256.0 * 1024.0, 1024.0, 1.0, 0.5]),
        successes_before_growth: bytes.in_range(0, 12) as u32,
        growth_fraction: bytes.pick(&[0.1, 0.0, 0.25, 1.0, 2.0]),
        free_margin_fraction: bytes.pick(&[0.1, 0.0, 0.5, 1.0]),
    }
}

fn reading(bytes: &mut Bytes) -> MemoryReading {
    let total_bytes = bytes.pick(&[80 * GIB, 141 * GIB, 16 * GIB, GIB]);
    // Free is at most total, except now and then (a driver's odd answer).
    let free_bytes = match bytes.u8() % 8 {
        0 => 0,
        1 => u64::from(bytes.u32()) * u64::from(bytes.u16()),
        _ => total_bytes / 256 * u64::from(bytes.u8()),
    };
    MemoryReading {
        free_bytes,
        total_bytes,
    }
}

/// A batch's padded tokens: around the budget, or anything.
fn padded(bytes: &mut Bytes, budget: usize) -> usize {
    match bytes.u8() % 4 {
        0 => budget,
        1 => budget / 2 + bytes.in_range(0, budget / 2),
        2 => bytes.in_range(0, 1 << 24),
        _ => bytes.in_range(0, budget.saturating_mul(2)),
    }
}

/// Runs the script `data` on a real controller; panics on a broken promise.
pub fn run(data: &[u8]) -> Report {
    let mut bytes = Bytes::new(data);
    let config = config(&mut bytes);
    let (min, max) = (config.min_tokens, config.max_tokens);
    let start_reading = bytes.bool().then(|| reading(&mut bytes));
    let calibration = match bytes.u8() % 4 {
        0 => None,
        1 => Some(bytes.pick(&[f64::NAN, 0.0, -1.0, f64::INFINITY, 1e-9])),
        _ => Some(f64::from(bytes.u32()) + 1.0),
    };
    let warmed = bytes.in_range(0, 1 << 20);
    let mut controller = Controller::new(config.clone(), start_reading)
        .calibrated(calibration)
        .warmed_up(warmed);
    let within = |budget: usize, what: &str| {
        assert!(
            (min..=max).contains(&budget),
            "budget {budget} out of {min}..={max} {what}; {config:?}"
        );
    };
    within(controller.budget_tokens(), "at start");

    let mut report = Report::default();
    let mut ever_read = start_reading.is_some();
    let mut successes = 0u64;
    let mut ooms = 0u64;
    // Successes since the last growth or error, as an upper bound of the
    // controller's own count (it also resets when growth is capped).
    let mut in_a_row = 0u64;
    // The reserve the documented memory model assumes, in tokens.
    let mut reserve = warmed;
    while !bytes.is_empty() && report.steps < 10_000 {
        report.steps += 1;
        let before = controller.budget_tokens();
        let state = controller.state();
        match bytes.u8() % 4 {
            0 => {
                let memory = reading(&mut bytes);
                controller.on_memory(memory);
                ever_read = true;
                let after = controller.budget_tokens();
                within(after, "after a reading");
                assert!(
                    after <= before,
                    "a reading grew the budget {before} -> {after}"
                );
                let per_token = state.bytes_per_token;
                let allowed =
                    reserve as f64 + memory.free_bytes as f64 * config.safety_fraction / per_token;
                // One token of slack for the division's rounding.
                assert!(
                    after <= min || after as f64 <= allowed.floor() + 1.0,
                    "after {memory:?} the budget is {after}, over the {allowed} tokens it \
                     allows (reserve {reserve}, {per_token} bytes per token)"
                );
                if after < before {
                    report.shrank_on_reading += 1;
                }
            }
            1 => {
                let failed = padded(&mut bytes, before);
                controller.on_oom(failed);
                ooms += 1;
                reserve = 0;
                in_a_row = 0;
                report.ooms += 1;
                let after = controller.budget_tokens();
                within(after, "after an out-of-memory error");
                let halved = (failed.min(before) / 2).max(1);
                assert!(
                    after <= halved.max(min),
                    "out of memory at {failed} (budget {before}) left the budget at {after}"
                );
                let ceiling = controller.state().ceiling.expect("an error sets a ceiling");
                assert_eq!(ceiling.tokens, failed, "the ceiling is the failing batch");
            }
            _ => {
                let ran = padded(&mut bytes, before);
                controller.on_success(ran);
                successes += 1;
                reserve = reserve.max(ran);
                in_a_row += 1;
                let after = controller.budget_tokens();
                within(after, "after a success");
                assert!(
                    after >= before,
                    "a success shrank the budget {before} -> {after}"
                );
                if after > before {
                    report.grew += 1;
                    assert!(
                        in_a_row >= u64::from(config.successes_before_growth),
                        "grew after {in_a_row} successes in a row, under {}",
                        config.successes_before_growth
                    );
                    assert!(
                        ran.saturating_mul(2) >= before,
                        "a batch of {ran} grew a budget of {before}"
                    );
                    if let Some(ceiling) = state.ceiling {
                        assert!(
                            ever_read || before >= ceiling.tokens || after < ceiling.tokens,
                            "without a reading, growth {before} -> {after} reached the ceiling \
                             {}",
                            ceiling.tokens
                        );
                    }
                    in_a_row = 0;
                }
            }
        }
        let state = controller.state();
        assert_eq!(state.budget_tokens, controller.budget_tokens());
        assert_eq!(state.batches, successes, "successes counted");
        assert_eq!(state.oom_count, ooms, "errors counted");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::super::{cases, seeded_bytes};
    use super::{run, Report};

    /// CI runs a few thousand scripts; `RERANKD_FUZZ_CASES` runs more.
    #[test]
    fn controller_promises_hold_for_seeded_scripts() {
        let mut total = Report::default();
        for seed in 0..cases(3_000) {
            let script = seeded_bytes(seed, 1_024);
            match std::panic::catch_unwind(|| run(&script)) {
                Ok(report) => total += report,
                Err(_) => panic!("controller script of seed {seed} broke a promise (see above)"),
            }
        }
        eprintln!("controller scripts: {total:?}");
        // The scripts are not vacuous: budgets grow, shrink and halve.
        assert!(total.grew > 100, "{total:?}");
        assert!(total.shrank_on_reading > 100, "{total:?}");
        assert!(total.ooms > 1_000, "{total:?}");
    }

    #[test]
    fn an_empty_script_runs() {
        assert_eq!(run(&[]), Report::default());
    }
}
