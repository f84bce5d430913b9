//! Hyper-parameters read from GGUF metadata. Required keys are checked together and every
//! missing or mistyped key is reported at once, each by name.

use crate::gguf::{GgufFile, MetaError};

mod reader;
pub use reader::Reader;

/// Metadata keys, typed (the `{arch}.` prefix is added by [`Key::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    ContextLength,
    EmbeddingLength,
    BlockCount,
    FeedForwardLength,
    HeadCount,
    HeadCountKv,
    KeyLength,
    ValueLength,
    RmsEps,
    RopeFreqBase,
    RopeDimensionCount,
    RopeScalingType,
    RopeScalingFactor,
    RopeScaleLinear,
    RopeScalingOrigCtx,
    SlidingWindow,
    SlidingWindowPattern,
    RopeFreqBaseSwa,
    FinalLogitSoftcapping,
    AttnLogitSoftcapping,
    VocabSize,
    LogitScale,
    ResidualScale,
    EmbeddingScale,
    AttentionScale,
    AttentionTemperatureScale,
    RopeScalingAttnFactor,
    RopeScalingFinetuned,
    RopeYarnLogMul,
    RopeYarnBetaFast,
    RopeYarnBetaSlow,
    ExpertCount,
    ExpertUsedCount,
    ExpertFeedForwardLength,
    ExpertSharedFeedForwardLength,
    ExpertWeightsScale,
    RopeDimensionSections,
    SsmConvKernel,
    SsmInnerSize,
    SsmStateSize,
    SsmTimeStepRank,
    SsmGroupCount,
    FullAttentionInterval,
    RecurrentLayers,
    NextnPredictLayers,
}

impl Key {
    pub fn name(self, arch: &str) -> String {
        let suffix = match self {
            Key::ContextLength => "context_length",
            Key::EmbeddingLength => "embedding_length",
            Key::BlockCount => "block_count",
            Key::FeedForwardLength => "feed_forward_length",
            Key::HeadCount => "attention.head_count",
            Key::HeadCountKv => "attention.head_count_kv",
            Key::KeyLength => "attention.key_length",
            Key::ValueLength => "attention.value_length",
            Key::RmsEps => "attention.layer_norm_rms_epsilon",
            Key::RopeFreqBase => "rope.freq_base",
            Key::RopeDimensionCount => "rope.dimension_count",
            Key::RopeScalingType => "rope.scaling.type",
            Key::RopeScalingFactor => "rope.scaling.factor",
            Key::RopeScaleLinear => "rope.scale_linear",
            Key::RopeScalingOrigCtx => "rope.scaling.original_context_length",
            Key::SlidingWindow => "attention.sliding_window",
            Key::SlidingWindowPattern => "attention.sliding_window_pattern",
            Key::RopeFreqBaseSwa => "rope.freq_base_swa",
            Key::FinalLogitSoftcapping => "final_logit_softcapping",
            Key::AttnLogitSoftcapping => "attn_logit_softcapping",
            Key::VocabSize => "vocab_size",
            Key::LogitScale => "logit_scale",
            Key::ResidualScale => "residual_scale",
            Key::EmbeddingScale => "embedding_scale",
            Key::AttentionScale => "attention.scale",
            Key::AttentionTemperatureScale => "attention.temperature_scale",
            Key::RopeScalingAttnFactor => "rope.scaling.attn_factor",
            Key::RopeScalingFinetuned => "rope.scaling.finetuned",
            Key::RopeYarnLogMul => "rope.scaling.yarn_log_multiplier",
            Key::RopeYarnBetaFast => "rope.scaling.yarn_beta_fast",
            Key::RopeYarnBetaSlow => "rope.scaling.yarn_beta_slow",
            Key::ExpertCount => "expert_count",
            Key::ExpertUsedCount => "expert_used_count",
            Key::ExpertFeedForwardLength => "expert_feed_forward_length",
            Key::ExpertSharedFeedForwardLength => "expert_shared_feed_forward_length",
            Key::ExpertWeightsScale => "expert_weights_scale",
            Key::RopeDimensionSections => "rope.dimension_sections",
            Key::SsmConvKernel => "ssm.conv_kernel",
            Key::SsmInnerSize => "ssm.inner_size",
            Key::SsmStateSize => "ssm.state_size",
            Key::SsmTimeStepRank => "ssm.time_step_rank",
            Key::SsmGroupCount => "ssm.group_count",
            Key::FullAttentionInterval => "full_attention_interval",
            Key::RecurrentLayers => "attention.recurrent_layers",
            Key::NextnPredictLayers => "nextn_predict_layers",
        };
        format!("{arch}.{suffix}")
    }
}

