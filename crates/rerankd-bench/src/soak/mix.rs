//! The soak's mix: which kind call `k` is, what it sends (its priority
//! included), which outcomes each kind may end with, and which calls the
//! alone phase times.
//!
//! Owns: the kinds, their shares, their requests, their priorities and
//! their expected outcomes. Call `k` depends only on the seed, the limits
//! and `k`, never on when or over which connection it is sent. Must never:
//! do I/O, read a clock or judge an answer (`check` does that).

use std::time::Duration;

use serde::Serialize;

use rerankd_api::pb;

use super::slowdown::{size_class, SIZE_CLASS_NAMES};
use crate::workload::{Lengths, RequestText, SplitMix64, Workload};

/// The client gave up on the call on purpose (a `Cancel` call).
pub const CLIENT_CANCELLED: &str = "CLIENT_CANCELLED";
/// The client's own deadline timer ended the call (tonic answers CANCELLED
/// "Timeout expired" when it fires before the server's DEADLINE_EXCEEDED
/// arrives).
pub const CLIENT_DEADLINE: &str = "CLIENT_DEADLINE";
/// The status was OK but the answer was not what the request asks for.
pub const WRONG_ANSWER: &str = "WRONG_ANSWER";

/// What a call exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `Rerank` of 4–32 documents (long-tail lengths), some with top_n.
    Rerank,
    /// `ScorePairs` of 4–32 pairs under two queries.
    Pairs,
    /// `RerankStream` with 3–5 requests and one bad one among them.
    Stream,
    /// `RerankProgressive` over 32–96 documents.
    Progressive,
    /// `Rerank` with chunking: 1–2 documents of 600–1500 words among 2–6 short ones.
    Chunked,
    /// A `Rerank` or `RerankProgressive` the client drops after 5–500 ms
    /// (while it is tokenized, queued or scored).
    Cancel,
    /// A `Rerank` with a deadline of 2–60 ms.
    Deadline,
    /// A request the server must refuse with INVALID_ARGUMENT.
    Bad,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Rerank,
        Kind::Pairs,
        Kind::Stream,
        Kind::Progressive,
        Kind::Chunked,
        Kind::Cancel,
        Kind::Deadline,
        Kind::Bad,
    ];

    /// Kinds whose OK latency is the service's latency.
    pub const SERVED: [Kind; 5] = [
        Kind::Rerank,
        Kind::Pairs,
        Kind::Stream,
        Kind::Progressive,
        Kind::Chunked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Rerank => "rerank",
            Kind::Pairs => "pairs",
            Kind::Stream => "stream",
            Kind::Progressive => "progressive",
            Kind::Chunked => "chunked",
            Kind::Cancel => "cancel",
            Kind::Deadline => "deadline",
            Kind::Bad => "bad",
        }
    }

    /// The kind's share of calls, in percent (they sum to 100).
    fn percent(self) -> u64 {
        match self {
            Kind::Rerank => 30,
            Kind::Pairs => 15,
            Kind::Stream => 8,
            Kind::Progressive => 8,
            Kind::Chunked => 6,
            Kind::Cancel => 13,
            Kind::Deadline => 10,
            Kind::Bad => 10,
        }
    }

    /// Every outcome this kind may end with; any other is unexpected.
    pub fn expected(self) -> &'static [&'static str] {
        match self {
            Kind::Rerank | Kind::Pairs | Kind::Stream | Kind::Progressive | Kind::Chunked => {
                &["OK"]
            }
            Kind::Cancel => &["OK", CLIENT_CANCELLED],
            // RESOURCE_EXHAUSTED: admission found the work ahead and its own
            // past its deadline, and refused it before scoring.
            Kind::Deadline => &[
                "OK",
                "DEADLINE_EXCEEDED",
                CLIENT_DEADLINE,
                "RESOURCE_EXHAUSTED",
            ],
            Kind::Bad => &["INVALID_ARGUMENT"],
        }
    }

    pub fn expects(self, code: &str) -> bool {
        self.expected().contains(&code)
    }
}

