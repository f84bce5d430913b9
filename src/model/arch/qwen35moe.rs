//! `qwen35moe` (Qwen3.5 / 3.6 mixture of experts: 35B-A3B, 122B-A10B, 397B-A17B): Qwen3.5's
//! hybrid of Gated DeltaNet and gated attention layers (see [`super::qwen35`]) with every
//! feed-forward block a mixture of SwiGLU experts (softmax-routed, the chosen weights
//! normalised, scaled by `expert_weights_scale` when given) plus a shared expert whose output
//! is scaled by a sigmoid gate. Experts are `expert_feed_forward_length` wide (else
//! `feed_forward_length / expert_used_count`), the shared one
//! `expert_shared_feed_forward_length` (else `feed_forward_length`).

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{Hparams, HparamsError, Key};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{Gated, Layer, SharedExpert};

pub use super::qwen35::build;

const ARCH: &str = "qwen35moe";

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    super::qwen35::read_hybrid(f, ARCH, |r, hp| {
        let width = r.opt_u32(Key::ExpertFeedForwardLength);
        let scale = r.opt_f32(Key::ExpertWeightsScale);
        hp.n_ff_shexp = r
            .opt_u32(Key::ExpertSharedFeedForwardLength)
            .filter(|&n| n > 0)
            .unwrap_or(hp.n_ff);
        match &mut hp.moe {
            Some(moe) => {
                if width.is_none() {
                    moe.n_ff_exp = hp.n_ff / moe.n_expert_used;
                }
                moe.weights_scale = scale.unwrap_or(0.0);
            }
            None => r.push(MetaError::Missing {
                key: Key::ExpertCount.name(ARCH),
            }),
        }
    })
}

/// Bind one layer: Qwen3.5's, whose feed-forward block is the experts, plus the shared expert.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, ff, l) = (hp.n_embd as u64, hp.n_ff_shexp as u64, Some(il));
    let shexp = SharedExpert {
        gate_inp: b.plain(W::FfnGateInpShexp, l, &[e])?,
        ffn: Gated {
            gate: Some(b.matrix(W::FfnGateShexp, l, &[e, ff])?),
            up: b.matrix(W::FfnUpShexp, l, &[e, ff])?,
            down: b.matrix(W::FfnDownShexp, l, &[ff, e])?,
            gate_b: None,
            up_b: None,
            down_b: None,
        },
    };
    Ok(Layer {
        shexp: Some(shexp),
        ..super::qwen35::layer(b, hp, il)?
    })
}
