//! `Controller`: the token budget of one device — how many padded tokens the
//! next batch may hold — from free memory, bytes per token and out-of-memory
//! history.
//!
//! Owns: the sizing rule. Start at free × safety ÷ bytes per token; on OOM
//! halve and remember the failing size as a ceiling; after a run of
//! successes with memory to spare, grow additively (AIMD), past the ceiling
//! only once free memory has grown since it was set; when free memory drops,
//! shrink before the next batch.
//!
//! Free memory as NVML reads it leaves out what this process's caching
//! allocator holds: after a batch of T tokens the allocator keeps about
//! T × bytes per token reserved for the next one. So the memory a batch may
//! use is the free memory plus that reserve (the largest batch run so far,
//! warm-up included), or one large batch would shrink the budget to nothing.
//! Must never: do I/O, read a clock, or touch
//! libtorch/NVML — readings and outcomes are passed in, so every rule is
//! unit-tested with plain numbers.

pub use crate::gpu::MemoryReading;

/// Tuning of the sizing rule. `Default` gives the server's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Share of free device memory a batch may plan to use.
    pub safety_fraction: f64,
    /// The budget never goes below this (one window-length pair: a single
    /// pair must always be tried).
    pub min_tokens: usize,
    /// The budget never goes above this.
    pub max_tokens: usize,
    /// Budget when no memory reading exists (no GPU, no driver, CPU).
    pub fallback_tokens: usize,
    /// Bytes per padded token assumed until a batch has been measured.
    pub initial_bytes_per_token: f64,
    /// Successful batches in a row before the budget grows.
    pub successes_before_growth: u32,
    /// Additive growth, as a share of the current budget's first value.
    pub growth_fraction: f64,
    /// Growth needs at least this share of total memory free.
    pub free_margin_fraction: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            safety_fraction: 0.8,
            min_tokens: 512,
            max_tokens: 1 << 20,
            fallback_tokens: 16 * 1024,
            initial_bytes_per_token: 256.0 * 1024.0,
            successes_before_growth: 8,
            growth_fraction: 0.1,
            free_margin_fraction: 0.1,
        }
    }
}

/// A size that ran out of memory, and how much was free when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    pub tokens: usize,
    pub free_bytes: Option<u64>,
}

/// What the controller knows, for `Stats` and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerState {
    pub budget_tokens: usize,
    pub bytes_per_token: f64,
    pub last_reading: Option<MemoryReading>,
    pub ceiling: Option<Ceiling>,
    pub oom_count: u64,
    pub batches: u64,
}

#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    budget_tokens: usize,
    bytes_per_token: f64,
    last_reading: Option<MemoryReading>,
    ceiling: Option<Ceiling>,
    successes_in_a_row: u32,
    growth_step: usize,
    oom_count: u64,
    batches: u64,
    /// The largest batch (padded tokens) that ran: what the allocator is
    /// assumed to hold in reserve.
    cached_tokens: usize,
    /// `cached_tokens` when `last_reading` was taken: the reserve that
    /// reading counted as used, and so the one to add back as usable (a
    /// reading from before a batch already counts its memory as free).
    reading_cached_tokens: usize,
}

impl Controller {
    /// A controller sized from `reading`, or from the fallback budget when
    /// there is none.
    pub fn new(config: ControllerConfig, reading: Option<MemoryReading>) -> Self {
        let mut controller = Controller {
            budget_tokens: config.fallback_tokens,
            bytes_per_token: config.initial_bytes_per_token,
            growth_step: 0,
            last_reading: None,
            ceiling: None,
            successes_in_a_row: 0,
            oom_count: 0,
            batches: 0,
            cached_tokens: 0,
            reading_cached_tokens: 0,
            config,
        };
        if let Some(reading) = reading {
            controller.budget_tokens = controller.fits(reading);
            controller.last_reading = Some(reading);
        }
        controller.budget_tokens = controller.clamp(controller.budget_tokens);
        controller.growth_step = controller.step_for(controller.budget_tokens);
        controller
    }

    /// The largest batch that ran before serving (warm-up, calibration), in
    /// padded tokens; `reading` came after it, so what the allocator keeps
    /// from it counts as usable.
    pub fn warmed_up(mut self, largest_batch_tokens: usize) -> Self {
        self.cached_tokens = largest_batch_tokens;
        self.reading_cached_tokens = largest_batch_tokens;
        if let Some(reading) = self.last_reading {
            self.budget_tokens = self.clamp(self.fits(reading));
            self.growth_step = self.step_for(self.budget_tokens);
        }
        self
    }

    /// Padded tokens the next batch may hold.
    pub fn budget_tokens(&self) -> usize {
        self.budget_tokens
    }

    pub fn state(&self) -> ControllerState {
        ControllerState {
            budget_tokens: self.budget_tokens,
            bytes_per_token: self.bytes_per_token,
            last_reading: self.last_reading,
            ceiling: self.ceiling,
            oom_count: self.oom_count,
            batches: self.batches,
        }
    }

