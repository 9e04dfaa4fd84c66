//! Giving the heap's free pages back to the kernel while the server runs.
//!
//! Owns: when the model thread asks glibc to release free heap memory
//! (`malloc_trim`), at most once per interval, after a batch has been
//! answered. Must never: run before a batch's answer is sent (it would add
//! to that batch's latency), or change what a request sees; on other C
//! libraries it does nothing.
//!
//! Why (RELIABILITY.md, "Soak"): with glibc's defaults the server's RSS grew
//! about 300 MiB an hour under a steady mixed load and never came back.
//! glibc raises its mmap threshold to the size of the largest block freed
//! (up to 32 MiB), so after the first large batch libtorch's activations
//! (megabytes each, a different size every batch) come from the heap,
//! where freed holes fragment it and only the heap's top can shrink.
//! Fixing the threshold at 128 KiB stopped the growth (+1.0% in 7 minutes)
//! but cost 15–35% of CPU throughput: every activation was then mapped,
//! faulted in page by page and unmapped again. `malloc_trim(0)` instead
//! releases the free pages inside the heaps too (`MADV_DONTNEED`); once
//! every 10 s it costs only faulting those pages back in, within noise in
//! `scripts/bench/ab.sh` (every second cost 8–13%).

use std::time::{Duration, Instant};

/// How often the model thread trims by default.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The model thread's trimming clock.
pub struct Trim {
    every: Duration,
    last: Instant,
}

impl Trim {
    pub fn new(every: Duration) -> Trim {
        Trim {
            every,
            last: Instant::now(),
        }
    }

    /// Call after a batch's answer is sent: trims when `every` has passed
    /// since the last trim. Returns whether it trimmed.
    pub fn after_batch(&mut self) -> bool {
        if self.last.elapsed() < self.every {
            return false;
        }
        release_free_pages();
        self.last = Instant::now();
        true
    }
}

/// Asks glibc to give every arena's free pages back to the kernel; returns
/// whether any memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_pages() -> bool {
    // SAFETY: malloc_trim takes each arena's own lock; it frees nothing in
    // use.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_pages() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_once_the_interval_has_passed() {
        let mut trim = Trim::new(Duration::from_secs(3600));
        assert!(!trim.after_batch());
        let mut trim = Trim::new(Duration::ZERO);
        assert!(trim.after_batch());
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn free_pages_inside_a_fragmented_heap_are_released() {
        // 64 KiB blocks come from the heap (under glibc's 128 KiB starting
        // mmap threshold); freeing every other one leaves holes that only
        // a trim inside the heap can give back.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 64 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(i, block)| (i % 2 == 0).then_some(block))
            .collect();
        assert!(release_free_pages());
        assert_eq!(kept.len(), 1024);
        assert!(kept.iter().all(|block| block[4096] == 1));
    }
}
