//! Architectures: one small file each over the shared layers in `model::layers`.
//!
//! To add one (qwen3, phi3, mistral3, ...):
//! 1. read llama.cpp's `src/models/<name>.cpp` (hparams, tensors, graph) to learn what it
//!    computes, op for op;
//! 2. write `arch/<name>.rs` with `hparams(&GgufFile)` (`hparams::read` with the right RoPE
//!    type, or `hparams::read_with` to read the architecture's own keys — sliding window,
//!    soft-capping, embedding and attention scales — through the same error-collecting
//!    reader), `layer(&mut Binder, &Hparams, il)` binding that layer's tensors by
//!    [`W`](crate::model::names::W) name and shape (optional ones with `opt_*`), and
//!    `build(&mut Builder)` making the forward graph from `Builder`'s norm / rope / attention /
//!    ffn pieces in llama.cpp's order (a llama-like model may simply reuse `llama::build`, as
//!    `qwen2` does);
//! 3. add a variant to [`Arch`] and its three match arms below (the compiler lists them), and a
//!    tiny model of it to `tests/common` (`TinyArch`) so the forward tests cover it;
//! 4. check it against llama.cpp: `ember perplexity --kl-divergence` on a real model (KLD should
//!    be ~0); if it is not, `EMBER_DEBUG_TENSORS=1` prints every node like llama.cpp's
//!    `llama-eval-callback` does, and the first node whose values differ is the bug.

pub mod gemma3;
pub mod llama;
pub mod qwen2;

use crate::ggml::Tensor;
use crate::gguf::GgufFile;

use super::hparams::{Hparams, HparamsError};
use super::layers::Builder;
use super::weights::{Binder, WeightError};
use super::Layer;

/// The architectures Ember can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    pub const ALL: &'static [Arch] = &[Arch::Llama, Arch::Qwen2, Arch::Gemma3];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn hparams(self, f: &GgufFile) -> Result<Hparams, HparamsError> {
        match self {
            Arch::Llama => llama::hparams(f),
            Arch::Qwen2 => qwen2::hparams(f),
            Arch::Gemma3 => gemma3::hparams(f),
        }
    }

    pub fn layer(self, b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
        match self {
            Arch::Llama => llama::layer(b, hp, il),
            Arch::Qwen2 => qwen2::layer(b, hp, il),
            Arch::Gemma3 => gemma3::layer(b, hp, il),
        }
    }

    pub fn build<'g>(self, b: &mut Builder<'g>) -> Tensor<'g> {
        match self {
            Arch::Llama => llama::build(b),
            Arch::Qwen2 => qwen2::build(b),
            Arch::Gemma3 => gemma3::build(b),
        }
    }
}
