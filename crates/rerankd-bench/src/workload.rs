//! The bench's workload: a small deterministic PRNG, a fixed English
//! vocabulary, document-length distributions, and request `k` of a run.
//!
//! Owns: what the bench sends. Request `k` depends only on the seed, the
//! configuration and `k`, never on which client sends it or when, so the
//! same seed and `--requests N` send the same N requests whatever the
//! concurrency. Must never: do I/O, read a clock or know about gRPC (it
//! returns plain strings; the driver wraps them).

/// Common English words, each one token in BERT's uncased WordPiece
/// vocabulary (checked against the test models' tokenizers), so that a
/// document of `n` words is about `n` tokens.
const VOCABULARY: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "it",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "has",
    "had",
    "not",
    "but",
    "one",
    "two",
    "three",
    "first",
    "new",
    "after",
    "also",
    "they",
    "their",
    "its",
    "who",
    "more",
    "time",
    "when",
    "there",
    "been",
    "can",
    "all",
    "would",
    "year",
    "years",
    "city",
    "world",
    "school",
    "state",
    "team",
    "war",
    "people",
    "work",
    "life",
    "family",
    "house",
    "water",
    "music",
    "game",
    "river",
    "church",
    "company",
    "government",
    "film",
    "book",
    "song",
    "album",
    "season",
    "party",
    "history",
    "system",
    "group",
    "area",
    "part",
    "place",
    "name",
    "home",
    "day",
    "night",
    "week",
    "month",
    "end",
    "line",
    "road",
    "side",
    "town",
    "village",
    "country",
    "land",
    "sea",
    "island",
    "mountain",
    "lake",
    "park",
    "street",
    "station",
    "building",
    "car",
    "train",
    "ship",
    "air",
    "power",
    "money",
    "market",
    "bank",
    "price",
    "business",
    "law",
    "court",
    "police",
    "army",
    "king",
    "queen",
    "president",
    "leader",
    "member",
    "player",
    "student",
    "teacher",
    "doctor",
    "child",
    "children",
    "man",
    "woman",
    "men",
    "women",
    "father",
    "mother",
    "son",
    "daughter",
    "brother",
    "sister",
    "friend",
    "body",
    "head",
    "hand",
    "eye",
    "heart",
    "mind",
    "voice",
    "story",
    "news",
    "report",
    "paper",
    "letter",
    "word",
    "language",
    "question",
    "answer",
    "idea",
    "plan",
    "problem",
    "reason",
    "result",
    "change",
    "point",
    "level",
    "number",
    "rate",
    "size",
    "form",
    "type",
    "kind",
    "way",
    "case",
    "fact",
    "example",
    "study",
    "research",
    "science",
    "data",
    "energy",
    "health",
    "food",
    "bread",
    "fruit",
    "coffee",
    "tea",
    "milk",
    "fire",
    "light",
    "sun",
    "moon",
    "star",
    "sky",
    "rain",
    "snow",
    "wind",
    "tree",
    "forest",
    "flower",
    "garden",
    "field",
    "farm",
    "animal",
    "dog",
    "cat",
    "horse",
    "bird",
    "fish",
    "color",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "small",
    "large",
    "big",
    "long",
    "short",
    "high",
    "low",
    "old",
    "young",
    "good",
    "bad",
    "best",
    "great",
    "little",
    "early",
    "late",
    "local",
    "national",
    "public",
    "private",
    "social",
    "human",
    "free",
    "full",
    "open",
    "strong",
    "important",
    "different",
    "main",
    "major",
    "common",
    "special",
    "simple",
    "easy",
    "hard",
    "real",
    "true",
    "clear",
    "certain",
    "possible",
    "later",
    "never",
    "always",
    "often",
    "again",
    "still",
    "only",
    "very",
    "well",
    "together",
    "during",
    "before",
    "between",
    "under",
    "over",
    "through",
    "against",
    "about",
    "into",
    "out",
    "up",
    "down",
    "back",
    "around",
    "along",
    "across",
    "near",
    "far",
    "made",
    "make",
    "take",
    "took",
    "give",
    "gave",
    "find",
    "found",
    "know",
    "known",
    "see",
    "saw",
    "come",
    "came",
    "go",
    "went",
    "get",
    "got",
    "use",
    "used",
    "play",
    "played",
    "run",
    "ran",
    "move",
    "moved",
    "live",
    "lived",
    "build",
    "built",
    "write",
    "wrote",
    "read",
    "learn",
    "help",
    "keep",
    "start",
    "started",
    "show",
    "began",
    "called",
    "became",
    "left",
    "turned",
    "said",
    "asked",
    "told",
    "felt",
    "brought",
    "held",
    "lost",
    "won",
    "paid",
    "sold",
    "bought",
    "opened",
    "closed",
    "reached",
    "followed",
    "north",
    "south",
    "east",
    "west",
    "central",
    "general",
    "final",
    "second",
    "third",
    "hundred",
    "thousand",
    "million",
    "today",
    "tomorrow",
    "morning",
    "evening",
    "summer",
    "winter",
    "spring",
    "club",
    "league",
    "cup",
    "art",
    "museum",
    "library",
    "hospital",
    "university",
    "college",
    "office",
    "room",
    "door",
    "window",
    "table",
    "chair",
    "computer",
    "phone",
    "network",
    "service",
    "program",
    "project",
    "model",
    "design",
    "process",
    "method",
    "test",
    "value",
    "cost",
    "product",
    "industry",
    "travel",
    "trip",
    "journey",
    "bridge",
    "port",
    "coast",
    "valley",
    "desert",
    "ocean",
    "border",
    "region",
    "province",
];

