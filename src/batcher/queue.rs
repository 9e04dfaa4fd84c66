//! `Queue`: the pairs of every queued request, and the rule that cuts the
//! next batch from them.
//!
//! Owns: which pairs go together, and in what order requests are served. A
//! batch is anchored on the most urgent request: the lowest priority value
//! first, then, among equals, any request whose slowdown could pass the
//! aging bound (oldest first), then the least remaining work (real tokens of
//! its pairs not yet cut; shortest remaining processing time, which
//! minimises mean response time), then arrival. The batch takes the anchor
//! request's own pairs first (so a short request is done in as few batches
//! as its size needs), then fills up with the queued pairs closest in length
//! to the anchor, while pairs × longest ≤ the token budget, pairs ≤ the pair
//! cap, and real ÷ padded tokens stays above a floor (on CPU a smaller
//! well-matched batch costs nothing per pair; a padded one wastes compute
//! everywhere). While a request of the anchor's priority with less work
//! left waits (aging put the anchor first), the budget is halved, so it
//! waits less.
//! Each request's pairs are kept shortest first, and only the first
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
    /// Lower is more urgent.
    priority: i32,
    /// Real tokens of all its pairs when it arrived (its work alone).
    total_tokens: usize,
    /// Real tokens of its pairs not yet cut.
    remaining_tokens: usize,
    /// (index, tokens), shortest first.
    pairs: Vec<(usize, usize)>,
}

/// What the aging guard needs to estimate a request's slowdown: its
/// latency so far plus what is left, over its time alone.
#[derive(Debug, Clone, Copy)]
pub struct Aging {
    pub now: Instant,
    /// Model time of one real token (the scheduler's running estimate).
    pub secs_per_token: f64,
    /// Time alone of a request beyond its tokens (its smallest latency).
    pub floor_secs: f64,
    /// A request whose (waited + remaining) ÷ alone passes this goes ahead
    /// of every request of its priority that has not.
    pub max_slowdown: f64,
}

impl Aging {
    /// No aging: the order is priority, then remaining work.
    pub fn off(now: Instant) -> Aging {
        Aging {
            now,
            secs_per_token: 0.0,
            floor_secs: 1.0,
            max_slowdown: f64::INFINITY,
        }
    }

    /// A request's time alone, in seconds.
    fn alone(&self, tokens: usize) -> f64 {
        self.floor_secs + tokens as f64 * self.secs_per_token
    }

    fn aged(&self, request: &QueuedRequest) -> bool {
        if !self.max_slowdown.is_finite() {
            return false;
        }
        let waited = self
            .now
            .saturating_duration_since(request.arrived)
            .as_secs_f64();
        let left = request.remaining_tokens as f64 * self.secs_per_token;
        (waited + left) / self.alone(request.total_tokens) > self.max_slowdown
    }
}

/// A request's place in the serving order: smaller goes first.
type Rank = (i32, u8, u64, RequestId);

fn rank(request: &QueuedRequest, aging: &Aging) -> Rank {
    if aging.aged(request) {
        (request.priority, 0, request.id, request.id)
    } else {
        (
            request.priority,
            1,
            request.remaining_tokens as u64,
            request.id,
        )
    }
}

/// A batch is small, for the overhead rule, while its padded tokens are
/// under this many overheads: the overhead is then over a tenth of its cost.
const SMALL_BATCH_OVERHEADS: usize = 10;

#[derive(Debug)]
pub struct Queue {
    /// In arrival order.
    requests: Vec<QueuedRequest>,
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

    /// Queues a request's pairs, given their lengths in tokens, at the
    /// normal priority (0).
    pub fn push(
        &mut self,
        id: RequestId,
        arrived: Instant,
        deadline: Option<Instant>,
        lengths: &[usize],
    ) {
        self.push_with_priority(id, arrived, deadline, 0, lengths);
    }

    /// Queues a request's pairs at `priority` (lower is more urgent).
    pub fn push_with_priority(
        &mut self,
        id: RequestId,
        arrived: Instant,
        deadline: Option<Instant>,
        priority: i32,
        lengths: &[usize],
    ) {
        let mut pairs: Vec<(usize, usize)> = lengths.iter().copied().enumerate().collect();
        pairs.sort_by_key(|&(index, tokens)| (tokens, index));
        let tokens = lengths.iter().sum::<usize>();
        self.queued_pairs += pairs.len();
        self.queued_tokens += tokens;
        if !pairs.is_empty() {
            self.requests.push(QueuedRequest {
                id,
                arrived,
                deadline,
                priority,
                total_tokens: tokens,
                remaining_tokens: tokens,
                pairs,
            });
        }
    }

