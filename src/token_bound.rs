//! A lower bound on the tokens a request will make, from its text alone, so
//! admission can refuse work that cannot finish in time before it costs any
//! tokenizing.
//!
//! Owns: the bound. Every whitespace-separated word makes at least one
//! token with any of the tokenizers rerankd serves (WordPiece, BPE and
//! SentencePiece all split on whitespace first), a pair adds at least two
//! special tokens, and no pair is longer than the window; a document limit
//! (`max_tokens_per_document`) caps its words. Words are counted only up to
//! the window, so the bound costs at most a window's words per document,
//! never a whole large text. Must never: tokenize, overestimate (a request
//! refused on this bound must be one the exact count would refuse too), or
//! allocate per word.

/// Special tokens every pair has at least: a classifier and a separator.
const SPECIAL_TOKENS_AT_LEAST: usize = 2;

/// Words in `text`, counting at most `cap`.
fn words_up_to(text: &str, cap: usize) -> usize {
    text.split_whitespace().take(cap).count()
}

/// At least how many tokens the pairs of `query` with each of `documents`
/// make in all, with a window of `window` tokens and at most
/// `max_document_tokens` of each document.
pub fn rerank_tokens_at_least<'a>(
    query: &str,
    documents: impl IntoIterator<Item = &'a String>,
    window: usize,
    max_document_tokens: Option<usize>,
) -> usize {
    let query_words = words_up_to(query, window);
    documents
        .into_iter()
        .map(|document| pair_at_least(query_words, document, window, max_document_tokens))
        .sum()
}

/// At least how many tokens `pairs`, each with its own query, make.
pub fn pairs_tokens_at_least<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    window: usize,
    max_document_tokens: Option<usize>,
) -> usize {
    pairs
        .into_iter()
        .map(|(query, document)| {
            pair_at_least(
                words_up_to(query, window),
                document,
                window,
                max_document_tokens,
            )
        })
        .sum()
}

fn pair_at_least(
    query_words: usize,
    document: &str,
    window: usize,
    max_document_tokens: Option<usize>,
) -> usize {
    let cap = max_document_tokens.unwrap_or(window).min(window);
    let document_words = words_up_to(document, cap);
    (query_words + document_words + SPECIAL_TOKENS_AT_LEAST).min(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_words_up_to_the_window_and_the_document_limit() {
        let documents = vec![
            "one two three".to_string(),
            "word ".repeat(10_000),
            String::new(),
        ];
        // 2 + 3 + 2; the long document fills the window of 64; the empty one
        // is the query and special tokens.
        assert_eq!(
            rerank_tokens_at_least("a query", &documents, 64, None),
            7 + 64 + 4
        );
        // A document limit of 10 tokens caps the long one at 2 + 10 + 2.
        assert_eq!(
            rerank_tokens_at_least("a query", &documents, 64, Some(10)),
            7 + 14 + 4
        );
        let pairs = [("q".to_string(), "d e".to_string())];
        assert_eq!(
            pairs_tokens_at_least(pairs.iter().map(|(q, d)| (q, d)), 512, None),
            5
        );
    }
}
