//! `Infer`: one rerank request from validated text to ranked results —
//! tokenize, score through the shared batcher, fold windows of chunked
//! documents, sort, cut to top_n, normalise — and one ScorePairs request to
//! scores in input order.
//!
//! Owns: request validation, the ranking order (raw score descending, ties
//! in input order), usage/timing accounting, and a request's charge on the
//! in-flight byte budget (its text on arrival, its token ids once made,
//! held until it is answered); scoring goes through the score cache, when
//! on (hits are answered at once; only misses are submitted), then the
//! shared batcher. Must never: know about tonic or
//! protobuf (the gRPC layer converts), touch libtorch (the model thread does),
//! or tokenize on a tokio worker thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::aggregate::{Aggregate, Gather};
use crate::batcher::pace::TokenizePace;
use crate::batcher::scheduler::{Batcher, BatcherStats, Progress, RequestScores};
use crate::cache::{CacheStats, Keys, ScoreCache};
use crate::config::InferConfig;
use crate::error::Error;
use crate::inflight::{Charge, InflightBytes};
use crate::model::{Activation, DeviceSpec, Dtype, EncodedPair, ScoreError};
use crate::token_bound;
use crate::tokenize::{Abandon, ChunkPlan, EncodedRequest, Fit, Overflow, PairTokenizer, Side};

/// What the server runs, as `ModelInfo` reports it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub max_length: usize,
    /// One worker per entry, in `--devices` order.
    pub devices: Vec<DeviceSpec>,
    pub dtype: Dtype,
    pub mode: String,
    pub activation: Activation,
    pub architecture: String,
}

/// What to do with a document that makes a pair longer than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongDocuments {
    /// Cut it to the window; when false (and no chunking) the request fails.
    pub truncate: bool,
    /// Which end a cut removes.
    pub side: Side,
    /// Split it into overlapping windows instead; overrides `truncate`.
    pub chunking: Option<Chunking>,
    /// Keep at most this many tokens of each document (cut on `side` when
    /// truncating, otherwise at the end) before fitting the pair to the
    /// window; `None`: no limit of the request's own.
    pub max_document_tokens: Option<usize>,
}

impl Default for LongDocuments {
    fn default() -> Self {
        LongDocuments {
            truncate: true,
            side: Side::Right,
            chunking: None,
            max_document_tokens: None,
        }
    }
}

/// Split long documents into windows and score each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunking {
    /// Tokens shared by neighbouring windows; `None`: the default.
    pub overlap: Option<usize>,
    /// How window scores become the document's score.
    pub aggregate: Aggregate,
    /// Score a long document on at most its first this many windows (the
    /// rest is dropped, as Cohere's `max_chunks_per_doc` does); `None`: the
    /// server's `--max-chunks-per-document`, past which the request fails.
    /// At most that limit (`validate` checks).
    pub max_chunks: Option<usize>,
}

impl LongDocuments {
    pub(crate) fn overflow(&self, config: &InferConfig) -> Overflow {
        match (self.chunking, self.truncate) {
            (Some(chunking), _) => Overflow::Chunk(ChunkPlan {
                overlap: chunking.overlap,
                max_chunks: chunking
                    .max_chunks
                    .unwrap_or(config.max_chunks_per_document),
                keep_first: chunking.max_chunks.is_some(),
            }),
            (None, true) => Overflow::Truncate(self.side),
            (None, false) => Overflow::Refuse,
        }
    }

    /// How a request's pairs fit a window of `max_length` tokens.
    pub(crate) fn fit(&self, max_length: usize, config: &InferConfig) -> Fit {
        Fit {
            max_length,
            overflow: self.overflow(config),
            max_document_tokens: self.max_document_tokens,
        }
    }

    fn aggregate(&self) -> Aggregate {
        self.chunking.map(|c| c.aggregate).unwrap_or_default()
    }
}

/// A rerank request, already out of its wire format.
#[derive(Debug, Clone)]
pub struct RerankQuery {
    pub query: String,
    pub documents: Vec<String>,
    /// 0 means all.
    pub top_n: usize,
    pub return_documents: bool,
    pub raw_scores: bool,
    pub long: LongDocuments,
    /// When the client stops waiting (its gRPC deadline), if it said.
    pub deadline: Option<Instant>,
    /// Scheduling priority: lower is more urgent (0 normal).
    pub priority: i32,
}

