//! Where a model's layers run: on the CPU, a local GPU (`-ngl`, `--main-gpu`), or the devices
//! of remote ggml-rpc servers (`--rpc`), split as llama.cpp splits them.
//!
//! llama.cpp counts n_layer + 1 "layers": the repeating ones and, last, the output layer (final
//! norm and vocabulary projection). `-ngl N` puts the last N of them on the devices (so `-ngl 1`
//! is the output layer alone; any N above the count, e.g. 99, or `all` is everything), and the
//! devices share those N in proportion to `--tensor-split` or to their free memory: layer `il`
//! goes to the first device whose cumulative share exceeds `(il - first) / N`. Remote devices
//! come first in the list (in `--rpc` order), then the local GPU. Token embeddings stay in host
//! memory (their lookup is a row copy). A layer's KV cache lives with its weights.
//!
//! With `--rpc` and no `-ngl`, the local CPU joins the split as the last device: every layer is
//! shared among the remote devices and this machine by free memory (or by a `--tensor-split`
//! with one more share than there are devices, the last one the CPU's), and the output layer
//! stays here.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ggml::{BufferType, Device};

/// `-ngl all`: every layer and the output layer.
pub const ALL_LAYERS: u32 = u32::MAX;
/// At most this many shares in `--tensor-split` (as llama.cpp's device limit).
pub const MAX_SPLIT: usize = 16;

/// `--tensor-split` shares (fixed capacity, so load options stay `Copy`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorSplit {
    shares: [f32; MAX_SPLIT],
    len: usize,
}

impl TensorSplit {
    pub fn shares(&self) -> &[f32] {
        &self.shares[..self.len]
    }
}

/// `--tensor-split 3,1` or `3/1`: non-negative shares, not all zero.
pub fn parse_tensor_split(s: &str) -> Result<TensorSplit, String> {
    let parts: Vec<&str> = s.split([',', '/']).map(str::trim).collect();
    if parts.len() > MAX_SPLIT {
        return Err(format!("at most {MAX_SPLIT} shares"));
    }
    let mut t = TensorSplit {
        shares: [0.0; MAX_SPLIT],
        len: parts.len(),
    };
    for (i, p) in parts.iter().enumerate() {
        let v: f32 = p.parse().map_err(|_| format!("'{p}' is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("'{p}' is not a share (a number ≥ 0)"));
        }
        t.shares[i] = v;
    }
    if t.shares().iter().all(|&v| v == 0.0) {
        return Err("the shares are all zero".into());
    }
    Ok(t)
}

/// Where a model's layers run.
#[derive(Clone, Debug)]
pub struct Offload {
    /// The devices besides the CPU that hold layers, in split order (remote ones first).
    pub devices: Vec<Device>,
    /// Repeating layers of the model.
    pub n_layer: u32,
    /// Each repeating layer's device (an index into `devices`; None: the CPU).
    pub layers: Vec<Option<usize>>,
    /// The output layer's device.
    pub output: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("--main-gpu {index}: only {count} GPU(s) found ({names})")]
    NoSuchGpu {
        index: usize,
        count: usize,
        names: String,
    },
    #[error("{0} has no buffer type")]
    NoBufferType(String),
    #[error("--tensor-split has {given} shares for {devices}: give {want}")]
    SplitLength {
        given: usize,
        devices: String,
        want: String,
    },
}

static WARNED_NO_GPU: AtomicBool = AtomicBool::new(false);

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OffloadRequest {
    /// `-ngl` (None: not given).
    pub n_gpu_layers: Option<u32>,
    pub main_gpu: usize,
    pub tensor_split: Option<TensorSplit>,
}

/// The device (index into `shares`) of each of `n_slots` slots when the last `n_dev_slots`
/// of them are shared by `shares` (cumulative, normalised, compared in f32 as llama.cpp
/// does); the first slots get None.
pub fn split_slots(n_slots: usize, n_dev_slots: usize, shares: &[f32]) -> Vec<Option<usize>> {
    let n_dev_slots = n_dev_slots.min(n_slots);
    let mut cum = Vec::with_capacity(shares.len());
    let mut sum = 0.0f32;
    for &s in shares {
        sum += s;
        cum.push(sum);
    }
    for c in &mut cum {
        *c /= sum;
    }
    let first = n_slots - n_dev_slots;
    (0..n_slots)
        .map(|il| {
            if il < first || shares.is_empty() {
                return None;
            }
            let x = (il - first) as f32 / n_dev_slots as f32;
            // upper_bound: the first share point strictly above x.
            let d = cum.iter().position(|&c| c > x).unwrap_or(shares.len() - 1);
            Some(d.min(shares.len() - 1))
        })
        .collect()
}

