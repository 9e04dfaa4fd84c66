//! `Queue`: the pairs of every queued request, and the rule that cuts the
//! next batch from them.
//!
//! Owns: which pairs go together. A batch is anchored on the next request in
//! turn (round-robin over requests, so a 5-document request that arrives
//! behind a 5,000-document one waits for at most one batch per request ahead
//! of it for each of its pairs), then fills up with the queued pairs closest
//! in length to the anchor, while pairs × longest ≤ the token budget, pairs ≤
//! the pair cap, and real ÷ padded tokens stays above a floor (on CPU a
//! smaller well-matched batch costs nothing per pair; a padded one wastes
//! compute everywhere). Each
//! request's pairs are kept shortest first, and only the first
//! `window_per_request` of each are candidates, so cutting stays cheap.
//! Must never: read a clock (time is passed in), hold texts or tensors (only
//! ids and lengths), or block.

use std::time::Instant;

/// Identifies a request in the queue; increases with arrival.
pub type RequestId = u64;

/// One pair of one request, as the queue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    pub request: RequestId,
    /// The pair's position in its request.
    pub index: usize,
    /// The pair's length in tokens.
    pub tokens: usize,
}

/// The pairs to run together, and the length they pad to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub items: Vec<BatchItem>,
    pub padded_len: usize,
}

impl Batch {
    pub fn padded_tokens(&self) -> usize {
        self.items.len() * self.padded_len
    }

    pub fn real_tokens(&self) -> usize {
        self.items.iter().map(|item| item.tokens).sum()
    }
}

#[derive(Debug)]
struct QueuedRequest {
    id: RequestId,
    arrived: Instant,
    deadline: Option<Instant>,
    /// (index, tokens), shortest first.
    pairs: Vec<(usize, usize)>,
}

/// A batch is small, for the overhead rule, while its padded tokens are
/// under this many overheads: the overhead is then over a tenth of its cost.
const SMALL_BATCH_OVERHEADS: usize = 10;

#[derive(Debug)]
pub struct Queue {
    /// In arrival order.
    requests: Vec<QueuedRequest>,
    /// The request the last batch was anchored on.
    last_anchor: Option<RequestId>,
    window_per_request: usize,
    /// A pair joins a batch only if the batch's real ÷ padded tokens stays
    /// at least this.
    min_padding_efficiency: f64,
    /// What one forward pass costs beyond its tokens, in tokens' worth: a
    /// small batch (under `SMALL_BATCH_OVERHEADS` times this, padded) takes
    /// a pair past the padding floor when the padding it adds is at most
    /// this, since running the pair alone would cost the overhead again.
    overhead_tokens: usize,
    queued_pairs: usize,
    queued_tokens: usize,
}

impl Queue {
    pub fn new(window_per_request: usize, min_padding_efficiency: f64) -> Self {
        Queue {
            requests: Vec::new(),
            last_anchor: None,
            window_per_request: window_per_request.max(1),
            min_padding_efficiency,
            overhead_tokens: 0,
            queued_pairs: 0,
            queued_tokens: 0,
        }
    }

    /// Sets the per-batch overhead, in tokens' worth (0: none, the default).
    pub fn with_batch_overhead(mut self, overhead_tokens: usize) -> Self {
        self.overhead_tokens = overhead_tokens;
        self
    }

    /// Queues a request's pairs, given their lengths in tokens.
    pub fn push(
        &mut self,
        id: RequestId,
        arrived: Instant,
        deadline: Option<Instant>,
        lengths: &[usize],
    ) {
        let mut pairs: Vec<(usize, usize)> = lengths.iter().copied().enumerate().collect();
        pairs.sort_by_key(|&(index, tokens)| (tokens, index));
        self.queued_pairs += pairs.len();
        self.queued_tokens += lengths.iter().sum::<usize>();
        if !pairs.is_empty() {
            self.requests.push(QueuedRequest {
                id,
                arrived,
                deadline,
                pairs,
            });
        }
    }

    pub fn queued_pairs(&self) -> usize {
        self.queued_pairs
    }