    /// A fresh reading of free memory, taken after every batch reported so
    /// far (the model thread reads it right after a batch, and the batch's
    /// outcome is reported first): when it no longer covers the budget
    /// (another process took memory), the budget shrinks now.
    pub fn on_memory(&mut self, reading: MemoryReading) {
        self.last_reading = Some(reading);
        self.reading_cached_tokens = self.cached_tokens;
        let fits = self.fits(reading);
        if fits < self.budget_tokens {
            self.budget_tokens = self.clamp(fits);
        }
    }

    /// A measurement of bytes per padded token (peak memory of a batch over
    /// its padded tokens), from warm-up or a served batch. Averaged with what
    /// was known, so one odd batch does not swing the budget.
    pub fn on_bytes_per_token(&mut self, bytes_per_token: f64) {
        if bytes_per_token.is_finite() && bytes_per_token > 0.0 {
            self.bytes_per_token = if self.batches == 0 {
                bytes_per_token
            } else {
                0.5 * (self.bytes_per_token + bytes_per_token)
            };
            if let Some(reading) = self.last_reading {
                self.on_memory(reading);
            }
        }
    }

    /// A batch of `padded_tokens` ran. Grows the budget additively after
    /// enough successes in a row, if memory allows.
    pub fn on_success(&mut self, padded_tokens: usize) {
        self.batches += 1;
        self.cached_tokens = self.cached_tokens.max(padded_tokens);
        self.successes_in_a_row += 1;
        // Only batches that used most of the budget say the budget is safe.
        if padded_tokens * 2 < self.budget_tokens {
            return;
        }
        if self.successes_in_a_row < self.config.successes_before_growth {
            return;
        }
        if !self.memory_to_spare() {
            return;
        }
        let mut grown = self.budget_tokens.saturating_add(self.growth_step);
        if let Some(ceiling) = self.ceiling {
            if grown >= ceiling.tokens && !self.memory_grew_since(ceiling) {
                grown = grown.min(ceiling.tokens.saturating_sub(1));
            }
        }
        if let Some(reading) = self.last_reading {
            grown = grown.min(self.fits(reading).max(self.budget_tokens));
        }
        self.budget_tokens = self.clamp(grown.max(self.budget_tokens));
        self.successes_in_a_row = 0;
    }

    /// A batch of `padded_tokens` ran out of memory: halve the budget below
    /// it and remember it as a ceiling.
    pub fn on_oom(&mut self, padded_tokens: usize) {
        self.oom_count += 1;
        self.successes_in_a_row = 0;
        self.ceiling = Some(Ceiling {
            tokens: padded_tokens,
            free_bytes: self.last_reading.map(|r| self.usable_bytes(r) as u64),
        });
        let halved = (padded_tokens.min(self.budget_tokens) / 2).max(1);
        self.budget_tokens = self.clamp(halved);
    }

    /// Free memory plus the allocator's reserve that `reading` counted as
    /// used. (After an out-of-memory error the allocator gets back the
    /// failed attempt's blocks too, so the reserve is kept, not zeroed.)
    fn usable_bytes(&self, reading: MemoryReading) -> f64 {
        reading.free_bytes as f64 + self.reading_cached_tokens as f64 * self.bytes_per_token
    }

    fn fits(&self, reading: MemoryReading) -> usize {
        let usable = self.usable_bytes(reading) * self.config.safety_fraction;
        (usable / self.bytes_per_token).floor() as usize
    }

    fn clamp(&self, tokens: usize) -> usize {
        tokens.clamp(self.config.min_tokens, self.config.max_tokens)
    }

    fn step_for(&self, tokens: usize) -> usize {
        ((tokens as f64 * self.config.growth_fraction) as usize).max(1)
    }

    fn memory_to_spare(&self) -> bool {
        match self.last_reading {
            Some(reading) => {
                self.usable_bytes(reading)
                    >= reading.total_bytes as f64 * self.config.free_margin_fraction
            }
            None => true,
        }
    }

    fn memory_grew_since(&self, ceiling: Ceiling) -> bool {
        match (ceiling.free_bytes, self.last_reading) {
            (Some(then), Some(now)) => self.usable_bytes(now) > then as f64,
            // Without readings there is no evidence that memory grew.
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn config() -> ControllerConfig {
        ControllerConfig {
            safety_fraction: 0.5,
            min_tokens: 100,
            max_tokens: 1_000_000,
            fallback_tokens: 4_000,
            initial_bytes_per_token: 1024.0 * 1024.0,
            successes_before_growth: 3,
            growth_fraction: 0.25,
            free_margin_fraction: 0.1,
        }
    }

    fn reading(free_gib: u64) -> MemoryReading {
        MemoryReading {
            free_bytes: free_gib * GIB,
            total_bytes: 80 * GIB,
        }
    }

    #[test]
    fn starts_from_free_memory_or_the_fallback() {
        // 8 GiB free × 0.5 ÷ 1 MiB per token = 4096 tokens.
        assert_eq!(
            Controller::new(config(), Some(reading(8))).budget_tokens(),
            4096
        );
        assert_eq!(Controller::new(config(), None).budget_tokens(), 4_000);
        // Never below one window-length pair, even with nothing free.
        assert_eq!(
            Controller::new(config(), Some(reading(0))).budget_tokens(),
            100
        );
    }

    #[test]
    fn oom_halves_and_sets_a_ceiling() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_oom(4096);
        assert_eq!(controller.budget_tokens(), 2048);
        assert_eq!(controller.state().oom_count, 1);
        assert_eq!(controller.state().ceiling.unwrap().tokens, 4096);
        // An OOM on a batch smaller than the budget halves below that batch.
        controller.on_oom(1000);
        assert_eq!(controller.budget_tokens(), 500);
        // Repeated OOMs stop at the floor: a single pair is always tried.
        for _ in 0..20 {
            controller.on_oom(controller.budget_tokens());
        }
        assert_eq!(controller.budget_tokens(), 100);
    }

    #[test]
    fn a_squeeze_shrinks_the_budget_before_the_next_batch() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_memory(reading(2));
        assert_eq!(controller.budget_tokens(), 1024);
        // More memory alone does not grow the budget; successes do.
        controller.on_memory(reading(8));
        assert_eq!(controller.budget_tokens(), 1024);
    }