/// Words in a query: uniformly 4 to 10.
pub const QUERY_WORDS: std::ops::RangeInclusive<usize> = 4..=10;

/// The long-tail distribution's median document length, in words.
pub const LONG_TAIL_MEDIAN_WORDS: usize = 40;
/// The long-tail distribution's longest document, in words, before the
/// window cap.
pub const LONG_TAIL_MAX_WORDS: usize = 400;
/// The long-tail distribution's shortest document, in words.
const LONG_TAIL_MIN_WORDS: usize = 3;
/// The spread of ln(words) in the long-tail distribution: with the median at
/// 40 words, about 70% of documents are under 64 words, 10% over 127 and 1%
/// over 320.
const LONG_TAIL_SIGMA: f64 = 0.9;
/// Tokens a pair adds to its words: the special tokens of the widest pair
/// template in use (`<s> q </s></s> d </s>`).
const SPECIAL_TOKENS: usize = 4;

/// splitmix64: a tiny, fast, well-mixed 64-bit generator (Steele, Lea and
/// Flood, 2014); plenty for drawing a workload, and reproducible everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `range` (inclusive); `range` must not be empty.
    pub fn in_range(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        let (low, high) = (*range.start(), *range.end());
        assert!(
            low <= high,
            "an empty range {low}..={high} (a caller's bug)"
        );
        let span = (high - low) as u128 + 1;
        // Multiply-shift: unbiased enough for spans far below 2^64.
        low + ((self.next_u64() as u128 * span) >> 64) as usize
    }

    /// A standard normal draw (Box–Muller).
    pub fn standard_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln stays finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// splitmix64's output function: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many words a document has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lengths {
    /// Every document has this many words.
    Fixed { words: usize },
    /// Uniform between the bounds, inclusive.
    Uniform { min: usize, max: usize },
    /// A search engine's mix: ln(words) is normal around ln(median) (so most
    /// documents are short) and draws outside [3, max] are drawn again.
    LongTail { median: usize, max: usize },
}

impl Lengths {
    /// `--lengths fixed`.
    pub fn fixed(words: usize) -> Self {
        Lengths::Fixed {
            words: words.max(1),
        }
    }

    /// `--lengths uniform`: 8 to 2 × `words` (down to 2 × `words` when that
    /// is under 8).
    pub fn uniform(words: usize) -> Self {
        let max = (2 * words).max(1);
        Lengths::Uniform {
            min: 8.min(max),
            max,
        }
    }

    /// `--lengths long-tail` for a server whose pairs hold `window` tokens:
    /// the longest document leaves room for the longest query, the special
    /// tokens and an eighth of the window for words that take two tokens.
    pub fn long_tail(window: usize) -> Self {
        let room = window.saturating_sub(*QUERY_WORDS.end() + SPECIAL_TOKENS + window / 8);
        Lengths::LongTail {
            median: LONG_TAIL_MEDIAN_WORDS,
            max: room.clamp(1, LONG_TAIL_MAX_WORDS),
        }
    }

    /// The shortest and longest document this distribution can draw.
    pub fn bounds(&self) -> (usize, usize) {
        match *self {
            Lengths::Fixed { words } => (words, words),
            Lengths::Uniform { min, max } => (min, max),
            Lengths::LongTail { max, .. } => (LONG_TAIL_MIN_WORDS.min(max), max),
        }
    }

    /// One document length, in words.
    pub fn draw(&self, rng: &mut SplitMix64) -> usize {
        match *self {
            Lengths::Fixed { words } => words,
            Lengths::Uniform { min, max } => rng.in_range(min..=max),
            Lengths::LongTail { median, max } => draw_log_normal(rng, median, max),
        }
    }
}

/// A log-normal length around `median`, drawn again while outside the
/// bounds (at most a few dozen times, then clamped: a window so small that
/// nearly every draw is too long still gets documents).
fn draw_log_normal(rng: &mut SplitMix64, median: usize, max: usize) -> usize {
    let min = LONG_TAIL_MIN_WORDS.min(max);
    let mu = (median as f64).ln();
    let mut words = median;
    for _ in 0..64 {
        words = (mu + LONG_TAIL_SIGMA * rng.standard_normal()).exp().round() as usize;
        if (min..=max).contains(&words) {
            return words;
        }
    }
    words.clamp(min, max)
}

