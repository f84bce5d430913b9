//! `gemma3` (Gemma 3 text models): embeddings scaled by √n_embd; RMSNorm before and after both
//! attention and feed-forward; per-head RMSNorm on Q and K; Q pre-scaled instead of the
//! attention logits; GELU(tanh)-gated feed-forward; five sliding-window ("local") layers with
//! their own RoPE base (10 000) for every global one; tied output.

use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::Layer;

use super::llama;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "gemma3", RopeType::Neox, |r, hp| {
        hp.swa = r.swa(hp.n_layer, 6);
        hp.final_logit_softcap = r.opt_f32(Key::FinalLogitSoftcapping).filter(|&c| c != 0.0);
        hp.embd_scale = (hp.n_embd as f32).sqrt();
        // Gemma 3 27B (62 layers) scales by the model width per head, the others by head_dim.
        let d = if hp.n_layer == 62 {
            hp.n_embd.checked_div(hp.n_head).unwrap_or(1)
        } else {
            hp.head_dim_k
        };
        hp.attn_scale = 1.0 / (d.max(1) as f32).sqrt();
    })
}

/// Bind one layer's tensors: llama's, plus the per-head Q/K norms and the post norms. As in
/// llama.cpp, optional Q/K/V biases are used and an output bias is not.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (hd, l) = (hp.head_dim_k as u64, Some(il));
    Ok(Layer {
        bo: None,
        q_norm: Some(b.plain(W::AttnQNorm, l, &[hd])?),
        k_norm: Some(b.plain(W::AttnKNorm, l, &[hd])?),
        ..post_normed(b, hp, il)?
    })
}

/// The dense block with norms after attention and feed-forward too (Gemma 2 and 3).
pub fn post_normed(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, l) = (hp.n_embd as u64, Some(il));
    Ok(Layer {
        attn_post_norm: Some(b.plain(W::AttnPostNorm, l, &[e])?),
        ffn_post_norm: Some(b.plain(W::FfnPostNorm, l, &[e])?),
        ..llama::layer(b, hp, il)?
    })
}

/// The forward graph; returns the logits of the selected rows.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let norm = |l: Option<crate::ggml::TensorHandle>| l.expect("gemma3 layers have all norms");
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let (q, k, v) = b.attn_input(l, x, il);
        let q = c.scale(q, hp.attn_scale);
        let att = b.attention(il, q, k, v, 1.0);
        let cur = b.linear(l.wo, None, att);
        let (cur, residual) = b.last_layer_rows(il, cur, x);
        let cur = b.rms_norm(cur, norm(l.attn_post_norm), Some(il));
        let sa_out = b.name(c.add(cur, residual), "sa_out", Some(il));
        let cur = b.rms_norm(sa_out, norm(l.ffn_norm), Some(il));
        let cur = b.ffn(&l.ffn, cur, FfnAct::Gelu);
        let cur = b.rms_norm(cur, norm(l.ffn_post_norm), Some(il));
        x = b.name(c.add(cur, sa_out), "l_out", Some(il));
    }
    b.logits(x)
}