/// One call to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Rerank(pb::RerankRequest),
    Pairs(pb::ScorePairsRequest),
    /// The requests of one stream, sent in order; the one at `bad` has an
    /// empty query and must be answered with INVALID_ARGUMENT, the stream
    /// going on.
    Stream {
        requests: Vec<pb::RerankRequest>,
        bad: usize,
    },
    Progressive(pb::RerankRequest),
    /// `call` (a Rerank or Progressive), dropped by the client `after` it
    /// was sent unless answered by then.
    Cancel {
        call: Box<Call>,
        after: Duration,
    },
    /// A Rerank whose gRPC deadline is `deadline`.
    Deadline {
        request: pb::RerankRequest,
        deadline: Duration,
    },
    /// A request that breaks one rule; `rule` says which.
    Bad {
        call: Box<Call>,
        rule: &'static str,
    },
}

impl Call {
    /// Documents (Rerank, Progressive: one pair each before chunking) or
    /// pairs (ScorePairs) sent, over every request of a stream.
    pub fn pairs_sent(&self) -> u32 {
        let sent = match self {
            Call::Rerank(request) | Call::Progressive(request) => request.documents.len(),
            Call::Deadline { request, .. } => request.documents.len(),
            Call::Pairs(request) => request.pairs.len(),
            Call::Stream { requests, .. } => requests.iter().map(|r| r.documents.len()).sum(),
            Call::Cancel { call, .. } | Call::Bad { call, .. } => return call.pairs_sent(),
        };
        u32::try_from(sent).unwrap_or(u32::MAX)
    }

    /// Sets the priority of every request the call sends.
    fn set_priority(&mut self, priority: i32) {
        match self {
            Call::Rerank(request) | Call::Progressive(request) => request.priority = priority,
            Call::Deadline { request, .. } => request.priority = priority,
            Call::Pairs(request) => request.priority = priority,
            Call::Stream { requests, .. } => {
                for request in requests {
                    request.priority = priority;
                }
            }
            Call::Cancel { call, .. } | Call::Bad { call, .. } => call.set_priority(priority),
        }
    }
}

/// A call, its kind and the priority its requests carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub kind: Kind,
    pub call: Call,
    pub priority: i32,
}

/// The priorities the mix sends, each with its share of calls in percent;
/// the other calls send 0, the default. Lower is more urgent.
pub const PRIORITY_SHARES: [(i32, u64); 2] = [(-1, 10), (1, 10)];

/// Mixed into a call's seed for its priority, so that the priority draw
/// leaves every other draw of the call as it was.
const PRIORITY_SALT: u64 = 0x7052_494F_5249_5459;

/// Draws of the mix the alone phase looks through for its sample.
pub const ALONE_SCAN: u64 = 2_000;

/// The calls of a soak, drawn on demand.
#[derive(Debug, Clone)]
pub struct Mix {
    pub seed: u64,
    /// The served model's window, in tokens (ModelInfo's max_length).
    pub window: usize,
    /// The server's --max-documents and --max-document-bytes.
    pub max_documents: usize,
    pub max_document_bytes: usize,
}

/// The bad requests, in the order `Mix::bad` draws them.
pub const BAD_RULES: [&str; 10] = [
    "empty query",
    "no documents",
    "too many documents",
    "document over the byte limit",
    "unknown truncation side",
    "pair over the window with truncate off",
    "unknown aggregate",
    "pairs: max_length over the window",
    "pairs: no pairs",
    "pairs: a pair with an empty query",
];

