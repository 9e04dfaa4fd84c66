//! Loading for service: load `model.pt`, warm it up, check it against the
//! exporter's golden scores, and pick the precision it serves in.
//!
//! Owns: the rule that a lower precision serves only if it passes the golden
//! gate (finite scores, every golden group ranked as fp32 ranks it beyond
//! ties, and close to fp32 when the set has nothing to rank), else fp32
//! serves with a warning; and whether libtorch optimises the TorchScript
//! graph on this thread. Must never: run anywhere but the model thread (it
//! runs libtorch), or serve a model that has not run a forward pass, or one
//! whose fp32 scores of the golden set are not finite.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tch::Device;

use super::golden::{gate, max_abs_diff, GateReport, TIE_TOLERANCE};
use super::torch::TorchScorer;
use super::{Dtype, PaddedBatch, Scorer};
use crate::error::Error;

/// One golden group, tokenized: the model inputs and the eager fp32 scores.
#[derive(Clone)]
pub struct GoldenBatch {
    pub batch: PaddedBatch,
    pub expected: Vec<f32>,
}

/// What `load_for_serving` needs.
pub struct LoadPlan {
    pub model_file: PathBuf,
    pub device: Device,
    pub uses_token_type_ids: bool,
    pub dtype: Dtype,
    /// Empty when the model directory has no golden set.
    pub golden: Vec<GoldenBatch>,
    /// Any batch the model accepts, for the warm-up forward.
    pub warmup: PaddedBatch,
    /// Whether libtorch's graph executor optimises the TorchScript graph
    /// (profiling, fusion); off runs the graph as traced.
    pub graph_optimization: bool,
}

/// What loading found, for the start-up log and `ModelInfo`.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requested: Dtype,
    pub serving: Dtype,
    /// Largest |TorchScript fp32 − eager fp32| over the golden set.
    pub fp32_vs_golden: Option<f32>,
    /// Largest |requested precision − fp32| over the golden set.
    pub lowered_vs_fp32: Option<f32>,
    /// Ordered golden document pairs whose order the gate checked (zero: the
    /// golden set could not discriminate, only closeness was checked).
    pub golden_pairs_compared: Option<usize>,
    /// Why the requested precision was refused, when it was.
    pub fallback: Option<String>,
    /// Whether libtorch optimised the TorchScript graph.
    pub graph_optimization: bool,
    pub load_time: Duration,
    pub warmup_time: Duration,
}

/// Loads the model and makes it ready to serve. Runs on the model thread.
pub fn load_for_serving(plan: &LoadPlan) -> Result<(TorchScorer, LoadReport), Error> {
    // Per thread in libtorch: this thread runs every forward pass.
    tch::jit::f_set_graph_executor_optimize(plan.graph_optimization)
        .map_err(|e| Error::ModelLoad(format!("setting graph optimisation: {e}")))?;
    let started = Instant::now();
    let load = || TorchScorer::load(&plan.model_file, plan.device, plan.uses_token_type_ids);
    let mut scorer = load()?;
    let load_time = started.elapsed();

    let warmup_started = Instant::now();
    let mut report = LoadReport {
        requested: plan.dtype,
        serving: Dtype::Fp32,
        fp32_vs_golden: None,
        lowered_vs_fp32: None,
        golden_pairs_compared: None,
        fallback: None,
        graph_optimization: plan.graph_optimization,
        load_time,
        warmup_time: Duration::ZERO,
    };
    let fp32_scores = score_golden(&mut scorer, &plan.golden)?;
    for (group, scores) in fp32_scores.iter().enumerate() {
        if let Some(score) = scores.iter().find(|s| !s.is_finite()) {
            return Err(Error::ModelLoad(format!(
                "the model scored golden group {group} {score} in fp32: it cannot serve"
            )));
        }
    }
    if !plan.golden.is_empty() {
        let worst = plan
            .golden
            .iter()
            .zip(&fp32_scores)
            .map(|(golden, scores)| max_abs_diff(&golden.expected, scores))
            .fold(0.0, f32::max);
        report.fp32_vs_golden = Some(worst);
    }

    if plan.dtype != Dtype::Fp32 {
        match lower(&mut scorer, plan, &fp32_scores) {
            Ok(gate) => {
                report.lowered_vs_fp32 = gate.map(|g| g.max_abs_diff);
                report.golden_pairs_compared = gate.map(|g| g.compared_pairs);
            }
            Err(reason) => {
                report.fallback = Some(reason);
                // Free the cast copy before loading the fp32 one.
                drop(scorer);
                scorer = load()?;
            }
        }
    }
    report.serving = scorer.dtype();
    scorer
        .score(&plan.warmup)
        .map_err(|e| Error::ModelLoad(format!("warm-up forward failed: {e}")))?;
    report.warmup_time = warmup_started.elapsed();
    Ok((scorer, report))
}

/// Casts `scorer` to the plan's precision and puts it through the golden
/// gate (`None` without a golden set); `Err` says why that precision must
/// not serve.
fn lower(
    scorer: &mut TorchScorer,
    plan: &LoadPlan,
    fp32_scores: &[Vec<f32>],
) -> Result<Option<GateReport>, String> {
    let dtype = plan.dtype;
    scorer
        .cast(dtype)
        .map_err(|e| format!("casting to {dtype} failed: {e}"))?;
    let lowered = score_golden(scorer, &plan.golden)
        .map_err(|e| format!("{dtype} failed on the golden set: {e}"))?;
    if plan.golden.is_empty() {
        return Ok(None);
    }
    gate(fp32_scores, &lowered, TIE_TOLERANCE)
        .map(Some)
        .map_err(|reason| format!("{dtype} failed the golden gate: {reason}"))
}

fn score_golden(scorer: &mut TorchScorer, golden: &[GoldenBatch]) -> Result<Vec<Vec<f32>>, Error> {
    golden
        .iter()
        .enumerate()
        .map(|(index, group)| {
            scorer
                .score(&group.batch)
                .map_err(|e| Error::ModelLoad(format!("scoring golden group {index} failed: {e}")))
        })
        .collect()
}
