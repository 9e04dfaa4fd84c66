//! The model: its directory, its precision, its inputs, and the `Scorer`
//! seam through which the rest of the server runs it.
//!
//! Owns: the `Scorer` trait, its error type, and which libtorch/CUDA error
//! texts mean "out of memory" and which mean "the device is broken". Must
//! never: depend on tonic or on the request path; a `Scorer` is synchronous
//! and lives on the model thread.

pub(crate) mod batch;
pub mod golden;
pub mod precision;
pub(crate) mod spec;
pub mod torch;
pub(crate) mod warmup;

pub use batch::{EncodedPair, PaddedBatch};
pub use precision::{DeviceSpec, Dtype, DtypeRequest};
pub use spec::{Activation, ModelDir, ModelSpec};

/// Why a batch could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    /// The device ran out of memory; a smaller batch may fit.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The device reported a sticky error (an illegal memory access, a
    /// device-side assert, a lost device, …): its CUDA context is corrupt
    /// for the whole process, so nothing more may run on it.
    #[error("the device failed: {0}")]
    DeviceFailed(String),
    /// Anything else the model or libtorch reported.
    #[error("{0}")]
    Failed(String),
}

/// Lower-case fragments of the errors after which a CUDA context cannot be
/// used again ("any further CUDA work will return the same error"): the
/// `cudaGetErrorString` texts of the CUDA 13 runtime that torch 2.11 ships
/// (libtorch's `C10_CUDA_CHECK` writes `CUDA error: <text>` and then
/// "Search for `<cudaErrorName>'"), the runtime and driver API names, and
/// the library statuses that report a kernel that failed to run.
const DEVICE_FAILURES: &[&str] = &[
    // cudaErrorIllegalAddress (700)
    "an illegal memory access was encountered",
    // cudaErrorAssert (710)
    "device-side assert triggered",
    // cudaErrorLaunchFailure (719), cudaErrorPriorLaunchFailure (53)
    "unspecified launch failure",
    // cudaErrorMisalignedAddress (716)
    "misaligned address",
    // cudaErrorIllegalInstruction (715)
    "an illegal instruction was encountered",
    // cudaErrorHardwareStackError (714)
    "hardware stack error",
    // cudaErrorInvalidPc (718)
    "invalid program counter",
    // cudaErrorInvalidAddressSpace (717)
    "operation not supported on global/shared address space",
    // cudaErrorLaunchTimeout (702)
    "the launch timed out and was terminated",
    // cudaErrorECCUncorrectable (214)
    "uncorrectable ecc error encountered",
    // cudaErrorNvlinkUncorrectable (220)
    "uncorrectable nvlink error",
    // cudaErrorContained (226)
    "invalid access of peer gpu memory over nvlink or a hardware error",
    // cudaErrorExternalDevice (911; "occured" is the runtime's spelling)
    "an async error has occured in external entity outside of cuda",
    // A lost device: cudaErrorDevicesUnavailable (46), cudaErrorNoDevice
    // (100), cudaErrorContextIsDestroyed (709), cudaErrorDeviceUninitialized
    // (201), cudaErrorUnknown (999, what a GPU that fell off the bus tends
    // to report), cudaErrorCudartUnloading (4).
    "cuda-capable device(s) is/are busy or unavailable",
    "no cuda-capable device is detected",
    "context is destroyed",
    "invalid device context",
    "cuda error: unknown error",
    "driver shutting down",
    // The same errors by name (runtime API, then driver API).
    "cudaerrorillegaladdress",
    "cudaerrorassert",
    "cudaerrorlaunchfailure",
    "cudaerrorpriorlaunchfailure",
    "cudaerrormisalignedaddress",
    "cudaerrorillegalinstruction",
    "cudaerrorhardwarestackerror",
    "cudaerrorinvalidpc",
    "cudaerrorinvalidaddressspace",
    "cudaerrorlaunchtimeout",
    "cudaerroreccuncorrectable",
    "cudaerrornvlinkuncorrectable",
    "cudaerrorcontained",
    "cudaerrorexternaldevice",
    "cudaerrordevicesunavailable",
    "cudaerrornodevice",
    "cudaerrorcontextisdestroyed",
    "cudaerrordeviceuninitialized",
    "cudaerrorunknown",
    "cuda_error_illegal_address",
    "cuda_error_assert",
    "cuda_error_launch_failed",
    "cuda_error_misaligned_address",
    "cuda_error_illegal_instruction",
    "cuda_error_hardware_stack_error",
    "cuda_error_invalid_pc",
    "cuda_error_invalid_address_space",
    "cuda_error_launch_timeout",
    "cuda_error_ecc_uncorrectable",
    "cuda_error_nvlink_uncorrectable",
    "cuda_error_contained",
    "cuda_error_external_device",
    "cuda_error_context_is_destroyed",
    // cuBLAS / cuBLASLt ("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when
    // calling `cublasSgemm( handle, …)`") and cuDNN ("cuDNN error:
    // CUDNN_STATUS_EXECUTION_FAILED", and cuDNN 9's _CUDA_DRIVER, _CUBLAS,
    // _CUDART, _CURAND refinements of it): a kernel of theirs failed to run,
    // which after one of the errors above is how the context's state shows.
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
];

