//! Command-line flags (every one also an environment variable) and the typed
//! configs they become.
//!
//! Owns: flag names, defaults and help texts. Must never: act on a flag (no
//! loading, binding or logging here); the rest of the crate sees only the
//! typed configs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::model::{DeviceSpec, DtypeRequest};

/// rerankd: a gRPC inference server for cross-encoder rerankers on libtorch.
#[derive(Debug, Parser)]
#[command(name = "rerankd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a model directory and serve rerank.v1.Reranker over gRPC.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model directory written by scripts/export_model.py: model.pt (TorchScript),
    /// tokenizer.json, rerankd.json and, optionally, golden.json.
    #[arg(long, env = "RERANKD_MODEL")]
    pub model: PathBuf,

    /// Address the gRPC server listens on.
    #[arg(long, env = "RERANKD_ADDR", default_value = "0.0.0.0:50051")]
    pub addr: SocketAddr,

    /// Devices to run the model on, comma-separated: cpu, cuda or cuda:N.
    /// Each entry is a worker with its own model replica and batch sizing;
    /// a batch goes to the first idle one (`cuda:0,cuda:1`, or `cpu,cpu` to
    /// split the cores between two CPU workers). All of one kind.
    #[arg(
        long,
        alias = "device",
        env = "RERANKD_DEVICES",
        default_value = "cpu",
        value_delimiter = ','
    )]
    pub devices: Vec<DeviceSpec>,

    /// Precision: auto, fp32, bf16 or fp16. auto picks fp16 on CUDA, bf16 on a
    /// CPU with native bf16 (avx512_bf16 or AMX) and fp32 elsewhere. A lower
    /// precision serves only if it ranks the model's golden set as fp32 does;
    /// otherwise the server falls back to fp32 and says so.
    #[arg(long, env = "RERANKD_DTYPE", default_value = "auto")]
    pub dtype: DtypeRequest,

    /// libtorch intra-op threads per worker; 0 keeps libtorch's default for
    /// one worker, and shares the logical CPUs out between several CPU
    /// workers.
    #[arg(long, env = "RERANKD_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Most documents one request may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RERANKD_MAX_DOCUMENTS", default_value_t = 1000)]
    pub max_documents: usize,

    /// Largest document (or query) one request may carry, in bytes of
    /// UTF-8; more is INVALID_ARGUMENT naming the document. Texts past the
    /// model's window are cut anyway, so this only bounds tokenizing work.
    #[arg(long, env = "RERANKD_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024)]
    pub max_document_bytes: usize,

    /// Most windows one document may be split into when a request asks for
    /// chunking; more is INVALID_ARGUMENT naming the document. 64 windows of
    /// a 512-token model cover about 24,000 tokens of document.
    #[arg(long, env = "RERANKD_MAX_CHUNKS_PER_DOCUMENT", default_value_t = 64)]
    pub max_chunks_per_document: usize,

    /// Most pairs the model runs in one forward pass. Batches hold pairs of
    /// every queued request, up to this many and up to the token budget.
    #[arg(long, env = "RERANKD_MAX_BATCH_PAIRS", default_value_t = 32)]
    pub max_batch_pairs: usize,

    /// How long a batch may wait for more pairs when the queue cannot fill
    /// it, in milliseconds.
    #[arg(long, env = "RERANKD_MAX_QUEUE_DELAY_MS", default_value_t = 2)]
    pub max_queue_delay_ms: u64,

    /// Admission bound: a request that would take the queue past this many
    /// pairs gets RESOURCE_EXHAUSTED with a retry-after header.
    #[arg(long, env = "RERANKD_MAX_QUEUED_PAIRS", default_value_t = 20_000)]
    pub max_queued_pairs: usize,

    /// Lowest share of real tokens (real ÷ padded) a batch may grow to: a
    /// pair joins a batch only if padding stays under this. Unset, it is
    /// 0.95 on CPU (where a small well-matched batch costs no more per pair
    /// than a large one: benches/batcher.rs) and 0.85 on CUDA.
    #[arg(long, env = "RERANKD_MIN_PADDING_EFFICIENCY", value_parser = parse_fraction)]
    pub min_padding_efficiency: Option<f64>,

    /// Token budget per batch (pairs × padded length) when device memory
    /// cannot be read (CPU, or no NVIDIA driver).
    #[arg(long, env = "RERANKD_FALLBACK_BUDGET_TOKENS", default_value_t = 16_384)]
    pub fallback_budget_tokens: usize,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "RERANKD_MAX_MESSAGE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_message_bytes: usize,
}

