//! Start-up: load the model directory into a ready `Infer` (`serving`
//! serves it).
//!
//! Owns: the order of start-up (check the devices, open the directory, load
//! the tokenizer; then per worker: resolve the precision, start its model
//! thread, warm it up, open the memory probe and calibrate bytes per token;
//! then check every worker serves one precision and start the batcher).
//! Must never: report the model ready before every replica has run its
//! warm-up, or run libtorch itself (the model threads do).

use crate::batcher::scheduler::Batcher;
use crate::batcher::scheduler::Worker;
use crate::config::{InferConfig, ModelConfig};
use crate::error::Error;
use crate::gpu::nvml::NvmlProbe;
use crate::gpu::MemoryProbe;
use crate::infer::{Infer, ModelInfo};
use crate::model::golden::{GoldenSet, TIE_TOLERANCE};
use crate::model::precision::{cpu_has_native_bf16, resolve_dtype};
use crate::model::torch::{tch_device, TorchScorer};
use crate::model::warmup::{load_for_serving, GoldenBatch, LoadPlan, LoadReport};
use crate::model::{DeviceSpec, Dtype, EncodedPair, ModelDir, PaddedBatch, Scorer};
use crate::tokenize::{Abandon, Fit, Overflow, PairTokenizer, Side};
use crate::worker::calibrate::{calibrate, Calibration, CalibrationPlan};
use crate::worker::speed::{self, Speed, SpeedPlan};
use crate::worker::thread::ModelThread;

/// A model loaded on every worker, warmed up and ready to serve.
pub struct Loaded {
    pub infer: Infer,
    /// Joined after the server stops; dropped last.
    model_threads: Vec<ModelThread>,
    /// How many workers are in service (the batcher takes out a worker whose
    /// device fails): serving turns health NOT_SERVING when it reaches 0.
    live_workers: tokio::sync::watch::Receiver<usize>,
}

/// What one worker's start-up found.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub device: DeviceSpec,
    pub load: LoadReport,
    /// Bytes per token measured at warm-up (CUDA with NVML only).
    pub calibration: Option<Calibration>,
    /// The batch target and pace measured at warm-up (`worker::speed`).
    pub speed: Option<Speed>,
}

/// Loads the model directory on every device and warms each replica up on
/// its own thread.
pub async fn load(config: &ModelConfig, infer_config: InferConfig) -> Result<Loaded, Error> {
    load_with(config, infer_config, |scorer| scorer).await
}

/// `load`, with every replica's scorer passed through `wrap` once it is warm
/// (and calibrated): the seam through which a test puts an out-of-memory
/// injector in front of the real model while everything else stays real.
pub async fn load_with<S, W>(
    config: &ModelConfig,
    infer_config: InferConfig,
    wrap: W,
) -> Result<Loaded, Error>
where
    S: Scorer + 'static,
    W: Fn(TorchScorer) -> S + Clone + Send + 'static,
{
    let devices = check_devices(&config.devices)?;
    let dir = ModelDir::open(&config.dir)?;
    let spec = dir.spec.clone();
    let prepare_dir = dir.clone();
    let (tokenizer, golden, warmup, window_pair) =
        tokio::task::spawn_blocking(move || prepare(&prepare_dir))
            .await
            .map_err(|e| Error::ModelLoad(format!("preparing the tokenizer failed: {e}")))??;

    let cpu_workers = devices.iter().filter(|d| **d == DeviceSpec::Cpu).count();
    let threads = threads_per_worker(config.threads, cpu_workers);
    let mut model_threads = Vec::new();
    let mut workers = Vec::new();
    let mut reports = Vec::new();
    for &device in &devices {
        let plan = WorkerPlan {
            load: LoadPlan {
                model_file: dir.model_file(),
                device: tch_device(device)?,
                uses_token_type_ids: spec.uses_token_type_ids,
                dtype: resolve_dtype(config.dtype, device, cpu_has_native_bf16())?,
                golden: golden.clone(),
                warmup: warmup.clone(),
                graph_optimization: config.graph_optimization,
            },
            calibration: CalibrationPlan {
                max_pairs: infer_config.batcher.max_batch_pairs,
                safety_fraction: infer_config.batcher.controller.safety_fraction,
                pad_token_id: spec.pad_token_id,
                uses_token_type_ids: spec.uses_token_type_ids,
            },
            speed: SpeedPlan::new(
                infer_config.batcher.max_batch_pairs,
                spec.pad_token_id,
                spec.uses_token_type_ids,
            ),
            window_pair: window_pair.clone(),
            device,
            threads,
        };
        let (model_thread, worker, report) = start_worker(plan, wrap.clone()).await?;
        log_report(&dir, &report);
        workers.push(worker);
        reports.push(report);
        model_threads.push(model_thread);
    }
    let serving = one_precision(&reports)?;

    // The batcher takes the config as built from the flags; only what the
    // model decides is filled in here.
    let mut batcher_config = infer_config.batcher.clone();
    batcher_config.pad_token_id = spec.pad_token_id;
    batcher_config.uses_token_type_ids = spec.uses_token_type_ids;
    batcher_config.controller.min_tokens = spec.max_length;
    let batcher = Batcher::start(batcher_config, workers);
    let live_workers = batcher.live_workers();
    let info = ModelInfo {
        name: spec.name.clone(),
        max_length: spec.max_length,
        devices: devices.clone(),
        dtype: serving,
        mode: spec.mode.clone(),
        activation: spec.activation,
        architecture: spec.architecture.clone(),
    };
    Ok(Loaded {
        infer: Infer::new(tokenizer, batcher, info, infer_config),
        model_threads,
        live_workers,
    })
}