/// Lower-case fragments of out-of-memory errors, from libtorch 2.11's own
/// strings (libc10_cuda.so, libtorch_cuda.so, libc10.so) and the CUDA 13
/// runtime's and cuDNN 9's error texts.
const OUT_OF_MEMORY: &[&str] = &[
    // The caching allocator ("CUDA out of memory. Tried to allocate …",
    // torch.OutOfMemoryError), cudaMallocAsync ("… would exceed allowed
    // memory. (out of memory)"), a raw cudaMalloc through C10_CUDA_CHECK
    // ("CUDA error: out of memory", cudaErrorMemoryAllocation) and the
    // driver API ("CUDA driver error: out of memory").
    "out of memory",
    "cudaerrormemoryallocation",
    "cuda_error_out_of_memory",
    // cuBLAS and cuBLASLt handles and workspaces ("CUDA error:
    // CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`").
    "cublas_status_alloc_failed",
    // cuDNN up to 8, and cuDNN 9's refinements of CUDNN_STATUS_INTERNAL_ERROR.
    "cudnn_status_alloc_failed",
    "cudnn_status_internal_error_device_allocation_failed",
    "cudnn_status_internal_error_host_allocation_failed",
    // cuSOLVER ("cusolver error: CUSOLVER_STATUS_ALLOC_FAILED, when calling
    // …") and cuFFT ("cuFFT error: CUFFT_ALLOC_FAILED").
    "cusolver_status_alloc_failed",
    "cufft_alloc_failed",
    // CPU: "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator:
    // can't allocate memory: you tried to allocate … bytes. Error code 12
    // (Cannot allocate memory)" (Linux; "not enough memory" elsewhere), and
    // a C++ allocation failure that reaches tch as its `what()`.
    "defaultcpuallocator: can't allocate memory",
    "defaultcpuallocator: not enough memory",
    "std::bad_alloc",
];

impl ScoreError {
    /// Classifies a libtorch error message: a broken device first (its text
    /// may go on to mention memory), then out of memory, else a failure.
    pub fn from_torch_message(message: String) -> Self {
        let lower = message.to_ascii_lowercase();
        let says = |fragments: &[&str]| fragments.iter().any(|f| lower.contains(f));
        if says(DEVICE_FAILURES) {
            ScoreError::DeviceFailed(message)
        } else if says(OUT_OF_MEMORY) {
            ScoreError::OutOfMemory(message)
        } else {
            ScoreError::Failed(message)
        }
    }

    /// The error's first line without tch's prefix (libtorch appends where it
    /// was raised, a backtrace and advice): what a client needs to know.
    pub fn headline(&self) -> &str {
        let (ScoreError::OutOfMemory(message)
        | ScoreError::DeviceFailed(message)
        | ScoreError::Failed(message)) = self;
        let message = message.trim_start();
        let message = message
            .strip_prefix("Internal torch error: ")
            .unwrap_or(message);
        message.lines().next().unwrap_or(message).trim_end()
    }
}