/// Priorities a request may ask for: -1000 (most urgent) to 1000.
pub const PRIORITIES: std::ops::RangeInclusive<i64> = -1000..=1000;

/// A request's priority as the wire gave it, checked against `PRIORITIES`.
pub fn priority(value: i64) -> Result<i32, Error> {
    if !PRIORITIES.contains(&value) {
        return Err(Error::InvalidArgument(format!(
            "priority {value} is outside {} to {}; lower is more urgent, 0 is normal",
            PRIORITIES.start(),
            PRIORITIES.end()
        )));
    }
    Ok(value as i32)
}

/// A ScorePairs request, already out of its wire format.
#[derive(Debug, Clone)]
pub struct PairsQuery {
    /// (query, document), scored in this order.
    pub pairs: Vec<(String, String)>,
    /// Apply the model's activation (sigmoid, cosine01) to each score.
    pub normalize: bool,
    pub long: LongDocuments,
    /// A window shorter than the model's; `None` means the model's.
    pub max_length: Option<usize>,
    pub deadline: Option<Instant>,
    /// Scheduling priority: lower is more urgent (0 normal).
    pub priority: i32,
}

/// One score per pair, in request order.
#[derive(Debug, Clone)]
pub struct ScoredPairs {
    pub scores: Vec<f32>,
    pub usage: Usage,
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RankedDocument {
    pub index: usize,
    pub score: f32,
    pub document: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Pairs scored, every window of a chunked document counted.
    pub pairs: usize,
    pub tokens: usize,
    pub truncated: usize,
    /// Windows of the documents that were split.
    pub chunks: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub tokenize: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct Reranked {
    pub results: Vec<RankedDocument>,
    pub usage: Usage,
    pub timings: Timings,
}

/// Cheap to clone: every handler holds one.
#[derive(Clone)]
pub struct Infer {
    tokenizer: Arc<PairTokenizer>,
    batcher: Batcher,
    info: Arc<ModelInfo>,
    config: InferConfig,
    inflight: Arc<InflightBytes>,
    /// `--score-cache-mb`; `None` when off.
    cache: Option<Arc<ScoreCache>>,
    tokenizing: Arc<TokenizePace>,
}

/// When (deadline) and how urgently (priority) a request is to be scored.
type Schedule = (Option<Instant>, i32);

impl Infer {
    pub fn new(
        tokenizer: PairTokenizer,
        batcher: Batcher,
        info: ModelInfo,
        config: InferConfig,
    ) -> Self {
        // Scores of another model or precision must never hit: the salt
        // names both (and the window, which decides what a pair is).
        let salt = format!(
            "{}|{}|{}|{}|{}",
            info.name, info.architecture, info.mode, info.max_length, info.dtype
        );
        Infer {
            tokenizer: Arc::new(tokenizer),
            batcher,
            inflight: InflightBytes::new(config.max_inflight_bytes),
            cache: ScoreCache::new(config.score_cache_bytes, &salt).map(Arc::new),
            tokenizing: Arc::default(),
            info: Arc::new(info),
            config,
        }
    }

    /// The score cache's counters; `None` when it is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }

    /// The in-flight byte budget, which the transport also charges while a
    /// message arrives.
    pub fn inflight(&self) -> &Arc<InflightBytes> {
        &self.inflight
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The request limits and batching settings it serves with (TEI's
    /// `Info` and HTTP's `/info` report them).
    pub fn config(&self) -> &InferConfig {
        &self.config
    }

    pub fn stats(&self) -> BatcherStats {
        self.batcher.stats()
    }

    pub async fn rerank(&self, query: RerankQuery) -> Result<Reranked, Error> {
        self.rerank_inner(query, None).await
    }

    /// `rerank`, also sending each batch's raw scores of this request to
    /// `progress` (pair index, raw score) as the batch finishes.
    pub async fn rerank_with_progress(
        &self,
        query: RerankQuery,
        progress: Progress,
    ) -> Result<Reranked, Error> {
        self.rerank_inner(query, Some(progress)).await
    }

    async fn rerank_inner(
        &self,
        query: RerankQuery,
        progress: Option<Progress>,
    ) -> Result<Reranked, Error> {
        let started = Instant::now();
        validate(&query, &self.config)?;
        // The answer copies the documents when asked to return them.
        let copies = if query.return_documents { 2 } else { 1 };
        let mut charge = self
            .inflight
            .charge(copies * text_bytes(std::iter::once(&query.query).chain(&query.documents)))?;
        let RerankQuery {
            query,
            documents,
            top_n,
            return_documents,
            raw_scores,
            long,
            deadline,
            priority,
        } = query;

        let tokenizer = Arc::clone(&self.tokenizer);
        // Work that cannot finish in time is refused before it costs any
        // tokenizing (the batcher checks again with the exact count).
        let at_least = token_bound::rerank_tokens_at_least(
            &query,
            &documents,
            tokenizer.max_length(),
            long.max_document_tokens,
        );
        self.check_before_tokenizing(at_least, deadline, priority)
            .await?;
        let fit = long.fit(tokenizer.max_length(), &self.config);
        // Dropped with this future when the client cancels or times out:
        // the tokenizing thread then stops at the next document.
        let (abandon, _abandon_on_drop) = Abandon::new(deadline);
        let cache = self.cache.clone();
        let tokenizing = Instant::now();
        let (encoded, keys, documents) = tokenize(move || {
            let encoded = tokenizer.encode_request(&query, &documents, fit, &abandon)?;
            let keys = cache.map(|cache| cache.keys(&encoded.pairs));
            Ok((encoded, keys, documents))
        })
        .await?;
        self.tokenizing.on_request(at_least, tokenizing.elapsed());
        charge_encoded(&mut charge, &encoded)?;
        let (raw, usage, mut timings) = self
            .score_encoded(
                (encoded, keys),
                long.aggregate(),
                (deadline, priority),
                started,
                progress,
            )
            .await?;
        let activation = (!raw_scores).then_some(self.info.activation);
        let results = rank(&raw, top_n, activation)
            .into_iter()
            .map(|(index, score)| RankedDocument {
                index,
                score,
                document: return_documents.then(|| documents[index].clone()),
            })
            .collect();
        timings.total = started.elapsed();
        Ok(Reranked {
            results,
            usage,
            timings,
        })
    }

    /// Scores pairs that each carry their own query, in input order.
    pub async fn score_pairs(&self, query: PairsQuery) -> Result<ScoredPairs, Error> {
        let started = Instant::now();
        validate_pairs(&query, &self.config, self.info.max_length)?;
        let mut charge = self
            .inflight
            .charge(text_bytes(query.pairs.iter().flat_map(|(q, d)| [q, d])))?;
        let PairsQuery {
            pairs,
            normalize,
            long,
            max_length,
            deadline,
            priority,
        } = query;
        let tokenizer = Arc::clone(&self.tokenizer);
        let window = max_length.unwrap_or(tokenizer.max_length());
        let at_least = token_bound::pairs_tokens_at_least(
            pairs.iter().map(|(q, d)| (q, d)),
            window,
            long.max_document_tokens,
        );
        self.check_before_tokenizing(at_least, deadline, priority)
            .await?;
        let fit = long.fit(window, &self.config);
        let (abandon, _abandon_on_drop) = Abandon::new(deadline);
        let cache = self.cache.clone();
        let tokenizing = Instant::now();
        let (encoded, keys) = tokenize(move || {
            let encoded = tokenizer.encode_pairs(&pairs, fit, &abandon)?;
            let keys = cache.map(|cache| cache.keys(&encoded.pairs));
            Ok((encoded, keys))
        })
        .await?;
        self.tokenizing.on_request(at_least, tokenizing.elapsed());
        charge_encoded(&mut charge, &encoded)?;
        let (raw, usage, mut timings) = self
            .score_encoded(
                (encoded, keys),
                long.aggregate(),
                (deadline, priority),
                started,
                None,
            )
            .await?;
        let scores = if normalize {
            raw.iter().map(|&s| self.info.activation.apply(s)).collect()
        } else {
            raw
        };
        timings.total = started.elapsed();
        Ok(ScoredPairs {
            scores,
            usage,
            timings,
        })
    }

    /// Scores tokenized pairs through the batcher: raw scores per input in
    /// input order (all finite; a chunked input's windows folded with
    /// `aggregate`), usage, and timings so far (`total` left unset).
    /// `progress` gets (input, raw score) as each input's last pair is
    /// scored.
    async fn score_encoded(
        &self,
        (encoded, keys): (EncodedRequest, Option<Keys>),
        aggregate: Aggregate,
        schedule: Schedule,
        started: Instant,
        progress: Option<Progress>,
    ) -> Result<(Vec<f32>, Usage, Timings), Error> {
        let tokenize = started.elapsed();
        let usage = Usage {
            pairs: encoded.pairs.len(),
            tokens: encoded.tokens,
            truncated: encoded.truncated,
            chunks: encoded.chunks,
        };
        self.fits_the_queue(encoded.pairs.len())?;
        let lengths: Vec<usize> = encoded.pairs.iter().map(|p| p.len()).collect();
        let chunked = encoded.is_chunked();
        let EncodedRequest {
            pairs,
            owners,
            inputs,
            ..
        } = encoded;
        let scored = match progress {
            None => self.score_cached(pairs, keys, schedule, None).await?,
            Some(progress) if !chunked => {
                self.score_cached(pairs, keys, schedule, Some(progress))
                    .await?
            }
            Some(progress) => {
                let gather = Gather::new(owners.clone(), inputs, aggregate);
                self.score_gathering((pairs, keys), schedule, gather, progress)
                    .await?
            }
        };
        let raw = raw_scores(scored.scores, &owners, &lengths)?;
        let raw = if chunked {
            Gather::all(owners, inputs, aggregate, &raw)
        } else {
            raw
        };
        let timings = Timings {
            tokenize,
            queue: scored.queued,
            inference: scored.inference,
            total: Duration::ZERO,
        };
        Ok((raw, usage, timings))
    }

    /// Admission before tokenizing: a deadline that tokenizing alone (at
    /// the learned pace) would pass is refused here; otherwise the batcher
    /// is asked whether the rest, `at_least` tokens of work behind what is
    /// queued, fits in what the deadline leaves after tokenizing.
    async fn check_before_tokenizing(
        &self,
        at_least: usize,
        deadline: Option<Instant>,
        priority: i32,
    ) -> Result<(), Error> {
        let Some(deadline) = deadline.filter(|_| self.config.batcher.refuse_late) else {
            return self.batcher.check(at_least, deadline, priority).await;
        };
        let tokenizing = self.tokenizing.time_of(at_least);
        let left = deadline.saturating_duration_since(Instant::now());
        if tokenizing >= left {
            return Err(Error::TooLate {
                needed: tokenizing,
                own: tokenizing,
                left,
                retry_after: self.config.batcher.retry_after,
            });
        }
        self.batcher
            .check(at_least, Some(deadline - tokenizing), priority)
            .await
    }

    /// Refuses a request that alone would fill the queue: it could never be
    /// admitted, so waiting or retrying would not help.
    fn fits_the_queue(&self, pairs: usize) -> Result<(), Error> {
        let limit = self.config.batcher.max_queued_pairs;
        if pairs > limit {
            return Err(Error::TooLarge(format!(
                "the request makes {pairs} pairs after chunking, over this server's queue of \
                 {limit}; send fewer or shorter documents (the limit is --max-queued-pairs)"
            )));
        }
        Ok(())
    }

    /// Scores a chunked request's pairs, sending `progress` each document
    /// whose last window a batch scored, folded by `gather`, before the
    /// answer (as the batcher sends a batch's scores before its answer).
    async fn score_gathering(
        &self,
        (pairs, keys): (Vec<EncodedPair>, Option<Keys>),
        schedule: Schedule,
        mut gather: Gather,
        progress: Progress,
    ) -> Result<RequestScores, Error> {
        let (windows, mut scored_windows) = mpsc::unbounded_channel();
        let score = self.score_cached(pairs, keys, schedule, Some(windows));
        tokio::pin!(score);
        let mut forward = |batch: Vec<(usize, f32)>| {
            let done = gather.add(batch);
            if !done.is_empty() {
                // A receiver that has gone is the caller's business.
                let _ = progress.send(done);
            }
        };
        let answer = loop {
            tokio::select! {
                biased;
                Some(batch) = scored_windows.recv() => forward(batch),
                answer = &mut score => break answer,
            }
        };
        while let Ok(batch) = scored_windows.try_recv() {
            forward(batch);
        }
        answer
    }

    /// Scores `pairs` through the cache, when on: the pairs it holds are
    /// answered at once (and sent to `progress` first), only the others
    /// go to the batcher (their progress indices mapped back to `pairs`),
    /// and what the batcher scores is stored. Without a cache (or keys),
    /// the batcher alone.
    async fn score_cached(
        &self,
        pairs: Vec<EncodedPair>,
        keys: Option<Keys>,
        (deadline, priority): Schedule,
        progress: Option<Progress>,
    ) -> Result<RequestScores, Error> {
        let (Some(cache), Some(keys)) = (&self.cache, keys) else {
            return match progress {
                None => self.batcher.score(pairs, deadline, priority).await,
                Some(progress) => {
                    self.batcher
                        .score_with_progress(pairs, deadline, priority, progress)
                        .await
                }
            };
        };
        let found = cache.lookup(&keys);
        let missing: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        if let Some(progress) = &progress {
            let hits: Vec<(usize, f32)> = found
                .iter()
                .enumerate()
                .filter_map(|(i, hit)| hit.map(|score| (i, score)))
                .collect();
            if !hits.is_empty() {
                let _ = progress.send(hits);
            }
        }
        let mut scores: Vec<Result<f32, ScoreError>> = found
            .iter()
            .map(|hit| hit.ok_or_else(|| ScoreError::Failed("not scored".into())))
            .collect();
        if missing.is_empty() {
            return Ok(RequestScores {
                scores,
                queued: Duration::ZERO,
                inference: Duration::ZERO,
            });
        }
        let mut pairs: Vec<Option<EncodedPair>> = pairs.into_iter().map(Some).collect();
        let submitted: Vec<EncodedPair> = missing
            .iter()
            .map(|&i| pairs[i].take().expect("each pair is submitted once"))
            .collect();
        let answer = match progress {
            None => self.batcher.score(submitted, deadline, priority).await,
            Some(progress) => {
                let (partial, mut scored) = mpsc::unbounded_channel();
                let score = self
                    .batcher
                    .score_with_progress(submitted, deadline, priority, partial);
                tokio::pin!(score);
                let forward = |batch: Vec<(usize, f32)>| {
                    let batch = batch.into_iter().map(|(i, s)| (missing[i], s)).collect();
                    let _ = progress.send(batch);
                };
                let answer = loop {
                    tokio::select! {
                        biased;
                        Some(batch) = scored.recv() => forward(batch),
                        answer = &mut score => break answer,
                    }
                };
                while let Ok(batch) = scored.try_recv() {
                    forward(batch);
                }
                answer
            }
        }?;
        cache.insert(
            &keys,
            missing
                .iter()
                .zip(&answer.scores)
                .filter_map(|(&i, score)| score.as_ref().ok().map(|&s| (i, s))),
        );
        for (&i, score) in missing.iter().zip(answer.scores) {
            scores[i] = score;
        }
        Ok(RequestScores {
            scores,
            queued: answer.queued,
            inference: answer.inference,
        })
    }
}

/// What a `String` costs beyond its bytes (pointer, capacity, length).
const STRING_OVERHEAD: usize = std::mem::size_of::<String>();

/// Bytes of request text, as held in memory.
fn text_bytes<'a>(texts: impl IntoIterator<Item = &'a String>) -> usize {
    texts.into_iter().map(|t| t.len() + STRING_OVERHEAD).sum()
}

/// Adds a request's token ids to its charge: two i64 a token (ids and
/// token types) and, a pair, its vectors and its owner.
fn charge_encoded(charge: &mut Charge, encoded: &EncodedRequest) -> Result<(), Error> {
    let per_pair = std::mem::size_of::<EncodedPair>() + std::mem::size_of::<usize>();
    charge.grow(encoded.tokens * 2 * std::mem::size_of::<i64>() + encoded.pairs.len() * per_pair)
}

/// Runs tokenizer work on a blocking thread, never on a tokio worker.
async fn tokenize<T, F>(work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "the tokenizing task failed");
        Error::Tokenizer("tokenizing the request failed unexpectedly".into())
    })?
}

