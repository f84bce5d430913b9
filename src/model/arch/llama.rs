//! `llama` (Llama 1/2/3, SmolLM, Mistral-style dense models): RMSNorm, RoPE (adjacent pairs),
//! grouped-query attention (optional Q/K/V/O biases), SwiGLU feed-forward, tied or separate
//! output. `qwen2` is this graph with split-half RoPE.

use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::weights::{Binder, WeightError};
use crate::model::Layer;

use super::bind;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read(f, "llama", RopeType::Normal)
}

/// Bind one layer's tensors (the shapes llama.cpp expects).
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    bind::dense(b, hp, il)
}

/// The forward graph; returns the logits of the selected rows. Shared by the llama-like
/// families, each option taken from the model: per-head Q/K norms when the layers have them
/// (qwen3), layers without RoPE (smollm3), the attention scale, a residual scale (granite),
/// attention temperature tuning (mistral3).
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let kq_scale = hp.attn_scale;
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let (mut q, k, v) = b.attn_input(l, x, il);
        if let Some(t) = hp.attn_temp {
            // Llama 4 style temperature tuning (Ministral 3): Q times its position's factor
            let s = b.inp.attn_temp(c, t);
            q = b.name(c.mul(q, s), "Qcur_attn_temp_scaled", Some(il));
        }
        let att = b.attention(il, q, k, v, kq_scale);
        let cur = b.linear(l.wo, l.bo, att);
        let (mut cur, residual) = b.last_layer_rows(il, cur, x);
        if let Some(s) = hp.residual_scale {
            cur = c.scale(cur, s);
        }
        let ffn_inp = b.name(c.add(cur, residual), "ffn_inp", Some(il));
        let cur = b.rms_norm(
            ffn_inp,
            l.ffn_norm.expect("llama layers have ffn_norm"),
            Some(il),
        );
        let mut cur = b.ffn(&l.ffn, cur, FfnAct::Silu);
        if let Some(s) = hp.residual_scale {
            cur = c.scale(cur, s);
        }
        x = b.name(c.add(cur, ffn_inp), "l_out", Some(il));
    }
    b.logits(x)
}
