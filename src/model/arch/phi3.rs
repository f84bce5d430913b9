//! `phi3` (Phi-3, Phi-3.5, Phi-4-mini): one fused QKV projection (or separate ones) and one
//! fused gate+up matrix (SwiGLU over its two halves), Q pre-scaled by 1/√head_dim,
//! split-half RoPE with LongRoPE's per-dimension factors when the file has them (the long
//! ones past the original context), optional output bias. Sliding-window metadata is ignored,
//! as llama.cpp does.

use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{Ffn, Gated, Layer};

use super::bind;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read(f, "phi3", RopeType::Neox)
}

/// Bind one layer's tensors: QKV (fused or not), the output projection, the fused
/// gate+up (n_embd, 2 n_ff) and down matrices.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, ff, l) = (hp.n_embd as u64, hp.n_ff as u64, Some(il));
    let n_q = (hp.head_dim_k * hp.n_head) as u64;
    Ok(Layer {
        attn_norm: Some(b.plain(W::AttnNorm, l, &[e])?),
        qkv: bind::qkv(b, hp, il, n_q)?,
        wo: b.matrix(W::AttnOut, l, &[(hp.head_dim_v * hp.n_head) as u64, e])?,
        bo: None,
        attn_sinks: None,
        q_norm: None,
        k_norm: None,
        attn_post_norm: None,
        ffn_norm: Some(b.plain(W::FfnNorm, l, &[e])?),
        ffn: Ffn::Gated(Gated {
            gate: None,
            up: b.matrix(W::FfnUp, l, &[e, 2 * ff])?,
            down: b.matrix(W::FfnDown, l, &[ff, e])?,
            gate_b: None,
            up_b: None,
            down_b: None,
        }),
        ffn_post_norm: None,
        gdn: None,
        shexp: None,
    })
}

/// The forward graph; returns the logits of the selected rows.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let q_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
    let norm = |t: Option<crate::ggml::TensorHandle>| t.expect("phi3 layers have both norms");
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let (q, k, v) = b.attn_input(l, x, il);
        let q = c.scale(q, q_scale);
        let att = b.attention(il, q, k, v, 1.0);
        let cur = b.mm(l.wo, att);
        let (cur, residual) = b.last_layer_rows(il, cur, x);
        let ffn_inp = b.name(c.add(cur, residual), "ffn_inp", Some(il));
        let cur = b.rms_norm(ffn_inp, norm(l.ffn_norm), Some(il));
        let cur = b.ffn(&l.ffn, cur, FfnAct::Silu);
        x = b.name(c.add(ffn_inp, cur), "l_out", Some(il));
    }
    b.logits(x)
}
