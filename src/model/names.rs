//! GGUF tensor names, generated in one place (never typed by hand elsewhere).

/// The kinds of weight tensors the supported architectures use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum W {
    TokenEmbd,
    OutputNorm,
    Output,
    RopeFreqs,
    RopeFactorsLong,
    RopeFactorsShort,
    AttnNorm,
    AttnQkv,
    AttnQ,
    AttnK,
    AttnV,
    AttnOut,
    AttnQNorm,
    AttnKNorm,
    AttnPostNorm,
    AttnSinks,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnPostNorm,
    FfnGateInp,
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    FfnGateUpExps,
    FfnGateInpShexp,
    FfnGateShexp,
    FfnUpShexp,
    FfnDownShexp,
    AttnGate,
    SsmConv1d,
    SsmDt,
    SsmA,
    SsmBeta,
    SsmAlpha,
    SsmNorm,
    SsmOut,
}

impl W {
    fn stem(self) -> &'static str {
        match self {
            W::TokenEmbd => "token_embd",
            W::OutputNorm => "output_norm",
            W::Output => "output",
            W::RopeFreqs => "rope_freqs",
            W::RopeFactorsLong => "rope_factors_long",
            W::RopeFactorsShort => "rope_factors_short",
            W::AttnNorm => "attn_norm",
            W::AttnQkv => "attn_qkv",
            W::AttnQ => "attn_q",
            W::AttnK => "attn_k",
            W::AttnV => "attn_v",
            W::AttnOut => "attn_output",
            W::AttnQNorm => "attn_q_norm",
            W::AttnKNorm => "attn_k_norm",
            W::AttnPostNorm => "post_attention_norm",
            W::AttnSinks => "attn_sinks",
            W::FfnNorm => "ffn_norm",
            W::FfnGate => "ffn_gate",
            W::FfnUp => "ffn_up",
            W::FfnDown => "ffn_down",
            W::FfnPostNorm => "post_ffw_norm",
            W::FfnGateInp => "ffn_gate_inp",
            W::FfnGateExps => "ffn_gate_exps",
            W::FfnUpExps => "ffn_up_exps",
            W::FfnDownExps => "ffn_down_exps",
            W::FfnGateUpExps => "ffn_gate_up_exps",
            W::FfnGateInpShexp => "ffn_gate_inp_shexp",
            W::FfnGateShexp => "ffn_gate_shexp",
            W::FfnUpShexp => "ffn_up_shexp",
            W::FfnDownShexp => "ffn_down_shexp",
            W::AttnGate => "attn_gate",
            W::SsmConv1d => "ssm_conv1d",
            W::SsmDt => "ssm_dt",
            W::SsmA => "ssm_a",
            W::SsmBeta => "ssm_beta",
            W::SsmAlpha => "ssm_alpha",
            W::SsmNorm => "ssm_norm",
            W::SsmOut => "ssm_out",
        }
    }

    /// `token_embd.weight`, or `blk.{layer}.attn_q.bias` for per-layer tensors; an empty
    /// suffix names a bare tensor (`blk.{layer}.ssm_a`).
    pub fn name(self, layer: Option<u32>, suffix: &str) -> String {
        if suffix.is_empty() {
            return match layer {
                Some(il) => format!("blk.{il}.{}", self.stem()),
                None => self.stem().to_string(),
            };
        }
        match layer {
            Some(il) => format!("blk.{il}.{}.{suffix}", self.stem()),
            None => format!("{}.{suffix}", self.stem()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::W;

    #[test]
    fn names_match_llama_cpp_conventions() {
        assert_eq!(W::TokenEmbd.name(None, "weight"), "token_embd.weight");
        assert_eq!(
            W::AttnOut.name(Some(3), "weight"),
            "blk.3.attn_output.weight"
        );
        assert_eq!(W::AttnQ.name(Some(0), "bias"), "blk.0.attn_q.bias");
        assert_eq!(
            W::FfnPostNorm.name(Some(1), "weight"),
            "blk.1.post_ffw_norm.weight"
        );
    }
}