impl Offload {
    /// Everything on the CPU.
    pub fn none(n_layer: u32) -> Offload {
        Offload {
            devices: Vec::new(),
            n_layer,
            layers: vec![None; n_layer as usize],
            output: None,
        }
    }

    /// Plan the split of `n_layer` layers (see the module's description). The remote devices
    /// are those `--rpc` registered with ggml. Without any device, `-ngl` warns once per
    /// process and everything stays on the CPU.
    pub fn plan(req: &OffloadRequest, n_layer: u32) -> Result<Offload, OffloadError> {
        let mut devices = Device::remote();
        let wants_gpu = req.n_gpu_layers.is_some_and(|n| n > 0);
        if wants_gpu {
            let gpus = Device::gpus();
            if gpus.is_empty() && devices.is_empty() && !WARNED_NO_GPU.swap(true, Ordering::Relaxed)
            {
                let why = if crate::ggml::has_gpu_backend() {
                    "no GPU found"
                } else {
                    "this build has no GPU backend (build with --features cuda or metal)"
                };
                log::warn!("-ngl: {why}; running on the CPU");
            }
            if !gpus.is_empty() {
                let gpu = *gpus
                    .get(req.main_gpu)
                    .ok_or_else(|| OffloadError::NoSuchGpu {
                        index: req.main_gpu,
                        count: gpus.len(),
                        names: gpus.iter().map(Device::name).collect::<Vec<_>>().join(", "),
                    })?;
                devices.push(gpu);
            }
        }
        if devices.is_empty() || req.n_gpu_layers == Some(0) {
            return Ok(Offload::none(n_layer));
        }
        for d in &devices {
            if d.buffer_type().is_none() {
                return Err(OffloadError::NoBufferType(d.name()));
            }
        }
        let n_slots = n_layer as usize + 1;
        // Without -ngl (only possible with --rpc), the CPU is the last device of the split.
        let cpu_joins = req.n_gpu_layers.is_none();
        let n_dev_slots = match req.n_gpu_layers {
            None | Some(ALL_LAYERS) => n_slots,
            Some(n) => (n as usize).min(n_slots),
        };
        let n_shares = devices.len() + usize::from(cpu_joins);
        let shares: Vec<f32> = match req.tensor_split {
            Some(ts) if ts.shares().len() == n_shares => ts.shares().to_vec(),
            // llama.cpp's meaning without -ngl too: the devices only, nothing on the CPU.
            Some(ts) if cpu_joins && ts.shares().len() == devices.len() => {
                ts.shares().iter().copied().chain([0.0]).collect()
            }
            Some(ts) => {
                let names = devices
                    .iter()
                    .map(Device::name)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(OffloadError::SplitLength {
                    given: ts.shares().len(),
                    devices: names,
                    want: if cpu_joins {
                        format!(
                            "{} (one per device) or {} (the last for this machine's CPU)",
                            devices.len(),
                            devices.len() + 1
                        )
                    } else {
                        format!("{} (one per device)", devices.len())
                    },
                });
            }
            None => {
                let mut free: Vec<f32> = devices.iter().map(free_memory).collect();
                if cpu_joins {
                    free.push(Device::cpu().as_ref().map_or(0.0, free_memory));
                }
                free
            }
        };
        let slots = split_slots(n_slots, n_dev_slots, &shares);
        let on = |s: Option<usize>| s.filter(|&d| d < devices.len());
        let layers: Vec<Option<usize>> = slots[..n_layer as usize].iter().map(|&s| on(s)).collect();
        let output = on(slots[n_layer as usize]);
        // Keep only the devices that hold something, re-indexed.
        let used: Vec<usize> = (0..devices.len())
            .filter(|d| layers.contains(&Some(*d)) || output == Some(*d))
            .collect();
        let remap = |s: Option<usize>| s.map(|d| used.iter().position(|&u| u == d).expect("used"));
        Ok(Offload {
            devices: used.iter().map(|&d| devices[d]).collect(),
            n_layer,
            layers: layers.into_iter().map(remap).collect(),
            output: remap(output),
        })
    }

    /// The device of repeating layer `il` (None: the CPU).
    pub fn layer_device(&self, il: u32) -> Option<usize> {
        self.layers.get(il as usize).copied().flatten()
    }

