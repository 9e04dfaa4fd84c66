//! The adaptive batcher: one queue that every RPC feeds, a controller per
//! device that sizes batches from free memory, and workers that run them.
//!
//! Owns: queueing (`queue`), batch sizing per worker (`controller`, seeded
//! by `calibrate` at warm-up), handing batches to the first idle worker
//! (`scheduler`), retry on out-of-memory (`split`) and counting batch
//! sizes (`histogram`).
//! Must never: know about tonic or protobuf, or read a clock or device inside
//! its pure parts (`controller`).

pub mod calibrate;
pub mod controller;
#[cfg(test)]
pub(crate) mod fake;
pub mod histogram;
pub mod queue;
pub mod scheduler;
pub mod split;