    /// Real tokens queued that a new request of `priority` and `tokens` of
    /// work would wait behind: every more urgent request's, and of its own
    /// priority every request with no more work left, or aged past the
    /// bound. (A request arriving later with less work would still pass
    /// it; admission leaves that to the deadline margin.)
    pub fn tokens_ahead(&self, priority: i32, tokens: usize, aging: &Aging) -> usize {
        self.requests
            .iter()
            .filter(|r| {
                r.priority < priority
                    || (r.priority == priority && (r.remaining_tokens <= tokens || aging.aged(r)))
            })
            .map(|r| r.remaining_tokens)
            .sum()
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

    /// Cuts the next batch with no aging guard (priority, then remaining
    /// work), or `None` when nothing is queued.
    pub fn cut(&mut self, budget_tokens: usize, max_pairs: usize) -> Option<Batch> {
        self.cut_aging(
            budget_tokens,
            max_pairs,
            &Aging::off(self.oldest_arrival()?),
        )
    }

    /// Whether a request of the anchor's priority that `cut_aging` would
    /// not anchor next has less work left than the one it would (aging put
    /// it behind): its batch is then cut at half the budget, and the
    /// scheduler cuts no batch ahead for a busy worker. (A less urgent
    /// request waits as long as more urgent work is queued.)
    pub fn shorter_waits(&self, aging: &Aging) -> bool {
        match self.next_anchor(aging) {
            Some(anchor) => {
                let anchor = &self.requests[anchor];
                self.requests.iter().any(|r| {
                    r.priority == anchor.priority && r.remaining_tokens < anchor.remaining_tokens
                })
            }
            None => false,
        }
    }

    /// Cuts the next batch, or `None` when nothing is queued. The anchor pair
    /// is always taken, even alone over the budget: a single pair must be
    /// tried.
    pub fn cut_aging(
        &mut self,
        budget_tokens: usize,
        max_pairs: usize,
        aging: &Aging,
    ) -> Option<Batch> {
        let anchor_position = self.next_anchor(aging)?;
        let budget_tokens = if self.shorter_waits(aging) {
            budget_tokens / 2
        } else {
            budget_tokens
        };
        let anchor_request = self.requests[anchor_position].id;
        let (anchor_index, anchor_tokens) = self.requests[anchor_position].pairs[0];

        // Candidates: the first pairs of every request, the anchor request's
        // own first (shortest first: they are kept sorted), then nearest the
        // anchor's length, older requests first among equals. The anchor's
        // own pairs first finish a short request in one batch where its size
        // allows; the padding floor still bounds what they cost.
        let mut candidates: Vec<(bool, usize, BatchItem)> = Vec::new();
        for (position, request) in self.requests.iter().enumerate() {
            for &(index, tokens) in request.pairs.iter().take(self.window_per_request) {
                if request.id == anchor_request && index == anchor_index {
                    continue;
                }
                candidates.push((
                    request.id != anchor_request,
                    position,
                    BatchItem {
                        request: request.id,
                        index,
                        tokens,
                    },
                ));
            }
        }
        candidates.sort_by_key(|(other, position, item)| {
            (*other, item.tokens.abs_diff(anchor_tokens), *position)
        });

        let mut items = vec![BatchItem {
            request: anchor_request,
            index: anchor_index,
            tokens: anchor_tokens,
        }];
        let mut padded_len = anchor_tokens;
        let mut real_tokens = anchor_tokens;
        for (_, _, item) in candidates {
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

    /// The position of the most urgent request (`rank`).
    fn next_anchor(&self, aging: &Aging) -> Option<usize> {
        self.requests
            .iter()
            .enumerate()
            .min_by_key(|(_, request)| rank(request, aging))
            .map(|(position, _)| position)
    }

    fn take(&mut self, items: &[BatchItem]) {
        for item in items {
            if let Some(request) = self.requests.iter_mut().find(|r| r.id == item.request) {
                request.pairs.retain(|&(index, _)| index != item.index);
                request.remaining_tokens -= item.tokens;
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
        queue.push_with_priority(2, Instant::now(), None, 1, &[60]);
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
        // It has the least work left, so the next batch is anchored on it
        // and takes its own pairs first: one batch. Round-robin took up to
        // 10, first-come first-served 154.
        assert_eq!(batches_until_done, 1, "took {batches_until_done} batches");
    }

    /// The requests each batch holds pairs of, in cut order.
    fn anchors(queue: &mut Queue, budget: usize, aging: &Aging) -> Vec<RequestId> {
        std::iter::from_fn(|| queue.cut_aging(budget, 32, aging))
            .map(|batch| batch.items[0].request)
            .collect()
    }

    #[test]
    fn the_least_remaining_work_goes_first_and_priority_before_it() {
        let now = Instant::now();
        let mut queue = Queue::new(64, 0.0);
        queue.push(1, now, None, &[100; 8]);
        queue.push(2, now, None, &[100; 2]);
        queue.push(3, now, None, &[100; 4]);
        // 200 tokens a batch: two pairs of 100.
        assert_eq!(
            anchors(&mut queue, 200, &Aging::off(now)),
            [2, 3, 3, 1, 1, 1, 1]
        );

        let mut queue = Queue::new(64, 0.0);
        queue.push_with_priority(1, now, None, 1, &[100; 2]);
        queue.push_with_priority(2, now, None, 0, &[100; 6]);
        queue.push_with_priority(3, now, None, -1, &[100; 4]);
        assert_eq!(
            anchors(&mut queue, 200, &Aging::off(now)),
            [3, 3, 2, 2, 2, 1]
        );
    }

    #[test]
    fn a_request_past_the_slowdown_bound_goes_before_shorter_ones() {
        let start = Instant::now();
        let aging = |now| Aging {
            now,
            secs_per_token: 0.001,
            floor_secs: 1.0,
            max_slowdown: 4.0,
        };
        let first =
            |queue: &Queue, now| queue.next_anchor(&aging(now)).map(|p| queue.requests[p].id);
        let mut queue = Queue::new(64, 0.0);
        // 1,000 tokens: 2 s alone; 100 tokens: 1.1 s alone.
        queue.push(1, start, None, &[100; 10]);
        queue.push(2, start + Duration::from_secs(6), None, &[100]);
        // At 6.5 s, request 1's slowdown is (6.5 + 1) ÷ 2 < 4: least work
        // first.
        assert_eq!(first(&queue, start + Duration::from_millis(6500)), Some(2));
        // At 7.5 s it is (7.5 + 1) ÷ 2 > 4 (request 2's is 1.6 ÷ 1.1): it
        // goes first, although request 2 has less left.
        let at = start + Duration::from_millis(7500);
        assert_eq!(first(&queue, at), Some(1));
        // Cut under that order with request 2 waiting behind: the budget is
        // halved (one pair of 100 in a budget of 200).
        assert!(queue.shorter_waits(&aging(at)));
        let batch = queue.cut_aging(200, 32, &aging(at)).unwrap();
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].request, 1);
        // Aging never crosses priorities.
        let mut queue = Queue::new(64, 0.0);
        queue.push_with_priority(1, start, None, 1, &[100; 10]);
        queue.push_with_priority(2, at, None, 0, &[100; 20]);
        assert_eq!(first(&queue, start + Duration::from_secs(3600)), Some(2));
    }

    #[test]
    fn the_work_ahead_of_a_new_request_counts_what_goes_before_it() {
        let now = Instant::now();
        let mut queue = Queue::new(64, 0.0);
        queue.push_with_priority(1, now, None, 0, &[100; 4]);
        queue.push_with_priority(2, now, None, 0, &[50; 2]);
        queue.push_with_priority(3, now, None, -1, &[10; 30]);
        queue.push_with_priority(4, now, None, 1, &[10]);
        let off = Aging::off(now);
        // A request of 150 tokens at priority 0 waits for request 3 (more
        // urgent) and request 2 (less work), not for 1 or 4.
        assert_eq!(queue.tokens_ahead(0, 150, &off), 300 + 100);
        assert_eq!(queue.tokens_ahead(0, 1000, &off), 300 + 100 + 400);
        assert_eq!(queue.tokens_ahead(-1, 1, &off), 0);
        assert_eq!(queue.tokens_ahead(2, 1, &off), 810);
        // What is cut no longer counts: request 3's 300 tokens.
        queue.cut_aging(300, 64, &off).unwrap();
        assert_eq!(queue.tokens_ahead(0, 150, &off), 100);
    }

    /// Queues `requests` requests of `pairs` pairs with lengths in
    /// `min..=max`, drains them under CUDA's padding floor (0.85, the looser
    /// default: a floor of 0 would let the anchor request's own pairs pad
    /// without bound) and asserts real ÷ padded tokens ≥ 0.9.
    fn check_padding(
        requests: u64,
        pairs: usize,
        (min, max): (usize, usize),
        budget: usize,
        cap: usize,
    ) {
        let now = Instant::now();
        let mut queue = Queue::new(256, 0.85);
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
