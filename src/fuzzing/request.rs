//! The request-path target: what an untrusted client's bytes reach before
//! a model runs. A few header bytes choose the tokenizer, the server's
//! limits and the batch sizes; the rest is decoded as a protobuf
//! `RerankRequest` or `ScorePairsRequest` and taken through the server's own
//! conversion (`grpc::convert`), validation (`infer`), tokenizing with
//! truncation or chunking (`tokenize`, real `tokenizer.json` files), into a
//! `batcher::queue::Queue` and out in batches.
//!
//! The promises checked: nothing panics; a request is either refused with
//! an `Error` that maps to INVALID_ARGUMENT (a client-made error must never
//! read as INTERNAL), or it becomes pairs that each fit the window (special
//! tokens included), one or more per input in input order, truncated only
//! when the client allowed it, at most `--max-chunks-per-document` windows
//! per input; and every pair comes out of the queue in exactly one batch,
//! within the budget and the pair cap unless alone.
//!
//! Owns: this script and its checks, and a generator of well-formed
//! requests (seeds for the fuzzer, cases for the stable test). Must never:
//! reimplement validation or tokenizing (it calls the server's functions;
//! only the few lines of glue between them in `Infer` are repeated, in
//! `encode`), or run a model.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use prost::Message;

use super::Bytes;
use crate::batcher::queue::Queue;
use crate::config::InferConfig;
use crate::error::Error;
use crate::grpc::{convert, pb};
use crate::infer;
use crate::model::spec::ModelDir;
use crate::tokenize::{Abandon, EncodedRequest, Fit, Overflow, PairTokenizer};

/// The test models' folders the target tokenizes with (scripts/setup-models.sh):
/// WordPiece (BERT) and SentencePiece (XLM-R) tokenizers.
pub const MODELS: &[&str] = &["tiny-bert", "tiny-xlmr", "minilm-pair"];

/// A window far shorter than the models', so that short fuzzer inputs reach
/// truncation and chunking too.
const SHORT_WINDOW: usize = 16;

/// Bytes before the message: which message and tokenizer, the limits, the
/// batch sizes (`setup` reads at most this many).
const HEADER: usize = 32;

/// The tokenizers, loaded once per process.
pub struct RequestPath {
    /// Each model's tokenizer at its own window, then at `SHORT_WINDOW`.
    tokenizers: Vec<PairTokenizer>,
}

/// How one input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes are not the message (tonic answers before rerankd sees it).
    NotProtobuf,
    /// Refused with INVALID_ARGUMENT.
    Refused,
    /// Tokenized, queued and cut.
    Batched {
        pairs: usize,
        truncated: usize,
        chunked: bool,
    },
}

/// The server's limits and the queue's settings for one input.
#[derive(Debug, Clone)]
struct Setup {
    config: InferConfig,
    budget: usize,
    max_pairs: usize,
}

impl RequestPath {
    /// Loads the tokenizers of `MODELS` from `models` (the folder
    /// `RERANKD_TEST_MODELS` names).
    pub fn load(models: &Path) -> Result<Self, Error> {
        let mut tokenizers = Vec::new();
        for name in MODELS {
            let dir = ModelDir::open(&models.join(name))?;
            let file = dir.tokenizer_file();
            tokenizers.push(PairTokenizer::from_file(&file, dir.spec.max_length)?);
            tokenizers.push(PairTokenizer::from_file(&file, SHORT_WINDOW)?);
        }
        Ok(RequestPath { tokenizers })
    }

    /// Runs one input; panics on a broken promise.
    pub fn run(&self, data: &[u8]) -> Outcome {
        let (header, message) = data.split_at(HEADER.min(data.len()));
        let mut bytes = Bytes::new(header);
        let rerank = bytes.bool();
        let tokenizer = &self.tokenizers[usize::from(bytes.u8()) % self.tokenizers.len()];
        let setup = setup(&mut bytes);
        let encoded = if rerank {
            let Ok(request) = pb::RerankRequest::decode(message) else {
                return Outcome::NotProtobuf;
            };
            let inputs = request.documents.len();
            encode_rerank(tokenizer, &setup.config, request).map(|e| (e, inputs))
        } else {
            let Ok(request) = pb::ScorePairsRequest::decode(message) else {
                return Outcome::NotProtobuf;
            };
            let inputs = request.pairs.len();
            encode_pairs(tokenizer, &setup.config, request).map(|e| (e, inputs))
        };
        match encoded {
            Err(error) => {
                let text = error.to_string();
                let code = tonic::Status::from(error).code();
                assert_eq!(
                    code,
                    tonic::Code::InvalidArgument,
                    "a client's request was refused with {code:?}: {text}"
                );
                Outcome::Refused
            }
            Ok(((encoded, fit), inputs)) => {
                check_encoded(&encoded, fit, inputs, &setup.config);
                let outcome = Outcome::Batched {
                    pairs: encoded.pairs.len(),
                    truncated: encoded.truncated,
                    chunked: encoded.is_chunked(),
                };
                check_batches(&encoded, &setup);
                outcome
            }
        }
    }
}

