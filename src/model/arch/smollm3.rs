//! `smollm3` (SmolLM3): the llama graph, except that every 4th layer (3, 7, 11, ...) applies
//! no RoPE to Q and K ("NoPE" layers). llama.cpp fixes the period at 4 (no key for it).

use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};

pub use super::llama::{build, layer};

/// Every `NO_ROPE_PERIOD`-th layer has no RoPE.
const NO_ROPE_PERIOD: u32 = 4;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "smollm3", RopeType::Normal, |_, hp| {
        hp.no_rope = (0..hp.n_layer)
            .map(|il| (il + 1) % NO_ROPE_PERIOD == 0)
            .collect();
    })
}
