//! `mistral3` (Ministral 3, Mistral Small 3.x text models): the llama graph (optional output
//! and feed-forward biases, llama3 `rope_freqs`), with YaRN's correction range and attention
//! factor read from the file, and Llama 4 style attention temperature scaling when the file
//! gives `attention.temperature_scale` (Q times a per-position factor, see
//! [`AttnTemperature`]).

use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, AttnTemperature, Hparams, HparamsError, Key, RopeType};

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
        if let Some(scale) = r
            .opt_f32(Key::AttentionTemperatureScale)
            .filter(|&t| t != 0.0)
        {
            // one step per original context length, as llama.cpp has it
            let floor = hp.rope.n_ctx_orig;
            if floor == 0 {
                r.push(MetaError::WrongType {
                    key: Key::RopeScalingOrigCtx.name("mistral3"),
                    expected: "a positive original context (attention temperature scaling)",
                    found: "0".into(),
                });
            }
            hp.attn_temp = Some(AttnTemperature { scale, floor });
        }
    })
}
