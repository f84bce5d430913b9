//! `qwen2` (Qwen2, Qwen2.5, Qwen2.5-Coder): the llama graph with biases on Q, K and V and
//! RoPE over split halves (GPT-NeoX style); tied or separate output, optional output bias.

use crate::gguf::GgufFile;
use crate::model::hparams::{self, Hparams, HparamsError, RopeType};

pub use super::llama::{build, layer};

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read(f, "qwen2", RopeType::Neox)
}
