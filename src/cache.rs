//! `ScoreCache`: the opt-in exact score cache (`--score-cache-mb`), a
//! bounded LRU from a pair as the model sees it to the raw score the model
//! gave it, shared by every API, so that a pair scored before is answered
//! without going through the queue.
//!
//! The key is the pair after tokenizing, truncation and windowing: its
//! `input_ids` and `token_type_ids`, with a per-server salt (the model's
//! identity and the precision it serves in), hashed with SHA-256 and cut to
//! 128 bits. Every setting that changes what the model sees (truncation
//! side, `max_length`, tokens per document, window overlap) changes the
//! key; one that does not change it hits. Whether the pair was cut
//! (`EncodedPair::truncated`) is not in the key: the model does not see it.
//!
//! Owns: key derivation, the LRU order, its byte accounting
//! ([`ENTRY_BYTES`] an entry, evicting the least recently used past the
//! capacity), and the hit, miss and eviction counts ([`CacheStats`]).
//! Must never: hold texts or token ids (only 128-bit digests and scores);
//! hash, allocate a request's worth, or block on anything while holding its
//! lock, and never hold it across an await; do I/O; hold a non-finite score
//! (a failed pair is never inserted); be consulted when off (`new` gives
//! `None`, so the caller holds no cache at all and every request takes the
//! path it takes without one); know of the batcher, tonic or libtorch.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::model::EncodedPair;

/// What one entry costs, in bytes, counted against the capacity: the slab
/// node (16 B key, 4 B score, two 4 B links: 32 B at the key's alignment)
/// plus its map slot (16 B key and 4 B index: 32 B, and 1 control byte),
/// and the map's spare slots: its table is a power of two of at least 8/7
/// of the entries, so up to 16/7 slots an entry, 33 × 16/7 ≈ 76 B. That is
/// about 108 B; 128 leaves room for the allocator's rounding. Both are
/// allocated for the full capacity at construction (so neither grows, or
/// rehashes under the lock, while serving).
pub const ENTRY_BYTES: usize = 128;

/// Fed to every key before the salt, so that a change in how keys are made
/// could never meet an old key (and no other SHA-256 in rerankd collides
/// with one by construction).
const DOMAIN: &[u8] = b"rerankd score cache v1\0";

/// A pair's digest: SHA-256 of the salt and the pair, cut to 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(u128);

/// The keys of a request's pairs, in pair order: computed once per request
/// (off the async threads: hashing is SHA-256 over every token), then used
/// for both `lookup` and `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys(Vec<Key>);

impl Keys {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A snapshot of the cache's counters, for metrics and stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Pairs found, over the cache's life.
    pub hits: u64,
    /// Pairs looked up and not found.
    pub misses: u64,
    /// Entries dropped to make room for newer ones.
    pub evictions: u64,
    /// Entries held now.
    pub entries: usize,
    /// `entries × ENTRY_BYTES`.
    pub bytes: usize,
    /// The most `bytes` may reach (`--score-cache-mb`, rounded down to
    /// whole entries).
    pub capacity_bytes: usize,
}

/// The cache. `&self` everywhere and `Sync`: share it as an `Arc`.
pub struct ScoreCache {
    /// SHA-256 already fed the domain and the salt; each key starts from a
    /// clone of it.
    salted: Sha256,
    /// A std mutex, not tokio's: every critical section is a few map and
    /// list steps per pair, never an await, so blocking briefly is cheaper
    /// than a task switch.
    lru: Mutex<Lru>,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ScoreCache {
    /// A cache of at most `capacity_bytes` (`ENTRY_BYTES` an entry) whose
    /// keys are salted with `salt` (the model's identity and serving
    /// precision: scores from another model or precision never hit).
    /// `None` when it could hold no entry: 0 is off.
    pub fn new(capacity_bytes: usize, salt: &str) -> Option<ScoreCache> {
        // u32 links, with u32::MAX as the end of the list.
        let max_entries = (capacity_bytes / ENTRY_BYTES).min(NIL as usize);
        if max_entries == 0 {
            return None;
        }
        let mut salted = Sha256::new();
        salted.update(DOMAIN);
        salted.update((salt.len() as u64).to_le_bytes());
        salted.update(salt.as_bytes());
        Some(ScoreCache {
            salted,
            lru: Mutex::new(Lru::with_capacity(max_entries)),
        })
    }

    /// The keys of `pairs`, in order. Takes no lock: call it where the
    /// request's pairs are made (the tokenizing thread).
    pub fn keys(&self, pairs: &[EncodedPair]) -> Keys {
        let mut bytes = Vec::new();
        Keys(pairs.iter().map(|p| self.key(p, &mut bytes)).collect())
    }

    /// Each length before its tokens, so that no two different pairs feed
    /// the same bytes (ids `[1, 2, 3]` with types `[0, 0]` against ids
    /// `[1, 2]` with types `[3, 0, 0]`).
    fn key(&self, pair: &EncodedPair, bytes: &mut Vec<u8>) -> Key {
        bytes.clear();
        for tokens in [&pair.input_ids, &pair.token_type_ids] {
            bytes.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
            for token in tokens {
                bytes.extend_from_slice(&token.to_le_bytes());
            }
        }
        let mut hasher = self.salted.clone();
        hasher.update(&bytes[..]);
        let digest = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Key(u128::from_le_bytes(first))
    }

    /// The cached raw score of each key, in order (`None`: a miss, to be
    /// scored). A hit becomes the most recently used entry.
    pub fn lookup(&self, keys: &Keys) -> Vec<Option<f32>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut lru = self.lock();
        found.extend(keys.0.iter().map(|&key| lru.get(key)));
        found
    }

