//! The fuzzing entry: what the coverage-guided targets in `fuzz/` and the
//! stable property and corpus tests run, one function per target, each
//! taking arbitrary bytes.
//!
//! - [`request::RequestPath`]: protobuf bytes of a `RerankRequest` or a
//!   `ScorePairsRequest` through the server's own conversion, validation
//!   and tokenizing (truncation, chunking) into the queue and out in
//!   batches.
//! - [`queue::run`]: a script of push, remove, expire and cut on a
//!   `batcher::queue::Queue`, checked against a model of what is queued.
//! - [`controller::run`]: a script of memory readings, successes and
//!   out-of-memory errors on a `batcher::controller::Controller`.
//!
//! Every byte string is a valid script (the reader below answers zeros once
//! the bytes run out), so a fuzzer's mutations always reach the code, and a
//! broken promise panics with a message that says which.
//!
//! Owns: reading scripts out of bytes and the invariants each target checks.
//! Must never: copy the logic it checks (it calls the real functions), run
//! on the serving path (nothing but the fuzz crate and the tests call it),
//! or read a clock (times are made from the bytes).

pub mod controller;
pub mod queue;
pub mod request;

/// Reads numbers out of fuzzer bytes; past the end every read is zero, so
/// any input is a complete script.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number in `low..=high` (`low` when `high < low`).
    pub fn in_range(&mut self, low: usize, high: usize) -> usize {
        let span = high.saturating_sub(low) as u64 + 1;
        low + (u64::from(self.u32()) % span) as usize
    }

    /// One of `choices` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A deterministic stream of bytes (SplitMix64) for the stable property
/// tests: case `seed` of a target is the same bytes on every machine.
pub fn seeded_bytes(seed: u64, max_len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let len = (next() % (max_len as u64 + 1)) as usize;
    (0..len).map(|_| next() as u8).collect()
}

/// Cases a property test runs: `RERANKD_FUZZ_CASES` when set (the long
/// runs RELIABILITY.md reports), else `default` (what CI runs).
pub fn cases(default: u64) -> u64 {
    std::env::var("RERANKD_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_little_endian_and_zero_past_the_end() {
        let mut bytes = Bytes::new(&[1, 2, 3]);
        assert_eq!(bytes.u16(), 0x0201);
        assert_eq!(bytes.u16(), 3);
        assert!(bytes.is_empty());
        assert_eq!(bytes.u32(), 0);
        assert_eq!(bytes.in_range(5, 9), 5);
        let mut bytes = Bytes::new(&[7, 0, 0, 0, 9]);
        assert_eq!(bytes.in_range(0, 4), 2);
        assert_eq!(bytes.pick(&['a', 'b', 'c']), 'a');
        assert_eq!(bytes.rest(), &[] as &[u8]);
    }

    #[test]
    fn seeded_bytes_are_deterministic_and_vary_by_seed() {
        assert_eq!(seeded_bytes(3, 64), seeded_bytes(3, 64));
        assert_ne!(seeded_bytes(3, 64), seeded_bytes(4, 64));
        assert!((0..50).all(|seed| seeded_bytes(seed, 10).len() <= 10));
    }
}