    #[test]
    fn memory_the_allocator_keeps_from_a_batch_still_counts_as_usable() {
        // 8 GiB free × 0.5 ÷ 1 MiB = 4096 tokens; a batch of 4096 tokens
        // leaves 4 GiB reserved by the allocator, which NVML reads as used.
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_success(4096);
        controller.on_memory(reading(4));
        assert_eq!(controller.budget_tokens(), 4096);
        // Another process taking 2 GiB still shrinks it.
        controller.on_memory(reading(2));
        assert_eq!(controller.budget_tokens(), 3072);
        // A warm-up batch counts the same way: 6 GiB free after a 2048-token
        // calibration batch is 8 GiB usable.
        let warmed = Controller::new(config(), Some(reading(6))).warmed_up(2048);
        assert_eq!(warmed.budget_tokens(), 4096);
        // An out-of-memory error halves the budget; the reserve stays
        // usable (the allocator holds the failed attempt's blocks), so a
        // reading near zero free afterwards does not collapse the budget.
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_success(4096);
        controller.on_oom(4096);
        controller.on_memory(reading(0));
        assert_eq!(controller.budget_tokens(), 2048);
        // Growth goes on: 6 GiB free + 4 GiB reserve is above the 8 GiB
        // margin (raw free alone is not), and more than at the ceiling.
        controller.on_memory(reading(6));
        for _ in 0..6 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(controller.budget_tokens(), 4096);
    }

    #[test]
    fn grows_additively_after_a_run_of_full_batches() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_memory(reading(2));
        controller.on_memory(reading(40));
        let start = controller.budget_tokens();
        let mut budgets = vec![start];
        for _ in 0..9 {
            controller.on_success(controller.budget_tokens());
            budgets.push(controller.budget_tokens());
        }
        // Growth once every 3 successes, by the same step each time.
        let step = 1024; // 25 % of the first budget, 4096.
        assert_eq!(
            budgets,
            [
                start,
                start,
                start,
                start + step,
                start + step,
                start + step,
                start + 2 * step,
                start + 2 * step,
                start + 2 * step,
                start + 3 * step,
            ]
        );
    }

    #[test]
    fn small_batches_and_scarce_memory_do_not_grow_it() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        for _ in 0..10 {
            controller.on_success(10);
        }
        assert_eq!(controller.budget_tokens(), 4096, "batches far under budget");
        let mut scarce = Controller::new(config(), Some(reading(8)));
        scarce.on_memory(MemoryReading {
            free_bytes: 7 * GIB,
            total_bytes: 100 * GIB,
        });
        for _ in 0..10 {
            scarce.on_success(scarce.budget_tokens());
        }
        assert_eq!(scarce.budget_tokens(), 3584, "under the 10 % free margin");
    }

    #[test]
    fn growth_stops_below_the_ceiling_until_memory_grows() {
        let mut controller = Controller::new(config(), Some(reading(40)));
        controller.on_oom(4000);
        assert_eq!(controller.budget_tokens(), 2000);
        for _ in 0..30 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(
            controller.budget_tokens(),
            3999,
            "just under the failing size"
        );
        controller.on_memory(reading(60));
        for _ in 0..3 {
            controller.on_success(controller.budget_tokens());
        }
        assert!(
            controller.budget_tokens() > 4000,
            "{:?}",
            controller.state()
        );
    }

    #[test]
    fn growth_never_outruns_free_memory() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        for _ in 0..100 {
            controller.on_success(controller.budget_tokens());
        }
        // 8 GiB × 0.5 ÷ 1 MiB.
        assert_eq!(controller.budget_tokens(), 4096);
    }

    #[test]
    fn measured_bytes_per_token_resize_the_budget() {
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_bytes_per_token(2.0 * 1024.0 * 1024.0);
        assert_eq!(controller.budget_tokens(), 2048);
        controller.on_bytes_per_token(f64::NAN);
        controller.on_bytes_per_token(0.0);
        assert_eq!(controller.state().bytes_per_token, 2.0 * 1024.0 * 1024.0);
    }
}