/// At most `--max-documents` documents (or pairs) per request.
/// A request's raw scores, pair by pair, or the error of its first failed
/// or non-finite pair, named by its input (`owners`) and length.
fn raw_scores(
    scores: Vec<Result<f32, ScoreError>>,
    owners: &[usize],
    lengths: &[usize],
) -> Result<Vec<f32>, Error> {
    let raw = scores
        .into_iter()
        .enumerate()
        .map(|(pair, result)| {
            result.map_err(|error| match error {
                ScoreError::OutOfMemory(message) => Error::OutOfMemory {
                    index: owners[pair],
                    tokens: lengths[pair],
                    message,
                },
                ScoreError::Failed(message) => Error::Inference(message),
                // The batcher fails such a request whole (Error::WorkerOut).
                error @ ScoreError::DeviceFailed(_) => Error::Unavailable(error.to_string()),
            })
        })
        .collect::<Result<Vec<f32>, Error>>()?;
    if let Some(pair) = raw.iter().position(|s| !s.is_finite()) {
        return Err(Error::Inference(format!(
            "the model returned a non-finite score ({}) for document {}",
            raw[pair], owners[pair]
        )));
    }
    Ok(raw)
}

fn within_limit(count: usize, what: &str, config: &InferConfig) -> Result<(), Error> {
    if count > config.max_documents {
        return Err(Error::TooLarge(format!(
            "{count} {what} is over this server's limit of {} per request; split the request \
             (the limit is --max-documents)",
            config.max_documents
        )));
    }
    Ok(())
}

