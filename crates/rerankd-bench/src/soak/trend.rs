//! Whether a series rises with time: Spearman's rank correlation between a
//! point's place and its value, its two-sided permutation p-value (seeded,
//! so the same series always gets the same answer), and the Theil–Sen
//! slope for the size of the change.
//!
//! The soak compares its first and last windows side by side, but a
//! window's p99 is its slowest call or two (about 130 served calls in 5
//! minutes), so two windows differ by where a burst of large calls fell.
//! Every slice's p99 together says whether latency drifts.
//!
//! Owns: these statistics. Must never: judge a run (`report.rs` holds the
//! rule), or do I/O.

use serde::Serialize;

use crate::workload::SplitMix64;

/// Shuffles of the permutation test: p-values to about ±0.005.
pub const PERMUTATIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Points in the series (slices with a value).
    pub points: usize,
    /// Rank correlation of place and value: +1 always rising, -1 always
    /// falling, about 0 no trend.
    pub spearman_rho: f64,
    /// Share of shuffled series whose |rho| is at least this one's,
    /// `(k + 1) / (PERMUTATIONS + 1)`: under "no trend" this small a value
    /// comes by chance with that probability.
    pub p_value: f64,
    /// Median slope between every two points, in value per place.
    pub theil_sen_slope: f64,
}

/// The trend of `series` (place, value), `None` under 3 points.
pub fn trend(series: &[(f64, f64)], seed: u64) -> Option<Trend> {
    if series.len() < 3 {
        return None;
    }
    let places = ranks(&series.iter().map(|p| p.0).collect::<Vec<_>>());
    let mut values = ranks(&series.iter().map(|p| p.1).collect::<Vec<_>>());
    let rho = pearson(&places, &values);
    let mut rng = SplitMix64::new(seed);
    let mut as_large = 0usize;
    for _ in 0..PERMUTATIONS {
        shuffle(&mut values, &mut rng);
        if pearson(&places, &values).abs() >= rho.abs() - 1e-12 {
            as_large += 1;
        }
    }
    Some(Trend {
        points: series.len(),
        spearman_rho: rho,
        p_value: (as_large + 1) as f64 / (PERMUTATIONS + 1) as f64,
        theil_sen_slope: theil_sen(series),
    })
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson's correlation; 0 when either side is constant.
fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Fisher–Yates.
fn shuffle(values: &mut [f64], rng: &mut SplitMix64) {
    for i in (1..values.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        values.swap(i, j);
    }
}

fn theil_sen(series: &[(f64, f64)]) -> f64 {
    let mut slopes: Vec<f64> = Vec::new();
    for (i, a) in series.iter().enumerate() {
        for b in &series[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    match slopes.len() {
        0 => 0.0,
        n if n % 2 == 1 => slopes[n / 2],
        n => (slopes[n / 2 - 1] + slopes[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, *v))
            .collect()
    }

    #[test]
    fn a_steady_rise_is_found_and_sized() {
        // A rise of 1 a place under noise that never reorders more than
        // neighbours.
        let values: Vec<f64> = (0..30)
            .map(|i| i as f64 + if i % 2 == 0 { 0.4 } else { -0.4 })
            .collect();
        let t = trend(&series(&values), 1).unwrap();
        assert_eq!(t.points, 30);
        assert!(t.spearman_rho > 0.99, "{t:?}");
        assert!(t.p_value < 0.001, "{t:?}");
        assert!((t.theil_sen_slope - 1.0).abs() < 0.1, "{t:?}");
    }

    #[test]
    fn bursts_without_a_trend_are_not_a_trend() {
        // Soak run 5's served p99 per minute (s): bursts anywhere.
        let run5 = [
            10.2, 14.1, 4.1, 6.3, 11.0, 6.5, 16.5, 15.1, 8.8, 17.0, 23.5, 5.9, 6.9, 11.1, 11.8,
            21.8, 18.7, 8.7, 15.8, 18.2, 7.7, 8.5, 10.6, 7.1, 8.9, 34.3, 30.3, 20.7, 4.5, 14.5,
        ];
        let t = trend(&series(&run5), 7).unwrap();
        assert!(t.p_value > 0.05, "{t:?}");
        // The same series is judged the same every time.
        assert_eq!(trend(&series(&run5), 7), Some(t));
    }

    #[test]
    fn ties_share_their_rank_and_constants_have_no_trend() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let flat = trend(&series(&[5.0; 10]), 1).unwrap();
        assert_eq!(flat.spearman_rho, 0.0);
        assert_eq!(flat.p_value, 1.0);
        assert_eq!(flat.theil_sen_slope, 0.0);
        assert_eq!(trend(&series(&[1.0, 2.0]), 1), None);
    }

    #[test]
    fn a_falling_series_has_a_negative_rho() {
        let values: Vec<f64> = (0..20).map(|i| 100.0 - i as f64).collect();
        let t = trend(&series(&values), 3).unwrap();
        assert!(t.spearman_rho < -0.99 && t.theil_sen_slope < 0.0, "{t:?}");
    }
}
