//! `NvmlProbe`: free/total memory of one CUDA device through NVML
//! (nvml-wrapper, which loads libnvidia-ml at run time).
//!
//! Owns: mapping a CUDA device index to its NVML index (through
//! `CUDA_VISIBLE_DEVICES` when it lists plain indices). Must never: fail the
//! build or crash without a driver — `NvmlProbe::open` returns an error the
//! caller logs once, and the budget then comes from configuration.

use nvml_wrapper::Nvml;

use super::{MemoryProbe, MemoryReading, ProbeError};

pub struct NvmlProbe {
    nvml: Nvml,
    nvml_index: u32,
}

impl NvmlProbe {
    /// Opens NVML for CUDA device `cuda_index`, and reads it once to prove it
    /// works.
    pub fn open(cuda_index: usize) -> Result<Self, ProbeError> {
        let nvml_index = nvml_index(
            cuda_index,
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        );
        let nvml = Nvml::init().map_err(|e| ProbeError(format!("NVML is not available: {e}")))?;
        let mut probe = NvmlProbe { nvml, nvml_index };
        probe.read()?;
        Ok(probe)
    }
}

impl MemoryProbe for NvmlProbe {
    fn read(&mut self) -> Result<MemoryReading, ProbeError> {
        let device = self
            .nvml
            .device_by_index(self.nvml_index)
            .map_err(|e| ProbeError(format!("NVML device {}: {e}", self.nvml_index)))?;
        let memory = device
            .memory_info()
            .map_err(|e| ProbeError(format!("NVML device {} memory: {e}", self.nvml_index)))?;
        Ok(MemoryReading {
            free_bytes: memory.free,
            total_bytes: memory.total,
        })
    }
}

/// NVML numbers every GPU of the machine; CUDA numbers only the visible ones,
/// in `CUDA_VISIBLE_DEVICES` order.
fn nvml_index(cuda_index: usize, visible: Option<&str>) -> u32 {
    let listed: Option<Vec<u32>> = visible.and_then(|list| {
        list.split(',')
            .map(|item| item.trim().parse::<u32>().ok())
            .collect()
    });
    match listed {
        Some(indices) if cuda_index < indices.len() => indices[cuda_index],
        _ => cuda_index as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_indices_map_through_visible_devices() {
        assert_eq!(nvml_index(0, None), 0);
        assert_eq!(nvml_index(1, Some("3,1")), 1);
        assert_eq!(nvml_index(0, Some("3,1")), 3);
        // UUIDs or an out-of-range index: NVML's own order is the best guess.
        assert_eq!(nvml_index(0, Some("GPU-8f2c")), 0);
        assert_eq!(nvml_index(2, Some("3,1")), 2);
    }

    #[test]
    fn without_a_driver_open_fails_cleanly() {
        // This machine (and CI) has no NVIDIA driver; on a GPU machine the
        // probe opens and reads a plausible total instead.
        match NvmlProbe::open(0) {
            Ok(mut probe) => {
                let reading = probe.read().unwrap();
                assert!(reading.total_bytes > 0 && reading.free_bytes <= reading.total_bytes);
            }
            Err(error) => assert!(error.0.contains("NVML"), "{error}"),
        }
    }
}