/// How RoPE pairs dimensions: adjacent (llama) or split halves (GPT-NeoX, Qwen2, Gemma).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    Normal,
    Neox,
    /// Multi-section RoPE with the sections interleaved (Qwen3.5: ggml's IMROPE); each token
    /// has four positions, text tokens `[p, p, p, 0]`.
    Imrope,
}

impl RopeType {
    pub fn ggml_mode(self) -> i32 {
        match self {
            RopeType::Normal => 0,
            RopeType::Neox => 2,
            RopeType::Imrope => 40,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rope {
    pub kind: RopeType,
    pub n_rot: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub n_ctx_orig: u32,
    pub ext_factor: f32,
    /// Magnitude scale of the rotated values (YaRN's and LongRoPE's attention factor); 1 mostly.
    pub attn_factor: f32,
    /// YaRN's correction range (llama.cpp's defaults 32 and 1 unless the file gives them).
    pub beta_fast: f32,
    pub beta_slow: f32,
}

#[derive(Clone, Debug)]
pub struct Hparams {
    pub arch: String,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim_k: u32,
    pub head_dim_v: u32,
    pub n_ff: u32,
    pub rms_eps: f32,
    pub rope: Rope,
    /// Sliding-window attention on some layers (the "local" ones), if the model has it.
    pub swa: Option<Swa>,
    /// Multiplier applied to the token embeddings (Gemma: √n_embd); 1 for most models.
    pub embd_scale: f32,
    /// Attention scale applied to Q·K; by default 1/√head_dim.
    pub attn_scale: f32,
    /// `c * tanh(logits / c)` on the output logits, when set (Gemma 2 style).
    pub final_logit_softcap: Option<f32>,
    /// `c * tanh(kq / c)` on the attention logits before the softmax, when set (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// The logits are divided by this (Granite), when set.
    pub logit_scale: Option<f32>,
    /// Attention and feed-forward outputs are multiplied by this before their residual add
    /// (Granite), when set.
    pub residual_scale: Option<f32>,
    /// Mixture-of-experts feed-forward blocks, when `expert_count` is above 0.
    pub moe: Option<Moe>,
    /// Llama 4 style attention temperature (Ministral 3): Q scaled per position, when set.
    pub attn_temp: Option<AttnTemperature>,
    /// Layers that apply no RoPE to Q and K (SmolLM3: every 4th; Granite without
    /// `rope.scaling.finetuned`: all); empty when every layer does.
    pub no_rope: Vec<bool>,
    /// Gated DeltaNet layers with a recurrent state beside the attention layers (Qwen3.5),
    /// when the model has them.
    pub ssm: Option<Ssm>,
    /// The sections of multi-section RoPE ([`RopeType::Imrope`]), when it is used.
    pub rope_sections: Option<[i32; 4]>,
    /// Multi-token-prediction layers after the trunk (`nextn_predict_layers`, counted in the
    /// file's `block_count`): not run, their tensors not loaded.
    pub n_layer_mtp: u32,
    /// The shared expert's width (Qwen3.5 MoE), when the model has one.
    pub n_ff_shexp: u32,
}

/// The Gated DeltaNet ("linear attention") layers of a hybrid model, in llama.cpp's names:
/// `d_conv` taps of causal convolution over `conv_channels()` channels (Q, K and V), `n_group`
/// key heads and `dt_rank` value heads of `d_state` values, `d_inner` = value heads × head size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssm {
    pub d_conv: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub dt_rank: u32,
    pub n_group: u32,
    /// `recurrent[il]`: layer il is a Gated DeltaNet layer (else an attention layer).
    pub recurrent: Vec<bool>,
}

impl Ssm {
    /// Channels of the convolution: Q and K (`n_group × d_state` each) and V (`d_inner`).
    pub fn conv_channels(&self) -> u32 {
        self.d_inner + 2 * self.n_group * self.d_state
    }

    /// Floats of a layer's convolution state: the last `d_conv - 1` inputs of every channel.
    pub fn conv_floats(&self) -> u64 {
        u64::from(self.d_conv.saturating_sub(1)) * u64::from(self.conv_channels())
    }

    /// Floats of a layer's delta-rule state: a `d_state × d_state` matrix per value head.
    pub fn state_floats(&self) -> u64 {
        u64::from(self.d_state) * u64::from(self.d_inner)
    }

    /// Whether layer `il` is recurrent.
    pub fn is_recurrent(&self, il: usize) -> bool {
        self.recurrent.get(il).copied().unwrap_or(false)
    }
}

/// Attention temperature tuning (llama.cpp's `f_attn_temp_scale`, `n_attn_temp_floor_scale`):
/// Q at position p is multiplied by `1 + scale · ln(⌊p / floor⌋ + 1)`, so attention sharpens
/// slowly with distance past the original context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnTemperature {
    pub scale: f32,
    /// positions per step (the original context length)
    pub floor: u32,
}

impl AttnTemperature {
    /// The factor at position `pos`, in llama.cpp's arithmetic (the quotient and its floor in
    /// f32, the logarithm in f64).
    pub fn factor(self, pos: i32) -> f32 {
        let steps = (pos as f32 / self.floor as f32).floor() as f64;
        ((steps + 1.0).ln() * self.scale as f64 + 1.0) as f32
    }
}

/// Mixture of experts: how many, how many each token uses, and their width.
#[derive(Clone, Debug)]
pub struct Moe {
    pub n_expert: u32,
    pub n_expert_used: u32,
    /// each expert's hidden width
    pub n_ff_exp: u32,
    /// how the router's logits become the chosen experts' weights
    pub gating: Gating,
    /// the chosen weights are multiplied by this after normalisation, unless it is 0 or 1
    /// (`expert_weights_scale`)
    pub weights_scale: f32,
}

/// How a mixture of experts weighs the experts it picks (llama.cpp's expert gating function).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over all the router's logits; the top `n_expert_used` probabilities,
    /// normalised to sum 1 (Mixtral, Qwen3 MoE).
    SoftmaxNorm,
    /// The top `n_expert_used` logits, weighted by a softmax over those alone (gpt-oss:
    /// llama.cpp's `SOFTMAX_WEIGHT`).
    SoftmaxWeight,
}

