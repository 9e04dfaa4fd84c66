//! `Histogram`: counts of observed sizes under fixed upper bounds, the shape
//! Prometheus histograms are exported in.
//!
//! Owns: bucketing one value at a time and the cumulative view. Must never:
//! allocate per observation, read a clock, or know about Prometheus (the
//! metrics module encodes it).

/// Observations under fixed upper bounds, plus their count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bound, observations ≤ it and > the previous bound; the last slot
    /// holds those over every bound.
    counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// Pairs per batch.
pub const BATCH_PAIRS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Padded tokens per batch (pairs × padded length).
pub const BATCH_TOKENS: &[f64] = &[
    128.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0,
];

impl Histogram {
    /// `bounds` ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self.bounds.partition_point(|&bound| bound < value);
        self.counts[slot] += 1;
        self.count += 1;
        self.sum += value;
    }

    /// (upper bound, observations ≤ it), ascending, ending with +Inf and
    /// the total: Prometheus' `le` buckets.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, &count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_under_the_first_bound_they_do_not_exceed() {
        let mut histogram = Histogram::new(&[1.0, 4.0]);
        for value in [0.5, 1.0, 3.0, 4.0, 9.0] {
            histogram.observe(value);
        }
        assert_eq!(
            histogram.cumulative(),
            [(1.0, 2), (4.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(histogram.count, 5);
        assert_eq!(histogram.sum, 17.5);
    }
}
