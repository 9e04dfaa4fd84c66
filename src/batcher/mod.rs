//! The adaptive batcher: one queue that every RPC feeds, a controller per
//! device that sizes batches from free memory, and workers that run them.
//!
//! Owns: queueing and the serving order (`queue`), batch sizing per worker
//! (`controller`, seeded by `worker::calibrate` at warm-up, and a time
//! target from `worker::speed`), the running cost estimate and admission
//! rule (`pace`), handing batches to the first idle worker (`scheduler`)
//! and counting batch sizes (`histogram`); what runs
//! on the model thread (split-and-retry, calibration) is `crate::worker`'s.
//! Must never: know about tonic or protobuf, or read a clock or device inside
//! its pure parts (`controller`).

pub(crate) mod controller;
pub(crate) mod histogram;
pub mod pace;
pub mod queue;
pub(crate) mod scheduler;