impl Mix {
    /// Call `index` of the soak.
    pub fn call(&self, index: u64) -> Planned {
        let call_seed = self.seed ^ index.wrapping_mul(0xD134_2543_DE82_EF95);
        let mut rng = SplitMix64::new(call_seed);
        let kind = draw_kind(&mut rng);
        let mut call = match kind {
            Kind::Rerank => Call::Rerank(self.rerank(&mut rng)),
            Kind::Pairs => Call::Pairs(self.pairs(&mut rng)),
            Kind::Stream => self.stream(&mut rng),
            Kind::Progressive => Call::Progressive(self.documents(&mut rng, 32..=96)),
            Kind::Chunked => Call::Rerank(self.chunked(&mut rng)),
            Kind::Cancel => {
                let call = if rng.next_u64() % 2 == 0 {
                    Call::Rerank(self.documents(&mut rng, 16..=64))
                } else {
                    Call::Progressive(self.documents(&mut rng, 32..=96))
                };
                Call::Cancel {
                    call: Box::new(call),
                    after: Duration::from_millis(rng.in_range(5..=500) as u64),
                }
            }
            Kind::Deadline => Call::Deadline {
                request: self.documents(&mut rng, 16..=48),
                deadline: Duration::from_millis(rng.in_range(2..=60) as u64),
            },
            Kind::Bad => {
                let rule = rng.in_range(0..=BAD_RULES.len() - 1);
                Call::Bad {
                    call: Box::new(self.bad(&mut rng, rule)),
                    rule: BAD_RULES[rule],
                }
            }
        };
        let priority = draw_priority(&mut SplitMix64::new(call_seed ^ PRIORITY_SALT));
        call.set_priority(priority);
        Planned {
            kind,
            call,
            priority,
        }
    }

    /// The calls the alone phase sends, one at a time: in index order from
    /// `first_index`, the first `per_class` served calls of each size class
    /// (by the pairs they send; a chunked call's windows are counted only by
    /// its answer), looking through at most `ALONE_SCAN` draws. A class the
    /// mix does not draw there gets none.
    pub fn alone_sample(&self, first_index: u64, per_class: usize) -> Vec<u64> {
        let mut taken = [0usize; SIZE_CLASS_NAMES.len()];
        let mut sample = Vec::new();
        for index in first_index..first_index + ALONE_SCAN {
            if taken.iter().all(|&n| n >= per_class) {
                break;
            }
            let planned = self.call(index);
            let class = size_class(planned.call.pairs_sent());
            if Kind::SERVED.contains(&planned.kind) && taken[class] < per_class {
                taken[class] += 1;
                sample.push(index);
            }
        }
        sample
    }

    /// Texts of `documents` documents with long-tail lengths that fit the window.
    fn texts(&self, rng: &mut SplitMix64, documents: usize) -> RequestText {
        Workload {
            seed: rng.next_u64(),
            documents,
            lengths: Lengths::long_tail(self.window),
        }
        .request(0)
    }

    /// A plain Rerank of a number of documents in `range`.
    fn documents(
        &self,
        rng: &mut SplitMix64,
        range: std::ops::RangeInclusive<usize>,
    ) -> pb::RerankRequest {
        let count = rng.in_range(range);
        let text = self.texts(rng, count);
        pb::RerankRequest {
            query: text.query,
            documents: text.documents,
            ..Default::default()
        }
    }

    fn rerank(&self, rng: &mut SplitMix64) -> pb::RerankRequest {
        let mut request = self.documents(rng, 4..=32);
        let documents = request.documents.len();
        // Half all documents, half a top_n (sometimes past the end: all).
        if rng.next_u64() % 2 == 0 {
            request.top_n = rng.in_range(1..=documents + 2) as u32;
        }
        request.return_documents = rng.next_u64() % 2 == 0;
        request.raw_scores = rng.next_u64() % 4 == 0;
        if rng.next_u64() % 4 == 0 {
            request.truncation_side = pb::TruncationSide::Left as i32;
        }
        request
    }

    fn pairs(&self, rng: &mut SplitMix64) -> pb::ScorePairsRequest {
        let first = self.texts(rng, 0).query;
        let count = rng.in_range(4..=32);
        let text = self.texts(rng, count);
        let pairs = text
            .documents
            .into_iter()
            .enumerate()
            .map(|(i, document)| pb::Pair {
                query: if i % 2 == 0 {
                    first.clone()
                } else {
                    text.query.clone()
                },
                document,
            })
            .collect();
        pb::ScorePairsRequest {
            pairs,
            normalize: rng.next_u64() % 2 == 0,
            max_length: if rng.next_u64() % 4 == 0 {
                (self.window / 2) as u32
            } else {
                0
            },
            ..Default::default()
        }
    }