/// One request's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestText {
    pub query: String,
    pub documents: Vec<String>,
}

/// Every request of a run, drawn on demand.
#[derive(Debug, Clone)]
pub struct Workload {
    pub seed: u64,
    pub documents: usize,
    pub lengths: Lengths,
}

impl Workload {
    /// Request `index` of this workload: a 4–10-word query and `documents`
    /// documents of lengths drawn from `lengths`.
    pub fn request(&self, index: u64) -> RequestText {
        let mut rng = SplitMix64::new(mix64(self.seed ^ mix64(index)));
        let query_words = rng.in_range(QUERY_WORDS);
        let query = words(&mut rng, query_words);
        let documents = (0..self.documents)
            .map(|_| {
                let length = self.lengths.draw(&mut rng);
                words(&mut rng, length)
            })
            .collect();
        RequestText { query, documents }
    }
}

/// `count` words of the vocabulary, space-separated.
fn words(rng: &mut SplitMix64, count: usize) -> String {
    let mut text = String::with_capacity(count * 7);
    for i in 0..count {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(VOCABULARY[rng.in_range(0..=VOCABULARY.len() - 1)]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(seed: u64, lengths: Lengths) -> Workload {
        Workload {
            seed,
            documents: 8,
            lengths,
        }
    }

    fn word_count(text: &str) -> usize {
        text.split(' ').count()
    }

    /// `n` lengths from `lengths`, sorted.
    fn sorted_draws(lengths: Lengths, n: usize) -> Vec<usize> {
        let mut rng = SplitMix64::new(7);
        let mut draws: Vec<usize> = (0..n).map(|_| lengths.draw(&mut rng)).collect();
        draws.sort_unstable();
        draws
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The reference implementation's first outputs for seed 1234567.
        let mut rng = SplitMix64::new(1234567);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            vec![
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn the_same_seed_sends_the_same_requests_and_another_seed_others() {
        let a = workload(42, Lengths::long_tail(512));
        let b = workload(42, Lengths::long_tail(512));
        let c = workload(43, Lengths::long_tail(512));
        for k in 0..20 {
            assert_eq!(a.request(k), b.request(k));
            assert_ne!(a.request(k), c.request(k));
        }
        assert_ne!(a.request(0), a.request(1));
    }

    #[test]
    fn requests_have_the_asked_shape() {
        let w = workload(1, Lengths::fixed(64));
        for k in 0..50 {
            let request = w.request(k);
            assert!(QUERY_WORDS.contains(&word_count(&request.query)));
            assert_eq!(request.documents.len(), 8);
            assert!(request.documents.iter().all(|d| word_count(d) == 64));
            assert!(request
                .documents
                .iter()
                .flat_map(|d| d.split(' '))
                .all(|word| VOCABULARY.contains(&word)));
        }
    }

    #[test]
    fn uniform_lengths_cover_their_bounds_and_stay_inside() {
        let draws = sorted_draws(Lengths::uniform(64), 20_000);
        assert_eq!((draws[0], *draws.last().unwrap()), (8, 128));
        let median = draws[draws.len() / 2];
        assert!((63..=73).contains(&median), "median {median}");
        // Short --words: 2 × words is under 8, so the range is 2w..=2w.
        assert_eq!(Lengths::uniform(3).bounds(), (6, 6));
    }

    #[test]
    fn long_tail_is_mostly_short_with_a_tail_to_400_words() {
        let lengths = Lengths::long_tail(512);
        assert_eq!(lengths.bounds(), (3, 400));
        let draws = sorted_draws(lengths, 20_000);
        let at = |q: f64| draws[(q * draws.len() as f64) as usize];
        assert!((36..=44).contains(&at(0.5)), "median {}", at(0.5));
        assert!(at(0.7) < 72, "70th percentile {}", at(0.7));
        assert!(
            (100..=160).contains(&at(0.9)),
            "90th percentile {}",
            at(0.9)
        );
        assert!(*draws.last().unwrap() > 300, "no tail: {:?}", draws.last());
        assert!(draws[0] >= 3 && *draws.last().unwrap() <= 400);
    }

    #[test]
    fn long_tail_is_capped_so_a_pair_fits_a_small_window() {
        // 128-token window: 128 - 10 query words - 4 special - 16 slack.
        let lengths = Lengths::long_tail(128);
        assert_eq!(lengths.bounds(), (3, 98));
        let draws = sorted_draws(lengths, 5_000);
        assert!(*draws.last().unwrap() <= 98);
        // A window too small for any document still yields 1-word ones.
        let tiny = sorted_draws(Lengths::long_tail(8), 100);
        assert!(tiny.iter().all(|&w| w == 1), "{tiny:?}");
    }

    #[test]
    fn vocabulary_has_a_few_hundred_plain_lowercase_words() {
        assert!(VOCABULARY.len() >= 300, "{}", VOCABULARY.len());
        assert!(VOCABULARY
            .iter()
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase())));
    }
}
