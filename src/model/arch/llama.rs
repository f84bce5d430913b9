//! `llama` (Llama 1/2/3, SmolLM, Mistral-style dense models): RMSNorm, RoPE (adjacent pairs),
//! grouped-query attention (optional Q/K/V/O biases), SwiGLU feed-forward, tied or separate
//! output. `qwen2` is this graph with split-half RoPE.

use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::Layer;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read(f, "llama", RopeType::Normal)
}

/// Bind one layer's tensors (the shapes llama.cpp expects).
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, q, kv, ff) = (
        hp.n_embd as u64,
        (hp.head_dim_k * hp.n_head) as u64,
        hp.n_embd_k_gqa() as u64,
        hp.n_ff as u64,
    );
    let l = Some(il);
    Ok(Layer {
        attn_norm: b.plain(W::AttnNorm, l, &[e])?,
        wq: b.matrix(W::AttnQ, l, &[e, q])?,
        wk: b.matrix(W::AttnK, l, &[e, kv])?,
        wv: b.matrix(W::AttnV, l, &[e, hp.n_embd_v_gqa() as u64])?,
        wo: b.matrix(W::AttnOut, l, &[(hp.head_dim_v * hp.n_head) as u64, e])?,
        bq: b.opt_bias(W::AttnQ, l, &[q])?,
        bk: b.opt_bias(W::AttnK, l, &[kv])?,
        bv: b.opt_bias(W::AttnV, l, &[hp.n_embd_v_gqa() as u64])?,
        bo: b.opt_bias(W::AttnOut, l, &[e])?,
        ffn_norm: Some(b.plain(W::FfnNorm, l, &[e])?),
        ffn_gate: b.matrix(W::FfnGate, l, &[e, ff])?,
        ffn_up: b.matrix(W::FfnUp, l, &[e, ff])?,
        ffn_down: b.matrix(W::FfnDown, l, &[ff, e])?,
        q_norm: None,
        k_norm: None,
        attn_post_norm: None,
        ffn_post_norm: None,
    })
}

/// The forward graph; returns the logits of the selected rows.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let (hd, nh, nkv, nt) = (
        hp.head_dim_k as i64,
        hp.n_head as i64,
        hp.n_head_kv as i64,
        b.n_tokens,
    );
    let kq_scale = hp.attn_scale;
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let mut residual = x;
        let cur = b.rms_norm(x, l.attn_norm, Some(il));
        let cur = b.name(cur, "attn_norm", Some(il));
        let q = c.reshape(b.linear(l.wq, l.bq, cur), &[hd, nh, nt]);
        let k = c.reshape(b.linear(l.wk, l.bk, cur), &[hd, nkv, nt]);
        let v = c.reshape(b.linear(l.wv, l.bv, cur), &[hp.head_dim_v as i64, nkv, nt]);
        let q = b.name(b.rope(q, il), "Qcur", Some(il));
        let k = b.name(b.rope(k, il), "Kcur", Some(il));
        let v = b.name(v, "Vcur", Some(il));
        let att = b.attention(il, q, k, v, kq_scale);
        let mut cur = b.linear(l.wo, l.bo, att);
        if il + 1 == m.layers.len() {
            cur = b.select_outputs(cur);
            residual = b.select_outputs(residual);
        }
        let ffn_inp = b.name(c.add(cur, residual), "ffn_inp", Some(il));
        let cur = b.rms_norm(
            ffn_inp,
            l.ffn_norm.expect("llama layers have ffn_norm"),
            Some(il),
        );
        let cur = b.ffn_gated(cur, l.ffn_gate, l.ffn_up, l.ffn_down, FfnAct::Silu);
        x = b.name(c.add(cur, ffn_inp), "l_out", Some(il));
    }
    b.logits(x)
}