/// At most `--max-document-bytes` per text.
fn not_too_long(text: &str, what: &str, config: &InferConfig) -> Result<(), Error> {
    if text.len() > config.max_document_bytes {
        return Err(Error::TooLarge(format!(
            "{what} is {} bytes, over this server's limit of {} per text; shorten it \
             (the limit is --max-document-bytes)",
            text.len(),
            config.max_document_bytes
        )));
    }
    Ok(())
}

pub(crate) fn validate_pairs(
    query: &PairsQuery,
    config: &InferConfig,
    window: usize,
) -> Result<(), Error> {
    if query.pairs.is_empty() {
        return Err(Error::InvalidArgument(
            "pairs is empty; send at least one (query, document) pair".into(),
        ));
    }
    within_limit(query.pairs.len(), "pairs", config)?;
    for (index, (q, document)) in query.pairs.iter().enumerate() {
        not_too_long(q, &format!("pair {index}'s query"), config)?;
        not_too_long(document, &format!("pair {index}'s document"), config)?;
    }
    if let Some(index) = query.pairs.iter().position(|(q, _)| q.trim().is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "pair {index} has an empty query; every pair needs the text to score against"
        )));
    }
    if let Some(length) = query.max_length {
        if length > window {
            return Err(Error::InvalidArgument(format!(
                "max_length {length} is over the model's window of {window} tokens; \
                 send 0 for the model's window or a smaller value"
            )));
        }
        if length < 4 {
            return Err(Error::InvalidArgument(format!(
                "max_length {length} leaves no room for a pair and its special tokens; \
                 send 0 for the model's window or at least 4"
            )));
        }
    }
    validate_long(&query.long, config)
}