/// What one worker's model thread needs to start.
struct WorkerPlan {
    load: LoadPlan,
    calibration: CalibrationPlan,
    speed: SpeedPlan,
    /// A window-length pair, for calibration and the speed measurement.
    window_pair: EncodedPair,
    device: DeviceSpec,
    /// libtorch threads on the model thread (0: libtorch's default).
    threads: usize,
}

/// Starts one worker's model thread: loads and warms the model on it, opens
/// the memory probe and calibrates bytes per token (CUDA), then hands the
/// scorer through `wrap`.
async fn start_worker<S, W>(
    plan: WorkerPlan,
    wrap: W,
) -> Result<(ModelThread, Worker, WorkerReport), Error>
where
    S: Scorer + 'static,
    W: Fn(TorchScorer) -> S + Send + 'static,
{
    let WorkerPlan {
        load,
        calibration: calibration_plan,
        speed: speed_plan,
        window_pair,
        device,
        threads,
    } = plan;
    let (model_thread, client, started) = ModelThread::start(move || {
        if threads > 0 {
            tch::set_num_threads(threads as i32);
        }
        let (mut scorer, report) = load_for_serving(&load)?;
        // Memory is read after the model is loaded and warm, so the
        // budget starts from what is really left for activations; then
        // growing batches measure bytes per token.
        let mut probe = match device {
            DeviceSpec::Cuda(index) => open_probe(index),
            DeviceSpec::Cpu => None,
        };
        let calibration = probe.as_mut().and_then(|probe| {
            // Blocks cached so far (the fp32 weights a cast freed, the
            // golden batches) would absorb the first steps' growth.
            scorer.release_cached_memory();
            calibrate(&mut scorer, probe.as_mut(), &window_pair, &calibration_plan)
        });
        let speed = speed::measure(&mut scorer, &window_pair, &speed_plan);
        let reading = probe.as_mut().and_then(|probe| probe.read().ok());
        Ok((wrap(scorer), probe, (report, calibration, speed, reading)))
    })
    .await?;
    let (report, calibration, speed, reading) = started;
    let warmed_tokens = calibration
        .as_ref()
        .and_then(|c| c.steps.iter().map(|step| step.0).max())
        .unwrap_or(0);
    let worker = Worker {
        device: device.to_string(),
        model: client,
        reading,
        bytes_per_token: calibration.as_ref().map(|c| c.bytes_per_token),
        warmed_tokens,
        speed,
    };
    let report = WorkerReport {
        device,
        load: report,
        calibration,
        speed,
    };
    Ok((model_thread, worker, report))
}

/// The one precision every replica serves: batching must never change a
/// score, so replicas that chose differently are refused.
fn one_precision(reports: &[WorkerReport]) -> Result<Dtype, Error> {
    let serving = reports[0].load.serving;
    if let Some(other) = reports.iter().find(|r| r.load.serving != serving) {
        return Err(Error::Config(format!(
            "{} serves {} but {} serves {}: every device must serve one precision \
             (pass --dtype explicitly)",
            reports[0].device, serving, other.device, other.load.serving
        )));
    }
    Ok(serving)
}

