//! Device memory as the batcher sees it: the `MemoryProbe` seam and its
//! reading type.
//!
//! Owns: the `MemoryProbe` trait. Must never: size batches (the controller
//! does) or touch libtorch.

pub mod nvml;

/// Free and total bytes of one device at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Why a device's memory could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(pub String);

/// Reads a device's free memory. Synchronous and cheap (NVML answers in
/// microseconds), so the model thread reads it after every batch.
pub trait MemoryProbe: Send {
    fn read(&mut self) -> Result<MemoryReading, ProbeError>;
}
