//! What runs on a model thread: the thread itself and its handle
//! (`thread`), split-and-retry on out-of-memory (`split`), and warm-up
//! calibration of bytes per padded token (`calibrate`), the start-up speed
//! measurement that sets the batch target (`speed`); `fake` (tests only)
//! is the fake `Scorer` and a simulated device.
//!
//! Owns: running batches on a `Scorer` and reading the `MemoryProbe` after
//! them. Must never: import the batcher (the order is grpc -> infer ->
//! batcher -> worker -> model / gpu), know about tonic, or run libtorch off
//! a model thread.

pub mod calibrate;
#[cfg(test)]
pub(crate) mod fake;
pub mod speed;
pub mod split;
pub mod thread;
