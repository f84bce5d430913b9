//! `gemma2` (Gemma 2): Gemma 3's block without the Q/K norms — embeddings scaled by
//! √n_embd, RMSNorm before and after attention and feed-forward, Q pre-scaled, GELU(tanh)
//! gating — with soft-capped attention logits (`c·tanh(kq/c)`, c = 50 unless the file says)
//! and final logits (c = 30), and sliding-window attention on every other layer (even
//! layers local; window 4096 unless the file says) with the global layers' RoPE.

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};
use crate::model::weights::{Binder, WeightError};
use crate::model::Layer;

pub use super::gemma3::build;

/// llama.cpp's defaults where the file gives no soft-capping values.
const ATTN_SOFTCAP: f32 = 50.0;
const FINAL_SOFTCAP: f32 = 30.0;
const WINDOW: u32 = 4096;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "gemma2", RopeType::Neox, |r, hp| {
        hp.swa = r.swa_or(hp.n_layer, 2, WINDOW).map(|mut s| {
            s.freq_base = r.opt_f32(Key::RopeFreqBaseSwa).unwrap_or(hp.rope.freq_base);
            s.freq_scale = hp.rope.freq_scale;
            s
        });
        let mut cap = |k: Key, default: f32| {
            let c = r.opt_f32(k).unwrap_or(default);
            if c == 0.0 {
                // c·tanh(x/c) divides by it
                r.push(MetaError::WrongType {
                    key: k.name("gemma2"),
                    expected: "a non-zero soft-capping value",
                    found: "0".into(),
                });
            }
            Some(c)
        };
        hp.attn_softcap = cap(Key::AttnLogitSoftcapping, ATTN_SOFTCAP);
        hp.final_logit_softcap = cap(Key::FinalLogitSoftcapping, FINAL_SOFTCAP);
        hp.embd_scale = (hp.n_embd as f32).sqrt();
        // Gemma 2 27B (46 layers) scales by the model width per head, the others by head_dim.
        let d = if hp.n_layer == 46 {
            hp.n_embd.checked_div(hp.n_head).unwrap_or(1)
        } else {
            hp.head_dim_k
        };
        hp.attn_scale = 1.0 / (d.max(1) as f32).sqrt();
    })
}

/// Bind one layer's tensors: the dense block with post norms, no output bias.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    Ok(Layer {
        bo: None,
        ..super::gemma3::post_normed(b, hp, il)?
    })
}
