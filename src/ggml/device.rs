//! The devices ggml's backends found (the CPU, CUDA GPUs, a Metal GPU) and the backends
//! compiled in.

use std::ffi::CStr;
use std::ptr::NonNull;

use ggml_sys as sys;

use super::backend::BufferType;

/// What kind of device it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    /// A GPU with its own memory (CUDA).
    Gpu,
    /// A GPU sharing host memory (Apple silicon).
    IntegratedGpu,
    /// An accelerator working beside the CPU backend (BLAS, AMX).
    Accel,
    Other,
}

/// A device registered with ggml (a static object: valid for the whole process).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub(super) raw: NonNull<sys::ggml_backend_device>,
}

// SAFETY: registered devices are process-wide objects that ggml never frees; their query
// functions are safe to call from any thread.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings owned by static objects.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Device {
    /// Every device of every compiled-in backend (the first call initialises the backends:
    /// for CUDA, the driver is asked for its GPUs; without a driver there are none).
    pub fn all() -> Vec<Device> {
        // SAFETY: the registry is built once by ggml and only read here.
        let n = unsafe { sys::ggml_backend_dev_count() };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `i` is below the device count.
            if let Some(raw) = NonNull::new(unsafe { sys::ggml_backend_dev_get(i) }) {
                out.push(Device { raw });
            }
        }
        out
    }

    /// The local GPUs (discrete or integrated), in ggml's order (remote devices, which ggml
    /// also calls GPUs, are not among them).
    pub fn gpus() -> Vec<Device> {
        Device::all()
            .into_iter()
            .filter(|d| matches!(d.kind(), DeviceKind::Gpu | DeviceKind::IntegratedGpu))
            .filter(|d| !d.is_remote())
            .collect()
    }

    /// The devices of the ggml-rpc servers connected so far (`--rpc`), in connection order.
    pub fn remote() -> Vec<Device> {
        Device::all()
            .into_iter()
            .filter(Device::is_remote)
            .collect()
    }

    /// The CPU device.
    pub fn cpu() -> Option<Device> {
        // SAFETY: the registry is built once by ggml and only read here.
        let raw = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
        NonNull::new(raw).map(|raw| Device { raw })
    }

    /// Whether this is a device of a remote ggml-rpc server.
    pub fn is_remote(&self) -> bool {
        // SAFETY: live static device; its registry is static too (or null).
        let reg = unsafe { sys::ggml_backend_dev_backend_reg(self.raw.as_ptr()) };
        if reg.is_null() {
            return false;
        }
        // SAFETY: live registry.
        c_str(unsafe { sys::ggml_backend_reg_name(reg) }).starts_with("RPC")
    }

    /// ggml's name for it ("CPU", "CUDA0", "MTL0").
    pub fn name(&self) -> String {
        // SAFETY: live static device.
        c_str(unsafe { sys::ggml_backend_dev_name(self.raw.as_ptr()) })
    }

    /// A human description ("NVIDIA H100 80GB HBM3", the CPU's brand string).
    pub fn description(&self) -> String {
        // SAFETY: live static device.
        c_str(unsafe { sys::ggml_backend_dev_description(self.raw.as_ptr()) })
    }

    pub fn kind(&self) -> DeviceKind {
        // SAFETY: live static device.
        match unsafe { sys::ggml_backend_dev_type(self.raw.as_ptr()) } {
            sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
            sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
            sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
            sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accel,
            _ => DeviceKind::Other,
        }
    }

    /// (free, total) bytes of the device's memory.
    pub fn memory(&self) -> (usize, usize) {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: live device; both pointers are valid for one write.
        unsafe { sys::ggml_backend_dev_memory(self.raw.as_ptr(), &mut free, &mut total) };
        (free, total)
    }

    /// The device's own memory.
    pub fn buffer_type(&self) -> Option<BufferType> {
        // SAFETY: live device; returns a static buffer type (or null).
        let raw = unsafe { sys::ggml_backend_dev_buffer_type(self.raw.as_ptr()) };
        NonNull::new(raw).map(|raw| BufferType { raw })
    }

    /// "CUDA0 (NVIDIA H100 80GB HBM3, 81559 MiB)".
    pub fn summary(&self) -> String {
        let (_, total) = self.memory();
        if self.kind() == DeviceKind::Cpu || total == 0 {
            format!("{} ({})", self.name(), self.description())
        } else {
            format!(
                "{} ({}, {} MiB)",
                self.name(),
                self.description(),
                total / (1024 * 1024)
            )
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The backends compiled into this build ("cpu,rpc,cuda").
pub fn compiled_backends() -> &'static str {
    sys::BACKENDS
}

/// Whether a GPU backend (CUDA or Metal) is compiled in.
pub fn has_gpu_backend() -> bool {
    sys::BACKENDS.split(',').any(|b| b != "cpu" && b != "rpc")
}
