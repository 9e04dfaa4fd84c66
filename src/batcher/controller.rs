//! `Controller`: the token budget of one device — how many padded tokens the
//! next batch may hold — from free memory, bytes per token and out-of-memory
//! history.
//!
//! Owns: the sizing rule. Start at free × safety ÷ bytes per token; on OOM
//! halve and remember the failing size as a ceiling; after a run of
//! successes with memory to spare, grow additively (AIMD) by a share of what
//! memory allows now (at least of the first budget), past the ceiling only
//! once free memory has grown since it was set; when free memory drops,
//! shrink before the next batch. Sizing the step by what memory allows
//! lets a budget cut by a squeeze, or started on a crowded device, grow
//! back in a few rounds once memory is given back (a step sized from a
//! squeezed start took some 170 batches on an H200), while steps under a
//! squeeze stay as small as the memory left.
//!
//! The memory model (see ARCHITECTURE.md, "GPU memory"): NVML's free memory
//! already leaves out everything libtorch's caching allocator holds, in use
//! or cached. After a batch of T padded tokens the allocator keeps about
//! T × bytes per token cached for the next one: memory this process owns
//! that no other process can take. So the memory the next batch may plan on
//! is that reserve (the largest batch since the allocator last emptied its
//! cache) in full, plus the safety share of free memory (which another
//! process may take at any moment). Counting the reserve keeps a squeeze by
//! another process from shrinking the budget below what the warm cache
//! already holds; not scaling it by the safety share keeps it from shrinking
//! for nothing. Before it raises an out-of-memory error the allocator hands
//! every unused cached block back to the driver, so an out-of-memory error
//! empties the reserve: the reading after it shows that memory as free, and
//! counting it again as reserve would count it twice.
//! Must never: do I/O, read a clock, or touch
//! libtorch/NVML — readings and outcomes are passed in, so every rule is
//! unit-tested with plain numbers.

pub use crate::gpu::MemoryReading;

/// Tuning of the sizing rule. `Default` gives the server's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Share of free device memory a batch may plan to use (on top of the
    /// allocator's reserve, which it may use in full).
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
    /// Additive growth, as a share of what free memory allows now (the
    /// budget a fresh start would take), and at least of the first budget.
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

/// A size that ran out of memory, and how much memory was available to it
/// (free plus the allocator's reserve) when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    pub tokens: usize,
    pub available_bytes: Option<u64>,
}

