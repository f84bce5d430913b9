//! `granite` (IBM Granite 3.x dense): the llama graph with four scales from the file — the
//! embeddings multiplied by `embedding_scale`, Q·K by `attention.scale`, the attention and
//! feed-forward outputs by `residual_scale` before each residual add, and the logits divided
//! by `logit_scale` — and RoPE only when `rope.scaling.finetuned` is absent or true.

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};

pub use super::llama::{build, layer};

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "granite", RopeType::Normal, |r, hp| {
        let logit_scale = r.f32(Key::LogitScale);
        if logit_scale == 0.0 && r.opt_f32(Key::LogitScale).is_some() {
            r.push(MetaError::WrongType {
                key: Key::LogitScale.name("granite"),
                expected: "a non-zero divisor of the logits",
                found: "0".into(),
            });
        }
        hp.logit_scale = Some(logit_scale);
        // As llama.cpp: a scale of 0 means none.
        let nonzero = |s: Option<f32>| s.filter(|&s| s != 0.0);
        hp.residual_scale = nonzero(r.opt_f32(Key::ResidualScale));
        if let Some(s) = nonzero(r.opt_f32(Key::EmbeddingScale)) {
            hp.embd_scale = s;
        }
        if let Some(s) = nonzero(r.opt_f32(Key::AttentionScale)) {
            hp.attn_scale = s;
        }
        if !r.opt_bool(Key::RopeScalingFinetuned).unwrap_or(true) {
            hp.no_rope = vec![true; hp.n_layer as usize];
        }
    })
}