    fn stream(&self, rng: &mut SplitMix64) -> Call {
        let good = rng.in_range(3..=5);
        let bad = rng.in_range(0..=good);
        let requests = (0..=good)
            .map(|i| {
                let mut request = self.documents(rng, 4..=16);
                request.request_id = format!("r{i}");
                if i == bad {
                    request.query.clear();
                }
                request
            })
            .collect();
        Call::Stream { requests, bad }
    }

    fn chunked(&self, rng: &mut SplitMix64) -> pb::RerankRequest {
        let mut request = self.documents(rng, 2..=6);
        let long = rng.in_range(1..=2);
        for _ in 0..long {
            let words = rng.in_range(600..=1500);
            let text = Workload {
                seed: rng.next_u64(),
                documents: 1,
                lengths: Lengths::fixed(words),
            }
            .request(0);
            let at = rng.in_range(0..=request.documents.len());
            request.documents.insert(at, text.documents[0].clone());
        }
        request.chunking = Some(pb::Chunking {
            overlap_tokens: (rng.next_u64() % 2 == 0).then_some(32),
            aggregate: if rng.next_u64() % 2 == 0 {
                pb::Aggregate::Max
            } else {
                pb::Aggregate::Mean
            } as i32,
        });
        request
    }

    /// The bad request `BAD_RULES[rule]`.
    fn bad(&self, rng: &mut SplitMix64, rule: usize) -> Call {
        let mut request = self.documents(rng, 2..=6);
        match rule {
            0 => request.query.clear(),
            1 => request.documents.clear(),
            2 => request.documents = vec!["a short document".into(); self.max_documents + 1],
            3 => request.documents[0] = "word ".repeat(self.max_document_bytes / 5 + 1),
            4 => request.truncation_side = 7,
            5 => {
                request.truncate = Some(false);
                request.documents[0] = "word ".repeat(self.window * 2);
            }
            6 => {
                request.documents[0] = "word ".repeat(self.window * 2);
                request.chunking = Some(pb::Chunking {
                    overlap_tokens: None,
                    aggregate: 9,
                });
            }
            _ => return Call::Pairs(self.bad_pairs(rng, rule)),
        }
        Call::Rerank(request)
    }

    fn bad_pairs(&self, rng: &mut SplitMix64, rule: usize) -> pb::ScorePairsRequest {
        let mut request = self.pairs(rng);
        match rule {
            7 => request.max_length = self.window as u32 + 1,
            8 => request.pairs.clear(),
            _ => request.pairs[1].query.clear(),
        }
        request
    }
}

fn draw_priority(rng: &mut SplitMix64) -> i32 {
    let mut point = rng.next_u64() % 100;
    for (priority, percent) in PRIORITY_SHARES {
        if point < percent {
            return priority;
        }
        point -= percent;
    }
    0
}

