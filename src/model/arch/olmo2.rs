//! `olmo2` (OLMo 2, and OLMo 3 with its sliding-window layers): no norm before attention or
//! feed-forward; RMSNorm over the whole Q and K projections (not per head) before RoPE; the
//! attention and feed-forward outputs normed before their residual adds; split-half RoPE.
//! Sliding-window layers (when the file gives a window: three local layers per global one
//! unless it gives a pattern) use plain RoPE (no YaRN scaling).

use crate::ggml::Tensor;
use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{Layer, Qkv};

use super::bind;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "olmo2", RopeType::Neox, |r, hp| {
        hp.swa = r.swa(hp.n_layer, 4).map(|mut s| {
            s.freq_base = r.opt_f32(Key::RopeFreqBaseSwa).unwrap_or(hp.rope.freq_base);
            s.plain_rope = true;
            s
        });
    })
}

/// Bind one layer's tensors (separate Q/K/V without biases, whole-projection Q/K norms).
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, kv, l) = (hp.n_embd as u64, hp.n_embd_k_gqa() as u64, Some(il));
    let q = (hp.head_dim_k * hp.n_head) as u64;
    Ok(Layer {
        attn_norm: None,
        qkv: Qkv::Split {
            wq: b.matrix(W::AttnQ, l, &[e, q])?,
            wk: b.matrix(W::AttnK, l, &[e, kv])?,
            wv: b.matrix(W::AttnV, l, &[e, hp.n_embd_v_gqa() as u64])?,
            bq: None,
            bk: None,
            bv: None,
        },
        wo: b.matrix(W::AttnOut, l, &[(hp.head_dim_v * hp.n_head) as u64, e])?,
        bo: None,
        attn_sinks: None,
        q_norm: Some(b.plain(W::AttnQNorm, l, &[q])?),
        k_norm: Some(b.plain(W::AttnKNorm, l, &[kv])?),
        attn_post_norm: Some(b.plain(W::AttnPostNorm, l, &[e])?),
        ffn_norm: None,
        ffn: bind::ffn(b, hp, il)?,
        ffn_post_norm: Some(b.plain(W::FfnPostNorm, l, &[e])?),
        gdn: None,
        shexp: None,
    })
}

/// The forward graph; returns the logits of the selected rows.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let (hd, hdv, nh, nkv, nt) = (
        hp.head_dim_k as i64,
        hp.head_dim_v as i64,
        hp.n_head as i64,
        hp.n_head_kv as i64,
        b.n_tokens,
    );
    let norm = |t: Option<crate::ggml::TensorHandle>| t.expect("olmo2 layers have these norms");
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let Qkv::Split { wq, wk, wv, .. } = l.qkv else {
            unreachable!("olmo2 layers are bound with separate Q, K and V")
        };
        let q = b.rms_norm(b.mm(wq, x), norm(l.q_norm), Some(il));
        let k = b.rms_norm(b.mm(wk, x), norm(l.k_norm), Some(il));
        let v = b.mm(wv, x);
        let q = b.rope(c.reshape(q, &[hd, nh, nt]), il);
        let k = b.rope(c.reshape(k, &[hd, nkv, nt]), il);
        let q = b.name(q, "Qcur", Some(il));
        let k = b.name(k, "Kcur", Some(il));
        let v = b.name(c.reshape(v, &[hdv, nkv, nt]), "Vcur", Some(il));
        let att = b.attention(il, q, k, v, hp.attn_scale);
        let cur = b.mm(l.wo, att);
        let (cur, residual) = b.last_layer_rows(il, cur, x);
        let cur = b.rms_norm(cur, norm(l.attn_post_norm), Some(il));
        let ffn_inp = b.name(c.add(cur, residual), "ffn_inp", Some(il));
        let cur = b.ffn(&l.ffn, ffn_inp, FfnAct::Silu);
        let cur = b.rms_norm(cur, norm(l.ffn_post_norm), Some(il));
        x = b.name(c.add(cur, ffn_inp), "l_out", Some(il));
    }
    b.logits(x)
}
