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
        let mut residual = x;
        let cur = b.rms_norm(
            x,
            l.attn_norm.expect("llama layers have attn_norm"),
            Some(il),
        );
        let cur = b.name(cur, "attn_norm", Some(il));
        let (mut q, mut k, v) = b.qkv(l, cur);
        if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
            q = b.name(b.rms_norm(q, qn, Some(il)), "Qcur_normed", Some(il));
            k = b.name(b.rms_norm(k, kn, Some(il)), "Kcur_normed", Some(il));
        }
        if hp.uses_rope(il) {
            q = b.rope(q, il);
            k = b.rope(k, il);
        }
        let mut q = b.name(q, "Qcur", Some(il));
        let k = b.name(k, "Kcur", Some(il));
        let v = b.name(v, "Vcur", Some(il));
        if let Some(t) = hp.attn_temp {
            // Llama 4 style temperature tuning (Ministral 3): Q times its position's factor
            let s = b.inp.attn_temp(c, t);
            q = b.name(c.mul(q, s), "Qcur_attn_temp_scaled", Some(il));
        }
        let att = b.attention(il, q, k, v, kq_scale);
        let mut cur = b.linear(l.wo, l.bo, att);
        if il + 1 == m.layers.len() {
            cur = b.select_outputs(cur);
            residual = b.select_outputs(residual);
        }
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
