//! `qwen3moe` (Qwen3 mixture-of-experts: 30B-A3B, 235B-A22B): Qwen3's attention (per-head
//! Q/K norms) with every feed-forward block a mixture of SwiGLU experts, softmax-routed to
//! the top `expert_used_count` with their weights normalised (see `Builder::ffn`). The
//! experts' width is `expert_feed_forward_length`, else `feed_forward_length /
//! expert_used_count`, as llama.cpp reads it.

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};

pub use super::llama::build;
pub use super::qwen3::layer;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "qwen3moe", RopeType::Neox, |r, hp| {
        let explicit_width = r.opt_u32(Key::ExpertFeedForwardLength).is_some();
        match &mut hp.moe {
            Some(moe) if !explicit_width => moe.n_ff_exp = hp.n_ff / moe.n_expert_used,
            Some(_) => {}
            None => r.push(MetaError::Missing {
                key: Key::ExpertCount.name("qwen3moe"),
            }),
        }
    })
}