/// Runs the model on padded batches: the seam between the server and
/// libtorch. Synchronous, and owned by the model thread.
pub trait Scorer {
    /// One raw score per row of `batch`, in row order.
    fn score(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        OutOfMemory,
        DeviceFailed,
        Failed,
    }

    fn kind(error: &ScoreError) -> Kind {
        match error {
            ScoreError::OutOfMemory(_) => Kind::OutOfMemory,
            ScoreError::DeviceFailed(_) => Kind::DeviceFailed,
            ScoreError::Failed(_) => Kind::Failed,
        }
    }

    /// What tch hands over for a `c10::Error`: its `what()` (the message,
    /// then where it was raised and a backtrace) behind tch's own prefix.
    fn from_tch(message: &str) -> String {
        format!(
            "Internal torch error: {message}\nException raised from c10_cuda_check_implementation \
             at /pytorch/c10/cuda/CUDAException.cpp:44 (most recent call first):\nframe #0: \
             c10::Error::Error(c10::SourceLocation, std::string) + 0x9d (0x7f3c1a0 in \
             libc10.so)\nframe #1: <unknown function> + 0x11fb7 (0x7f3c1b0 in libc10_cuda.so)\n"
        )
    }

    /// libtorch 2.11's `C10_CUDA_CHECK` text for a CUDA runtime error: the
    /// `cudaGetErrorString` text, the error's name, and the advice lines.
    fn cuda_check(text: &str, name: &str) -> String {
        format!(
            "CUDA error: {text}\nSearch for `{name}' in \
             https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more \
             information.\nCUDA kernel errors might be asynchronously reported at some other API \
             call, so the stacktrace below might be incorrect.\nFor debugging consider passing \
             CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side \
             assertions.\n"
        )
    }

