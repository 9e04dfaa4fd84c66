//! `TorchScorer`: the TorchScript model run through tch (libtorch).
//!
//! Owns: loading `model.pt` onto a device, casting its floating-point
//! parameters to the serving precision, emptying the CUDA allocator's cache
//! on request, and turning a `PaddedBatch` into tensors and back into scores. Must never: run outside the model thread
//! (grad mode and libtorch's last error are per thread), panic on a libtorch
//! error (only `f_*`/`forward_ts` calls, whose errors become `ScoreError`), or
//! cast integer buffers (a BERT trace's `position_ids` must stay int64).

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor};

use super::{DeviceSpec, Dtype, PaddedBatch, ScoreError, Scorer};
use crate::error::Error;

pub struct TorchScorer {
    module: CModule,
    device: Device,
    uses_token_type_ids: bool,
    dtype: Dtype,
}

/// The tch device for a device flag, checking that it exists.
pub fn tch_device(device: DeviceSpec) -> Result<Device, Error> {
    match device {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(index) => {
            if !tch::Cuda::is_available() {
                return Err(Error::Config(format!(
                    "--devices {device}: libtorch sees no CUDA device (no GPU, no driver, or a \
                     CPU-only libtorch); use --devices cpu"
                )));
            }
            let count = tch::Cuda::device_count();
            if index as i64 >= count {
                return Err(Error::Config(format!(
                    "--devices {device}: this machine has {count} CUDA device(s)"
                )));
            }
            Ok(Device::Cuda(index))
        }
    }
}

impl TorchScorer {
    /// Loads `model.pt` in the precision it was saved in (fp32).
    pub fn load(path: &Path, device: Device, uses_token_type_ids: bool) -> Result<Self, Error> {
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| Error::ModelLoad(format!("{}: {e}", path.display())))?;
        module.set_eval();
        Ok(TorchScorer {
            module,
            device,
            uses_token_type_ids,
            dtype: Dtype::Fp32,
        })
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Casts every floating-point parameter to `dtype`, in place. Integer
    /// buffers keep their type (casting them breaks the embedding lookup).
    pub fn cast(&mut self, dtype: Dtype) -> Result<(), Error> {
        let kind = kind_of(dtype);
        let parameters = self
            .module
            .named_parameters()
            .map_err(|e| Error::ModelLoad(format!("listing parameters: {e}")))?;
        for (name, mut parameter) in parameters {
            if parameter.is_floating_point() {
                let cast = parameter
                    .f_to_kind(kind)
                    .map_err(|e| Error::ModelLoad(format!("casting {name} to {dtype}: {e}")))?;
                parameter
                    .f_set_data(&cast)
                    .map_err(|e| Error::ModelLoad(format!("casting {name} to {dtype}: {e}")))?;
            }
        }
        self.dtype = dtype;
        Ok(())
    }

    /// Hands every block libtorch's CUDA caching allocator holds unused back
    /// to the driver (a no-op on CPU), so that NVML's used memory is what
    /// live tensors need. tch binds no `empty_cache`; but before the
    /// allocator raises an out-of-memory error it frees all its unused cached
    /// blocks and retries, so asking it for more memory than any device has
    /// (1 PiB) empties the cache, and the error that follows is expected.
    pub fn release_cached_memory(&self) {
        if self.device.is_cuda() {
            let _ = Tensor::f_empty([1i64 << 50], (Kind::Uint8, self.device));
        }
    }

    fn tensor(&self, values: &[i64], batch: &PaddedBatch) -> Result<Tensor, ScoreError> {
        let shape = [batch.pairs as i64, batch.padded_len as i64];
        Tensor::f_from_slice(values)
            .and_then(|t| t.f_view(shape))
            .and_then(|t| t.f_to_device(self.device))
            .map_err(|e| ScoreError::from_torch_message(e.to_string()))
    }
}

fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Fp32 => Kind::Float,
        Dtype::Bf16 => Kind::BFloat16,
        Dtype::Fp16 => Kind::Half,
    }
}

impl Scorer for TorchScorer {
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
        if batch.pairs == 0 {
            return Ok(Vec::new());
        }
        let mut inputs = vec![
            self.tensor(&batch.input_ids, batch)?,
            self.tensor(&batch.attention_mask, batch)?,
        ];
        if self.uses_token_type_ids {
            let token_type_ids = batch.token_type_ids.as_deref().ok_or_else(|| {
                ScoreError::Failed("the model takes token_type_ids but the batch has none".into())
            })?;
            inputs.push(self.tensor(token_type_ids, batch)?);
        }
        let torch_error = |e: tch::TchError| ScoreError::from_torch_message(e.to_string());
        let output = self.module.forward_ts(&inputs).map_err(torch_error)?;
        let scores = output
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_flatten(0, -1))
            .map_err(torch_error)?;
        let scores = Vec::<f32>::try_from(&scores).map_err(torch_error)?;
        if scores.len() != batch.pairs {
            return Err(ScoreError::Failed(format!(
                "the model returned {} scores for {} pairs; it must return one per pair",
                scores.len(),
                batch.pairs
            )));
        }
        Ok(scores)
    }
}
