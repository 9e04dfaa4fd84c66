//! The queue target: arbitrary sequences of push, remove, expire and cut on
//! a real `Queue`, with arbitrary lengths, budgets, pair caps, padding
//! floors and overheads, checked after every step against a plain model of
//! what should still be queued.
//!
//! The promises checked (batcher/queue.rs and ARCHITECTURE.md):
//! - every pushed pair comes out in exactly one batch, unless its request
//!   was removed or expired first; no pair of a removed or expired request
//!   comes out;
//! - no batch is over the token budget or the pair cap, unless it is a
//!   lone pair; a batch pads to its longest pair;
//! - a batch of several pairs keeps the padding floor, unless it is small
//!   enough for the overhead rule (padded under ten overheads);
//! - `remove` and `expire` report exactly what they dropped, and the
//!   queue's counts (pairs, tokens, oldest arrival, empty) match.
//!
//! Owns: this script and its checks. Must never: reimplement the cutting
//! rule (only its promises are checked), or read a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::Bytes;
use crate::batcher::queue::{Batch, Queue, RequestId};

/// A request as the model sees it.
struct Pushed {
    arrived: Instant,
    deadline: Option<Instant>,
    /// index -> tokens, for pairs not yet cut.
    left: BTreeMap<usize, usize>,
}

/// What should be queued, and what has come out.
struct Model {
    requests: BTreeMap<RequestId, Pushed>,
    /// Pairs that came out of a batch: (request, index).
    out: BTreeSet<(RequestId, usize)>,
    /// Requests removed or expired with pairs still queued.
    dropped: BTreeSet<RequestId>,
}

impl Model {
    fn queued_pairs(&self) -> usize {
        self.requests.values().map(|r| r.left.len()).sum()
    }

    fn queued_tokens(&self) -> usize {
        self.requests.values().flat_map(|r| r.left.values()).sum()
    }

    /// Forgets requests whose pairs have all come out.
    fn forget_finished(&mut self) {
        self.requests.retain(|_, request| !request.left.is_empty());
    }
}

/// The queue's settings for one script.
#[derive(Debug, Clone, Copy)]
struct Settings {
    window_per_request: usize,
    min_padding_efficiency: f64,
    overhead_tokens: usize,
}

/// What one script did, so that tests can tell a vacuous run from a real
/// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub pushed_pairs: usize,
    /// Requests removed or expired while they had pairs queued.
    pub dropped_requests: usize,
    pub batches: usize,
    pub multi_pair_batches: usize,
    /// Lone pairs longer than the budget they were cut under.
    pub lone_over_budget: usize,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, other: Report) {
        self.pushed_pairs += other.pushed_pairs;
        self.dropped_requests += other.dropped_requests;
        self.batches += other.batches;
        self.multi_pair_batches += other.multi_pair_batches;
        self.lone_over_budget += other.lone_over_budget;
    }
}

