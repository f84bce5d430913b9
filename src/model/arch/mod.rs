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
//! 3. add a variant to [`Arch`], its row in [`Arch::TABLE`] (name, models, how it was verified:
//!    `--help` and the README's table are made from it) and its three match arms below (the
//!    compiler lists them), and a tiny model of it to `tests/common` (`TinyArch`) so the
//!    forward tests cover it;
//! 4. check it against llama.cpp: `ember perplexity --kl-divergence` on a real model, or on a
//!    random-weight one that llama.cpp builds (`scripts/arch-check`, over
//!    `../shared/tools/synth-model.sh`; add the new shapes to its table): the KLD should be
//!    ~0; if it is not, `EMBER_DEBUG_TENSORS=1` prints every node like llama.cpp's
//!    `llama-eval-callback` does, and the first node whose values differ is the bug.

mod bind;
pub mod gemma2;
pub mod gemma3;
pub mod gpt_oss;
pub mod granite;
pub mod llama;
pub mod mistral3;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen35;
pub mod qwen35moe;
pub mod qwen3moe;
pub mod smollm3;

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
    Qwen3,
    Qwen3Moe,
    Qwen35,
    Qwen35Moe,
    Gemma2,
    Gemma3,
    Phi3,
    Mistral3,
    Smollm3,
    Olmo2,
    Granite,
    GptOss,
}

/// One row of the supported-architecture table.
pub struct ArchRow {
    pub arch: Arch,
    /// `general.architecture` in the GGUF file
    pub name: &'static str,
    /// the model families that use it
    pub models: &'static str,
    /// how Ember's logits were checked against llama.cpp's
    pub verified: &'static str,
    /// what is known of its chat templates in Ember
    pub chat: &'static str,
}

const REAL: &str = "real model, KLD 0";
const SYNTH: &str = "synthesized models (llama.cpp's random weights), KLD 0";
const CHAT_TESTED: &str = "the file's Jinja, tested";
/// llama.cpp's copy of the family's template renders as Jinja2 renders it
/// (tests/it/chat_templates.rs).
const CHAT_AS_JINJA2: &str = "the file's Jinja; the family's template renders as Jinja2 does";
const CHAT_THINK: &str = "the file's Jinja; the family's template renders as Jinja2 does; `<think>` kept off stdout (`--show-reasoning`), `--reasoning off` sets `enable_thinking`";

