//! `GET /status.json`'s answer: the model, its devices and precision, the
//! sampling window, and per worker the batch controller's state now (token
//! budget, memory, bytes per token, in service or why not) with its
//! history over the window.
//!
//! Owns: that shape, which the page (`page.html`) reads. Must never: read
//! anything but the loaded `Infer` and the history, or hold the history's
//! lock longer than one worker's copy.

use serde::Serialize;

use super::history::WorkerSample;
use super::sampler::{SamplerConfig, SharedHistory};
use crate::infer::Infer;

#[derive(Debug, Serialize)]
pub struct Status {
    /// The name HTTP answers carry (`--served-model-name`, or the model's).
    pub model: String,
    pub architecture: String,
    /// The model's window, in tokens.
    pub max_length: usize,
    pub devices: Vec<String>,
    /// The precision actually served.
    pub precision: String,
    pub mode: String,
    pub version: &'static str,
    pub interval_secs: f64,
    pub window_secs: f64,
    /// Pairs admitted and not yet answered, across workers.
    pub queued_pairs: usize,
    /// The scheduler's estimate of model time per real token (one worker).
    pub seconds_per_token: f64,
    /// Requests refused at admission: their deadline would pass first.
    pub refused_late: u64,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub device: String,
    pub in_service: bool,
    /// Why the worker was taken out of service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_service: Option<String>,
    pub budget_tokens: usize,
    /// Most padded tokens per batch by time (the start-up measurement, or
    /// --batch-target-tokens); absent when memory alone sizes batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_tokens: Option<usize>,
    pub memory: Memory,
    pub bytes_per_token: f64,
    /// Measured (calibration, or a batch since) rather than assumed.
    pub bytes_per_token_measured: bool,
    /// The largest batch known to fit, in tokens, when an out-of-memory
    /// error set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_tokens: Option<usize>,
    /// Lifetime counts.
    pub batches: u64,
    pub pairs: u64,
    pub ooms: u64,
    pub splits: u64,
    pub history: Vec<WorkerSample>,
}

/// The device's memory at the controller's last reading.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// False where it cannot be read (CPU, or no NVML): the budget then
    /// comes from the fallback and out-of-memory history alone.
    pub known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

pub fn status(
    infer: &Infer,
    model: String,
    history: &SharedHistory,
    sampling: SamplerConfig,
) -> Status {
    let info = infer.info();
    let stats = infer.stats();
    let workers = stats
        .workers
        .into_iter()
        .enumerate()
        .map(|(index, worker)| {
            let controller = worker.controller;
            let reading = controller.last_reading;
            WorkerStatus {
                device: worker.device,
                in_service: worker.out_of_service.is_none(),
                out_of_service: worker.out_of_service,
                budget_tokens: controller.budget_tokens,
                target_tokens: worker.target_tokens,
                memory: Memory {
                    known: reading.is_some(),
                    free_bytes: reading.map(|r| r.free_bytes),
                    total_bytes: reading.map(|r| r.total_bytes),
                },
                bytes_per_token: controller.bytes_per_token,
                bytes_per_token_measured: controller.bytes_per_token_measured,
                ceiling_tokens: controller.ceiling.map(|c| c.tokens),
                batches: worker.batches,
                pairs: worker.pairs,
                ooms: controller.oom_count,
                splits: worker.splits,
                history: history.lock().worker(index),
            }
        })
        .collect();
    Status {
        model,
        architecture: info.architecture.clone(),
        max_length: info.max_length,
        devices: info.devices.iter().map(|d| d.to_string()).collect(),
        precision: info.dtype.to_string(),
        mode: info.mode.clone(),
        version: env!("CARGO_PKG_VERSION"),
        interval_secs: sampling.interval.as_secs_f64(),
        window_secs: sampling.window.as_secs_f64(),
        queued_pairs: stats.queued_pairs,
        seconds_per_token: stats.secs_per_token,
        refused_late: stats.refused_late,
        workers,
    }
}