fn draw_kind(rng: &mut SplitMix64) -> Kind {
    let mut point = rng.next_u64() % 100;
    for kind in Kind::ALL {
        if point < kind.percent() {
            return kind;
        }
        point -= kind.percent();
    }
    unreachable!("the kinds' shares sum to 100")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn mix() -> Mix {
        Mix {
            seed: 42,
            window: 512,
            max_documents: 1000,
            max_document_bytes: 65536,
        }
    }

    #[test]
    fn shares_sum_to_a_hundred_and_draws_follow_them() {
        assert_eq!(Kind::ALL.iter().map(|k| k.percent()).sum::<u64>(), 100);
        let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
        let n = 20_000;
        for k in 0..n {
            *counts.entry(mix().call(k).kind).or_default() += 1;
        }
        for kind in Kind::ALL {
            let share = counts[&kind] as f64 / n as f64 * 100.0;
            let want = kind.percent() as f64;
            assert!(
                (share - want).abs() < 1.5,
                "{kind:?}: {share:.1}% not {want}%"
            );
        }
    }

    #[test]
    fn the_same_index_is_the_same_call() {
        for k in 0..200 {
            assert_eq!(mix().call(k), mix().call(k));
        }
        assert_ne!(mix().call(0), mix().call(1));
    }

    #[test]
    fn each_kind_sends_what_it_says() {
        let mut rules = std::collections::BTreeSet::new();
        for k in 0..3_000 {
            let Planned {
                kind,
                call,
                priority,
            } = mix().call(k);
            assert!(
                priorities(&call).iter().all(|&p| p == priority),
                "{kind:?}: {:?} for {priority}",
                priorities(&call)
            );
            match (kind, call) {
                (Kind::Rerank, Call::Rerank(r)) => {
                    assert!((4..=32).contains(&r.documents.len()) && r.chunking.is_none());
                    assert!(!r.query.is_empty());
                }
                (Kind::Pairs, Call::Pairs(p)) => assert!((4..=32).contains(&p.pairs.len())),
                (Kind::Stream, Call::Stream { requests, bad }) => {
                    assert!((4..=6).contains(&requests.len()));
                    for (i, r) in requests.iter().enumerate() {
                        assert_eq!(r.query.is_empty(), i == bad);
                        assert_eq!(r.request_id, format!("r{i}"));
                    }
                }
                (Kind::Progressive, Call::Progressive(r)) => {
                    assert!((32..=96).contains(&r.documents.len()))
                }
                (Kind::Chunked, Call::Rerank(r)) => {
                    assert!(r.chunking.is_some());
                    let longest = r.documents.iter().map(|d| d.split(' ').count()).max();
                    assert!(longest >= Some(600), "{longest:?}");
                }
                (Kind::Cancel, Call::Cancel { call, after }) => {
                    assert!(matches!(*call, Call::Rerank(_) | Call::Progressive(_)));
                    assert!((5..=500).contains(&after.as_millis()));
                }
                (Kind::Deadline, Call::Deadline { deadline, .. }) => {
                    assert!((2..=60).contains(&deadline.as_millis()))
                }
                (Kind::Bad, Call::Bad { call, rule }) => {
                    rules.insert(rule);
                    let broken = match *call {
                        Call::Rerank(r) => {
                            r.query.is_empty()
                                || r.documents.is_empty()
                                || r.documents.len() > 1000
                                || r.documents.iter().any(|d| d.len() > 65536)
                                || r.truncation_side == 7
                                || r.truncate == Some(false)
                                || r.chunking.is_some_and(|c| c.aggregate == 9)
                        }
                        Call::Pairs(p) => {
                            p.pairs.is_empty()
                                || p.max_length > 512
                                || p.pairs.iter().any(|pair| pair.query.is_empty())
                        }
                        other => panic!("a bad call of another shape: {other:?}"),
                    };
                    assert!(broken, "{rule}: breaks nothing");
                }
                (kind, call) => panic!("{kind:?} planned as {call:?}"),
            }
        }
        assert_eq!(rules.len(), BAD_RULES.len(), "{rules:?}");
    }

    /// The priority of every request `call` sends.
    fn priorities(call: &Call) -> Vec<i32> {
        match call {
            Call::Rerank(r) | Call::Progressive(r) | Call::Deadline { request: r, .. } => {
                vec![r.priority]
            }
            Call::Pairs(p) => vec![p.priority],
            Call::Stream { requests, .. } => requests.iter().map(|r| r.priority).collect(),
            Call::Cancel { call, .. } | Call::Bad { call, .. } => priorities(call),
        }
    }

    #[test]
    fn a_fifth_of_calls_send_a_priority_other_than_the_default() {
        let mut counts: BTreeMap<i32, u64> = BTreeMap::new();
        let n = 20_000;
        for k in 0..n {
            *counts.entry(mix().call(k).priority).or_default() += 1;
        }
        let share = |p: i32| counts.get(&p).copied().unwrap_or(0) as f64 / n as f64 * 100.0;
        assert_eq!(counts.len(), 3, "{counts:?}");
        for (priority, want) in [(-1, 10.0), (1, 10.0), (0, 80.0)] {
            assert!(
                (share(priority) - want).abs() < 1.5,
                "priority {priority}: {:.1}% not {want}%",
                share(priority)
            );
        }
        // Each kind gets its share of urgent calls: the draw is apart from
        // the kind's.
        for kind in [Kind::Rerank, Kind::Bad] {
            let calls: Vec<Planned> = (0..n)
                .map(|k| mix().call(k))
                .filter(|p| p.kind == kind)
                .collect();
            let urgent = calls.iter().filter(|p| p.priority == -1).count() as f64;
            let share = urgent / calls.len() as f64 * 100.0;
            assert!((share - 10.0).abs() < 3.0, "{kind:?}: {share:.1}% urgent");
        }
    }

    #[test]
    fn pairs_sent_count_every_request_of_a_call() {
        let request = |documents: usize| pb::RerankRequest {
            documents: vec!["d".into(); documents],
            ..Default::default()
        };
        let pairs = pb::ScorePairsRequest {
            pairs: vec![pb::Pair::default(); 7],
            ..Default::default()
        };
        for (call, want) in [
            (Call::Rerank(request(12)), 12),
            (Call::Progressive(request(90)), 90),
            (Call::Pairs(pairs), 7),
            (
                Call::Stream {
                    requests: vec![request(4), request(0), request(16)],
                    bad: 1,
                },
                20,
            ),
            (
                Call::Cancel {
                    call: Box::new(Call::Progressive(request(40))),
                    after: Duration::from_millis(5),
                },
                40,
            ),
            (
                Call::Deadline {
                    request: request(16),
                    deadline: Duration::from_millis(2),
                },
                16,
            ),
            (
                Call::Bad {
                    call: Box::new(Call::Rerank(request(1001))),
                    rule: BAD_RULES[2],
                },
                1001,
            ),
        ] {
            assert_eq!(call.pairs_sent(), want, "{call:?}");
        }
    }

    #[test]
    fn the_alone_sample_takes_served_calls_of_each_size_class_in_order() {
        let first = 1 << 41;
        let sample = mix().alone_sample(first, 5);
        assert!(sample.windows(2).all(|w| w[0] < w[1]), "{sample:?}");
        assert!(sample
            .iter()
            .all(|&k| (first..first + ALONE_SCAN).contains(&k)));
        let mut per_class = [0; SIZE_CLASS_NAMES.len()];
        for &k in &sample {
            let planned = mix().call(k);
            assert!(Kind::SERVED.contains(&planned.kind), "{:?}", planned.kind);
            per_class[size_class(planned.call.pairs_sent())] += 1;
        }
        // The served calls send 4 to 96 pairs: the three classes up to 96
        // are filled, the two above never drawn.
        assert_eq!(per_class, [5, 5, 5, 0, 0]);
        // The first served call of the scan is taken: nothing is skipped
        // while its class has room.
        let first_served = (first..)
            .find(|&k| Kind::SERVED.contains(&mix().call(k).kind))
            .unwrap();
        assert_eq!(sample[0], first_served);
        assert_eq!(mix().alone_sample(first, 1).len(), 3);
    }

    #[test]
    fn expected_outcomes_per_kind() {
        assert!(Kind::Rerank.expects("OK") && !Kind::Rerank.expects("DEADLINE_EXCEEDED"));
        assert!(Kind::Deadline.expects(CLIENT_DEADLINE) && !Kind::Deadline.expects("CANCELLED"));
        assert!(
            Kind::Deadline.expects("RESOURCE_EXHAUSTED")
                && !Kind::Rerank.expects("RESOURCE_EXHAUSTED")
        );
        assert!(Kind::Cancel.expects(CLIENT_CANCELLED) && !Kind::Cancel.expects(WRONG_ANSWER));
        assert!(Kind::Bad.expects("INVALID_ARGUMENT") && !Kind::Bad.expects("OK"));
    }
}