impl Arch {
    /// The supported architectures: `--help`, `ember info` and the README's table come from
    /// here.
    pub const TABLE: &'static [ArchRow] = &[
        ArchRow {
            arch: Arch::Llama,
            name: "llama",
            models: "Llama 1-3, SmolLM 1/2, Mistral 7B; Mixtral-style experts (`ffn_*_exps`)",
            verified: "real model, KLD 0; experts: synthesized models, KLD 0",
            chat: "the file's Jinja, tested (SmolLM2's; Llama 3.1-3.3's render as Jinja2 does)",
        },
        ArchRow {
            arch: Arch::Qwen2,
            name: "qwen2",
            models: "Qwen2, Qwen2.5",
            verified: REAL,
            chat: CHAT_TESTED,
        },
        ArchRow {
            arch: Arch::Qwen3,
            name: "qwen3",
            models: "Qwen3 (dense)",
            verified: SYNTH,
            chat: CHAT_THINK,
        },
        ArchRow {
            arch: Arch::Qwen3Moe,
            name: "qwen3moe",
            models: "Qwen3 mixture of experts (30B-A3B, 235B-A22B)",
            verified: SYNTH,
            chat: CHAT_THINK,
        },
        ArchRow {
            arch: Arch::Qwen35,
            name: "qwen35",
            models: "Qwen3.5 / 3.6 (dense): Gated DeltaNet + gated attention hybrid",
            verified: SYNTH,
            chat: CHAT_THINK,
        },
        ArchRow {
            arch: Arch::Qwen35Moe,
            name: "qwen35moe",
            models: "Qwen3.5 / 3.6 mixture of experts (35B-A3B, 122B-A10B, 397B-A17B)",
            verified: SYNTH,
            chat: CHAT_THINK,
        },
        ArchRow {
            arch: Arch::Gemma2,
            name: "gemma2",
            models: "Gemma 2",
            verified: SYNTH,
            chat: CHAT_AS_JINJA2,
        },
        ArchRow {
            arch: Arch::Gemma3,
            name: "gemma3",
            models: "Gemma 3 (text)",
            verified: REAL,
            chat: "built-in `gemma` (our 270M file has no template)",
        },
        ArchRow {
            arch: Arch::Phi3,
            name: "phi3",
            models: "Phi-3, Phi-3.5, Phi-4-mini",
            verified: SYNTH,
            chat: CHAT_AS_JINJA2,
        },
        ArchRow {
            arch: Arch::Mistral3,
            name: "mistral3",
            models: "Ministral 3, Mistral Small 3.x (text)",
            verified: SYNTH,
            chat: "the file's Jinja; Mistral Small 3.2's and Ministral 3 Reasoning's templates render as Jinja2 does; `[THINK]` kept off stdout (`--show-reasoning`)",
        },
        ArchRow {
            arch: Arch::Smollm3,
            name: "smollm3",
            models: "SmolLM3",
            verified: SYNTH,
            chat: CHAT_THINK,
        },
        ArchRow {
            arch: Arch::Olmo2,
            name: "olmo2",
            models: "OLMo 2, OLMo 3",
            verified: SYNTH,
            chat: "the file's Jinja, not tested (no OLMo template to test with)",
        },
        ArchRow {
            arch: Arch::Granite,
            name: "granite",
            models: "Granite 3.x (dense)",
            verified: SYNTH,
            chat: CHAT_AS_JINJA2,
        },
        ArchRow {
            arch: Arch::GptOss,
            name: "gpt-oss",
            models: "gpt-oss (20B, 120B; MXFP4 experts)",
            verified: SYNTH,
            chat: "the file's Jinja; gpt-oss's template renders as Jinja2 does; harmony: the `final` channel on stdout, the others with `--show-reasoning`, `--reasoning-effort`",
        },
    ];

    fn row(self) -> &'static ArchRow {
        Arch::TABLE
            .iter()
            .find(|r| r.arch == self)
            .expect("every architecture has a row in Arch::TABLE")
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn all() -> impl Iterator<Item = Arch> {
        Arch::TABLE.iter().map(|r| r.arch)
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::TABLE.iter().find(|r| r.name == name).map(|r| r.arch)
    }

    /// The architecture names, comma-separated (for error messages and `--help`).
    pub fn names() -> String {
        Arch::TABLE
            .iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The table as Markdown, as the README shows it.
    pub fn markdown_table() -> String {
        let mut s = String::from(
            "| architecture | models | verified against llama.cpp | chat template |\n\
             |---|---|---|---|\n",
        );
        for r in Arch::TABLE {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                r.name, r.models, r.verified, r.chat
            ));
        }
        s
    }

    pub fn hparams(self, f: &GgufFile) -> Result<Hparams, HparamsError> {
        match self {
            Arch::Llama => llama::hparams(f),
            Arch::Qwen2 => qwen2::hparams(f),
            Arch::Qwen3 => qwen3::hparams(f),
            Arch::Qwen3Moe => qwen3moe::hparams(f),
            Arch::Qwen35 => qwen35::hparams(f),
            Arch::Qwen35Moe => qwen35moe::hparams(f),
            Arch::Gemma2 => gemma2::hparams(f),
            Arch::Gemma3 => gemma3::hparams(f),
            Arch::Phi3 => phi3::hparams(f),
            Arch::Mistral3 => mistral3::hparams(f),
            Arch::Smollm3 => smollm3::hparams(f),
            Arch::Olmo2 => olmo2::hparams(f),
            Arch::Granite => granite::hparams(f),
            Arch::GptOss => gpt_oss::hparams(f),
        }
    }

    pub fn layer(self, b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
        match self {
            Arch::Llama => llama::layer(b, hp, il),
            Arch::Qwen2 => qwen2::layer(b, hp, il),
            Arch::Qwen3 => qwen3::layer(b, hp, il),
            Arch::Qwen3Moe => qwen3moe::layer(b, hp, il),
            Arch::Qwen35 => qwen35::layer(b, hp, il),
            Arch::Qwen35Moe => qwen35moe::layer(b, hp, il),
            Arch::Gemma2 => gemma2::layer(b, hp, il),
            Arch::Gemma3 => gemma3::layer(b, hp, il),
            Arch::Phi3 => phi3::layer(b, hp, il),
            Arch::Mistral3 => mistral3::layer(b, hp, il),
            Arch::Smollm3 => smollm3::layer(b, hp, il),
            Arch::Olmo2 => olmo2::layer(b, hp, il),
            Arch::Granite => granite::layer(b, hp, il),
            Arch::GptOss => gpt_oss::layer(b, hp, il),
        }
    }

    pub fn build<'g>(self, b: &mut Builder<'g>) -> Tensor<'g> {
        match self {
            Arch::Llama => llama::build(b),
            Arch::Qwen2 => qwen2::build(b),
            Arch::Qwen3 => qwen3::build(b),
            Arch::Qwen3Moe => qwen3moe::build(b),
            Arch::Qwen35 => qwen35::build(b),
            Arch::Qwen35Moe => qwen35moe::build(b),
            Arch::Gemma2 => gemma2::build(b),
            Arch::Gemma3 => gemma3::build(b),
            Arch::Phi3 => phi3::build(b),
            Arch::Mistral3 => mistral3::build(b),
            Arch::Smollm3 => smollm3::build(b),
            Arch::Olmo2 => olmo2::build(b),
            Arch::Granite => granite::build(b),
            Arch::GptOss => gpt_oss::build(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    /// The README's architecture table is `Arch::TABLE`'s: when a row changes, regenerate it
    /// (between its markers) with `UPDATE_README=1 cargo test --lib readme_table`.
    #[test]
    fn readme_table_is_generated_from_the_arch_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (start, end) = ("<!-- arch-table -->\n", "<!-- /arch-table -->");
        let i = readme
            .find(start)
            .expect("README has the arch-table marker")
            + start.len();
        let j = readme[i..].find(end).expect("README has the end marker") + i;
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..i], Arch::markdown_table(), &readme[j..]);
            std::fs::write(path, updated).expect("README.md written");
            return;
        }
        assert_eq!(
            &readme[i..j],
            Arch::markdown_table(),
            "README's architecture table is stale"
        );
    }

    #[test]
    fn every_architecture_has_one_row() {
        for a in Arch::all() {
            assert_eq!(Arch::from_name(a.name()), Some(a));
        }
        assert_eq!(Arch::all().count(), Arch::TABLE.len());
    }
}