/// Runs the script `data` on a real queue; panics on a broken promise.
pub fn run(data: &[u8]) -> Report {
    let mut bytes = Bytes::new(data);
    let settings = Settings {
        window_per_request: bytes.in_range(0, 24),
        min_padding_efficiency: bytes.pick(&[0.0, 0.5, 0.85, 0.95, 1.0, 0.3333]),
        overhead_tokens: bytes.pick(&[0, 0, 48, 1, 300]),
    };
    let start = Instant::now();
    let mut now = start;
    let mut queue = Queue::new(settings.window_per_request, settings.min_padding_efficiency)
        .with_batch_overhead(settings.overhead_tokens);
    let mut model = Model {
        requests: BTreeMap::new(),
        out: BTreeSet::new(),
        dropped: BTreeSet::new(),
    };
    let mut report = Report::default();
    let mut next_id: RequestId = 0;
    let mut steps = 0;
    while !bytes.is_empty() && steps < 10_000 {
        steps += 1;
        match bytes.u8() % 8 {
            // Pushes are the commonest step, so queues grow.
            0..=2 => {
                let pairs = bytes.in_range(0, 40);
                let lengths: Vec<usize> = (0..pairs).map(|_| length(&mut bytes)).collect();
                let deadline = bytes
                    .bool()
                    .then(|| now + Duration::from_millis(bytes.in_range(0, 200) as u64));
                queue.push(next_id, now, deadline, &lengths);
                report.pushed_pairs += lengths.len();
                if !lengths.is_empty() {
                    model.requests.insert(
                        next_id,
                        Pushed {
                            arrived: now,
                            deadline,
                            left: lengths.into_iter().enumerate().collect(),
                        },
                    );
                }
                next_id += 1;
            }
            3 => {
                // Any id, including ones never pushed or already gone.
                let id = bytes.in_range(0, next_id as usize + 1) as RequestId;
                let expected = model.requests.remove(&id).map_or(0, |r| r.left.len());
                if expected > 0 {
                    model.dropped.insert(id);
                    report.dropped_requests += 1;
                }
                let dropped = queue.remove(id);
                assert_eq!(dropped, expected, "remove({id}) dropped {dropped} pairs");
            }
            4 => {
                now += Duration::from_millis(bytes.in_range(0, 120) as u64);
                let expected: BTreeSet<RequestId> = model
                    .requests
                    .iter()
                    .filter(|(_, r)| r.deadline.is_some_and(|d| d <= now))
                    .map(|(&id, _)| id)
                    .collect();
                let expired: Vec<RequestId> = queue.expire(now);
                let expired_set: BTreeSet<RequestId> = expired.iter().copied().collect();
                assert_eq!(expired.len(), expired_set.len(), "an id twice: {expired:?}");
                assert_eq!(expired_set, expected, "expire at +{:?}", now - start);
                for id in expired {
                    model.requests.remove(&id);
                    model.dropped.insert(id);
                    report.dropped_requests += 1;
                }
            }
            _ => {
                let budget = budget(&mut bytes);
                let max_pairs = bytes.in_range(0, 48);
                cut(
                    &mut queue,
                    &mut model,
                    settings,
                    budget,
                    max_pairs,
                    &mut report,
                );
            }
        }
        check_counts(&queue, &model);
    }
    // Drain what is left (the bytes have run out: the serving defaults'
    // sizes): every pair still queued comes out exactly once.
    let (budget, max_pairs) = (16 * 1024, 32);
    while !model.requests.is_empty() {
        let before = model.queued_pairs();
        cut(
            &mut queue,
            &mut model,
            settings,
            budget,
            max_pairs,
            &mut report,
        );
        assert!(model.queued_pairs() < before, "a cut took nothing");
        check_counts(&queue, &model);
    }
    assert!(
        queue.cut(budget, max_pairs).is_none(),
        "an empty queue cut a batch"
    );
    report
}

/// A pair's length in tokens: mostly realistic windows, sometimes the
/// extremes (a lone pair longer than any budget, a length of zero).
fn length(bytes: &mut Bytes) -> usize {
    match bytes.u8() % 16 {
        0 => 0,
        1 => bytes.in_range(1, 3),
        2 => bytes.in_range(2_000, 100_000),
        _ => bytes.in_range(2, 512),
    }
}

fn budget(bytes: &mut Bytes) -> usize {
    match bytes.u8() % 8 {
        0 => bytes.in_range(0, 64),
        1..=3 => bytes.in_range(64, 4_096),
        _ => bytes.in_range(4_096, 1 << 20),
    }
}

