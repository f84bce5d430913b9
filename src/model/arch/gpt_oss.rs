//! `gpt-oss` (OpenAI's gpt-oss-20b and -120b; llama.cpp's `LLM_ARCH_OPENAI_MOE`): RMSNorm,
//! Q/K/V and output projections with biases, split-half RoPE (YaRN in the released files),
//! attention with sinks (a learned logit per head that joins every softmax, see
//! `Builder::attention`), sliding-window attention on the even layers (every other layer,
//! `attention.sliding_window` required) at the global layers' RoPE, and on every layer a
//! mixture of experts with biases (router and experts): the top `expert_used_count` router
//! logits, weighted by a softmax over those alone ([`Gating::SoftmaxWeight`]), through the
//! clamped SwiGLU ([`FfnAct::SwigluOai`]). The head size is the RoPE dimension count (llama.cpp
//! sizes Q/K/V by it and scales Q·K by 1/√n_rot), so the three must agree. The released files
//! store the experts in MXFP4.

use crate::ggml::Tensor;
use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Gating, Hparams, HparamsError, Key, RopeType};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{Experts, Ffn, GateUp, Layer};

use super::bind;

const ARCH: &str = "gpt-oss";

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, ARCH, RopeType::Neox, |r, hp| {
        // required, as llama.cpp reads them (the experts' width, one or one per layer, is read
        // with the other expert keys)
        r.u32(Key::SlidingWindow);
        if f.get(&Key::ExpertFeedForwardLength.name(ARCH)).is_none() {
            r.push(MetaError::Missing {
                key: Key::ExpertFeedForwardLength.name(ARCH),
            });
        }
        hp.swa = r.swa(hp.n_layer, 2).map(|mut s| {
            s.freq_base = r.opt_f32(Key::RopeFreqBaseSwa).unwrap_or(hp.rope.freq_base);
            s.freq_scale = hp.rope.freq_scale;
            s
        });
        match &mut hp.moe {
            Some(moe) => moe.gating = Gating::SoftmaxWeight,
            None => r.push(MetaError::Missing {
                key: Key::ExpertCount.name(ARCH),
            }),
        }
        for (k, d) in [
            (Key::KeyLength, hp.head_dim_k),
            (Key::ValueLength, hp.head_dim_v),
        ] {
            if d != hp.rope.n_rot {
                r.push(MetaError::WrongType {
                    key: k.name(ARCH),
                    expected: "the RoPE dimension count (gpt-oss heads are n_rot wide)",
                    found: format!("{d} (n_rot {})", hp.rope.n_rot),
                });
            }
        }
        hp.attn_scale = 1.0 / (hp.rope.n_rot.max(1) as f32).sqrt();
    })
}

/// Bind one layer's tensors (llama.cpp's shapes; the output, router and expert biases and
/// the sinks are required, the Q/K/V biases optional as llama.cpp has them).
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let moe = hp.moe.as_ref().expect("gpt-oss hparams require experts");
    let (e, l) = (hp.n_embd as u64, Some(il));
    let (ff, n, used) = (moe.n_ff_exp as u64, moe.n_expert as u64, moe.n_expert_used);
    let n_q = (hp.head_dim_k * hp.n_head) as u64;
    Ok(Layer {
        attn_norm: Some(b.plain(W::AttnNorm, l, &[e])?),
        qkv: bind::qkv(b, hp, il, n_q)?,
        wo: b.matrix(W::AttnOut, l, &[(hp.head_dim_v * hp.n_head) as u64, e])?,
        bo: Some(b.bias(W::AttnOut, l, &[e])?),
        attn_sinks: Some(b.plain(W::AttnSinks, l, &[hp.n_head as u64])?),
        q_norm: None,
        k_norm: None,
        attn_post_norm: None,
        // (`post_attention_norm` in the file: the norm before the feed-forward block)
        ffn_norm: Some(b.plain(W::AttnPostNorm, l, &[e])?),
        ffn: Ffn::Moe(Experts {
            gate_inp: b.matrix(W::FfnGateInp, l, &[e, n])?,
            gate_up: GateUp::Split {
                gate: b.experts(W::FfnGateExps, l, &[e, ff, n], used)?,
                up: b.experts(W::FfnUpExps, l, &[e, ff, n], used)?,
            },
            down: b.experts(W::FfnDownExps, l, &[ff, e, n], used)?,
            gate_inp_b: Some(b.bias(W::FfnGateInp, l, &[n])?),
            gate_b: Some(b.bias(W::FfnGateExps, l, &[ff, n])?),
            up_b: Some(b.bias(W::FfnUpExps, l, &[ff, n])?),
            down_b: Some(b.bias(W::FfnDownExps, l, &[e, n])?),
        }),
        ffn_post_norm: None,
        gdn: None,
        shexp: None,
    })
}

/// The forward graph; returns the logits of the selected rows. Unlike llama's, the rows are
/// selected after the last layer, as llama.cpp's gpt-oss graph does.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let hp = &m.hp;
    let norm = |t: Option<crate::ggml::TensorHandle>| t.expect("gpt-oss layers have both norms");
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let (q, k, v) = b.attn_input(l, x, il);
        let att = b.attention(il, q, k, v, hp.attn_scale);
        let cur = b.linear(l.wo, l.bo, att);
        let ffn_inp = b.name(c.add(cur, x), "ffn_inp", Some(il));
        let cur = b.rms_norm(ffn_inp, norm(l.ffn_norm), Some(il));
        let cur = b.name(cur, "attn_post_norm", Some(il));
        let cur = b.ffn(&l.ffn, cur, FfnAct::SwigluOai);
        let cur = b.name(cur, "ffn_moe_out", Some(il));
        x = b.name(c.add(cur, ffn_inp), "l_out", Some(il));
    }
    let x = b.select_outputs(x);
    b.logits(x)
}
