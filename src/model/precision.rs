//! Devices and precisions: parsing the flags, and resolving `--dtype auto` to
//! what the device runs fastest without changing rankings.
//!
//! Owns: the rule "fp16 on CUDA, bf16 on a CPU with native bf16, fp32
//! elsewhere" and the refusal of fp16 on CPU. Must never: touch libtorch
//! (the caller asks tch whether CUDA is there) or read files other than
//! the CPU's feature flags.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        if text == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if text == "cuda" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(index) = text.strip_prefix("cuda:") {
            if let Ok(index) = index.parse() {
                return Ok(DeviceSpec::Cuda(index));
            }
        }
        Err(format!("expected cpu, cuda or cuda:N, got {text:?}"))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// The precision asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeRequest {
    Auto,
    Exact(Dtype),
}

impl FromStr for DtypeRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DtypeRequest::Auto),
            other => other
                .parse()
                .map(DtypeRequest::Exact)
                .map_err(|_| format!("expected auto, fp32, bf16 or fp16, got {text:?}")),
        }
    }
}

/// A precision the model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Fp32,
    Bf16,
    Fp16,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
        }
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "f32" => Ok(Dtype::Fp32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "fp16" | "float16" | "f16" | "half" => Ok(Dtype::Fp16),
            _ => Err(format!("expected fp32, bf16 or fp16, got {text:?}")),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns the requested precision into the one to run, given the device and
/// whether the CPU computes bf16 natively.
pub fn resolve_dtype(
    request: DtypeRequest,
    device: DeviceSpec,
    cpu_has_native_bf16: bool,
) -> Result<Dtype, Error> {
    match (request, device) {
        (DtypeRequest::Exact(Dtype::Fp16), DeviceSpec::Cpu) => Err(Error::Config(
            "--dtype fp16 is for CUDA devices; on cpu use bf16 (fast where the CPU has \
             avx512_bf16 or AMX), fp32 or auto"
                .into(),
        )),
        (DtypeRequest::Exact(dtype), _) => Ok(dtype),
        (DtypeRequest::Auto, DeviceSpec::Cuda(_)) => Ok(Dtype::Fp16),
        (DtypeRequest::Auto, DeviceSpec::Cpu) if cpu_has_native_bf16 => Ok(Dtype::Bf16),
        (DtypeRequest::Auto, DeviceSpec::Cpu) => Ok(Dtype::Fp32),
    }
}

/// Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX-BF16),
/// read from the kernel's view of the CPU's flags.
pub fn cpu_has_native_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| cpuinfo_has_native_bf16(&text))
        .unwrap_or(false)
}

fn cpuinfo_has_native_bf16(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "avx512_bf16" || flag == "amx_bf16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn auto_picks_per_device() {
        let check = |request: &str, device: &str, native: bool, expected: Result<Dtype, ()>| {
            let got = resolve_dtype(request.parse().unwrap(), device.parse().unwrap(), native)
                .map_err(|_| ());
            assert_eq!(got, expected, "{request} on {device}, native bf16 {native}");
        };
        check("auto", "cuda:0", false, Ok(Dtype::Fp16));
        check("auto", "cpu", true, Ok(Dtype::Bf16));
        check("auto", "cpu", false, Ok(Dtype::Fp32));
        check("fp32", "cuda:0", false, Ok(Dtype::Fp32));
        check("bf16", "cpu", false, Ok(Dtype::Bf16));
        check("fp16", "cuda", false, Ok(Dtype::Fp16));
        check("fp16", "cpu", true, Err(()));
        assert!("int8".parse::<DtypeRequest>().is_err());
    }

    #[test]
    fn fp16_on_cpu_says_what_to_do() {
        let error = resolve_dtype(DtypeRequest::Exact(Dtype::Fp16), DeviceSpec::Cpu, true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("fp16 is for CUDA"), "{error}");
    }

    #[test]
    fn cpuinfo_flags_are_read() {
        assert!(cpuinfo_has_native_bf16(
            "flags\t: fpu avx512f avx512_bf16 sse\n"
        ));
        assert!(cpuinfo_has_native_bf16("flags : amx_bf16 amx_tile\n"));
        assert!(!cpuinfo_has_native_bf16(
            "flags : avx2 avx512f\nbugs : avx512_bf16\n"
        ));
    }
}