/// One cut, checked; the model takes its pairs out.
fn cut(
    queue: &mut Queue,
    model: &mut Model,
    settings: Settings,
    budget: usize,
    max_pairs: usize,
    report: &mut Report,
) {
    let batch = queue.cut(budget, max_pairs);
    let Some(batch) = batch else {
        assert!(
            model.requests.is_empty(),
            "cut gave nothing with {} pairs queued",
            model.queued_pairs()
        );
        return;
    };
    check_batch(&batch, settings, budget, max_pairs);
    report.batches += 1;
    if batch.items.len() > 1 {
        report.multi_pair_batches += 1;
    } else if batch.padded_tokens() > budget {
        report.lone_over_budget += 1;
    }
    for item in &batch.items {
        let key = (item.request, item.index);
        assert!(
            !model.dropped.contains(&item.request),
            "a pair of removed or expired request {} came out: {item:?}",
            item.request
        );
        assert!(model.out.insert(key), "a pair came out twice: {item:?}");
        let request = model
            .requests
            .get_mut(&item.request)
            .unwrap_or_else(|| panic!("a pair nobody pushed came out: {item:?}"));
        let tokens = request
            .left
            .remove(&item.index)
            .unwrap_or_else(|| panic!("a pair not queued came out: {item:?}"));
        assert_eq!(tokens, item.tokens, "a pair's length changed: {item:?}");
    }
    model.forget_finished();
}

fn check_batch(batch: &Batch, settings: Settings, budget: usize, max_pairs: usize) {
    let pairs = batch.items.len();
    assert!(pairs >= 1, "an empty batch");
    let longest = batch.items.iter().map(|i| i.tokens).max().unwrap_or(0);
    assert_eq!(batch.padded_len, longest, "the batch pads to {batch:?}");
    if pairs == 1 {
        return;
    }
    assert!(
        pairs <= max_pairs,
        "{pairs} pairs over the cap of {max_pairs}"
    );
    assert!(
        batch.padded_tokens() <= budget,
        "{} padded tokens over the budget of {budget}: {batch:?}",
        batch.padded_tokens()
    );
    let efficiency = batch.real_tokens() as f64 / batch.padded_tokens() as f64;
    let small = batch.padded_tokens() <= 10 * settings.overhead_tokens;
    assert!(
        efficiency >= settings.min_padding_efficiency || small,
        "padding efficiency {efficiency} under the floor {} in a batch of {} padded tokens \
         (overhead {}): {batch:?}",
        settings.min_padding_efficiency,
        batch.padded_tokens(),
        settings.overhead_tokens
    );
}

fn check_counts(queue: &Queue, model: &Model) {
    assert_eq!(queue.queued_pairs(), model.queued_pairs(), "queued pairs");
    assert_eq!(
        queue.queued_tokens(),
        model.queued_tokens(),
        "queued tokens"
    );
    assert_eq!(queue.is_empty(), model.requests.is_empty(), "is_empty");
    let oldest = model.requests.values().map(|r| r.arrived).min();
    assert_eq!(queue.oldest_arrival(), oldest, "oldest arrival");
}

#[cfg(test)]
mod tests {
    use super::super::{cases, seeded_bytes};
    use super::{run, Report};

    /// CI runs a few thousand scripts; `RERANKD_FUZZ_CASES` runs more.
    #[test]
    fn queue_promises_hold_for_seeded_scripts() {
        let mut total = Report::default();
        for seed in 0..cases(3_000) {
            let script = seeded_bytes(seed, 2_048);
            match std::panic::catch_unwind(|| run(&script)) {
                Ok(report) => total += report,
                Err(_) => panic!("queue script of seed {seed} broke a promise (see above)"),
            }
        }
        eprintln!("queue scripts: {total:?}");
        // The scripts are not vacuous: they batch, drop and cut lone pairs.
        assert!(total.pushed_pairs > 10_000, "{total:?}");
        assert!(total.multi_pair_batches > 1_000, "{total:?}");
        assert!(total.dropped_requests > 100, "{total:?}");
        assert!(total.lone_over_budget > 100, "{total:?}");
    }

    #[test]
    fn an_empty_script_runs() {
        assert_eq!(run(&[]), Report::default());
    }
}
