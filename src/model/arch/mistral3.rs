//! `mistral3` (Ministral 3, Mistral Small 3.x text models): the llama graph (optional output
//! and feed-forward biases, llama3 `rope_freqs`), with YaRN's correction range and attention
//! factor read from the file. Llama 4 style attention temperature scaling (a per-position
//! factor on Q, `attention.temperature_scale`) is refused: not implemented yet.

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Hparams, HparamsError, Key, RopeType};

pub use super::llama::{build, layer};

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, "mistral3", RopeType::Normal, |r, hp| {
        if let Some(beta) = r.opt_f32(Key::RopeYarnBetaFast) {
            hp.rope.beta_fast = beta;
        }
        if let Some(beta) = r.opt_f32(Key::RopeYarnBetaSlow) {
            hp.rope.beta_slow = beta;
        }
        let log_mul = r.opt_f32(Key::RopeYarnLogMul).unwrap_or(0.0);
        let file_factor = r.opt_f32(Key::RopeScalingAttnFactor).unwrap_or(1.0);
        let yarn = hp.rope.ext_factor != 0.0;
        hp.rope.attn_factor =
            hparams::rope_attn_factor(yarn, hp.rope.freq_scale, log_mul, file_factor);
        if let Some(t) = r
            .opt_f32(Key::AttentionTemperatureScale)
            .filter(|&t| t != 0.0)
        {
            r.push(MetaError::WrongType {
                key: Key::AttentionTemperatureScale.name("mistral3"),
                expected: "0 (attention temperature scaling is not supported yet)",
                found: t.to_string(),
            });
        }
    })
}
