//! Safe wrapper over ggml: the only module of Ember allowed to use `unsafe`.
//!
//! - [`Context`] owns a `ggml_context` (tensor headers and graphs, never tensor data: every
//!   context is `no_alloc`); [`Tensor<'ctx>`] borrows its context, so a tensor cannot outlive the
//!   memory that holds it.
//! - [`Backend`], [`Buffer`] and [`Sched`] own ggml's backend objects and free them on drop.
//! - ggml's log goes through the `log` crate (silent unless `-v`).
//!
//! Shape errors inside ggml end in `GGML_ASSERT` (an abort, not undefined behaviour); callers
//! validate shapes before building graphs (weights are shape-checked when bound).
#![allow(unsafe_code)]

mod backend;
mod context;
mod device;
pub mod kernels;
mod log;
mod mmap;
pub mod rpc;
mod types;

pub use backend::{Backend, Buffer, BufferType, HostMemory, Sched};
pub use context::{Context, Graph, GraphHandle, Tensor, TensorHandle};
pub use device::{compiled_backends, has_gpu_backend, Device, DeviceKind};
pub use log::install_log_callback;
pub use mmap::map_file;
pub use types::Type;

/// An error reported by ggml (allocation failures, compute failures).
#[derive(Debug, thiserror::Error)]
pub enum GgmlError {
    #[error("ggml could not create a context of {0} bytes")]
    ContextAlloc(usize),
    #[error("ggml could not allocate a {what} buffer of {bytes} bytes")]
    BufferAlloc { what: String, bytes: usize },
    #[error("ggml could not allocate the compute graph")]
    GraphAlloc,
    #[error("ggml graph computation failed (status {0})")]
    Compute(i32),
    #[error("ggml backend '{0}' could not be initialised")]
    BackendInit(String),
    #[error("tensor '{name}': {msg}")]
    Tensor { name: String, msg: String },
}

/// ggml's version and the CPU flags its kernels were compiled for.
pub fn build_info() -> (&'static str, &'static str) {
    (ggml_sys::GGML_VERSION, ggml_sys::CPU_FLAGS)
}

/// CPU features detected at run time that matter to ggml's kernels.
pub fn cpu_features() -> Vec<&'static str> {
    let mut v = Vec::new();
    // SAFETY: these functions only read cached CPUID results.
    unsafe {
        if ggml_sys::ggml_cpu_has_avx2() != 0 {
            v.push("AVX2");
        }
        if ggml_sys::ggml_cpu_has_fma() != 0 {
            v.push("FMA");
        }
        if ggml_sys::ggml_cpu_has_f16c() != 0 {
            v.push("F16C");
        }
        if ggml_sys::ggml_cpu_has_avx512() != 0 {
            v.push("AVX512");
        }
    }
    v
}
