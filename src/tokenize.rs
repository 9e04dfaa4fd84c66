//! `PairTokenizer`: (query, document) text to model token ids, through the
//! model directory's `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Owns: the pair template (whatever the tokenizer's post-processor says:
//! `[CLS] q [SEP] d [SEP]` for BERT, `<s> q </s></s> d </s>` for XLM-R) and
//! what happens to a pair longer than its window: refuse it, truncate it
//! (the document side first, on the side asked for; only when the query
//! alone leaves no room, the longest side), or split the document into
//! overlapping windows that each carry the whole query (at most N of them,
//! failing the request or, when asked, keeping the first N); a request's
//! own cap on each document's tokens (`Fit::max_document_tokens`), applied
//! before any of that; and stopping
//! between documents once the request is abandoned (`Abandon`). Must never: pad
//! (batches pad), run on a tokio worker thread (it is CPU work: callers use
//! blocking threads), truncate silently when the client said not to, or
//! combine windows' scores (`aggregate` does).
//!
//! A truncated document is not tokenized in full: a right cut tokenizes only
//! a prefix that ends at a word boundary and holds more tokens than the
//! window keeps, a left cut only such a suffix (`truncate_from_part`).
//! Tokens before a space that follows a word do not depend on the text
//! after it, and tokens after a suffix's first word do not depend on the
//! text before it, for every pre-tokenizer the exporter supports (BERT's,
//! Metaspace, byte-level), so the result is the same as cutting the whole
//! document's tokens; tests/it/tokenize.rs checks it against the Hugging
//! Face tokenizer's own truncation. A 60 KB document in a 512-token window
//! costs about 4 KB of tokenizing, not 60.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokenizers::utils::truncation::{
    truncate_encodings, TruncationDirection, TruncationParams, TruncationStrategy,
};
use tokenizers::{Encoding, PostProcessor, Tokenizer};

use crate::error::Error;
use crate::model::EncodedPair;

/// When to give up tokenizing a request: its client has gone (the guard
/// `Abandon::new` returns was dropped with the request's future) or its
/// deadline has passed. Checked between documents, so work nobody waits
/// for stops within one document (a right cut tokenizes only a prefix;
/// a chunked one is bounded by `--max-document-bytes`).
#[derive(Debug, Clone, Default)]
pub struct Abandon {
    gone: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

/// Marks its `Abandon` gone when dropped: held by the request's future, so
/// a cancelled or timed-out request drops it.
#[derive(Debug)]
pub struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Abandon {
    /// A check for a request with `deadline`, and the guard that marks it
    /// gone.
    pub fn new(deadline: Option<Instant>) -> (Abandon, AbandonOnDrop) {
        let gone = Arc::new(AtomicBool::new(false));
        let guard = AbandonOnDrop(Arc::clone(&gone));
        (Abandon { gone, deadline }, guard)
    }

    /// `Err` once the work should stop.
    pub fn check(&self) -> Result<(), Error> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }
}

/// Which end of a text a cut removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Side {
    /// Cut the end: keep the beginning.
    #[default]
    Right,
    /// Cut the beginning: keep the end.
    Left,
}

/// How a document longer than the window is split into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Tokens each window shares with the one before; `None`: a quarter of
    /// the room a window has for document text.
    pub overlap: Option<usize>,
    /// More windows than this for one document fail the request, unless
    /// `keep_first` is set.
    pub max_chunks: usize,
    /// A document that needs more than `max_chunks` windows is scored on its
    /// first `max_chunks` windows (the rest of it is dropped, and its last
    /// window counts as truncated) instead of failing the request: Cohere's
    /// `max_chunks_per_doc`.
    pub keep_first: bool,
}

/// What to do with a pair longer than its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Fail the request, naming the document and its length.
    Refuse,
    /// Cut the pair to the window on this side.
    Truncate(Side),
    /// Split the document into overlapping windows, each paired with the
    /// whole query.
    Chunk(ChunkPlan),
}

/// The window a request's pairs must fit, and what happens when one does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Tokens per pair, special tokens included.
    pub max_length: usize,
    pub overflow: Overflow,
    /// At most this many of a document's tokens are kept (cut on the
    /// overflow's side: a truncation's, or the right), before the pair is
    /// fitted to the window; `None`: no limit of the request's own.
    pub max_document_tokens: Option<usize>,
}

