//! The fake `Scorer` for the batcher's unit tests (and only those): its
//! memory is a padded-token limit that a test can move while it runs, and its
//! score of a row depends on that row alone, so any mix-up of rows shows.
//! Optionally it also drives a simulated device (`FakeMemory`) that a
//! `FakeProbe` reads, the way a caching allocator's reserved memory looks
//! through NVML: used memory only grows, to the largest batch scored so far.
//!
//! Must never: be compiled outside `cfg(test)`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::gpu::{MemoryProbe, MemoryReading, ProbeError};
use crate::model::{EncodedPair, PaddedBatch, ScoreError, Scorer};

pub struct FakeScorer {
    /// Batches above this many padded tokens run out of memory.
    pub limit: Arc<AtomicUsize>,
    /// When set, every call fails with this error instead.
    pub fail_with: Option<ScoreError>,
    /// When set, every call fails with `ScoreError::Failed` while this
    /// holds true: a test turns a scorer's failures on and off.
    pub fail_while: Option<Arc<AtomicBool>>,
    /// When set, every call first waits for a message or for the sender to
    /// be dropped: a test holds the model busy with it.
    pub gate: Option<std::sync::mpsc::Receiver<()>>,
    pub calls: usize,
    /// When set, the device breaks after this many batches are scored: every
    /// later call fails with a sticky CUDA error (`ScoreError::DeviceFailed`).
    pub break_after: Option<usize>,
    /// Batches scored so far.
    pub scored: usize,
    /// When set, every batch scored raises this simulated device's peak.
    pub memory: Option<Arc<FakeMemory>>,
}

impl FakeScorer {
    pub fn with_limit(limit: usize) -> Self {
        FakeScorer {
            limit: Arc::new(AtomicUsize::new(limit)),
            fail_with: None,
            fail_while: None,
            gate: None,
            calls: 0,
            break_after: None,
            scored: 0,
            memory: None,
        }
    }

    /// The same scorer, also driving the simulated device `memory`.
    pub fn with_memory(mut self, memory: Arc<FakeMemory>) -> Self {
        self.memory = Some(memory);
        self
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
        if self
            .fail_while
            .as_ref()
            .is_some_and(|failing| failing.load(Ordering::SeqCst))
        {
            return Err(ScoreError::Failed("fake: the model failed".into()));
        }
        if self.break_after.is_some_and(|after| self.scored >= after) {
            return Err(ScoreError::DeviceFailed(
                "fake: CUDA error: an illegal memory access was encountered".into(),
            ));
        }
        let limit = self.limit.load(Ordering::SeqCst);
        if batch.padded_tokens() > limit {
            return Err(ScoreError::OutOfMemory(format!(
                "fake: {} padded tokens over the limit of {limit}",
                batch.padded_tokens()
            )));
        }
        if let Some(memory) = &self.memory {
            memory.ran(batch.padded_tokens());
        }
        self.scored += 1;
        Ok(Self::expected_scores(batch))
    }
}

/// A simulated device under a caching allocator: used memory is a fixed
/// base, plus a one-off workspace once any batch has run, plus bytes per
/// padded token times the largest batch run so far (reserved blocks are kept,
/// so used memory never falls).
pub struct FakeMemory {
    pub total_bytes: u64,
    /// Used before any batch (the weights, the CUDA context).
    pub base_bytes: u64,
    /// Taken by the first batch on top of its activations, then kept
    /// (cuBLAS workspace and the like).
    pub workspace_bytes: u64,
    pub bytes_per_token: u64,
    /// The largest batch run so far, in padded tokens (0: none yet).
    pub peak_tokens: AtomicUsize,
}

impl FakeMemory {
    pub fn new(
        total_bytes: u64,
        base_bytes: u64,
        workspace_bytes: u64,
        bytes_per_token: u64,
    ) -> Self {
        FakeMemory {
            total_bytes,
            base_bytes,
            workspace_bytes,
            bytes_per_token,
            peak_tokens: AtomicUsize::new(0),
        }
    }

    /// Records a batch of `padded_tokens` that ran.
    pub fn ran(&self, padded_tokens: usize) {
        self.peak_tokens.fetch_max(padded_tokens, Ordering::SeqCst);
    }

    pub fn used_bytes(&self) -> u64 {
        let peak = self.peak_tokens.load(Ordering::SeqCst) as u64;
        let workspace = if peak > 0 { self.workspace_bytes } else { 0 };
        self.base_bytes + workspace + peak * self.bytes_per_token
    }

    pub fn reading(&self) -> MemoryReading {
        MemoryReading {
            free_bytes: self.total_bytes.saturating_sub(self.used_bytes()),
            total_bytes: self.total_bytes,
        }
    }
}

/// A `MemoryProbe` over a `FakeMemory`.
pub struct FakeProbe {
    pub memory: Arc<FakeMemory>,
    /// Reads made so far.
    pub reads: usize,
    /// When set, the read with this index (0 is the first) and every later
    /// one fail.
    pub fail_from_read: Option<usize>,
}

impl FakeProbe {
    pub fn new(memory: Arc<FakeMemory>) -> Self {
        FakeProbe {
            memory,
            reads: 0,
            fail_from_read: None,
        }
    }
}

impl MemoryProbe for FakeProbe {
    fn read(&mut self) -> Result<MemoryReading, ProbeError> {
        let index = self.reads;
        self.reads += 1;
        match self.fail_from_read {
            Some(first) if index >= first => Err(ProbeError(format!("fake: read {index} fails"))),
            _ => Ok(self.memory.reading()),
        }
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
