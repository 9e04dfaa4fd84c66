//! Slowdown by size class: a served call's latency under load divided by
//! the time alone of its size class (the median latency of that class's
//! calls in the soak's alone phase, where one client sends one call at a
//! time), with p50, p99 and maximum per class.
//!
//! Latency under load mixes two things: the call's own work, which grows
//! with its size, and the time it waited behind others. Dividing by the
//! time alone of calls of its size leaves the second: a slowdown of 1 is a
//! call served as if the server were idle, and a scheduler that lets small
//! calls wait behind large ones shows as a high slowdown of the small class.
//!
//! Owns: the size classes (by pairs scored) and these statistics. Must
//! never: judge a run (report.rs holds every rule; slowdown is reported
//! only), do I/O or read a clock.

use serde::Serialize;

/// Inclusive upper bounds of the size classes, in pairs (a chunked
/// document's windows each count); a call over the last bound is in the
/// last class. The mix's served calls hold 4 to 96 pairs.
pub const SIZE_CLASS_BOUNDS: [u32; 4] = [32, 64, 96, 256];

/// The classes' names, in the order of `size_class`.
pub const SIZE_CLASS_NAMES: [&str; SIZE_CLASS_BOUNDS.len() + 1] =
    ["<=32", "33-64", "65-96", "97-256", ">256"];

/// The size class of a call of `pairs` pairs: an index into
/// `SIZE_CLASS_NAMES`.
pub fn size_class(pairs: u32) -> usize {
    SIZE_CLASS_BOUNDS
        .iter()
        .position(|&bound| pairs <= bound)
        .unwrap_or(SIZE_CLASS_BOUNDS.len())
}

/// A served call as slowdown needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    pub pairs: u32,
    pub latency_us: u64,
}

/// One size class's time alone and slowdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassSlowdown {
    pub class: &'static str,
    /// Calls of the class timed alone.
    pub alone_calls: u64,
    /// Their median latency: the class's time alone.
    pub alone_ms: Option<f64>,
    /// Calls of the class timed under load.
    pub calls: u64,
    /// Latency ÷ time alone over those calls; `None` without a time alone
    /// (no call of the class was timed alone) or without calls.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// Every size class's slowdown, in the order of `SIZE_CLASS_NAMES` (each
/// class has a row, with or without calls): `loaded` calls against the
/// median of the `alone` calls of their class.
pub fn by_class(alone: &[Timed], loaded: &[Timed]) -> Vec<ClassSlowdown> {
    SIZE_CLASS_NAMES
        .iter()
        .enumerate()
        .map(|(class, &name)| {
            let in_class = |calls: &[Timed]| -> Vec<u64> {
                let mut latencies: Vec<u64> = calls
                    .iter()
                    .filter(|c| size_class(c.pairs) == class)
                    .map(|c| c.latency_us)
                    .collect();
                latencies.sort_unstable();
                latencies
            };
            let alone = in_class(alone);
            let loaded = in_class(loaded);
            // A time alone of 0 µs cannot divide; no call is that fast.
            let alone_us = crate::report::percentile(&alone, 0.5).filter(|&us| us > 0);
            let ratios: Vec<f64> = alone_us
                .map(|reference| {
                    loaded
                        .iter()
                        .map(|&us| us as f64 / reference as f64)
                        .collect()
                })
                .unwrap_or_default();
            ClassSlowdown {
                class: name,
                alone_calls: alone.len() as u64,
                alone_ms: alone_us.map(|us| us as f64 / 1000.0),
                calls: loaded.len() as u64,
                p50: nearest_rank(&ratios, 0.5),
                p99: nearest_rank(&ratios, 0.99),
                max: ratios.last().copied(),
            }
        })
        .collect()
}

/// The highest p99 slowdown of any class: what a verdict on slowdown
/// would compare with its bound.
pub fn worst_p99(classes: &[ClassSlowdown]) -> Option<f64> {
    classes.iter().filter_map(|c| c.p99).reduce(f64::max)
}

/// The `q` quantile of ascending `sorted` by nearest rank, as
/// `crate::report::percentile` takes it of integers.
fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(pairs: u32, latency_ms: u64) -> Timed {
        Timed {
            pairs,
            latency_us: latency_ms * 1000,
        }
    }

    #[test]
    fn size_classes_take_their_bounds_inclusively() {
        for (pairs, class) in [
            (0, "<=32"),
            (1, "<=32"),
            (32, "<=32"),
            (33, "33-64"),
            (64, "33-64"),
            (65, "65-96"),
            (96, "65-96"),
            (97, "97-256"),
            (256, "97-256"),
            (257, ">256"),
            (u32::MAX, ">256"),
        ] {
            assert_eq!(SIZE_CLASS_NAMES[size_class(pairs)], class, "{pairs} pairs");
        }
    }

    #[test]
    fn each_call_is_divided_by_the_median_alone_of_its_own_class() {
        // Small calls take 100 ms alone (the median of 90, 100, 400),
        // 33-64 take 1 s.
        let alone = [
            timed(10, 90),
            timed(20, 400),
            timed(30, 100),
            timed(40, 1000),
            timed(50, 1000),
        ];
        // Ten small calls of 100..=1000 ms and one middle one of 3 s; a
        // class of 65-96 with no time alone.
        let mut loaded: Vec<Timed> = (1..=10).map(|k| timed(16, 100 * k)).collect();
        loaded.push(timed(60, 3000));
        loaded.push(timed(80, 500));
        let classes = by_class(&alone, &loaded);
        assert_eq!(classes.len(), SIZE_CLASS_NAMES.len());

        let small = &classes[0];
        assert_eq!(
            (small.class, small.alone_calls, small.calls),
            ("<=32", 3, 10)
        );
        assert_eq!(small.alone_ms, Some(100.0));
        assert_eq!(
            (small.p50, small.p99, small.max),
            (Some(5.0), Some(10.0), Some(10.0))
        );

        let middle = &classes[1];
        assert_eq!((middle.alone_calls, middle.calls), (2, 1));
        assert_eq!(middle.alone_ms, Some(1000.0));
        assert_eq!((middle.p50, middle.max), (Some(3.0), Some(3.0)));

        let unreferenced = &classes[2];
        assert_eq!((unreferenced.alone_calls, unreferenced.calls), (0, 1));
        assert_eq!((unreferenced.alone_ms, unreferenced.p99), (None, None));

        let empty = &classes[4];
        assert_eq!((empty.calls, empty.p50), (0, None));
        assert_eq!(worst_p99(&classes), Some(10.0));
    }

    #[test]
    fn p99_is_the_nearest_rank_of_a_hundred_calls() {
        let alone = [timed(8, 200)];
        // 1x for 99 calls, then 4x and 9x: of 101, p99 is the 100th (the
        // rank rounded up), 4x, and p50 the 51st.
        let mut loaded = vec![timed(8, 200); 99];
        loaded.push(timed(8, 800));
        loaded.push(timed(8, 1800));
        let small = &by_class(&alone, &loaded)[0];
        assert_eq!(
            (small.p50, small.p99, small.max),
            (Some(1.0), Some(4.0), Some(9.0))
        );
        assert_eq!(worst_p99(&[]), None);
    }
}