    /// Stores `(pair index into keys, raw score)` for each newly scored
    /// pair, evicting the least recently used entries past the capacity.
    /// A key already held takes the new score. Non-finite scores are left
    /// out (the caller fails such a request anyway). Panics if an index is
    /// not one of `keys` (a caller's broken invariant).
    pub fn insert(&self, keys: &Keys, scored: impl IntoIterator<Item = (usize, f32)>) {
        let scored: Vec<(Key, f32)> = scored
            .into_iter()
            .filter(|(_, score)| score.is_finite())
            .map(|(pair, score)| (keys.0[pair], score))
            .collect();
        let mut lru = self.lock();
        for (key, score) in scored {
            lru.put(key, score);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let lru = self.lock();
        CacheStats {
            hits: lru.hits,
            misses: lru.misses,
            evictions: lru.evictions,
            entries: lru.map.len(),
            bytes: lru.map.len() * ENTRY_BYTES,
            capacity_bytes: lru.max_entries * ENTRY_BYTES,
        }
    }

    /// The LRU, locked. A panic while it was held (a bug: nothing in a
    /// critical section should) may have left the list half linked: the
    /// entries are dropped (a cache may always forget) and the counters
    /// kept, so the cache goes on serving, emptier.
    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|poisoned| {
            let mut lru = poisoned.into_inner();
            lru.clear();
            self.lru.clear_poison();
            lru
        })
    }
}

/// The end of the list, in `Node::prev` and `Node::next`.
const NIL: u32 = u32::MAX;

/// One entry, in the slab; linked from most to least recently used.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: Key,
    score: f32,
    /// The more recently used neighbour (`NIL` at the head).
    prev: u32,
    /// The less recently used neighbour (`NIL` at the tail).
    next: u32,
}

