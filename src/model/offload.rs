//! Which layers run on a GPU (`-ngl`, `--main-gpu`), as llama.cpp counts them: the last N
//! repeating layers go to the GPU; the output layer (final norm and vocabulary projection)
//! follows when N exceeds the layer count (`-ngl 99`, `-ngl all`). Token embeddings stay in
//! host memory (their lookup is a row copy). Layers on the GPU keep their KV cache there too.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ggml::{BufferType, Device};

/// `-ngl all`: every layer and the output layer.
pub const ALL_LAYERS: u32 = u32::MAX;

/// Where a model's layers run.
#[derive(Clone, Debug)]
pub struct Offload {
    /// The GPU used, when any layer is on it.
    pub device: Option<Device>,
    /// Repeating layers of the model.
    pub n_layer: u32,
    /// How many of them (the last ones) are on the GPU.
    pub n_gpu_layers: u32,
    /// The output layer is on the GPU.
    pub output: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("--main-gpu {index}: only {count} GPU(s) found ({names})")]
    NoSuchGpu {
        index: usize,
        count: usize,
        names: String,
    },
    #[error("GPU {0} has no buffer type")]
    NoBufferType(String),
}

static WARNED_NO_GPU: AtomicBool = AtomicBool::new(false);

impl Offload {
    /// Everything on the CPU.
    pub fn none(n_layer: u32) -> Offload {
        Offload {
            device: None,
            n_layer,
            n_gpu_layers: 0,
            output: false,
        }
    }

    /// Offload the last `requested` of `n_layer` layers to GPU `main_gpu`. Without a GPU this
    /// warns (once per process) and keeps everything on the CPU.
    pub fn plan(requested: u32, main_gpu: usize, n_layer: u32) -> Result<Offload, OffloadError> {
        if requested == 0 {
            return Ok(Offload::none(n_layer));
        }
        let gpus = Device::gpus();
        if gpus.is_empty() {
            if !WARNED_NO_GPU.swap(true, Ordering::Relaxed) {
                let why = if crate::ggml::has_gpu_backend() {
                    "no GPU found"
                } else {
                    "this build has no GPU backend (build with --features cuda or metal)"
                };
                log::warn!("-ngl: {why}; running on the CPU");
            }
            return Ok(Offload::none(n_layer));
        }
        let device = *gpus.get(main_gpu).ok_or_else(|| OffloadError::NoSuchGpu {
            index: main_gpu,
            count: gpus.len(),
            names: gpus.iter().map(Device::name).collect::<Vec<_>>().join(", "),
        })?;
        if device.buffer_type().is_none() {
            return Err(OffloadError::NoBufferType(device.name()));
        }
        Ok(Offload {
            device: Some(device),
            n_layer,
            n_gpu_layers: requested.min(n_layer),
            output: requested > n_layer,
        })
    }

    /// Whether repeating layer `il` runs on the GPU.
    pub fn layer_on_gpu(&self, il: u32) -> bool {
        self.device.is_some() && il >= self.n_layer - self.n_gpu_layers
    }

    /// Whether any part of the model is on the GPU.
    pub fn any(&self) -> bool {
        self.device.is_some() && (self.n_gpu_layers > 0 || self.output)
    }

    /// The GPU's memory, when anything is offloaded.
    pub fn buffer_type(&self) -> Option<BufferType> {
        self.device
            .filter(|_| self.any())
            .and_then(|d| d.buffer_type())
    }

    /// "24/24 layers and the output layer on CUDA0 (NVIDIA H100 80GB HBM3, 81559 MiB)".
    pub fn describe(&self) -> String {
        match self.device.filter(|_| self.any()) {
            None => "all layers on the CPU".into(),
            Some(d) => format!(
                "{}/{} layers{} on {}",
                self.n_gpu_layers,
                self.n_layer,
                if self.output {
                    " and the output layer"
                } else {
                    ""
                },
                d.summary()
            ),
        }
    }
}

/// `-ngl` values: a layer count, or `all` (also `-1`, as llama.cpp accepts).
pub fn parse_gpu_layers(s: &str) -> Result<u32, String> {
    match s.trim() {
        "all" | "-1" => Ok(ALL_LAYERS),
        n => n
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a layer count or 'all'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(device: bool, n_layer: u32, n: u32) -> Vec<bool> {
        let mut o = Offload::none(n_layer);
        if device {
            o.n_gpu_layers = n.min(n_layer);
            o.output = n > n_layer;
            // A device handle cannot be made without ggml's registry; `layer_on_gpu` only
            // needs to know there is one, which `Device::gpus()` gives on a GPU machine.
            o.device = Device::all().first().copied();
        }
        (0..n_layer).map(|il| o.layer_on_gpu(il)).collect()
    }

    #[test]
    fn the_last_layers_are_offloaded() {
        assert_eq!(on(true, 4, 2), [false, false, true, true]);
        assert_eq!(on(true, 4, 99), [true; 4]);
        assert_eq!(on(false, 4, 99), [false; 4]);
    }

    #[test]
    fn gpu_layers_parse_like_llama_cpp() {
        assert_eq!(parse_gpu_layers("all"), Ok(ALL_LAYERS));
        assert_eq!(parse_gpu_layers("-1"), Ok(ALL_LAYERS));
        assert_eq!(parse_gpu_layers("12"), Ok(12));
        assert!(parse_gpu_layers("x").is_err());
    }

    #[test]
    fn no_gpu_means_cpu_only() {
        if Device::gpus().is_empty() {
            let o = Offload::plan(99, 0, 24).unwrap();
            assert!(!o.any());
            assert_eq!(o.describe(), "all layers on the CPU");
        }
    }
}
