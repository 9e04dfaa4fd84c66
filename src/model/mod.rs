//! The model: its directory, its precision, its inputs, and the `Scorer`
//! seam through which the rest of the server runs it.
//!
//! Owns: the `Scorer` trait and its error type. Must never: depend on tonic
//! or on the request path; a `Scorer` is synchronous and lives on the model
//! thread.

pub mod batch;
pub mod golden;
pub mod precision;
pub mod spec;
pub mod thread;
pub mod torch;
pub mod warmup;

pub use batch::{EncodedPair, PaddedBatch};
pub use precision::{DeviceSpec, Dtype, DtypeRequest};
pub use spec::{Activation, ModelDir, ModelSpec};

/// Why a batch could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    /// The device ran out of memory; a smaller batch may fit.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// Anything else the model or libtorch reported.
    #[error("{0}")]
    Failed(String),
}

impl ScoreError {
    /// Classifies a libtorch error message.
    pub fn from_torch_message(message: String) -> Self {
        let lower = message.to_ascii_lowercase();
        if lower.contains("out of memory") || lower.contains("can't allocate memory") {
            ScoreError::OutOfMemory(message)
        } else {
            ScoreError::Failed(message)
        }
    }
}

/// Runs the model on padded batches: the seam between the server and
/// libtorch. Synchronous, and owned by the model thread.
pub trait Scorer {
    /// One raw score per row of `batch`, in row order.
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_messages_are_classified() {
        let check = |message: &str, oom: bool| {
            let error = ScoreError::from_torch_message(message.into());
            assert_eq!(
                matches!(error, ScoreError::OutOfMemory(_)),
                oom,
                "{message}"
            );
        };
        check("CUDA out of memory. Tried to allocate 2.00 GiB", true);
        check(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory",
            true,
        );
        check("index out of range in self", false);
    }
}