/// What the controller knows, for `Stats` and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerState {
    pub budget_tokens: usize,
    pub bytes_per_token: f64,
    /// Whether `bytes_per_token` was measured (calibration at start-up, or
    /// a measurement reported since) rather than the assumed default.
    pub bytes_per_token_measured: bool,
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
    bytes_per_token_measured: bool,
    last_reading: Option<MemoryReading>,
    ceiling: Option<Ceiling>,
    successes_in_a_row: u32,
    growth_step: usize,
    oom_count: u64,
    batches: u64,
    /// The largest batch (padded tokens) that ran since the allocator last
    /// emptied its cache (at an out-of-memory error): what it is assumed to
    /// hold in reserve.
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
            bytes_per_token_measured: false,
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

    /// Bytes per padded token measured at start-up (calibration), in place
    /// of the assumed default; `None` keeps the default, and `Stats` says it
    /// was assumed.
    pub fn calibrated(mut self, bytes_per_token: Option<f64>) -> Self {
        if let Some(measured) = bytes_per_token.filter(|b| b.is_finite() && *b > 0.0) {
            self.bytes_per_token = measured;
            self.bytes_per_token_measured = true;
            self.resize_from_last_reading();
        }
        self
    }

    /// The largest batch that ran before serving (warm-up, calibration), in
    /// padded tokens; `reading` came after it, so what the allocator keeps
    /// from it counts as usable.
    pub fn warmed_up(mut self, largest_batch_tokens: usize) -> Self {
        self.cached_tokens = largest_batch_tokens;
        self.reading_cached_tokens = largest_batch_tokens;
        self.resize_from_last_reading();
        self
    }

    /// Before serving: the budget (and its growth step) anew from the last
    /// reading, when there is one.
    fn resize_from_last_reading(&mut self) {
        if let Some(reading) = self.last_reading {
            self.budget_tokens = self.clamp(self.fits(reading));
            self.growth_step = self.step_for(self.budget_tokens);
        }
    }

    /// Padded tokens the next batch may hold.
    pub fn budget_tokens(&self) -> usize {
        self.budget_tokens
    }

    pub fn state(&self) -> ControllerState {
        ControllerState {
            budget_tokens: self.budget_tokens,
            bytes_per_token: self.bytes_per_token,
            bytes_per_token_measured: self.bytes_per_token_measured,
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
        let room = self.last_reading.map_or(0, |reading| self.fits(reading));
        let step = self.growth_step.max(self.step_for(room));
        let mut grown = self.budget_tokens.saturating_add(step);
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
    /// it and remember it as a ceiling. The allocator emptied its cache
    /// before it gave up, so the reserve is gone: only batches run from now
    /// on (the split halves) fill it again.
    pub fn on_oom(&mut self, padded_tokens: usize) {
        self.oom_count += 1;
        self.successes_in_a_row = 0;
        self.ceiling = Some(Ceiling {
            tokens: padded_tokens,
            available_bytes: self.last_reading.map(|r| self.available_bytes(r) as u64),
        });
        self.cached_tokens = 0;
        let halved = (padded_tokens.min(self.budget_tokens) / 2).max(1);
        self.budget_tokens = self.clamp(halved);
    }

    /// The allocator's reserve that `reading` counted as used.
    fn reserve_bytes(&self) -> f64 {
        self.reading_cached_tokens as f64 * self.bytes_per_token
    }

    /// Memory this process could use now: free plus its own reserve.
    fn available_bytes(&self, reading: MemoryReading) -> f64 {
        reading.free_bytes as f64 + self.reserve_bytes()
    }

    /// Padded tokens that fit: the reserve in full, plus the safety share of
    /// free memory.
    fn fits(&self, reading: MemoryReading) -> usize {
        let usable = self.reserve_bytes() + reading.free_bytes as f64 * self.config.safety_fraction;
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
                self.available_bytes(reading)
                    >= reading.total_bytes as f64 * self.config.free_margin_fraction
            }
            None => true,
        }
    }

    fn memory_grew_since(&self, ceiling: Ceiling) -> bool {
        match (ceiling.available_bytes, self.last_reading) {
            (Some(then), Some(now)) => self.available_bytes(now) > then as f64,
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
    fn the_allocator_reserve_counts_in_full_and_a_squeeze_leaves_it_alone() {
        // 8 GiB free × 0.5 ÷ 1 MiB = 4096 tokens; a batch of 4096 tokens
        // leaves 4 GiB cached by the allocator, which NVML reads as used.
        let mut controller = Controller::new(config(), Some(reading(8)));
        controller.on_success(4096);
        controller.on_memory(reading(4));
        assert_eq!(controller.budget_tokens(), 4096);
        // Another process takes 2 GiB, then everything free: the warm cache
        // still holds a 4096-token batch, so the budget does not shrink.
        controller.on_memory(reading(2));
        assert_eq!(controller.budget_tokens(), 4096);
        controller.on_memory(reading(0));
        assert_eq!(controller.budget_tokens(), 4096);
        // A warm-up batch counts the same way: a 2048-token calibration
        // batch cached, plus half of the 6 GiB free.
        let warmed = Controller::new(config(), Some(reading(6))).warmed_up(2048);
        assert_eq!(warmed.budget_tokens(), 2048 + 3072);
    }

    #[test]
    fn an_out_of_memory_error_empties_the_reserve() {
        // Safety 1 so that the reserve and free memory weigh the same.
        let config = ControllerConfig {
            safety_fraction: 1.0,
            ..config()
        };
        let mut controller = Controller::new(config, Some(reading(8)));
        assert_eq!(controller.budget_tokens(), 8192);
        controller.on_success(8192);
        controller.on_memory(reading(0));
        // The 8192-token batch runs out of memory (the allocator empties its
        // cache first); its halves run and cache 4 GiB; 4 GiB are free.
        controller.on_oom(8192);
        controller.on_success(4096);
        controller.on_success(4096);
        controller.on_memory(reading(4));
        assert_eq!(controller.budget_tokens(), 4096);
        // 4 GiB free + 4 GiB reserve is what was there at the ceiling: no
        // growth past it. (Keeping the old 8 GiB reserve would count the
        // released cache twice and grow into the same error.)
        for _ in 0..30 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(controller.budget_tokens(), 8191);
        assert_eq!(
            controller.state().ceiling.unwrap().available_bytes,
            Some(8 * GIB)
        );
    }

    #[test]
    fn calibration_replaces_the_assumed_bytes_per_token() {
        let assumed = Controller::new(config(), Some(reading(8))).calibrated(None);
        assert!(!assumed.state().bytes_per_token_measured);
        assert_eq!(assumed.budget_tokens(), 4096);
        let measured = Controller::new(config(), Some(reading(8))).calibrated(Some(512.0 * 1024.0));
        assert!(measured.state().bytes_per_token_measured);
        assert_eq!(measured.budget_tokens(), 8192);
        let nonsense = Controller::new(config(), Some(reading(8))).calibrated(Some(f64::NAN));
        assert!(!nonsense.state().bytes_per_token_measured);
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
        // Growth once every 3 successes, by the same step each time: 25 % of
        // what 40 GiB free allows, 20480 (the first budget's 4096 would
        // give 1024).
        let step = 5120;
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
        for _ in 0..9 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(
            controller.budget_tokens(),
            20480,
            "up to what memory allows"
        );
    }

    #[test]
    fn a_budget_started_on_a_crowded_device_grows_back_in_a_few_rounds() {
        // Started with 2 GiB free (budget 1024), then 80 GiB given back:
        // memory allows 40960. Steps of the first budget's 25 % would need
        // 156 successes; steps of what memory allows need four rounds.
        let mut controller = Controller::new(config(), Some(reading(2)));
        assert_eq!(controller.budget_tokens(), 1024);
        controller.on_memory(reading(80));
        for _ in 0..9 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(controller.budget_tokens(), 1024 + 3 * 10240);
        for _ in 0..3 {
            controller.on_success(controller.budget_tokens());
        }
        assert_eq!(controller.budget_tokens(), 40960);
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
}
