//! Start-up and serving: load the model directory into a ready `Infer`, then
//! serve gRPC on a listener until shutdown.
//!
//! Owns: the order of start-up (open the directory, resolve device and
//! precision, load the tokenizer, start the model thread and warm it up,
//! open the memory probe, start the batcher) and of shutdown (stop serving,
//! then join the model thread). Must never: accept
//! a connection before the model has run its warm-up, or run libtorch itself
//! (the model thread does).

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::batcher::controller::ControllerConfig;
use crate::batcher::scheduler::{Batcher, BatcherConfig};
use crate::config::{default_padding_floor, InferConfig, ModelConfig, ServerConfig};
use crate::error::Error;
use crate::gpu::nvml::NvmlProbe;
use crate::gpu::MemoryProbe;
use crate::grpc::pb::reranker_server::RerankerServer;
use crate::grpc::service::RerankService;
use crate::infer::{Infer, ModelInfo};
use crate::model::golden::GoldenSet;
use crate::model::precision::{cpu_has_native_bf16, resolve_dtype};
use crate::model::thread::ModelThread;
use crate::model::torch::tch_device;
use crate::model::warmup::{load_for_serving, GoldenBatch, LoadPlan, LoadReport};
use crate::model::{DeviceSpec, ModelDir, PaddedBatch};
use crate::tokenize::PairTokenizer;

/// A model loaded, warmed up and ready to serve.
pub struct Loaded {
    pub infer: Infer,
    pub report: LoadReport,
    /// Joined after the server stops; dropped last.
    model_thread: ModelThread,
}

/// Loads the model directory and warms the model up on its own thread.
pub async fn load(config: &ModelConfig, infer_config: InferConfig) -> Result<Loaded, Error> {
    let dir = ModelDir::open(&config.dir)?;
    let device = tch_device(config.device)?;
    let dtype = resolve_dtype(config.dtype, config.device, cpu_has_native_bf16())?;
    let spec = dir.spec.clone();

    let prepare_dir = dir.clone();
    let (tokenizer, golden, warmup) = tokio::task::spawn_blocking(move || prepare(&prepare_dir))
        .await
        .map_err(|e| Error::ModelLoad(format!("preparing the tokenizer failed: {e}")))??;

    let plan = LoadPlan {
        model_file: dir.model_file(),
        device,
        uses_token_type_ids: spec.uses_token_type_ids,
        dtype,
        golden,
        warmup,
    };
    let threads = config.threads;
    let device_index = match config.device {
        DeviceSpec::Cpu => None,
        DeviceSpec::Cuda(index) => Some(index),
    };
    let (model_thread, client, (report, reading)) = ModelThread::start(move || {
        if threads > 0 {
            tch::set_num_threads(threads as i32);
        }
        let (scorer, report) = load_for_serving(&plan)?;
        // Free memory is read after the model is loaded and warm, so the
        // budget starts from what is really left for activations.
        let mut probe = device_index.and_then(open_probe);
        let reading = probe.as_mut().and_then(|probe| probe.read().ok());
        Ok((scorer, probe, (report, reading)))
    })
    .await?;

    let batcher = Batcher::start(
        BatcherConfig {
            max_batch_pairs: infer_config.max_batch_pairs,
            max_queue_delay: infer_config.max_queue_delay,
            max_queued_pairs: infer_config.max_queued_pairs,
            controller: ControllerConfig {
                fallback_tokens: infer_config.fallback_budget_tokens,
                min_tokens: spec.max_length,
                ..ControllerConfig::default()
            },
            pad_token_id: spec.pad_token_id,
            uses_token_type_ids: spec.uses_token_type_ids,
            min_padding_efficiency: infer_config
                .min_padding_efficiency
                .unwrap_or_else(|| default_padding_floor(config.device)),
            ..BatcherConfig::default()
        },
        client,
        reading,
    );
    let info = ModelInfo {
        name: spec.name.clone(),
        max_length: spec.max_length,
        device: config.device,
        dtype: report.serving,
        mode: spec.mode.clone(),
        activation: spec.activation,
        architecture: spec.architecture.clone(),
        pad_token_id: spec.pad_token_id,
        uses_token_type_ids: spec.uses_token_type_ids,
    };
    log_report(&dir, &info, &report);
    Ok(Loaded {
        infer: Infer::new(tokenizer, batcher, info, infer_config),
        report,
        model_thread,
    })
}