/// A map from key to slab index, and a doubly linked list through the slab
/// in recency order: every step O(1). The slab only grows to `max_entries`;
/// past that, an insert reuses the evicted tail's slot, so it needs no free
/// list.
struct Lru {
    map: HashMap<Key, u32, BuildHasherDefault<KeyHasher>>,
    nodes: Vec<Node>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    max_entries: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl Lru {
    fn with_capacity(max_entries: usize) -> Lru {
        Lru {
            map: HashMap::with_capacity_and_hasher(max_entries, Default::default()),
            nodes: Vec::with_capacity(max_entries),
            head: NIL,
            tail: NIL,
            max_entries,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    fn get(&mut self, key: Key) -> Option<f32> {
        match self.map.get(&key) {
            Some(&index) => {
                self.hits += 1;
                self.unlink(index);
                self.push_front(index);
                Some(self.nodes[index as usize].score)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn put(&mut self, key: Key, score: f32) {
        if let Some(&index) = self.map.get(&key) {
            self.nodes[index as usize].score = score;
            self.unlink(index);
            self.push_front(index);
            return;
        }
        let node = Node {
            key,
            score,
            prev: NIL,
            next: NIL,
        };
        let index = if self.nodes.len() < self.max_entries {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        } else {
            let index = self.tail;
            self.unlink(index);
            let evicted = self.nodes[index as usize].key;
            self.map.remove(&evicted);
            self.evictions += 1;
            self.nodes[index as usize] = node;
            index
        };
        self.map.insert(key, index);
        self.push_front(index);
    }

    fn unlink(&mut self, index: u32) {
        let Node { prev, next, .. } = self.nodes[index as usize];
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
    }

    fn push_front(&mut self, index: u32) {
        let old_head = self.head;
        let node = &mut self.nodes[index as usize];
        node.prev = NIL;
        node.next = old_head;
        match old_head {
            NIL => self.tail = index,
            old_head => self.nodes[old_head as usize].prev = index,
        }
        self.head = index;
    }

    /// Drops every entry; the counters stay (they are lifetime counts).
    fn clear(&mut self) {
        self.map.clear();
        self.nodes.clear();
        self.head = NIL;
        self.tail = NIL;
    }
}

/// The map's hasher: a key is already a uniform SHA-256 digest that a
/// client cannot steer, so its low 64 bits are the hash (SipHash would only
/// lengthen the critical section).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is reached (`Key` hashes its one u128); this
        // is for completeness.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pair(ids: &[i64], types: &[i64]) -> EncodedPair {
        EncodedPair {
            input_ids: ids.to_vec(),
            token_type_ids: types.to_vec(),
            truncated: false,
        }
    }

    /// A distinct pair per `n`, as a tokenizer would give.
    fn nth(n: i64) -> EncodedPair {
        pair(&[101, 7, 102, n, 102], &[0, 0, 0, 1, 1])
    }

    fn cache_of(entries: usize, salt: &str) -> ScoreCache {
        ScoreCache::new(entries * ENTRY_BYTES, salt).expect("a cache of at least one entry")
    }

    /// Walks the list both ways and checks it against the map: every entry
    /// once, in both, within the capacity.
    fn check_links(cache: &ScoreCache) {
        let lru = cache.lock();
        let mut forward = Vec::new();
        let mut at = lru.head;
        while at != NIL {
            forward.push(at);
            assert!(forward.len() <= lru.max_entries, "the list loops");
            at = lru.nodes[at as usize].next;
        }
        let mut backward = Vec::new();
        let mut at = lru.tail;
        while at != NIL {
            backward.push(at);
            assert!(backward.len() <= lru.max_entries, "the list loops");
            at = lru.nodes[at as usize].prev;
        }
        backward.reverse();
        assert_eq!(forward, backward, "next and prev links disagree");
        assert_eq!(
            forward.len(),
            lru.map.len(),
            "list and map differ in length"
        );
        for index in forward {
            let key = lru.nodes[index as usize].key;
            assert_eq!(
                lru.map.get(&key),
                Some(&index),
                "map does not point at its node"
            );
        }
    }

    #[test]
    fn off_when_it_could_hold_no_entry() {
        assert!(ScoreCache::new(0, "m").is_none());
        assert!(ScoreCache::new(ENTRY_BYTES - 1, "m").is_none());
        let one = ScoreCache::new(ENTRY_BYTES, "m").unwrap();
        assert_eq!(one.stats().capacity_bytes, ENTRY_BYTES);
        // Rounded down to whole entries.
        let mib = ScoreCache::new(1 << 20, "m").unwrap();
        assert_eq!(
            mib.stats().capacity_bytes,
            (1 << 20) / ENTRY_BYTES * ENTRY_BYTES
        );
    }

    #[test]
    fn entry_bytes_covers_an_entrys_layout() {
        let node = std::mem::size_of::<Node>();
        let slot = std::mem::size_of::<(Key, u32)>() + 1;
        // Up to 16/7 map slots an entry (a power-of-two table at 7/8 load).
        assert!(
            node + slot * 16 / 7 <= ENTRY_BYTES,
            "node {node} B + map {} B over {ENTRY_BYTES} B",
            slot * 16 / 7
        );
    }

    #[test]
    fn a_pair_hits_after_its_score_is_inserted() {
        let cache = cache_of(16, "model fp16");
        let pairs = [nth(1), nth(2), nth(3)];
        let keys = cache.keys(&pairs);
        assert_eq!(cache.lookup(&keys), [None, None, None]);
        cache.insert(&keys, [(0, 0.25), (2, -3.5)]);
        assert_eq!(cache.lookup(&keys), [Some(0.25), None, Some(-3.5)]);
        // Keys made again from equal pairs (another request) hit too.
        assert_eq!(cache.lookup(&cache.keys(&[nth(3)])), [Some(-3.5)]);
        // A later score replaces the held one.
        cache.insert(&keys, [(0, 0.5)]);
        assert_eq!(cache.lookup(&keys)[0], Some(0.5));
        check_links(&cache);
    }

    #[test]
    fn what_the_model_would_see_differently_misses() {
        let base = pair(&[101, 7, 8, 102, 9, 10, 102], &[0, 0, 0, 0, 1, 1, 1]);
        let cache = cache_of(16, "model fp16");
        cache.insert(&cache.keys(std::slice::from_ref(&base)), [(0, 1.0)]);
        let check = |cache: &ScoreCache, pair: &EncodedPair, expected: Option<f32>, why: &str| {
            let found = cache.lookup(&cache.keys(std::slice::from_ref(pair)))[0];
            assert_eq!(found, expected, "{why}");
        };
        check(&cache, &base, Some(1.0), "the same pair");
        let truncated = EncodedPair {
            truncated: true,
            ..base.clone()
        };
        check(
            &cache,
            &truncated,
            Some(1.0),
            "the flag the model does not see",
        );
        // Another truncation setting: a token cut from the document's end,
        // or from its start.
        let shorter = pair(&[101, 7, 8, 102, 9, 102], &[0, 0, 0, 0, 1, 1]);
        check(&cache, &shorter, None, "a shorter document");
        let left = pair(&[101, 7, 8, 102, 10, 102], &[0, 0, 0, 0, 1, 1]);
        check(&cache, &left, None, "a cut from the other side");
        let mut token = base.clone();
        token.input_ids[5] = 11;
        check(&cache, &token, None, "one token id changed");
        let mut segment = base.clone();
        segment.token_type_ids[3] = 1;
        check(&cache, &segment, None, "one token type changed");
        // The same bytes laid end to end, split differently.
        let a = pair(&[1, 2, 3], &[0, 0]);
        let b = pair(&[1, 2], &[3, 0, 0]);
        cache.insert(&cache.keys(std::slice::from_ref(&a)), [(0, 2.0)]);
        check(&cache, &b, None, "ids and types split at another place");
        // Another model or precision: the same pair misses.
        let other = cache_of(16, "model fp32");
        other.insert(&other.keys(std::slice::from_ref(&base)), [(0, 9.0)]);
        assert_ne!(
            cache.keys(std::slice::from_ref(&base)),
            other.keys(std::slice::from_ref(&base))
        );
        check(
            &cache,
            &base,
            Some(1.0),
            "the first cache keeps its own score",
        );
        check(&other, &base, Some(9.0), "the second its own");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = cache_of(3, "m");
        let pairs = [nth(1), nth(2), nth(3), nth(4), nth(5)];
        let keys = cache.keys(&pairs);
        let one = |i: usize| Keys(vec![keys.0[i]]);
        cache.insert(&keys, [(0, 1.0), (1, 2.0), (2, 3.0)]);
        // Looking 1 up makes 2 the least recently used.
        assert_eq!(cache.lookup(&one(0)), [Some(1.0)]);
        cache.insert(&keys, [(3, 4.0)]);
        assert_eq!(
            cache.lookup(&keys),
            [Some(1.0), None, Some(3.0), Some(4.0), None]
        );
        // That lookup left the order 4, 3, 1 (most recent first); replacing
        // 3's score makes it the most recent, so 1 goes next.
        cache.insert(&keys, [(2, 3.5)]);
        cache.insert(&keys, [(4, 5.0)]);
        assert_eq!(
            cache.lookup(&keys),
            [None, None, Some(3.5), Some(4.0), Some(5.0)]
        );
        check_links(&cache);
    }

    #[test]
    fn many_inserts_stay_within_the_capacity() {
        let entries = 100;
        let cache = cache_of(entries, "m");
        let pairs: Vec<EncodedPair> = (0..10_000).map(nth).collect();
        let keys = cache.keys(&pairs);
        for chunk in (0..pairs.len()).collect::<Vec<_>>().chunks(37) {
            cache.insert(&keys, chunk.iter().map(|&i| (i, i as f32)));
            let stats = cache.stats();
            assert!(stats.entries <= entries, "{stats:?}");
            assert!(stats.bytes <= stats.capacity_bytes, "{stats:?}");
        }
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (100, 9_900));
        let found = cache.lookup(&keys);
        assert!(found[..9_900].iter().all(Option::is_none));
        let kept: Vec<f32> = found[9_900..].iter().map(|s| s.unwrap()).collect();
        assert_eq!(kept, (9_900..10_000).map(|i| i as f32).collect::<Vec<_>>());
        check_links(&cache);
    }

    #[test]
    fn counters_count_pairs() {
        let cache = cache_of(2, "m");
        let pairs = [nth(1), nth(2), nth(3)];
        let keys = cache.keys(&pairs);
        let counts = |cache: &ScoreCache| {
            let s = cache.stats();
            (s.hits, s.misses, s.evictions, s.entries, s.bytes)
        };
        assert_eq!(counts(&cache), (0, 0, 0, 0, 0));
        cache.lookup(&keys);
        assert_eq!(counts(&cache), (0, 3, 0, 0, 0));
        cache.insert(&keys, [(0, 1.0), (1, 2.0)]);
        assert_eq!(counts(&cache), (0, 3, 0, 2, 2 * ENTRY_BYTES));
        // A new score for a held key is no new entry and no eviction.
        cache.insert(&keys, [(1, 2.5)]);
        assert_eq!(counts(&cache), (0, 3, 0, 2, 2 * ENTRY_BYTES));
        // Non-finite scores are not held.
        cache.insert(&keys, [(2, f32::NAN), (2, f32::INFINITY)]);
        assert_eq!(counts(&cache), (0, 3, 0, 2, 2 * ENTRY_BYTES));
        cache.insert(&keys, [(2, 3.0)]);
        assert_eq!(counts(&cache), (0, 3, 1, 2, 2 * ENTRY_BYTES));
        // 1 was the least recently used: gone. 2 and 3 hit.
        cache.lookup(&keys);
        assert_eq!(counts(&cache), (2, 4, 1, 2, 2 * ENTRY_BYTES));
        assert_eq!(cache.stats().capacity_bytes, 2 * ENTRY_BYTES);
    }

    #[test]
    fn a_panic_under_the_lock_empties_the_cache_and_keeps_the_counts() {
        let cache = Arc::new(cache_of(4, "m"));
        let keys = cache.keys(&[nth(1)]);
        cache.insert(&keys, [(0, 1.0)]);
        assert_eq!(cache.lookup(&keys), [Some(1.0)]);
        let held = Arc::clone(&cache);
        let panicked = std::thread::spawn(move || {
            let _lru = held.lru.lock().unwrap();
            panic!("a bug inside the critical section");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(cache.lookup(&keys), [None]);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 0));
        cache.insert(&keys, [(0, 2.0)]);
        assert_eq!(cache.lookup(&keys), [Some(2.0)]);
        check_links(&cache);
    }

    #[test]
    fn threads_share_one_cache() {
        let threads: i64 = 8;
        let rounds: i64 = 200;
        let pairs_per_round: i64 = 5;
        // Large enough that nothing is evicted: every count is exact.
        let cache = Arc::new(cache_of(
            (threads * rounds * pairs_per_round) as usize + 16,
            "m",
        ));
        let shared = cache.keys(&[nth(-1)]);
        cache.insert(&shared, [(0, -1.0)]);
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let cache = Arc::clone(&cache);
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for round in 0..rounds {
                        let base = (thread * rounds + round) * pairs_per_round;
                        let pairs: Vec<EncodedPair> =
                            (base..base + pairs_per_round).map(nth).collect();
                        let keys = cache.keys(&pairs);
                        assert!(cache.lookup(&keys).iter().all(Option::is_none));
                        cache.insert(
                            &keys,
                            (0..keys.len()).map(|i| (i, (base + i as i64) as f32)),
                        );
                        let expected: Vec<Option<f32>> = (base..base + pairs_per_round)
                            .map(|n| Some(n as f32))
                            .collect();
                        assert_eq!(cache.lookup(&keys), expected);
                        assert_eq!(cache.lookup(&shared), [Some(-1.0)]);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a worker thread panicked");
        }
        let stats = cache.stats();
        let pairs = (threads * rounds * pairs_per_round) as u64;
        let rounds_total = (threads * rounds) as u64;
        assert_eq!(stats.misses, pairs);
        assert_eq!(stats.hits, pairs + rounds_total);
        assert_eq!((stats.entries, stats.evictions), (pairs as usize + 1, 0));
        check_links(&cache);
    }

    #[test]
    fn threads_evicting_keep_the_list_whole() {
        let cache = Arc::new(cache_of(64, "m"));
        let workers: Vec<_> = (0..8i64)
            .map(|thread| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for round in 0..500i64 {
                        // Half the pairs shared between threads, half not.
                        let pairs: Vec<EncodedPair> = (0..4)
                            .map(|i| {
                                nth(if i % 2 == 0 {
                                    round % 97 + i
                                } else {
                                    thread * 1_000_000 + round * 4 + i
                                })
                            })
                            .collect();
                        let keys = cache.keys(&pairs);
                        let found = cache.lookup(&keys);
                        cache.insert(
                            &keys,
                            found
                                .iter()
                                .enumerate()
                                .filter(|(_, s)| s.is_none())
                                .map(|(i, _)| (i, i as f32)),
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a worker thread panicked");
        }
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, 8 * 500 * 4);
        assert_eq!(stats.entries, 64);
        check_links(&cache);
    }
}
