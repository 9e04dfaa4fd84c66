//! The fake `Scorer` for the batcher's unit tests (and only those): its
//! memory is a padded-token limit that a test can move while it runs, and its
//! score of a row depends on that row alone, so any mix-up of rows shows.
//!
//! Must never: be compiled outside `cfg(test)`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::model::{EncodedPair, PaddedBatch, ScoreError, Scorer};

pub struct FakeScorer {
    /// Batches above this many padded tokens run out of memory.
    pub limit: Arc<AtomicUsize>,
    /// When set, every call fails with this error instead.
    pub fail_with: Option<ScoreError>,
    /// When set, every call first waits for a message or for the sender to
    /// be dropped: a test holds the model busy with it.
    pub gate: Option<std::sync::mpsc::Receiver<()>>,
    pub calls: usize,
}

impl FakeScorer {
    pub fn with_limit(limit: usize) -> Self {
        FakeScorer {
            limit: Arc::new(AtomicUsize::new(limit)),
            fail_with: None,
            gate: None,
            calls: 0,
        }
    }

    /// The score of each row: a function of its real tokens only.
    pub fn expected_scores(batch: &PaddedBatch) -> Vec<f32> {
        batch
            .input_ids
            .chunks(batch.padded_len.max(1))
            .zip(batch.attention_mask.chunks(batch.padded_len.max(1)))
            .take(batch.pairs)
            .map(|(ids, mask)| {
                ids.iter()
                    .zip(mask)
                    .filter(|(_, &m)| m != 0)
                    .map(|(&id, _)| id as f32)
                    .sum::<f32>()
            })
            .collect()
    }
}

impl Scorer for FakeScorer {
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
        self.calls += 1;
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        if let Some(error) = &self.fail_with {
            return Err(error.clone());
        }
        let limit = self.limit.load(Ordering::SeqCst);
        if batch.padded_tokens() > limit {
            return Err(ScoreError::OutOfMemory(format!(
                "fake: {} padded tokens over the limit of {limit}",
                batch.padded_tokens()
            )));
        }
        Ok(Self::expected_scores(batch))
    }
}

/// A batch whose row `i` has `lengths[i]` tokens with distinct ids.
pub fn batch_of(lengths: &[usize]) -> PaddedBatch {
    let pairs: Vec<EncodedPair> = lengths
        .iter()
        .enumerate()
        .map(|(row, &length)| EncodedPair {
            input_ids: (0..length).map(|t| (row * 1000 + t + 1) as i64).collect(),
            token_type_ids: vec![0; length],
            truncated: false,
        })
        .collect();
    let rows: Vec<&EncodedPair> = pairs.iter().collect();
    PaddedBatch::new(&rows, 0, true)
}