fn setup(bytes: &mut Bytes) -> Setup {
    let defaults = InferConfig::default();
    let max_documents = match bytes.u8() % 4 {
        0 => bytes.in_range(1, 4),
        1 => bytes.in_range(1, 64),
        _ => defaults.max_documents,
    };
    let max_document_bytes = match bytes.u8() % 4 {
        0 => bytes.in_range(0, 64),
        1 => bytes.in_range(0, 4_096),
        _ => defaults.max_document_bytes,
    };
    let max_chunks_per_document = match bytes.u8() % 4 {
        0 => 1,
        1 => bytes.in_range(1, 8),
        _ => defaults.max_chunks_per_document,
    };
    Setup {
        config: InferConfig {
            max_documents,
            max_document_bytes,
            max_chunks_per_document,
            ..defaults
        },
        budget: bytes.in_range(0, 1 << 16),
        max_pairs: bytes.in_range(1, 64),
    }
}

/// A RerankRequest as `Infer::rerank` takes it to tokens: convert,
/// validate, fit to the model's window, encode.
fn encode_rerank(
    tokenizer: &PairTokenizer,
    config: &InferConfig,
    request: pb::RerankRequest,
) -> Result<(EncodedRequest, Fit), Error> {
    let query = convert::to_query(request, None)?;
    infer::validate(&query, config)?;
    let fit = query.long.fit(tokenizer.max_length(), config);
    let (abandon, _held) = Abandon::new(None);
    let encoded = tokenizer.encode_request(&query.query, &query.documents, fit, &abandon)?;
    Ok((encoded, fit))
}

/// A ScorePairsRequest as `Infer::score_pairs` takes it to tokens.
fn encode_pairs(
    tokenizer: &PairTokenizer,
    config: &InferConfig,
    request: pb::ScorePairsRequest,
) -> Result<(EncodedRequest, Fit), Error> {
    let query = convert::to_pairs_query(request, None)?;
    infer::validate_pairs(&query, config, tokenizer.max_length())?;
    let fit = query
        .long
        .fit(query.max_length.unwrap_or(tokenizer.max_length()), config);
    let (abandon, _held) = Abandon::new(None);
    let encoded = tokenizer.encode_pairs(&query.pairs, fit, &abandon)?;
    Ok((encoded, fit))
}

fn check_encoded(encoded: &EncodedRequest, fit: Fit, inputs: usize, config: &InferConfig) {
    assert_eq!(encoded.inputs, inputs, "one input per document or pair");
    assert_eq!(
        encoded.pairs.len(),
        encoded.owners.len(),
        "an owner per pair"
    );
    assert!(
        encoded.owners.windows(2).all(|w| w[0] <= w[1]),
        "owners ascend: {:?}",
        encoded.owners
    );
    let owned: BTreeSet<usize> = encoded.owners.iter().copied().collect();
    assert_eq!(
        owned,
        (0..inputs).collect(),
        "every input has a pair, and no other"
    );
    for (pair, &owner) in encoded.pairs.iter().zip(&encoded.owners) {
        assert!(
            pair.len() <= fit.max_length,
            "input {owner}: a pair of {} tokens in a window of {}",
            pair.len(),
            fit.max_length
        );
        assert!(!pair.is_empty(), "input {owner}: an empty pair");
        assert_eq!(pair.input_ids.len(), pair.token_type_ids.len());
        if !matches!(fit.overflow, Overflow::Truncate(_)) {
            assert!(!pair.truncated, "input {owner} truncated under {fit:?}");
        }
    }
    let most_windows = (0..inputs)
        .map(|input| encoded.owners.iter().filter(|&&o| o == input).count())
        .max()
        .unwrap_or(0);
    match fit.overflow {
        Overflow::Chunk(_) => assert!(
            most_windows <= config.max_chunks_per_document,
            "{most_windows} windows over the limit of {}",
            config.max_chunks_per_document
        ),
        _ => assert!(most_windows <= 1, "split without chunking"),
    }
    assert_eq!(
        encoded.tokens,
        encoded.pairs.iter().map(|p| p.len()).sum::<usize>(),
        "usage tokens"
    );
}