    /// Whether any part of the model is off the CPU.
    pub fn any(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Whether a local GPU holds layers (ggml then also runs big products of host weights
    /// there: "op offload").
    pub fn local_gpu(&self) -> bool {
        self.devices.iter().any(|d| !d.is_remote())
    }

    /// The memory of device `d`.
    pub fn buffer_type(&self, d: usize) -> Option<BufferType> {
        self.devices.get(d).and_then(Device::buffer_type)
    }

    /// The memory each repeating layer's weights and cache live in (None: host memory).
    pub fn layer_buffer_types(&self) -> Vec<Option<BufferType>> {
        self.layers
            .iter()
            .map(|d| d.and_then(|d| self.buffer_type(d)))
            .collect()
    }

    /// "layers 0-9 on the CPU; layers 10-19 on RPC0 (127.0.0.1:50052); layers 20-29 and the
    /// output layer on RPC1 (127.0.0.1:50053)".
    pub fn describe(&self) -> String {
        if !self.any() {
            return "all layers on the CPU".into();
        }
        let name = |d: Option<usize>| match d {
            None => "the CPU".to_string(),
            Some(d) => self.devices[d].summary(),
        };
        let mut parts: Vec<String> = Vec::new();
        let mut start = 0usize;
        for il in 1..=self.layers.len() {
            if il == self.layers.len() || self.layers[il] != self.layers[start] {
                let range = if il - start == 1 {
                    format!("layer {start}")
                } else {
                    format!("layers {start}-{}", il - 1)
                };
                let out = if il == self.layers.len() && self.output == self.layers[start] {
                    " and the output layer"
                } else {
                    ""
                };
                parts.push(format!("{range}{out} on {}", name(self.layers[start])));
                start = il;
            }
        }
        if self.layers.last().copied().flatten() != self.output || self.layers.is_empty() {
            parts.push(format!("the output layer on {}", name(self.output)));
        }
        parts.join("; ")
    }
}

fn free_memory(d: &Device) -> f32 {
    let (free, total) = d.memory();
    // A device that reports no memory counts as the host's (as llama.cpp does).
    if free == 0 && total == 0 {
        return Device::cpu().map_or(1.0, |c| c.memory().0 as f32);
    }
    free as f32
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

    #[test]
    fn the_last_slots_go_to_the_devices_the_output_counted_last() {
        // 4 layers + output; -ngl 2: layer 3 and the output.
        assert_eq!(
            split_slots(5, 2, &[1.0]),
            [None, None, None, Some(0), Some(0)]
        );
        // -ngl 1: the output layer alone (llama.cpp's count).
        assert_eq!(split_slots(5, 1, &[1.0]), [None, None, None, None, Some(0)]);
        assert_eq!(split_slots(5, 99, &[1.0]), [Some(0); 5]);
    }

    #[test]
    fn shares_split_like_llama_cpp() {
        // 30 layers + output over two equal devices: 16 and 15 (x < 0.5 → first).
        let s = split_slots(31, 31, &[1.0, 1.0]);
        assert_eq!(s.iter().filter(|d| **d == Some(0)).count(), 16);
        assert_eq!(s[30], Some(1));
        // Three shares 1:1:2 of 8 slots.
        assert_eq!(
            split_slots(8, 8, &[1.0, 1.0, 2.0]),
            [0, 0, 1, 1, 2, 2, 2, 2].map(Some)
        );
        // A zero share gets nothing.
        assert!(split_slots(8, 8, &[1.0, 0.0]).iter().all(|d| *d == Some(0)));
    }

    #[test]
    fn tensor_splits_parse() {
        assert_eq!(parse_tensor_split("3,1").unwrap().shares(), [3.0, 1.0]);
        assert_eq!(
            parse_tensor_split("1/1/2").unwrap().shares(),
            [1.0, 1.0, 2.0]
        );
        for bad in ["", "x", "-1,2", "0,0", "inf"] {
            assert!(parse_tensor_split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gpu_layers_parse_like_llama_cpp() {
        assert_eq!(parse_gpu_layers("all"), Ok(ALL_LAYERS));
        assert_eq!(parse_gpu_layers("-1"), Ok(ALL_LAYERS));
        assert_eq!(parse_gpu_layers("12"), Ok(12));
        assert!(parse_gpu_layers("x").is_err());
    }

    #[test]
    fn no_device_means_cpu_only() {
        if Device::gpus().is_empty() && Device::remote().is_empty() {
            let req = OffloadRequest {
                n_gpu_layers: Some(99),
                ..Default::default()
            };
            let o = Offload::plan(&req, 24).unwrap();
            assert!(!o.any());
            assert_eq!(o.describe(), "all layers on the CPU");
        }
    }
}
