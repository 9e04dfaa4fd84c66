//! `GET /info`'s answer: the model, its window, devices and serving
//! precision, and the limits a client must keep to; named as rerankd's
//! `ModelInfo` names them, with TEI's `/info` names beside (`model_id`,
//! `max_input_length`, `max_client_batch_size`) so TEI clients read it too.
//!
//! Owns: that shape. Must never: read anything but the loaded `Infer` and
//! the HTTP settings (it is answered while serving only).

use serde::Serialize;

use crate::config::HttpConfig;
use crate::infer::Infer;

#[derive(Debug, Serialize)]
pub(crate) struct Limits {
    pub max_documents: usize,
    pub max_document_bytes: usize,
    pub max_chunks_per_document: usize,
    pub max_queued_pairs: usize,
    pub max_inflight_bytes: usize,
    pub max_body_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Info {
    /// The name HTTP answers carry (`--served-model-name`, or the model's).
    pub model: String,
    /// TEI's name for it.
    pub model_id: String,
    /// The model directory's own name.
    pub model_name: String,
    /// The model's window, in tokens (TEI: `max_input_length`).
    pub max_length: usize,
    pub max_input_length: usize,
    /// TEI's name for `limits.max_documents`.
    pub max_client_batch_size: usize,
    pub device: String,
    pub devices: Vec<String>,
    /// The precision actually served.
    pub precision: String,
    pub mode: String,
    pub activation: String,
    pub architecture: String,
    pub version: &'static str,
    pub limits: Limits,
}

pub(crate) fn info(infer: &Infer, http: &HttpConfig, model: String) -> Info {
    let model_info = infer.info();
    let config = infer.config();
    Info {
        model_id: model.clone(),
        model,
        model_name: model_info.name.clone(),
        max_length: model_info.max_length,
        max_input_length: model_info.max_length,
        max_client_batch_size: config.max_documents,
        device: model_info.devices[0].to_string(),
        devices: model_info.devices.iter().map(|d| d.to_string()).collect(),
        precision: model_info.dtype.to_string(),
        mode: model_info.mode.clone(),
        activation: model_info.activation.as_str().to_string(),
        architecture: model_info.architecture.clone(),
        version: env!("CARGO_PKG_VERSION"),
        limits: Limits {
            max_documents: config.max_documents,
            max_document_bytes: config.max_document_bytes,
            max_chunks_per_document: config.max_chunks_per_document,
            max_queued_pairs: config.batcher.max_queued_pairs,
            max_inflight_bytes: config.max_inflight_bytes,
            max_body_bytes: http.max_body_bytes,
            request_timeout_secs: http.request_timeout.map(|t| t.as_secs_f64()),
        },
    }
}