/// The most experts a file may have (llama.cpp's `LLAMA_MAX_EXPERTS`).
pub const MAX_EXPERTS: u32 = 512;

/// Sliding-window attention: which layers use it, the window, and their RoPE.
#[derive(Clone, Debug)]
pub struct Swa {
    /// A token at position p attends to positions p - window + 1 ..= p.
    pub window: u32,
    /// `layers[il]`: whether layer il is a local (sliding-window) layer.
    pub layers: Vec<bool>,
    /// RoPE base and scale of the local layers (global layers use [`Rope`]'s).
    pub freq_base: f32,
    pub freq_scale: f32,
    /// The local layers use RoPE without YaRN's extrapolation and attention factor.
    pub plain_rope: bool,
}

impl Hparams {
    /// The KV cache's per-layer shape.
    pub fn kv_shape(&self) -> crate::kv::KvShape {
        crate::kv::KvShape {
            n_layer: self.n_layer,
            head_dim_k: self.head_dim_k,
            head_dim_v: self.head_dim_v,
            n_head_kv: self.n_head_kv,
            swa: self.swa.as_ref().map(|s| {
                (
                    s.window,
                    (0..self.n_layer as usize)
                        .map(|il| self.is_swa(il))
                        .collect(),
                )
            }),
            recurrent: self.ssm.as_ref().map(|s| crate::kv::RecurrentShape {
                layers: (0..self.n_layer as usize)
                    .map(|il| s.is_recurrent(il))
                    .collect(),
                conv_floats: s.conv_floats(),
                state_floats: s.state_floats(),
            }),
        }
    }

