//! `PairTokenizer`: (query, document) text to model token ids, through the
//! model directory's `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Owns: the pair template (whatever the tokenizer's post-processor says:
//! `[CLS] q [SEP] d [SEP]` for BERT, `<s> q </s></s> d </s>` for XLM-R) and
//! the truncation rule: cut the document side first, and only when the query
//! alone leaves no room, cut the longest side. Must never: pad (batches pad),
//! run on a tokio worker thread (it is CPU work: callers use blocking
//! threads), or truncate silently when the client said not to.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::Error;
use crate::model::EncodedPair;

/// A tokenizer that encodes pairs for one model window.
#[derive(Clone)]
pub struct PairTokenizer {
    /// No truncation: tells the true length of a pair.
    whole: Tokenizer,
    /// Truncates only the document.
    cut_document: Tokenizer,
    /// Truncates the longest side, for queries that fill the window alone.
    cut_longest: Tokenizer,
    max_length: usize,
}

/// The pairs of one request, tokenized.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub pairs: Vec<EncodedPair>,
    /// Tokens over all pairs, after truncation.
    pub tokens: usize,
    /// Pairs that were truncated.
    pub truncated: usize,
}

impl EncodedRequest {
    fn new(pairs: Vec<EncodedPair>) -> Self {
        EncodedRequest {
            tokens: pairs.iter().map(EncodedPair::len).sum(),
            truncated: pairs.iter().filter(|p| p.truncated).count(),
            pairs,
        }
    }
}

impl PairTokenizer {
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self, Error> {
        let mut whole = Tokenizer::from_file(path).map_err(|e| Error::ModelDir {
            path: path.to_path_buf(),
            reason: format!("tokenizer.json cannot be loaded: {e}"),
        })?;
        whole.with_padding(None);
        whole.with_truncation(None).map_err(|e| Error::ModelDir {
            path: path.to_path_buf(),
            reason: format!("tokenizer.json rejects turning truncation off: {e}"),
        })?;
        Self::from_whole(whole, max_length).map_err(|e| Error::ModelDir {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The same tokenizer with a shorter window, for a request that asks
    /// for one (ScorePairs' max_length). Clones the vocabulary: CPU work.
    pub fn with_max_length(&self, max_length: usize) -> Result<Self, Error> {
        Self::from_whole(self.whole.clone(), max_length)
    }

    fn from_whole(whole: Tokenizer, max_length: usize) -> Result<Self, Error> {
        let with_strategy = |strategy| -> Result<Tokenizer, Error> {
            let mut tokenizer = whole.clone();
            tokenizer
                .with_truncation(Some(TruncationParams {
                    direction: TruncationDirection::Right,
                    max_length,
                    strategy,
                    stride: 0,
                }))
                .map_err(|e| {
                    Error::Tokenizer(format!("cannot truncate to {max_length} tokens: {e}"))
                })?;
            Ok(tokenizer)
        };
        Ok(PairTokenizer {
            cut_document: with_strategy(TruncationStrategy::OnlySecond)?,
            cut_longest: with_strategy(TruncationStrategy::LongestFirst)?,
            whole,
            max_length,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Encodes `(query, document)` for every document.
    pub fn encode_request(
        &self,
        query: &str,
        documents: &[String],
        truncate: bool,
    ) -> Result<EncodedRequest, Error> {
        let pairs = documents
            .iter()
            .enumerate()
            .map(|(index, document)| self.encode_pair(query, document, index, truncate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncodedRequest::new(pairs))
    }

    /// Encodes pairs that each carry their own query (ScorePairs).
    pub fn encode_pairs(
        &self,
        pairs: &[(String, String)],
        truncate: bool,
    ) -> Result<EncodedRequest, Error> {
        let encoded = pairs
            .iter()
            .enumerate()
            .map(|(index, (query, document))| self.encode_pair(query, document, index, truncate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncodedRequest::new(encoded))
    }

    /// Encodes one pair; `index` names the document in errors.
    pub fn encode_pair(
        &self,
        query: &str,
        document: &str,
        index: usize,
        truncate: bool,
    ) -> Result<EncodedPair, Error> {
        let tokenizer_error =
            |e: tokenizers::Error| Error::Tokenizer(format!("document {index}: {e}"));
        let encoding = self
            .whole
            .encode_fast((query, document), true)
            .map_err(tokenizer_error)?;
        if encoding.len() <= self.max_length {
            return Ok(to_pair(&encoding, false));
        }
        if !truncate {
            return Err(Error::PairTooLong {
                index,
                tokens: encoding.len(),
                max_length: self.max_length,
            });
        }
        let encoding = match self.cut_document.encode_fast((query, document), true) {
            Ok(encoding) => encoding,
            // The query alone does not leave room for the document.
            Err(_) => self
                .cut_longest
                .encode_fast((query, document), true)
                .map_err(tokenizer_error)?,
        };
        Ok(to_pair(&encoding, true))
    }
}

fn to_pair(encoding: &tokenizers::Encoding, truncated: bool) -> EncodedPair {
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
