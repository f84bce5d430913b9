//! Binding the tensors most architectures share, in llama.cpp's shapes: the attention's
//! projections (separate or fused, optional biases), a gated feed-forward block (separate
//! or fused gate and up, optional biases), and the whole dense block of llama-like models.

use crate::model::hparams::Hparams;
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{Experts, Ffn, GateUp, Gated, Layer, Qkv};

/// Q, K and V of layer `il`, Q `n_q` wide: the fused `attn_qkv` when the file has it (with its
/// bias, or else optional separate biases, as llama.cpp accepts), else `attn_q/k/v` with
/// optional biases.
pub fn qkv(b: &mut Binder<'_>, hp: &Hparams, il: u32, n_q: u64) -> Result<Qkv, WeightError> {
    let (e, k, v, l) = (
        hp.n_embd as u64,
        hp.n_embd_k_gqa() as u64,
        hp.n_embd_v_gqa() as u64,
        Some(il),
    );
    if let Some(w) = b.opt_matrix(W::AttnQkv, l, &[e, n_q + k + v])? {
        let b = b.opt_bias(W::AttnQkv, l, &[n_q + k + v])?;
        return Ok(Qkv::Fused { w, b });
    }
    Ok(Qkv::Split {
        wq: b.matrix(W::AttnQ, l, &[e, n_q])?,
        wk: b.matrix(W::AttnK, l, &[e, k])?,
        wv: b.matrix(W::AttnV, l, &[e, v])?,
        bq: b.opt_bias(W::AttnQ, l, &[n_q])?,
        bk: b.opt_bias(W::AttnK, l, &[k])?,
        bv: b.opt_bias(W::AttnV, l, &[v])?,
    })
}

/// The feed-forward block: a mixture of experts when the model has them, else a gated block
/// with separate gate and up matrices and optional biases.
pub fn ffn(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Ffn, WeightError> {
    if let Some(moe) = &hp.moe {
        let (e, ff, n, l) = (
            hp.n_embd as u64,
            moe.n_ff_exp as u64,
            moe.n_expert as u64,
            Some(il),
        );
        let used = moe.n_expert_used;
        return Ok(Ffn::Moe(Experts {
            gate_inp: b.matrix(W::FfnGateInp, l, &[e, n])?,
            gate_up: match b.opt_experts(W::FfnGateUpExps, l, &[e, 2 * ff, n], used)? {
                Some(w) => GateUp::Fused(w),
                None => GateUp::Split {
                    gate: b.experts(W::FfnGateExps, l, &[e, ff, n], used)?,
                    up: b.experts(W::FfnUpExps, l, &[e, ff, n], used)?,
                },
            },
            down: b.experts(W::FfnDownExps, l, &[ff, e, n], used)?,
            gate_inp_b: None,
            gate_b: None,
            up_b: None,
            down_b: None,
        }));
    }
    let (e, ff, l) = (hp.n_embd as u64, hp.n_ff as u64, Some(il));
    Ok(Ffn::Gated(Gated {
        gate: Some(b.matrix(W::FfnGate, l, &[e, ff])?),
        up: b.matrix(W::FfnUp, l, &[e, ff])?,
        down: b.matrix(W::FfnDown, l, &[ff, e])?,
        gate_b: b.opt_bias(W::FfnGate, l, &[ff])?,
        up_b: b.opt_bias(W::FfnUp, l, &[ff])?,
        down_b: b.opt_bias(W::FfnDown, l, &[e])?,
    }))
}

/// The dense llama block: attention norm, Q/K/V (Q `head_dim * n_head` wide), output
/// projection with optional bias, feed-forward norm and a gated feed-forward block.
pub fn dense(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, l) = (hp.n_embd as u64, Some(il));
    let n_q = (hp.head_dim_k * hp.n_head) as u64;
    Ok(Layer {
        attn_norm: Some(b.plain(W::AttnNorm, l, &[e])?),
        qkv: qkv(b, hp, il, n_q)?,
        wo: b.matrix(W::AttnOut, l, &[(hp.head_dim_v * hp.n_head) as u64, e])?,
        bo: b.opt_bias(W::AttnOut, l, &[e])?,
        attn_sinks: None,
        q_norm: None,
        k_norm: None,
        attn_post_norm: None,
        ffn_norm: Some(b.plain(W::FfnNorm, l, &[e])?),
        ffn: ffn(b, hp, il)?,
        ffn_post_norm: None,
        gdn: None,
        shexp: None,
    })
}