    pub fn n_embd_k_gqa(&self) -> u32 {
        self.head_dim_k * self.n_head_kv
    }

    pub fn n_embd_v_gqa(&self) -> u32 {
        self.head_dim_v * self.n_head_kv
    }

    /// Whether layer `il` uses sliding-window attention.
    pub fn is_swa(&self, il: usize) -> bool {
        self.swa
            .as_ref()
            .is_some_and(|s| s.layers.get(il).copied().unwrap_or(false))
    }

    /// RoPE (base, scale) of layer `il`.
    pub fn rope_base_scale(&self, il: usize) -> (f32, f32) {
        match &self.swa {
            Some(s) if self.is_swa(il) => (s.freq_base, s.freq_scale),
            _ => (self.rope.freq_base, self.rope.freq_scale),
        }
    }

    /// RoPE (ext_factor, attn_factor) of layer `il`: the model's, except in local layers of
    /// models whose local layers use plain RoPE (OLMo 2/3 with YaRN: 0 and 1).
    pub fn rope_ext_attn(&self, il: usize) -> (f32, f32) {
        match &self.swa {
            Some(s) if s.plain_rope && self.is_swa(il) => (0.0, 1.0),
            _ => (self.rope.ext_factor, self.rope.attn_factor),
        }
    }

    /// Whether layer `il` is a recurrent (Gated DeltaNet) layer, which keeps no K and V.
    pub fn is_recurrent(&self, il: usize) -> bool {
        self.ssm.as_ref().is_some_and(|s| s.is_recurrent(il))
    }

    /// Whether layer `il` applies RoPE to Q and K.
    pub fn uses_rope(&self, il: usize) -> bool {
        !self.no_rope.get(il).copied().unwrap_or(false)
    }
}

/// Every problem found in the metadata, reported together.
#[derive(Debug, thiserror::Error)]
#[error("bad model metadata: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct HparamsError(pub Vec<MetaError>);

/// Read the hyper-parameters shared by llama-like architectures.
pub fn read(f: &GgufFile, arch: &str, rope_kind: RopeType) -> Result<Hparams, HparamsError> {
    read_with(f, arch, rope_kind, |_, _| {})
}