/// The long-document options a request may ask for.
fn validate_long(long: &LongDocuments, config: &InferConfig) -> Result<(), Error> {
    if long.max_document_tokens == Some(0) {
        return Err(Error::InvalidArgument(
            "max_tokens_per_document is 0; send at least 1, or leave it unset for no limit".into(),
        ));
    }
    if let Some(max_chunks) = long.chunking.and_then(|c| c.max_chunks) {
        if max_chunks == 0 || max_chunks > config.max_chunks_per_document {
            return Err(Error::InvalidArgument(format!(
                "max_chunks_per_doc {max_chunks} is not between 1 and this server's limit of \
                 {} windows per document (--max-chunks-per-document)",
                config.max_chunks_per_document
            )));
        }
    }
    Ok(())
}

pub(crate) fn validate(query: &RerankQuery, config: &InferConfig) -> Result<(), Error> {
    if query.query.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "query is empty; send the text to rank the documents against".into(),
        ));
    }
    if query.documents.is_empty() {
        return Err(Error::InvalidArgument(
            "documents is empty; send at least one document to rank".into(),
        ));
    }
    within_limit(query.documents.len(), "documents", config)?;
    not_too_long(&query.query, "the query", config)?;
    for (index, document) in query.documents.iter().enumerate() {
        not_too_long(document, &format!("document {index}"), config)?;
    }
    validate_long(&query.long, config)
}