    /// Real texts, each as tch reports it and bare; the expected class.
    fn table() -> Vec<(String, Kind)> {
        use Kind::*;
        let mut rows = vec![
            // The caching allocator (torch.OutOfMemoryError), 2.11's wording.
            (
                "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of \
                 139.72 GiB of which 1.07 GiB is free. Including non-PyTorch memory, this process \
                 has 138.63 GiB memory in use. Of the allocated memory 135.10 GiB is allocated by \
                 PyTorch, and 2.01 GiB is reserved by PyTorch but unallocated. If reserved but \
                 unallocated memory is large try setting \
                 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See \
                 documentation for Memory Management  \
                 (https://docs.pytorch.org/docs/stable/notes/cuda.html#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)"
                    .to_string(),
                OutOfMemory,
            ),
            (
                "CUDA out of memory. Tried to allocate more than 1EB memory.".into(),
                OutOfMemory,
            ),
            // PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync.
            (
                "Allocation on device 0 would exceed allowed memory. (out of memory)\nCurrently \
                 allocated     : 137.20 GiB\nRequested               : 4.00 GiB\nDevice limit    \
                         : 139.72 GiB\nFree (according to CUDA): 1.31 GiB\nPyTorch limit (set by \
                 user-supplied memory fraction)\n                        : 139.72 GiB"
                    .into(),
                OutOfMemory,
            ),
            // A raw cudaMalloc (context, cuBLAS workspace) through C10_CUDA_CHECK.
            (
                cuda_check("out of memory", "cudaErrorMemoryAllocation"),
                OutOfMemory,
            ),
            ("CUDA driver error: out of memory".into(), OutOfMemory),
            (
                "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`".into(),
                OutOfMemory,
            ),
            (
                "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasLtMatmul with \
                 transpose_mat1 1 transpose_mat2 0 m 1024 n 4096 k 1024 mat1_ld 1024 mat2_ld 1024 \
                 result_ld 1024 abcType 2 computeType 68 scaleType 0`"
                    .into(),
                OutOfMemory,
            ),
            ("cuDNN error: CUDNN_STATUS_ALLOC_FAILED".into(), OutOfMemory),
            (
                "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED".into(),
                OutOfMemory,
            ),
            (
                "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED".into(),
                OutOfMemory,
            ),
            (
                "cusolver error: CUSOLVER_STATUS_ALLOC_FAILED, when calling \
                 `cusolverDnCreate(&handle)`. If you keep seeing this error, you may use \
                 `torch.backends.cuda.preferred_linalg_library()` to try linear algebra \
                 operators with other supported backends."
                    .into(),
                OutOfMemory,
            ),
            ("cuFFT error: CUFFT_ALLOC_FAILED".into(), OutOfMemory),
            (
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't \
                 allocate memory: you tried to allocate 1125899906842624 bytes. Error code 12 \
                 (Cannot allocate memory)"
                    .into(),
                OutOfMemory,
            ),
            (
                "DefaultCPUAllocator: not enough memory: you tried to allocate 4096 bytes.".into(),
                OutOfMemory,
            ),
            ("std::bad_alloc".into(), OutOfMemory),
            // Sticky errors: the context is gone.
            (
                cuda_check(
                    "an illegal memory access was encountered",
                    "cudaErrorIllegalAddress",
                ),
                DeviceFailed,
            ),
            (
                cuda_check("device-side assert triggered", "cudaErrorAssert"),
                DeviceFailed,
            ),
            (
                cuda_check("unspecified launch failure", "cudaErrorLaunchFailure"),
                DeviceFailed,
            ),
            (
                cuda_check("misaligned address", "cudaErrorMisalignedAddress"),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "an illegal instruction was encountered",
                    "cudaErrorIllegalInstruction",
                ),
                DeviceFailed,
            ),
            (
                cuda_check("hardware stack error", "cudaErrorHardwareStackError"),
                DeviceFailed,
            ),
            (
                cuda_check("invalid program counter", "cudaErrorInvalidPc"),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "operation not supported on global/shared address space",
                    "cudaErrorInvalidAddressSpace",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "the launch timed out and was terminated",
                    "cudaErrorLaunchTimeout",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "uncorrectable ECC error encountered",
                    "cudaErrorECCUncorrectable",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "uncorrectable NVLink error detected during the execution",
                    "cudaErrorNvlinkUncorrectable",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "Invalid access of peer GPU memory over nvlink or a hardware error",
                    "cudaErrorContained",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "an async error has occured in external entity outside of CUDA",
                    "cudaErrorExternalDevice",
                ),
                DeviceFailed,
            ),
            (
                cuda_check(
                    "CUDA-capable device(s) is/are busy or unavailable",
                    "cudaErrorDevicesUnavailable",
                ),
                DeviceFailed,
            ),
            (
                cuda_check("no CUDA-capable device is detected", "cudaErrorNoDevice"),
                DeviceFailed,
            ),
            (
                cuda_check("context is destroyed", "cudaErrorContextIsDestroyed"),
                DeviceFailed,
            ),
            (cuda_check("unknown error", "cudaErrorUnknown"), DeviceFailed),
            (
                "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, \
                 opa, opb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)`"
                    .into(),
                DeviceFailed,
            ),
            (
                "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED_CUDART".into(),
                DeviceFailed,
            ),
            // The driver API's names (NVRTC kernels, the fuser).
            (
                "CUDA driver error: CUDA_ERROR_ILLEGAL_ADDRESS".into(),
                DeviceFailed,
            ),
            // Neither: the batch fails, the worker goes on.
            ("index out of range in self".into(), Failed),
            (
                cuda_check("invalid device ordinal", "cudaErrorInvalidDevice")
                    .replace(
                        "\nSearch for `cudaErrorInvalidDevice' in https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information.",
                        "\nGPU device may be out of range, do you have enough GPUs?",
                    ),
                Failed,
            ),
            (
                cuda_check("invalid argument", "cudaErrorInvalidValue"),
                Failed,
            ),
            (
                cuda_check(
                    "no kernel image is available for execution on the device",
                    "cudaErrorNoKernelImageForDevice",
                ),
                Failed,
            ),
            (
                cuda_check(
                    "too many resources requested for launch",
                    "cudaErrorLaunchOutOfResources",
                ),
                Failed,
            ),
            (
                "CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmEx( handle, \
                 opa, opb, m, n, k, &falpha, a, CUDA_R_16F, lda, b, CUDA_R_16F, ldb, &fbeta, c, \
                 CUDA_R_16F, ldc, compute_type, CUBLAS_GEMM_DEFAULT_TENSOR_OP)`"
                    .into(),
                Failed,
            ),
            (
                "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in \
                 a non-contiguous input."
                    .into(),
                Failed,
            ),
            (
                "cuDNN error: CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER".into(),
                Failed,
            ),
            (
                "Expected all tensors to be on the same device, but found at least two devices, \
                 cuda:0 and cpu!"
                    .into(),
                Failed,
            ),
            (
                "The size of tensor a (600) must match the size of tensor b (512) at \
                 non-singleton dimension 1"
                    .into(),
                Failed,
            ),
            (
                "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU \
                 and installed a driver from http://www.nvidia.com/Download/index.aspx"
                    .into(),
                Failed,
            ),
        ];
        let wrapped: Vec<(String, Kind)> = rows
            .iter()
            .map(|(message, kind)| (from_tch(message), *kind))
            .collect();
        rows.extend(wrapped);
        rows
    }

    #[test]
    fn real_libtorch_and_cuda_texts_are_classified() {
        let rows = table();
        assert!(rows.len() > 80);
        for (message, expected) in rows {
            let error = ScoreError::from_torch_message(message.clone());
            assert_eq!(kind(&error), expected, "{message}");
        }
    }

    #[test]
    fn every_fragment_can_match_and_none_is_both_kinds() {
        // A fragment with a capital letter could never match.
        for fragment in DEVICE_FAILURES.iter().chain(OUT_OF_MEMORY) {
            assert_eq!(*fragment, fragment.to_ascii_lowercase());
        }
        // A device failure never reads as out of memory and the reverse.
        let overlap: Vec<_> = DEVICE_FAILURES
            .iter()
            .filter(|d| {
                OUT_OF_MEMORY
                    .iter()
                    .any(|o| d.contains(o) || o.contains(*d))
            })
            .collect();
        assert!(overlap.is_empty(), "{overlap:?}");
    }

    #[test]
    fn libtorch_itself_reports_a_cpu_allocation_failure_as_out_of_memory() {
        let _no_grad = tch::no_grad_guard();
        // 1 PiB: more than any machine's memory and address space allows.
        let error = tch::Tensor::f_empty([1i64 << 50], (tch::Kind::Uint8, tch::Device::Cpu))
            .expect_err("a 1 PiB tensor cannot be allocated");
        let error = ScoreError::from_torch_message(error.to_string());
        assert_eq!(kind(&error), Kind::OutOfMemory, "{error:?}");
        assert!(
            error.headline().contains("DefaultCPUAllocator"),
            "{:?}",
            error.headline()
        );
    }

    #[test]
    fn libtorch_itself_reports_a_bad_index_as_a_plain_failure() {
        let values = tch::Tensor::from_slice(&[1.0f32, 2.0]);
        let error = values
            .f_index_select(0, &tch::Tensor::from_slice(&[5i64]))
            .expect_err("index 5 of 2 values");
        let error = ScoreError::from_torch_message(error.to_string());
        assert_eq!(kind(&error), Kind::Failed, "{error:?}");
    }

    #[test]
    fn the_headline_is_the_first_line() {
        let error = ScoreError::from_torch_message(from_tch(&cuda_check(
            "an illegal memory access was encountered",
            "cudaErrorIllegalAddress",
        )));
        assert_eq!(
            error.headline(),
            "CUDA error: an illegal memory access was encountered"
        );
        assert_eq!(ScoreError::Failed("  one\ntwo".into()).headline(), "one");
    }
}
