//! `qwen3` (Qwen3 dense models): the llama graph with RMSNorm over each head of Q and K
//! before RoPE, no Q/K/V biases, split-half RoPE; the head size is its own key
//! (`attention.key_length`, e.g. 128 in Qwen3-0.6B whose n_embd / n_head is 64).

use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::Layer;

use super::llama;
pub use super::llama::build;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read(f, "qwen3", RopeType::Neox)
}

/// Bind one layer's tensors: llama's, plus the per-head Q/K norms.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (hd, l) = (hp.head_dim_k as u64, Some(il));
    Ok(Layer {
        q_norm: Some(b.plain(W::AttnQNorm, l, &[hd])?),
        k_norm: Some(b.plain(W::AttnKNorm, l, &[hd])?),
        ..llama::layer(b, hp, il)?
    })
}