/// `(index, score)` best first by raw score, ties in input order, cut to
/// `top_n` (0 = all), with `activation` applied after ranking: sigmoid
/// saturates at 1.0 in f32, so ranking normalised scores could reorder.
/// Scores must be finite.
pub(crate) fn rank(raw: &[f32], top_n: usize, activation: Option<Activation>) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = raw.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_n > 0 {
        ranked.truncate(top_n);
    }
    if let Some(activation) = activation {
        for (_, score) in &mut ranked {
            *score = activation.apply(*score);
        }
    }
    ranked
}

/// Runs a request's work until its deadline (gRPC's `grpc-timeout`, or the
/// HTTP API's request timeout). When the deadline passes first the work is
/// dropped, which closes its reply channel: the batcher then drops whatever
/// of it is still queued, and the caller gets `Error::DeadlineExceeded`.
pub async fn within<T>(
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or(Err(Error::DeadlineExceeded)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_its_deadline_is_dropped_with_deadline_exceeded() {
        let deadline = Some(Instant::now() + Duration::from_millis(10));
        let never = std::future::pending::<Result<(), Error>>();
        assert!(matches!(
            within(deadline, never).await,
            Err(Error::DeadlineExceeded)
        ));
        assert_eq!(within(deadline, async { Ok(7) }).await.unwrap(), 7);
    }

    #[test]
    fn ranking_orders_cuts_and_normalises() {
        let check = |raw: &[f32], top_n, activation, expected: &[(usize, f32)]| {
            assert_eq!(
                rank(raw, top_n, activation),
                expected,
                "{raw:?} top {top_n}"
            );
        };
        check(&[0.1, 0.9, 0.5], 0, None, &[(1, 0.9), (2, 0.5), (0, 0.1)]);
        check(&[0.1, 0.9, 0.5], 2, None, &[(1, 0.9), (2, 0.5)]);
        check(&[0.1, 0.9, 0.5], 10, None, &[(1, 0.9), (2, 0.5), (0, 0.1)]);
        check(&[0.3, 0.3, 0.7], 0, None, &[(2, 0.7), (0, 0.3), (1, 0.3)]);
        check(
            &[0.0, 1.0],
            0,
            Some(Activation::Cosine01),
            &[(1, 1.0), (0, 0.5)],
        );
        check(&[0.0], 0, Some(Activation::Sigmoid), &[(0, 0.5)]);
        // Both saturate to 1.0 after the sigmoid; the raw order still holds.
        check(
            &[20.0, 30.0],
            0,
            Some(Activation::Sigmoid),
            &[(1, 1.0), (0, 1.0)],
        );
    }

    #[test]
    fn validation_names_the_field() {
        let query = |text: &str, documents: &[&str]| RerankQuery {
            query: text.into(),
            documents: documents.iter().map(|d| d.to_string()).collect(),
            top_n: 0,
            return_documents: false,
            raw_scores: false,
            long: LongDocuments::default(),
            deadline: None,
            priority: 0,
        };
        let config = InferConfig {
            max_documents: 2,
            ..InferConfig::default()
        };
        let message = |q: RerankQuery| validate(&q, &config).unwrap_err().to_string();
        assert!(message(query(" \n", &["a"])).contains("query is empty"));
        assert!(message(query("q", &[])).contains("documents is empty"));
        assert!(message(query("q", &["a", "b", "c"])).contains("3 documents is over"));
        assert!(validate(&query("q", &["", "b"]), &config).is_ok());
        let config = InferConfig {
            max_document_bytes: 4,
            ..InferConfig::default()
        };
        let error = validate(&query("q", &["abcd", "abcde"]), &config).unwrap_err();
        assert!(error
            .to_string()
            .contains("document 1 is 5 bytes, over this server's limit of 4"));
        assert!(validate(&query("abcd", &["abcd"]), &config).is_ok());
    }
}