    pub fn queued_tokens(&self) -> usize {
        self.queued_tokens
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// When the longest-waiting request arrived.
    pub fn oldest_arrival(&self) -> Option<Instant> {
        self.requests.iter().map(|r| r.arrived).min()
    }

    /// Drops a request's queued pairs (its client went away); returns how
    /// many were dropped.
    pub fn remove(&mut self, id: RequestId) -> usize {
        let mut dropped = 0;
        let mut tokens = 0;
        self.requests.retain(|request| {
            if request.id == id {
                dropped += request.pairs.len();
                tokens += request.pairs.iter().map(|p| p.1).sum::<usize>();
                false
            } else {
                true
            }
        });
        self.queued_pairs -= dropped;
        self.queued_tokens -= tokens;
        dropped
    }

    /// Drops every request whose deadline is at or before `now`; returns
    /// their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<RequestId> {
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|r| r.deadline.is_some_and(|deadline| deadline <= now))
            .map(|r| r.id)
            .collect();
        for id in &expired {
            self.remove(*id);
        }
        expired
    }

    /// Whether the queued pairs could fill a batch of `budget_tokens` /
    /// `max_pairs` now (so there is no point waiting for more).
    pub fn can_fill(&self, budget_tokens: usize, max_pairs: usize) -> bool {
        self.queued_pairs >= max_pairs || self.queued_tokens >= budget_tokens
    }

    /// Cuts the next batch, or `None` when nothing is queued. The anchor pair
    /// is always taken, even alone over the budget: a single pair must be
    /// tried.
    pub fn cut(&mut self, budget_tokens: usize, max_pairs: usize) -> Option<Batch> {
        let anchor_position = self.next_anchor()?;
        let anchor_request = self.requests[anchor_position].id;
        let (anchor_index, anchor_tokens) = self.requests[anchor_position].pairs[0];
        self.last_anchor = Some(anchor_request);

        // Candidates: the first pairs of every request, nearest the anchor's
        // length first, older requests first among equals. (Taking the
        // anchor request's own pairs first served small requests in fewer
        // batches but cost a third of the padding efficiency on a workload of
        // many small mixed-length requests: benches/batcher.rs.)
        let mut candidates: Vec<(usize, BatchItem)> = Vec::new();
        for (position, request) in self.requests.iter().enumerate() {
            for &(index, tokens) in request.pairs.iter().take(self.window_per_request) {
                if request.id == anchor_request && index == anchor_index {
                    continue;
                }
                candidates.push((
                    position,
                    BatchItem {
                        request: request.id,
                        index,
                        tokens,
                    },
                ));
            }
        }
        candidates.sort_by_key(|(position, item)| (item.tokens.abs_diff(anchor_tokens), *position));

        let mut items = vec![BatchItem {
            request: anchor_request,
            index: anchor_index,
            tokens: anchor_tokens,
        }];
        let mut padded_len = anchor_tokens;
        let mut real_tokens = anchor_tokens;
        for (_, item) in candidates {
            if items.len() >= max_pairs.max(1) {
                break;
            }
            let longest = padded_len.max(item.tokens);
            let padded = (items.len() + 1) * longest;
            let efficiency = (real_tokens + item.tokens) as f64 / padded as f64;
            // Padding this pair adds, over running it alone, unpadded.
            let added = padded - items.len() * padded_len - item.tokens;
            let cheap = padded <= SMALL_BATCH_OVERHEADS * self.overhead_tokens
                && added <= self.overhead_tokens;
            if padded <= budget_tokens && (efficiency >= self.min_padding_efficiency || cheap) {
                items.push(item);
                padded_len = longest;
                real_tokens += item.tokens;
            }
        }
        self.take(&items);
        Some(Batch { items, padded_len })
    }

    /// The position of the first request after the last anchor, wrapping.
    fn next_anchor(&self) -> Option<usize> {
        if self.requests.is_empty() {
            return None;
        }
        let after_last = self
            .last_anchor
            .and_then(|last| self.requests.iter().position(|r| r.id > last));
        Some(after_last.unwrap_or(0))
    }

    fn take(&mut self, items: &[BatchItem]) {
        for item in items {
            if let Some(request) = self.requests.iter_mut().find(|r| r.id == item.request) {
                request.pairs.retain(|&(index, _)| index != item.index);
            }
            self.queued_pairs -= 1;
            self.queued_tokens -= item.tokens;
        }
        self.requests.retain(|request| !request.pairs.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    fn lengths(seed: u64, count: usize, min: usize, max: usize) -> Vec<usize> {
        // A small LCG: deterministic mixed lengths without a dependency.
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                min + (state >> 33) as usize % (max - min + 1)
            })
            .collect()
    }

    /// Cuts until empty; returns the batches.
    fn drain(queue: &mut Queue, budget: usize, max_pairs: usize) -> Vec<Batch> {
        std::iter::from_fn(|| queue.cut(budget, max_pairs)).collect()
    }

    #[test]
    fn every_pair_comes_out_exactly_once_within_the_limits() {
        let now = Instant::now();
        let mut queue = Queue::new(64, 0.0);
        let mut expected = HashSet::new();
        for request in 0..5u64 {
            let request_lengths = lengths(request, 40 + request as usize * 13, 5, 300);
            for index in 0..request_lengths.len() {
                expected.insert((request, index));
            }
            queue.push(request, now, None, &request_lengths);
        }
        let batches = drain(&mut queue, 4096, 32);
        let mut seen = HashSet::new();
        for batch in &batches {
            assert!(batch.items.len() <= 32);
            assert!(
                batch.padded_tokens() <= 4096 || batch.items.len() == 1,
                "{batch:?}"
            );
            assert_eq!(
                batch.padded_len,
                batch.items.iter().map(|i| i.tokens).max().unwrap()
            );
            for item in &batch.items {
                assert!(seen.insert((item.request, item.index)), "twice: {item:?}");
            }
        }
        assert_eq!(seen, expected);
        assert!(queue.is_empty());
        assert_eq!((queue.queued_pairs(), queue.queued_tokens()), (0, 0));
    }

    #[test]
    fn the_padding_floor_keeps_far_lengths_apart() {
        let mut queue = Queue::new(8, 0.8);
        queue.push(1, Instant::now(), None, &[100, 100, 10, 95]);
        let batches = drain(&mut queue, 4096, 32);
        let sizes: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.items.iter().map(|i| i.tokens).collect())
            .collect();
        assert_eq!(sizes, [vec![10], vec![95, 100, 100]], "{batches:?}");
    }

    #[test]
    fn a_small_batch_takes_pairs_whose_padding_costs_less_than_a_forward() {
        // Floor 0.95 alone would run 40, 52 and 75 as three batches.
        let cut = |overhead| {
            let mut queue = Queue::new(8, 0.95).with_batch_overhead(overhead);
            queue.push(1, Instant::now(), None, &[40, 52, 75, 300]);
            drain(&mut queue, 4096, 32)
                .iter()
                .map(|b| b.items.iter().map(|i| i.tokens).collect())
                .collect::<Vec<Vec<usize>>>()
        };
        assert_eq!(cut(0), [vec![40], vec![52], vec![75], vec![300]]);
        // 52 adds 12 tokens of padding to 40, 75 then adds 2 × 23 = 46: both
        // under 48. 300 would add 3 × 225, and is past 480 tokens anyway.
        assert_eq!(cut(48), [vec![40, 52, 75], vec![300]]);
        // A big batch is not small: the floor alone decides there.
        let mut queue = Queue::new(64, 0.95).with_batch_overhead(48);
        queue.push(1, Instant::now(), None, &[100; 6]);
        queue.push(2, Instant::now(), None, &[60]);
        let sizes: Vec<usize> = drain(&mut queue, 4096, 32)
            .iter()
            .map(|b| b.items.len())
            .collect();
        assert_eq!(sizes, [6, 1]);
    }

    #[test]
    fn a_pair_over_the_budget_still_runs_alone() {
        let mut queue = Queue::new(8, 0.0);
        queue.push(1, Instant::now(), None, &[900, 10]);
        let batches = drain(&mut queue, 512, 32);
        let sizes: Vec<usize> = batches.iter().map(|b| b.items.len()).collect();
        assert_eq!(sizes, [1, 1], "{batches:?}");
        assert_eq!(batches[1].padded_len, 900);
    }

    #[test]
    fn a_small_request_behind_a_huge_one_finishes_within_a_bound() {
        let now = Instant::now();
        let mut queue = Queue::new(64, 0.0);
        queue.push(1, now, None, &lengths(7, 5000, 20, 200));
        // The huge request has been served for a while.
        for _ in 0..3 {
            queue.cut(4096, 32).unwrap();
        }
        queue.push(
            2,
            now + Duration::from_millis(5),
            None,
            &lengths(8, 5, 20, 200),
        );
        let mut batches_until_done = 0;
        let mut left = 5;
        while left > 0 {
            let batch = queue.cut(4096, 32).unwrap();
            left -= batch.items.iter().filter(|i| i.request == 2).count();
            batches_until_done += 1;
        }
        // Every other batch is anchored on it, so its 5 pairs take at most
        // 10 batches; first-come first-served would take 154.
        assert!(
            batches_until_done <= 10,
            "took {batches_until_done} batches"
        );
    }

    /// Queues `requests` requests of `pairs` pairs with lengths in
    /// `min..=max`, drains them with no padding floor (so the nearest-length
    /// rule alone is measured) and asserts real ÷ padded tokens ≥ 0.9.
    fn check_padding(
        requests: u64,
        pairs: usize,
        (min, max): (usize, usize),
        budget: usize,
        cap: usize,
    ) {
        let now = Instant::now();
        let mut queue = Queue::new(256, 0.0);
        for request in 0..requests {
            queue.push(request, now, None, &lengths(request + 100, pairs, min, max));
        }
        let batches = drain(&mut queue, budget, cap);
        let real: usize = batches.iter().map(Batch::real_tokens).sum();
        let padded: usize = batches.iter().map(Batch::padded_tokens).sum();
        let efficiency = real as f64 / padded as f64;
        assert!(
            efficiency >= 0.9,
            "{requests} requests × {pairs} pairs of {min}..={max} tokens: padding efficiency {efficiency:.3}"
        );
    }

    #[test]
    fn mixed_lengths_pad_little() {
        // A few large requests of lengths all over the window.
        check_padding(8, 300, (8, 512), 8192, 64);
        // The serving case: many requests of a few documents each, lengths
        // all over the place within each request.
        check_padding(64, 8, (15, 110), 16_384, 32);
    }

    #[test]
    fn expired_and_removed_requests_leave_nothing_behind() {
        let now = Instant::now();
        let mut queue = Queue::new(16, 0.0);
        queue.push(1, now, Some(now + Duration::from_millis(10)), &[10, 20]);
        queue.push(2, now, None, &[30, 40, 50]);
        queue.push(3, now, Some(now + Duration::from_secs(10)), &[60]);
        assert_eq!(
            queue.expire(now + Duration::from_millis(5)),
            Vec::<RequestId>::new()
        );
        assert_eq!(queue.expire(now + Duration::from_millis(10)), vec![1]);
        assert_eq!(queue.remove(2), 3);
        assert_eq!(queue.remove(2), 0);
        assert_eq!((queue.queued_pairs(), queue.queued_tokens()), (1, 60));
        let batches = drain(&mut queue, 4096, 32);
        let requests: HashMap<RequestId, usize> = batches
            .iter()
            .flat_map(|b| &b.items)
            .map(|i| (i.request, i.index))
            .collect();
        assert_eq!(requests, HashMap::from([(3, 0)]));
    }

    #[test]
    fn can_fill_and_oldest_arrival_report_the_queue() {
        let now = Instant::now();
        let mut queue = Queue::new(16, 0.0);
        assert!(!queue.can_fill(100, 4));
        assert_eq!(queue.oldest_arrival(), None);
        queue.push(1, now + Duration::from_millis(3), None, &[10, 10]);
        queue.push(2, now, None, &[10]);
        assert_eq!(queue.oldest_arrival(), Some(now));
        assert!(!queue.can_fill(100, 4));
        assert!(queue.can_fill(30, 4));
        assert!(queue.can_fill(100, 3));
    }
}