/// [`read`], then `extra` reads an architecture's own keys through the same [`Reader`], so
/// that every problem is still reported at once.
pub fn read_with(
    f: &GgufFile,
    arch: &str,
    rope_kind: RopeType,
    extra: impl FnOnce(&mut Reader<'_>, &mut Hparams),
) -> Result<Hparams, HparamsError> {
    let mut r = Reader::new(f, arch);
    let n_ctx_train = r.u32(Key::ContextLength);
    let n_embd = r.u32(Key::EmbeddingLength);
    let n_layer = r.u32(Key::BlockCount);
    let n_ff = r.scalar_of_layers(Key::FeedForwardLength, n_layer, Reader::u32);
    let n_head = r.scalar_of_layers(Key::HeadCount, n_layer, Reader::u32);
    let n_head_kv = r
        .scalar_of_layers(Key::HeadCountKv, n_layer, Reader::opt_u32)
        .unwrap_or(n_head);
    let rms_eps = r.f32(Key::RmsEps);
    let default_head = n_embd.checked_div(n_head).unwrap_or(0);
    let head_dim_k = r.opt_u32(Key::KeyLength).unwrap_or(default_head);
    let head_dim_v = r.opt_u32(Key::ValueLength).unwrap_or(default_head);
    let n_rot = r.opt_u32(Key::RopeDimensionCount).unwrap_or(head_dim_k);
    let freq_base = r.opt_f32(Key::RopeFreqBase).unwrap_or(10_000.0);
    // As llama.cpp: linear unless the file says, the factor from `rope.scaling.factor` or the
    // older `rope.scale_linear`.
    let scaling = r
        .opt_str(Key::RopeScalingType)
        .unwrap_or_else(|| "linear".into());
    let factor = r
        .opt_f32(Key::RopeScalingFactor)
        .or_else(|| r.opt_f32(Key::RopeScaleLinear))
        .unwrap_or(0.0);
    let n_ctx_orig = r.opt_u32(Key::RopeScalingOrigCtx).unwrap_or(n_ctx_train);
    let vocab_len = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map(|a| a.len() as u32);
    let n_vocab = r.opt_u32(Key::VocabSize).or(vocab_len).unwrap_or(0);

    let freq_scale = match scaling.as_str() {
        "none" => 1.0,
        "linear" | "yarn" | "longrope" if factor > 0.0 => 1.0 / factor,
        "linear" | "yarn" | "longrope" => 1.0,
        other => {
            r.push(MetaError::WrongType {
                key: Key::RopeScalingType.name(arch),
                expected: "none, linear, yarn or longrope",
                found: other.to_string(),
            });
            1.0
        }
    };
    let yarn = scaling == "yarn";
    let ext_factor = if yarn { 1.0 } else { 0.0 };
    let attn_factor = rope_attn_factor(
        yarn,
        freq_scale,
        r.opt_f32(Key::RopeYarnLogMul).unwrap_or(0.0),
        r.opt_f32(Key::RopeScalingAttnFactor).unwrap_or(1.0),
    );
    let n_tensors = f.tensors().len();
    let mut n_layer_checked = n_layer;
    if n_layer as usize > n_tensors.max(1) {
        // Every layer has tensors: a larger count is corrupt, and sizing per-layer tables by it
        // could allocate gigabytes. (A file with no tensors at all gets the clearer error that
        // names the first missing tensor.)
        r.push(invalid(
            Key::BlockCount.name(arch),
            "at most the number of tensors",
            format!("{n_layer} ({n_tensors} tensors)"),
        ));
        n_layer_checked = 0;
    }
    check_heads(
        &mut r,
        f,
        arch,
        Heads {
            n_embd,
            n_head,
            head_dim_k,
            head_dim_v,
            n_rot,
        },
    );
    if n_layer == 0 || n_embd == 0 || n_head == 0 {
        // Already reported when missing; a present zero is its own error.
        for (k, v) in [
            (Key::BlockCount, n_layer),
            (Key::EmbeddingLength, n_embd),
            (Key::HeadCount, n_head),
        ] {
            // (a key of another type is already reported)
            if v == 0 && f.get_u32(&k.name(arch)) == Ok(0) {
                r.push(MetaError::WrongType {
                    key: k.name(arch),
                    expected: "a positive integer",
                    found: "0".into(),
                });
            }
        }
    } else if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
        r.push(MetaError::WrongType {
            key: Key::HeadCountKv.name(arch),
            expected: "a divisor of attention.head_count",
            found: n_head_kv.to_string(),
        });
    }
    if n_vocab == 0 {
        r.push(MetaError::Missing {
            key: "tokenizer.ggml.tokens".into(),
        });
    }
    let mut hp = Hparams {
        arch: arch.to_string(),
        n_vocab,
        n_ctx_train,
        n_embd,
        n_layer: n_layer_checked,
        n_head,
        n_head_kv,
        head_dim_k,
        head_dim_v,
        n_ff,
        rms_eps,
        rope: Rope {
            kind: rope_kind,
            n_rot,
            freq_base,
            freq_scale,
            n_ctx_orig,
            ext_factor,
            attn_factor,
            beta_fast: 32.0,
            beta_slow: 1.0,
        },
        swa: None,
        embd_scale: 1.0,
        attn_scale: 1.0 / (head_dim_k.max(1) as f32).sqrt(),
        final_logit_softcap: None,
        attn_softcap: None,
        logit_scale: None,
        residual_scale: None,
        attn_temp: None,
        no_rope: Vec::new(),
        ssm: None,
        rope_sections: None,
        n_layer_mtp: 0,
        n_ff_shexp: 0,
        moe: read_moe(&mut r, arch, n_layer, n_ff),
    };
    extra(&mut r, &mut hp);
    r.finish(hp)
}