/// The NVML probe of CUDA device `index`, or `None` (logged once) when NVML
/// cannot read it: the budget then comes from --fallback-budget-tokens.
fn open_probe(index: usize) -> Option<Box<dyn MemoryProbe>> {
    match NvmlProbe::open(index) {
        Ok(mut probe) => {
            if let Ok(reading) = probe.read() {
                tracing::info!(
                    device = index,
                    free_bytes = reading.free_bytes,
                    total_bytes = reading.total_bytes,
                    "NVML reads device memory; batches are sized from it"
                );
            }
            Some(Box::new(probe))
        }
        Err(error) => {
            tracing::warn!(
                device = index,
                %error,
                "cannot read device memory; the token budget comes from --fallback-budget-tokens"
            );
            None
        }
    }
}

/// The tokenizer, the golden set as model inputs, and a warm-up batch.
fn prepare(dir: &ModelDir) -> Result<(PairTokenizer, Vec<GoldenBatch>, PaddedBatch), Error> {
    let spec = &dir.spec;
    let tokenizer = PairTokenizer::from_file(&dir.tokenizer_file(), spec.max_length)?;
    let batch = |pairs: &[crate::model::EncodedPair]| {
        let rows: Vec<_> = pairs.iter().collect();
        PaddedBatch::new(&rows, spec.pad_token_id, spec.uses_token_type_ids)
    };
    let mut golden = Vec::new();
    if dir.golden_file().is_file() {
        let set = GoldenSet::load(&dir.golden_file())?;
        let golden_tokenizer = PairTokenizer::from_file(&dir.tokenizer_file(), set.max_length)?;
        for group in set.groups {
            let encoded = golden_tokenizer.encode_request(&group.query, &group.documents, true)?;
            golden.push(GoldenBatch {
                batch: batch(&encoded.pairs),
                expected: group.scores,
            });
        }
    } else {
        tracing::warn!(
            dir = %dir.path.display(),
            "no golden.json: the model's scores and any lower precision go unchecked"
        );
    }
    let warmup = tokenizer.encode_request(
        "how does the server warm up",
        &[
            "It runs one forward pass before it reports ready.".to_string(),
            "A short one.".to_string(),
        ],
        true,
    )?;
    Ok((tokenizer, golden, batch(&warmup.pairs)))
}

fn log_report(dir: &ModelDir, info: &ModelInfo, report: &LoadReport) {
    tracing::info!(
        model = %info.name,
        dir = %dir.path.display(),
        device = %info.device,
        requested_dtype = %report.requested,
        dtype = %report.serving,
        max_length = info.max_length,
        load_ms = report.load_time.as_millis() as u64,
        warmup_ms = report.warmup_time.as_millis() as u64,
        fp32_vs_golden = ?report.fp32_vs_golden,
        lowered_vs_fp32 = ?report.lowered_vs_fp32,
        "model loaded and warmed up"
    );
    if let Some(worst) = report.fp32_vs_golden {
        if worst > 1e-3 {
            tracing::warn!(
                max_abs_diff = worst,
                "fp32 scores differ from the exporter's golden scores by more than 1e-3; \
                 the model file and golden.json may not belong together"
            );
        }
    }
    if let Some(reason) = &report.fallback {
        tracing::warn!(%reason, "serving in fp32: the requested precision changed rankings");
    }
}

/// Serves gRPC on `listener` until `shutdown` resolves, then stops the model.
pub async fn run<F>(
    listener: TcpListener,
    loaded: Loaded,
    config: ServerConfig,
    shutdown: F,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    let Loaded {
        infer,
        model_thread,
        ..
    } = loaded;
    let service = RerankerServer::new(RerankService::new(infer))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    // Every handler, and with them every ModelClient, is gone: the model
    // thread finishes its last job and ends.
    tokio::task::spawn_blocking(move || drop(model_thread))
        .await
        .map_err(|e| Error::Unavailable(format!("joining the model thread failed: {e}")))?;
    served.map_err(|e| Error::Unavailable(format!("the gRPC server failed: {e}")))
}