/// The devices to start workers on: at least one, all of one kind (a CPU
/// and a GPU replica would serve different precisions and speeds), each
/// CUDA device once.
fn check_devices(devices: &[DeviceSpec]) -> Result<Vec<DeviceSpec>, Error> {
    if devices.is_empty() {
        return Err(Error::Config(
            "--devices is empty: name at least one".into(),
        ));
    }
    let cuda = devices
        .iter()
        .filter(|d| matches!(d, DeviceSpec::Cuda(_)))
        .count();
    if cuda != 0 && cuda != devices.len() {
        return Err(Error::Config(format!(
            "--devices mixes cpu and cuda ({}): run one kind per server",
            devices
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    for (i, device) in devices.iter().enumerate() {
        if *device != DeviceSpec::Cpu && devices[..i].contains(device) {
            return Err(Error::Config(format!(
                "--devices names {device} twice: one worker per GPU"
            )));
        }
    }
    Ok(devices.to_vec())
}

/// libtorch threads for each worker: as asked, or, for several CPU workers
/// and no ask, the cores shared out so they do not oversubscribe the CPU.
fn threads_per_worker(threads: usize, cpu_workers: usize) -> usize {
    if threads > 0 || cpu_workers <= 1 {
        return threads;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / cpu_workers).max(1)
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

/// The tokenizer, the golden set as model inputs, a warm-up batch, and a
/// pair as long as the model window (for calibration).
fn prepare(
    dir: &ModelDir,
) -> Result<(PairTokenizer, Vec<GoldenBatch>, PaddedBatch, EncodedPair), Error> {
    let spec = &dir.spec;
    let tokenizer = PairTokenizer::from_file(&dir.tokenizer_file(), spec.max_length)?;
    let batch = |pairs: &[crate::model::EncodedPair]| {
        let rows: Vec<_> = pairs.iter().collect();
        PaddedBatch::new(&rows, spec.pad_token_id, spec.uses_token_type_ids)
    };
    let mut golden = Vec::new();
    if dir.golden_file().is_file() {
        let set = GoldenSet::load(&dir.golden_file())?;
        // The export scored the golden pairs cut to its own max_length.
        let fit = Fit {
            max_length: set.max_length,
            overflow: Overflow::Truncate(Side::Right),
            max_document_tokens: None,
        };
        for group in set.groups {
            let encoded = tokenizer.encode_request(
                &group.query,
                &group.documents,
                fit,
                &Abandon::default(),
            )?;
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
        tokenizer.fit(Overflow::Refuse),
        &Abandon::default(),
    )?;
    let long_document = "calibration ".repeat(spec.max_length);
    let window_pair = tokenizer
        .encode_pair(
            "calibration",
            &long_document,
            0,
            tokenizer.fit(Overflow::Truncate(Side::Right)),
        )?
        .remove(0);
    Ok((tokenizer, golden, batch(&warmup.pairs), window_pair))
}

fn log_report(dir: &ModelDir, worker: &WorkerReport) {
    let report = &worker.load;
    tracing::info!(
        dir = %dir.path.display(),
        device = %worker.device,
        requested_dtype = %report.requested,
        dtype = %report.serving,
        load_ms = report.load_time.as_millis() as u64,
        warmup_ms = report.warmup_time.as_millis() as u64,
        fp32_vs_golden = ?report.fp32_vs_golden,
        lowered_vs_fp32 = ?report.lowered_vs_fp32,
        golden_pairs_compared = ?report.golden_pairs_compared,
        graph_optimization = report.graph_optimization,
        "model loaded and warmed up"
    );
    if report.golden_pairs_compared == Some(0) {
        tracing::warn!(
            device = %worker.device,
            dtype = %report.serving,
            tie_tolerance = TIE_TOLERANCE,
            "the golden set cannot discriminate: every golden group's fp32 scores lie within the \
             tie tolerance, so the gate checked only that the lower precision's scores are finite \
             and as close to fp32"
        );
    }
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
        tracing::warn!(%reason, "serving in fp32: the requested precision failed the golden gate");
    }
    match worker.speed {
        Some(speed) if speed.target_tokens != usize::MAX => tracing::info!(
            device = %worker.device,
            target_tokens = speed.target_tokens,
            tokens_per_sec = (1.0 / speed.secs_per_token) as u64,
            "batch target: the smallest batch at 95% of the throughput plateau"
        ),
        Some(speed) => tracing::info!(
            device = %worker.device,
            tokens_per_sec = (1.0 / speed.secs_per_token) as u64,
            "no batch target: throughput still grew at the largest batch measured, so memory \
             alone sizes batches"
        ),
        None => tracing::warn!(
            device = %worker.device,
            "could not measure the model's speed; batches are sized by memory alone"
        ),
    }
    match &worker.calibration {
        Some(calibration) => tracing::info!(
            device = %worker.device,
            bytes_per_token = calibration.bytes_per_token,
            steps = ?calibration.steps,
            out_of_memory_at = ?calibration.out_of_memory_at,
            "measured device memory per padded token"
        ),
        None if matches!(worker.device, DeviceSpec::Cuda(_)) => tracing::warn!(
            device = %worker.device,
            "could not measure memory per padded token (no probe reading, or no two calibration \
             steps grew used memory); assuming 256 KiB (Stats: bytes_per_token_measured false)"
        ),
        None => {}
    }
}

/// What serving takes from a loaded model.
pub(crate) struct Parts {
    pub infer: Infer,
    /// Join them, by dropping, after every `Infer` clone is gone.
    pub model_threads: Vec<ModelThread>,
    /// Workers in service.
    pub live_workers: tokio::sync::watch::Receiver<usize>,
}

impl Loaded {
    /// The ready model, its threads and its count of workers in service.
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            infer: self.infer,
            model_threads: self.model_threads,
            live_workers: self.live_workers,
        }
    }
}