/// RoPE's attention factor as llama.cpp derives it: with YaRN, the magnitude correction
/// `mscale(factor) / mscale_all_dims(factor)` (1 without a log multiplier) divided by
/// `1 + 0.1 ln factor`, which ggml's YaRN multiplies back in; always times the file's
/// `rope.scaling.attn_factor`. Each step in f32, in llama.cpp's order.
pub fn rope_attn_factor(yarn: bool, freq_scale: f32, log_mul: f32, file_factor: f32) -> f32 {
    let mut a = 1.0f32;
    if yarn {
        let mscale = |scale: f32, m: f32| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1f32 * m * scale.ln() + 1.0
            }
        };
        let factor = 1.0f32 / freq_scale;
        a = if log_mul != 0.0 {
            mscale(factor, 1.0) / mscale(factor, log_mul)
        } else {
            mscale(factor, 1.0)
        };
        a *= 1.0f32 / (1.0 + 0.1 * factor.ln());
    }
    a * file_factor
}

/// The experts of a mixture-of-experts model: `expert_count` (absent or 0: a dense model),
/// `expert_used_count` (1..=expert_count) and their width, `expert_feed_forward_length`
/// where the file gives it, else `feed_forward_length`.
fn read_moe(r: &mut Reader<'_>, arch: &str, n_layer: u32, n_ff: u32) -> Option<Moe> {
    let n_expert = r.opt_u32(Key::ExpertCount).filter(|&n| n > 0)?;
    let n_used = r
        .scalar_of_layers(Key::ExpertUsedCount, n_layer, Reader::opt_u32)
        .unwrap_or(0);
    if n_expert > MAX_EXPERTS {
        r.push(invalid(
            Key::ExpertCount.name(arch),
            "at most 512 experts",
            n_expert.to_string(),
        ));
        return None;
    }
    if n_used == 0 || n_used > n_expert {
        r.push(invalid(
            Key::ExpertUsedCount.name(arch),
            "1 to expert_count experts per token",
            format!("{n_used} (of {n_expert})"),
        ));
        return None;
    }
    let n_ff_exp = r
        .scalar_of_layers(Key::ExpertFeedForwardLength, n_layer, Reader::opt_u32)
        .unwrap_or(n_ff);
    Some(Moe {
        n_expert,
        n_expert_used: n_used,
        n_ff_exp,
        gating: Gating::SoftmaxNorm,
        weights_scale: 0.0,
    })
}

fn invalid(key: String, expected: &'static str, found: String) -> MetaError {
    MetaError::WrongType {
        key,
        expected,
        found,
    }
}

/// The head geometry that the graph relies on.
struct Heads {
    n_embd: u32,
    n_head: u32,
    head_dim_k: u32,
    head_dim_v: u32,
    n_rot: u32,
}

/// Head sizes that divide the embedding (when not given explicitly), Q/K/V widths that fit in
/// 32 bits, and RoPE dimensions that fit in a head: ggml aborts on the graph otherwise.
fn check_heads(r: &mut Reader<'_>, f: &GgufFile, arch: &str, h: Heads) {
    if h.n_head == 0 || h.n_embd == 0 {
        return; // reported by the caller
    }
    let explicit = |k: Key| f.get(&k.name(arch)).is_some();
    let defaulted = !explicit(Key::KeyLength) || !explicit(Key::ValueLength);
    if defaulted && !h.n_embd.is_multiple_of(h.n_head) {
        r.push(invalid(
            Key::HeadCount.name(arch),
            "a divisor of the embedding length",
            format!(
                "{} (not a divisor of {} = {})",
                h.n_head,
                Key::EmbeddingLength.name(arch),
                h.n_embd
            ),
        ));
        return;
    }
    for (k, d) in [
        (Key::KeyLength, h.head_dim_k),
        (Key::ValueLength, h.head_dim_v),
    ] {
        let width = u64::from(d) * u64::from(h.n_head);
        if d == 0 || width > i32::MAX as u64 {
            r.push(invalid(
                k.name(arch),
                "a head size with head_count × size in 1..2^31",
                format!("{d} (× {} heads = {width})", h.n_head),
            ));
            return;
        }
    }
    if h.n_rot > h.head_dim_k || !h.n_rot.is_multiple_of(2) {
        r.push(invalid(
            Key::RopeDimensionCount.name(arch),
            "an even number no larger than the head size",
            format!("{} (head size {})", h.n_rot, h.head_dim_k),
        ));
    }
}

#[cfg(test)]
mod tests;
