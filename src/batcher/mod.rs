//! The adaptive batcher: one queue that every RPC feeds, a controller per
//! device that sizes batches from free memory, and workers that run them.
//!
//! Owns: batch sizing and, as it lands, queueing and retry on out-of-memory.
//! Must never: know about tonic or protobuf, or read a clock or device inside
//! its pure parts (`controller`).

pub mod calibrate;
pub mod controller;
#[cfg(test)]
pub(crate) mod fake;
pub mod queue;
pub mod scheduler;
pub mod split;
