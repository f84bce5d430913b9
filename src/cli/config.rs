//! Validated settings, as the modes use them.

use std::path::{Path, PathBuf};

use crate::ggml::Type;
use crate::model::LoadOptions;

use super::args::{FlashAttn, ModelArgs};

/// A problem with the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// File name of the default model, fetched by `models/fetch-default`.
pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// Requested context (0 = the model's training context).
    pub n_ctx: u32,
    pub n_threads: usize,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub type_k: Type,
    pub type_v: Type,
    pub flash_attn: bool,
    /// How the flash-attention setting was chosen, for the verbose report.
    pub flash_attn_why: &'static str,
    /// Sliding-window layers keep the whole context (no ring).
    pub swa_full: bool,
    pub load: LoadOptions,
    pub mlock: bool,
    pub verbose: u8,
}

/// KV cache types users may choose.
pub const CACHE_TYPES: &[&str] = &[
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl",
];

pub fn cache_type(flag: &str, name: &str) -> Result<Type, UsageError> {
    let ty = match name.to_ascii_lowercase().as_str() {
        "f32" => Type::F32,
        "f16" => Type::F16,
        "bf16" => Type::BF16,
        "q8_0" => Type::Q8_0,
        "q4_0" => Type::Q4_0,
        "q4_1" => Type::Q4_1,
        "q5_0" => Type::Q5_0,
        "q5_1" => Type::Q5_1,
        "iq4_nl" => Type::IQ4_NL,
        _ => {
            return Err(UsageError(format!(
                "{flag}: unknown cache type '{name}' (choose from {})",
                CACHE_TYPES.join(", ")
            )))
        }
    };
    Ok(ty)
}

/// Whether attention runs through ggml's flash-attention op, and why (for `-v`).
pub fn flash_attn_choice(fa: FlashAttn, type_v: Type) -> Result<(bool, &'static str), UsageError> {
    // Without flash attention V is stored transposed (one row per channel), which a
    // block-quantized type cannot be; ggml's flash-attention op reads V by rows instead.
    Ok(match fa {
        FlashAttn::On => (true, "on"),
        FlashAttn::Auto if type_v.is_quantized() => {
            (true, "on (auto: the quantized V cache needs it)")
        }
        FlashAttn::Auto => (true, "on (auto: the CPU backend supports it)"),
        FlashAttn::Off if type_v.is_quantized() => {
            return Err(UsageError(format!(
                "--cache-type-v {type_v} needs flash attention (a quantized V cannot be stored transposed): use --flash-attn on or auto, or a float V type (f16, bf16, f32)"
            )))
        }
        FlashAttn::Off => (false, "off"),
    })
}

impl ModelConfig {
    pub fn from_args(a: &ModelArgs, default_ctx: u32) -> Result<ModelConfig, UsageError> {
        let path = match &a.model {
            Some(p) => p.clone(),
            None => default_model_path()?,
        };
        let type_k = cache_type("--cache-type-k", &a.cache_type_k)?;
        let type_v = cache_type("--cache-type-v", &a.cache_type_v)?;
        let (flash_attn, flash_attn_why) = flash_attn_choice(a.flash_attn, type_v)?;
        if a.ubatch_size == 0 || a.batch_size == 0 {
            return Err(UsageError(
                "--batch-size and --ubatch-size must be positive".into(),
            ));
        }
        let n_threads = match a.threads {
            Some(0) => return Err(UsageError("--threads must be at least 1".into())),
            Some(t) => t,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(4),
        };
        Ok(ModelConfig {
            path,
            n_ctx: a.ctx_size.unwrap_or(default_ctx),
            n_threads,
            n_batch: a.batch_size,
            n_ubatch: a.ubatch_size.min(a.batch_size),
            type_k,
            type_v,
            flash_attn,
            flash_attn_why,
            swa_full: a.swa_full,
            load: LoadOptions {
                mmap: !a.no_mmap,
                repack: !a.no_repack,
                n_gpu_layers: a.n_gpu_layers,
                main_gpu: a.main_gpu,
            },
            mlock: a.mlock,
            verbose: a.verbose,
        })
    }
}

/// The default model: `$EMBER_MODEL`, else `models/<DEFAULT_MODEL>` next to the current
/// directory or the executable's repository.
pub fn default_model_path() -> Result<PathBuf, UsageError> {
    if let Some(p) = std::env::var_os("EMBER_MODEL") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from("models").join(DEFAULT_MODEL)];
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/ember → repository root
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("models").join(DEFAULT_MODEL));
        }
    }
    candidates.into_iter().find(|p| Path::new(p).is_file()).ok_or_else(|| {
        UsageError(format!(
            "no model given (-m FILE) and the default model models/{DEFAULT_MODEL} is missing: run `models/fetch-default` to fetch it"
        ))
    })
}