/// Every pair through the queue exactly once, each batch within its limits.
fn check_batches(encoded: &EncodedRequest, setup: &Setup) {
    let batcher = &setup.config.batcher;
    let mut queue = Queue::new(batcher.window_per_request, batcher.min_padding_efficiency)
        .with_batch_overhead(batcher.batch_overhead_tokens);
    let lengths: Vec<usize> = encoded.pairs.iter().map(|p| p.len()).collect();
    queue.push(0, Instant::now(), None, &lengths);
    let mut seen = vec![false; lengths.len()];
    while let Some(batch) = queue.cut(setup.budget, setup.max_pairs) {
        let lone = batch.items.len() == 1;
        assert!(
            lone || (batch.items.len() <= setup.max_pairs && batch.padded_tokens() <= setup.budget),
            "a batch over its limits ({} tokens, {} pairs): {batch:?}",
            setup.budget,
            setup.max_pairs
        );
        for item in &batch.items {
            assert_eq!(item.tokens, lengths[item.index], "{item:?}");
            assert!(
                !std::mem::replace(&mut seen[item.index], true),
                "twice: {item:?}"
            );
        }
    }
    assert!(seen.iter().all(|&s| s), "a pair never came out");
}

/// Up to `most_words` of `WORDS`, with assorted separators.
fn text(bytes: &mut Bytes, most_words: usize) -> String {
    let words = bytes.in_range(0, most_words);
    let separators = [" ", " ", " ", "", "  ", "\n"];
    (0..words)
        .map(|_| format!("{}{}", bytes.pick(WORDS), bytes.pick(&separators)))
        .collect()
}

/// Words and characters the generator builds texts from: ASCII, accents,
/// CJK, emoji, combining marks, controls and odd spaces.
const WORDS: &[&str] = &[
    "the",
    "old",
    "town",
    "river",
    "bank",
    "Zürich",
    "naïve",
    "東京",
    "タワー",
    "😀",
    "e\u{301}",
    "\u{0}",
    "\t",
    "\n",
    "\u{a0}",
    "\u{200b}",
    "\u{feff}",
    "[SEP]",
    "<s>",
    "</s>",
    "[CLS]",
    "[UNK]",
    "<mask>",
    "##ing",
    "▁",
    "a",
    "I",
    "؟",
    "\u{202e}",
    "𝔘𝔫𝔦",
    "-",
    "...",
];

/// A well-formed request of either kind, with the header bytes `run`
/// reads: a seed for the fuzzer and a case for the stable test. `seed`
/// picks everything.
pub fn generated(seed: u64) -> Vec<u8> {
    // About 1 KB of noise whatever the seed (one draw may be short).
    let noise: Vec<u8> = (0..8)
        .flat_map(|part| super::seeded_bytes(seed.wrapping_mul(8).wrapping_add(part), 256))
        .collect();
    let mut bytes = Bytes::new(&noise);
    // Which message and tokenizer; then, one time in four, limits from the
    // noise (often tight enough to refuse), else the defaults (selector 2)
    // and the budget and pair cap from the noise.
    let mut header: Vec<u8> = vec![bytes.u8(), bytes.u8()];
    if bytes.u8() % 4 != 0 {
        header.extend([2, 2, 2]);
    }
    header.extend((header.len()..HEADER).map(|_| bytes.u8()));
    let rerank = header[0] & 1 == 1;
    let long = |bytes: &mut Bytes| bytes.pick(&[3, 10, 40, 200]);
    let truncate = match bytes.u8() % 3 {
        0 => None,
        1 => Some(true),
        _ => Some(false),
    };
    // Now and then a value this server does not know.
    let truncation_side = bytes.pick(&[0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, -1]);
    let chunking = bytes.bool().then(|| pb::Chunking {
        overlap_tokens: bytes
            .bool()
            .then(|| bytes.pick(&[0, 1, 3, 8, 100, u32::MAX])),
        aggregate: bytes.pick(&[0, 0, 1, 1, 2, 2, 7]),
    });
    let count = bytes.pick(&[1, 1, 2, 3, 3, 5, 5, 9, 9, 0]);
    let mut message = if rerank {
        let query = format!(
            "{} {}",
            bytes.pick(&["", "q", "where"]),
            text(&mut bytes, 6)
        );
        let documents = (0..count)
            .map(|_| {
                let most = long(&mut bytes);
                text(&mut bytes, most)
            })
            .collect();
        pb::RerankRequest {
            query,
            documents,
            top_n: bytes.pick(&[0, 1, 100]),
            truncate,
            truncation_side,
            chunking,
            ..Default::default()
        }
        .encode_to_vec()
    } else {
        let pairs = (0..count)
            .map(|_| {
                let query = format!("{} {}", bytes.pick(&["", "q"]), text(&mut bytes, 6));
                let most = long(&mut bytes);
                pb::Pair {
                    query,
                    document: text(&mut bytes, most),
                }
            })
            .collect();
        pb::ScorePairsRequest {
            pairs,
            truncate,
            truncation_side,
            chunking,
            max_length: bytes.pick(&[0, 0, 3, 4, 5, 12, 64, 600]),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let mut input = header;
    input.append(&mut message);
    input
}