/// A tokenizer that encodes pairs for one model window.
#[derive(Clone)]
pub struct PairTokenizer {
    /// No truncation, no padding.
    whole: Tokenizer,
    /// The model's window.
    max_length: usize,
    /// Special tokens the template adds to a pair.
    added: usize,
}

/// The pairs of one request, tokenized: one pair per input (document, or
/// ScorePairs pair), or several for an input split into windows.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub pairs: Vec<EncodedPair>,
    /// For each pair, the input it scores, ascending.
    pub owners: Vec<usize>,
    /// How many inputs there were.
    pub inputs: usize,
    /// Tokens over all pairs, after truncation.
    pub tokens: usize,
    /// Pairs that were truncated.
    pub truncated: usize,
    /// Windows of the inputs that were split (0 when none was).
    pub chunks: usize,
}

impl EncodedRequest {
    fn new(per_input: Vec<Vec<EncodedPair>>) -> Self {
        let inputs = per_input.len();
        let chunks = per_input.iter().filter(|w| w.len() > 1).map(Vec::len).sum();
        let mut owners = Vec::new();
        let mut pairs = Vec::new();
        for (input, windows) in per_input.into_iter().enumerate() {
            owners.extend(std::iter::repeat_n(input, windows.len()));
            pairs.extend(windows);
        }
        EncodedRequest {
            tokens: pairs.iter().map(EncodedPair::len).sum(),
            truncated: pairs.iter().filter(|p| p.truncated).count(),
            pairs,
            owners,
            inputs,
            chunks,
        }
    }

    /// Whether some input was split into several pairs.
    pub fn is_chunked(&self) -> bool {
        self.pairs.len() != self.inputs
    }
}