/// How to load and run the model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub dir: PathBuf,
    /// One worker per entry; never empty, all of one kind.
    pub devices: Vec<DeviceSpec>,
    pub dtype: DtypeRequest,
    /// 0 = libtorch's default.
    pub threads: usize,
}

/// Per-request limits and how requests are batched.
#[derive(Debug, Clone, Copy)]
pub struct InferConfig {
    pub max_documents: usize,
    /// Longest query or document, in bytes.
    pub max_document_bytes: usize,
    /// Most windows per chunked document; at least 1.
    pub max_chunks_per_document: usize,
    /// At least 1.
    pub max_batch_pairs: usize,
    pub max_queue_delay: Duration,
    pub max_queued_pairs: usize,
    pub fallback_budget_tokens: usize,
    /// `None`: the device's default (`default_padding_floor`).
    pub min_padding_efficiency: Option<f64>,
}

/// The padding-efficiency floor when none is configured.
pub fn default_padding_floor(device: DeviceSpec) -> f64 {
    match device {
        DeviceSpec::Cpu => 0.95,
        DeviceSpec::Cuda(_) => 0.85,
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a number from 0 to 1, got {value:?}")),
    }
}

impl Default for InferConfig {
    fn default() -> Self {
        InferConfig {
            max_documents: 1000,
            max_document_bytes: 64 * 1024,
            max_chunks_per_document: 64,
            max_batch_pairs: 32,
            max_queue_delay: Duration::from_millis(2),
            max_queued_pairs: 20_000,
            fallback_budget_tokens: 16_384,
            min_padding_efficiency: None,
        }
    }
}

/// How to serve gRPC.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_message_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 32 * 1024 * 1024,
        }
    }
}

impl ServeArgs {
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            dir: self.model.clone(),
            devices: self.devices.clone(),
            dtype: self.dtype,
            threads: self.threads,
        }
    }

    pub fn infer_config(&self) -> InferConfig {
        InferConfig {
            max_documents: self.max_documents,
            max_document_bytes: self.max_document_bytes,
            max_chunks_per_document: self.max_chunks_per_document.max(1),
            max_batch_pairs: self.max_batch_pairs.max(1),
            max_queue_delay: Duration::from_millis(self.max_queue_delay_ms),
            max_queued_pairs: self.max_queued_pairs,
            fallback_budget_tokens: self.fallback_budget_tokens,
            min_padding_efficiency: self.min_padding_efficiency,
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_message_bytes: self.max_message_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dtype;

    #[test]
    fn serve_flags_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--dtype", "bf16"]).unwrap();
        let Command::Serve(args) = cli.command;
        let model = args.model_config();
        assert_eq!(model.dir, PathBuf::from("/m"));
        assert_eq!(model.devices, vec![DeviceSpec::Cpu]);
        assert_eq!(model.dtype, DtypeRequest::Exact(Dtype::Bf16));
        assert_eq!(args.addr.port(), 50051);
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_forms() {
        let error = Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--device", "tpu"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected cpu, cuda or cuda:N"), "{error}");
    }

    #[test]
    fn several_devices_are_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "rerankd",
            "serve",
            "--model",
            "/m",
            "--devices",
            "cuda:0,cuda:1",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command;
        assert_eq!(
            args.model_config().devices,
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        // The single-device spelling still works.
        let cli =
            Cli::try_parse_from(["rerankd", "serve", "--model", "/m", "--device", "cuda"]).unwrap();
        let Command::Serve(args) = cli.command;
        assert_eq!(args.model_config().devices, vec![DeviceSpec::Cuda(0)]);
    }
}