impl PairTokenizer {
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self, Error> {
        let model_dir_error = |reason: String| Error::ModelDir {
            path: path.to_path_buf(),
            reason,
        };
        let mut whole = Tokenizer::from_file(path)
            .map_err(|e| model_dir_error(format!("tokenizer.json cannot be loaded: {e}")))?;
        whole.with_padding(None);
        whole.with_truncation(None).map_err(|e| {
            model_dir_error(format!(
                "tokenizer.json rejects turning truncation off: {e}"
            ))
        })?;
        let added = whole
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(true));
        if added >= max_length {
            return Err(model_dir_error(format!(
                "the pair template adds {added} special tokens, which leaves nothing of a \
                 {max_length}-token window"
            )));
        }
        Ok(PairTokenizer {
            whole,
            max_length,
            added,
        })
    }

    /// The model's window.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The model's window with `overflow`.
    pub fn fit(&self, overflow: Overflow) -> Fit {
        Fit {
            max_length: self.max_length,
            overflow,
            max_document_tokens: None,
        }
    }

    /// Encodes `(query, document)` for every document, unless `abandon`
    /// says to stop first.
    pub fn encode_request(
        &self,
        query: &str,
        documents: &[String],
        fit: Fit,
        abandon: &Abandon,
    ) -> Result<EncodedRequest, Error> {
        let windows = documents
            .iter()
            .enumerate()
            .map(|(index, document)| {
                abandon.check()?;
                self.encode_pair(query, document, index, fit)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncodedRequest::new(windows))
    }

    /// Encodes pairs that each carry their own query (ScorePairs), unless
    /// `abandon` says to stop first.
    pub fn encode_pairs(
        &self,
        pairs: &[(String, String)],
        fit: Fit,
        abandon: &Abandon,
    ) -> Result<EncodedRequest, Error> {
        let windows = pairs
            .iter()
            .enumerate()
            .map(|(index, (query, document))| {
                abandon.check()?;
                self.encode_pair(query, document, index, fit)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncodedRequest::new(windows))
    }

    /// Encodes one pair: one `EncodedPair`, or one per window when `fit`
    /// chunks a document over the window. `index` names the document in
    /// errors.
    pub fn encode_pair(
        &self,
        query: &str,
        document: &str,
        index: usize,
        fit: Fit,
    ) -> Result<Vec<EncodedPair>, Error> {
        if let Some(limit) = fit.max_document_tokens {
            return self.encode_capped(query, document, index, fit, limit);
        }
        if let Overflow::Truncate(side) = fit.overflow {
            if let Some(pair) =
                self.truncate_from_part(query, document, index, fit.max_length, side)?
            {
                return Ok(vec![pair]);
            }
        }
        let whole = self
            .whole
            .encode_fast((query, document), true)
            .map_err(tokenizer_error(index))?;
        if whole.len() <= fit.max_length {
            return Ok(vec![to_pair(&whole, false)]);
        }
        match fit.overflow {
            Overflow::Refuse => Err(Error::PairTooLong {
                index,
                tokens: whole.len(),
                max_length: fit.max_length,
            }),
            Overflow::Truncate(side) => {
                let (query, document) = self.parts(query, document, index)?;
                Ok(vec![self.truncate(
                    query,
                    document,
                    index,
                    fit.max_length,
                    side,
                )?])
            }
            Overflow::Chunk(plan) => {
                let (query, document) = self.parts(query, document, index)?;
                self.chunk(query, document, index, fit.max_length, plan)
            }
        }
    }

    /// `encode_pair` for a request that keeps at most `limit` tokens of
    /// each document: the document is cut to `limit` tokens first (a
    /// truncation's side, otherwise the right: its beginning is kept), then
    /// the pair is fitted to the window as `fit.overflow` says. The whole
    /// document is tokenized (at most `--max-document-bytes`).
    fn encode_capped(
        &self,
        query: &str,
        document: &str,
        index: usize,
        fit: Fit,
        limit: usize,
    ) -> Result<Vec<EncodedPair>, Error> {
        let (query, mut document) = self.parts(query, document, index)?;
        let cut = document.len() > limit;
        if cut {
            let side = match fit.overflow {
                Overflow::Truncate(side) => side,
                Overflow::Refuse | Overflow::Chunk(_) => Side::Right,
            };
            document.truncate(limit, 0, direction(side));
            document.take_overflowing();
        }
        let tokens = query.len() + document.len() + self.added;
        if tokens <= fit.max_length {
            return Ok(vec![to_pair(&self.join(query, document, index)?, cut)]);
        }
        match fit.overflow {
            Overflow::Refuse => Err(Error::PairTooLong {
                index,
                tokens,
                max_length: fit.max_length,
            }),
            Overflow::Truncate(side) => Ok(vec![self.truncate(
                query,
                document,
                index,
                fit.max_length,
                side,
            )?]),
            Overflow::Chunk(plan) => self.chunk(query, document, index, fit.max_length, plan),
        }
    }

    /// The query's and the document's tokens without special tokens, the
    /// document in segment 1, as `Tokenizer::encode` makes them before its
    /// post-processor joins them.
    fn parts(
        &self,
        query: &str,
        document: &str,
        index: usize,
    ) -> Result<(Encoding, Encoding), Error> {
        let query = self
            .whole
            .encode_fast(query, false)
            .map_err(tokenizer_error(index))?;
        let mut document = self
            .whole
            .encode_fast(document, false)
            .map_err(tokenizer_error(index))?;
        document.set_type_ids(vec![1; document.len()]);
        Ok((query, document))
    }

    /// Joins a query and a document with the pair template.
    fn join(&self, query: Encoding, document: Encoding, index: usize) -> Result<Encoding, Error> {
        self.whole
            .post_process(query, Some(document), true)
            .map_err(tokenizer_error(index))
    }

    fn truncate(
        &self,
        query: Encoding,
        document: Encoding,
        index: usize,
        max_length: usize,
        side: Side,
    ) -> Result<EncodedPair, Error> {
        let room = max_length.saturating_sub(self.added);
        let to_remove = (query.len() + document.len()).saturating_sub(room);
        // The document side first; when that would leave the document empty,
        // the longest side (the query fills the window alone).
        let strategy = if document.len() > to_remove {
            TruncationStrategy::OnlySecond
        } else {
            TruncationStrategy::LongestFirst
        };
        let params = TruncationParams {
            max_length: room,
            strategy,
            stride: 0,
            direction: direction(side),
        };
        let (mut query, document) =
            truncate_encodings(query, Some(document), &params).map_err(tokenizer_error(index))?;
        let mut document = document.expect("a pair stays a pair");
        query.take_overflowing();
        document.take_overflowing();
        Ok(to_pair(&self.join(query, document, index)?, true))
    }

    /// A pair cut on `side`, tokenizing only as much of the document as the
    /// window can keep: a prefix for a right cut, a suffix for a left one
    /// (see the module header); `None` when that saves nothing (a short
    /// document, a query that fills the window alone, no word boundary to
    /// cut at) and the whole document is tokenized instead.
    fn truncate_from_part(
        &self,
        query: &str,
        document: &str,
        index: usize,
        max_length: usize,
        side: Side,
    ) -> Result<Option<EncodedPair>, Error> {
        // A token holds at least one character, and rarely more than eight
        // bytes: start there, and double while the part holds too few.
        const FIRST_BYTES_PER_TOKEN: usize = 8;
        let room = max_length.saturating_sub(self.added);
        if document.len() <= room * FIRST_BYTES_PER_TOKEN {
            return Ok(None);
        }
        let query = self
            .whole
            .encode_fast(query, false)
            .map_err(tokenizer_error(index))?;
        // The document side alone is cut only while the query leaves it room.
        let Some(keep) = room.checked_sub(query.len()).filter(|&keep| keep > 0) else {
            return Ok(None);
        };
        let mut bytes = (keep + 1) * FIRST_BYTES_PER_TOKEN;
        while bytes < document.len() {
            let part = match side {
                Side::Right => word_prefix(document, bytes),
                Side::Left => word_suffix(document, bytes),
            };
            let Some(part) = part else {
                return Ok(None);
            };
            let mut part = self
                .whole
                .encode_fast(part, false)
                .map_err(tokenizer_error(index))?;
            if holds_the_kept_tokens(&part, keep, side) {
                part.set_type_ids(vec![1; part.len()]);
                part.truncate(keep, 0, direction(side));
                part.take_overflowing();
                return Ok(Some(to_pair(&self.join(query, part, index)?, true)));
            }
            bytes *= 2;
        }
        Ok(None)
    }

    fn chunk(
        &self,
        query: Encoding,
        mut document: Encoding,
        index: usize,
        max_length: usize,
        plan: ChunkPlan,
    ) -> Result<Vec<EncodedPair>, Error> {
        let room = max_length
            .saturating_sub(self.added)
            .saturating_sub(query.len());
        let overlap = plan.overlap.unwrap_or(room / 4);
        if overlap >= room {
            return Err(Error::InvalidArgument(format!(
                "document {index} cannot be chunked: of the {max_length}-token window the query \
                 takes {} tokens and the template {}, leaving {room} per window for document \
                 text, which overlap_tokens ({overlap}) must be under; shorten the query or \
                 lower overlap_tokens",
                query.len(),
                self.added
            )));
        }
        let step = room - overlap;
        let mut windows = 1 + (document.len().saturating_sub(room)).div_ceil(step);
        let mut cut = false;
        if windows > plan.max_chunks && plan.keep_first {
            // The first max_chunks windows, whole: the rest is dropped.
            let keep = room + (plan.max_chunks.max(1) - 1) * step;
            document.truncate(keep, 0, TruncationDirection::Right);
            document.take_overflowing();
            windows = plan.max_chunks.max(1);
            cut = true;
        }
        if windows > plan.max_chunks {
            return Err(Error::TooLarge(format!(
                "document {index} is {} tokens: chunking needs {windows} windows of {room} \
                 tokens overlapping by {overlap}, over this server's limit of {} per document; \
                 shorten it, lower overlap_tokens, or truncate it instead \
                 (the limit is --max-chunks-per-document)",
                document.len(),
                plan.max_chunks
            )));
        }
        document.truncate(room, overlap, TruncationDirection::Right);
        let rest = document.take_overflowing();
        let mut pairs = std::iter::once(document)
            .chain(rest)
            .map(|window| Ok(to_pair(&self.join(query.clone(), window, index)?, false)))
            .collect::<Result<Vec<_>, Error>>()?;
        if let Some(last) = pairs.last_mut() {
            last.truncated = cut;
        }
        debug_assert_eq!(pairs.len(), windows);
        Ok(pairs)
    }
}

/// The longest prefix of `text` of at most `bytes` bytes that ends with a
/// word: just before a space (U+0020) that follows a character other than
/// whitespace. Every supported pre-tokenizer splits there, so the prefix's
/// tokens are the first tokens of the whole text. `None` when there is no
/// such place.
fn word_prefix(text: &str, bytes: usize) -> Option<&str> {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let mut cut = head.len();
    loop {
        let space = head[..cut].rfind(' ')?;
        let before = head[..space].chars().next_back();
        if before.is_some_and(|c| !c.is_whitespace()) {
            return Some(&head[..space]);
        }
        cut = space;
    }
}

/// The longest suffix of `text` of at most `bytes` bytes that starts with
/// a space (U+0020) between two characters other than whitespace: the
/// mirror of `word_prefix`. Its first word may be tokenized otherwise than
/// inside the whole text (`holds_the_kept_tokens` drops it); every word
/// after it is tokenized alike.
fn word_suffix(text: &str, bytes: usize) -> Option<&str> {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let mut from = 0;
    loop {
        let space = from + tail[from..].find(' ')?;
        let before = text[..start + space].chars().next_back();
        let after = tail[space + 1..].chars().next();
        if before.is_some_and(|c| !c.is_whitespace()) && after.is_some_and(|c| !c.is_whitespace()) {
            return Some(&tail[space..]);
        }
        from = space + 1;
    }
}

/// Whether `part` (a prefix or a suffix of the document) holds the tokens a
/// cut on `side` keeps: more than `keep` tokens and, for a suffix, none of
/// the kept ones from its first word, which may be tokenized otherwise than
/// inside the whole text.
fn holds_the_kept_tokens(part: &Encoding, keep: usize, side: Side) -> bool {
    if part.len() <= keep {
        return false;
    }
    match side {
        Side::Right => true,
        Side::Left => {
            let words = part.get_word_ids();
            let first_kept = part.len() - keep;
            words[first_kept].is_some() && words[first_kept] != words[0]
        }
    }
}

fn direction(side: Side) -> TruncationDirection {
    match side {
        Side::Right => TruncationDirection::Right,
        Side::Left => TruncationDirection::Left,
    }
}

fn tokenizer_error(index: usize) -> impl Fn(tokenizers::Error) -> Error {
    move |e| Error::Tokenizer(format!("document {index}: {e}"))
}

fn to_pair(encoding: &Encoding, truncated: bool) -> EncodedPair {
    EncodedPair {
        input_ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
        token_type_ids: encoding
            .get_type_ids()
            .iter()
            .map(|&id| i64::from(id))
            .collect(),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::{word_prefix, word_suffix};

    #[test]
    fn a_word_suffix_starts_at_a_space_between_words() {
        assert_eq!(word_suffix("the old town", 9), Some(" old town"));
        assert_eq!(word_suffix("the old town", 8), Some(" town"));
        assert_eq!(word_suffix("the old  town", 12), Some(" old  town"));
        assert_eq!(word_suffix("the old town", 4), None);
        assert_eq!(word_suffix("東京 タワー", 10), Some(" タワー"));
        assert_eq!(word_suffix("trailing ", 9), None);
    }

    #[test]
    fn a_word_prefix_ends_with_a_word_before_a_space() {
        assert_eq!(word_prefix("the old town", 9), Some("the old"));
        assert_eq!(word_prefix("the old town", 7), Some("the"));
        // A space after a space is no boundary: the run stays whole.
        assert_eq!(word_prefix("the  old town", 5), Some("the"));
        assert_eq!(word_prefix("a   b", 4), Some("a"));
        // Never inside a character, never without a word before the space.
        assert_eq!(word_prefix("東京 タワー", 4), None);
        assert_eq!(word_prefix("東京 タワー", 7), Some("東京"));
        assert_eq!(word_prefix(" leading", 8), None);
        assert_eq!(word_prefix("nospace", 5), None);
        // A no-break space is not a cut point (Metaspace splits on U+0020).
        assert_eq!(word_prefix("a\u{a0}b c", 5), Some("a\u{a0}b"));
    }
}
