//! Hyper-parameters read from GGUF metadata. Required keys are checked together and every
//! missing or mistyped key is reported at once, each by name.

use crate::gguf::{GgufFile, MetaError};

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
    RopeScalingOrigCtx,
    SlidingWindow,
    SlidingWindowPattern,
    RopeFreqBaseSwa,
    FinalLogitSoftcapping,
    VocabSize,
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
            Key::RopeScalingOrigCtx => "rope.scaling.original_context_length",
            Key::SlidingWindow => "attention.sliding_window",
            Key::SlidingWindowPattern => "attention.sliding_window_pattern",
            Key::RopeFreqBaseSwa => "rope.freq_base_swa",
            Key::FinalLogitSoftcapping => "final_logit_softcapping",
            Key::VocabSize => "vocab_size",
        };
        format!("{arch}.{suffix}")
    }
}

/// How RoPE pairs dimensions: adjacent (llama) or split halves (GPT-NeoX, Qwen2, Gemma).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    Normal,
    Neox,
}

impl RopeType {
    pub fn ggml_mode(self) -> i32 {
        match self {
            RopeType::Normal => 0,
            RopeType::Neox => 2,
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
}

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
}

/// Every problem found in the metadata, reported together.
#[derive(Debug, thiserror::Error)]
#[error("bad model metadata: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct HparamsError(pub Vec<MetaError>);

/// Collects metadata look-ups, remembering failures instead of stopping at the first.
pub struct Reader<'a> {
    f: &'a GgufFile,
    arch: String,
    errors: Vec<MetaError>,
}

impl<'a> Reader<'a> {
    pub fn new(f: &'a GgufFile, arch: &str) -> Self {
        Reader {
            f,
            arch: arch.to_string(),
            errors: Vec::new(),
        }
    }

    fn note<T: Default>(&mut self, r: Result<T, MetaError>) -> T {
        r.unwrap_or_else(|e| {
            self.errors.push(e);
            T::default()
        })
    }

    pub fn u32(&mut self, k: Key) -> u32 {
        let r = self.f.get_u32(&k.name(&self.arch));
        self.note(r)
    }

    pub fn f32(&mut self, k: Key) -> f32 {
        let r = self.f.get_f32(&k.name(&self.arch));
        self.note(r)
    }

    /// An optional key: absent gives `None`; present with a wrong type is an error.
    pub fn opt_u32(&mut self, k: Key) -> Option<u32> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_u32(&key).map(Some);
        self.note(r)
    }

    pub fn opt_f32(&mut self, k: Key) -> Option<f32> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_f32(&key).map(Some);
        self.note(r)
    }

    pub fn opt_str(&mut self, k: Key) -> Option<String> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_str(&key).map(|s| Some(s.to_string()));
        self.note(r)
    }

    pub fn push(&mut self, e: MetaError) {
        self.errors.push(e);
    }

    pub fn finish<T>(self, value: T) -> Result<T, HparamsError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(HparamsError(self.errors))
        }
    }
}

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
    let scaling = r
        .opt_str(Key::RopeScalingType)
        .unwrap_or_else(|| "none".into());
    let factor = r.opt_f32(Key::RopeScalingFactor).unwrap_or(0.0);
    let n_ctx_orig = r.opt_u32(Key::RopeScalingOrigCtx).unwrap_or(n_ctx_train);
    let vocab_len = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map(|a| a.len() as u32);
    let n_vocab = r.opt_u32(Key::VocabSize).or(vocab_len).unwrap_or(0);

    let freq_scale = match scaling.as_str() {
        "none" => 1.0,
        "linear" | "yarn" if factor > 0.0 => 1.0 / factor,
        "linear" | "yarn" => 1.0,
        other => {
            r.push(MetaError::WrongType {
                key: Key::RopeScalingType.name(arch),
                expected: "none, linear or yarn",
                found: other.to_string(),
            });
            1.0
        }
    };
    let ext_factor = if scaling == "yarn" { 1.0 } else { 0.0 };
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
        },
        swa: None,
        embd_scale: 1.0,
        attn_scale: 1.0 / (head_dim_k.max(1) as f32).sqrt(),
        final_logit_softcap: None,
    };
    extra(&mut r, &mut hp);
    r.finish(hp)
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

impl Reader<'_> {
    /// A key that llama.cpp also accepts as an array of one value per layer: such an array
    /// must have `n_layer` entries (else this reports both counts and gives the default);
    /// Ember reads one value for all layers, so `read` still refuses an array of the right
    /// length as the wrong type.
    fn scalar_of_layers<T: Default>(
        &mut self,
        k: Key,
        n_layer: u32,
        read: impl FnOnce(&mut Self, Key) -> T,
    ) -> T {
        let key = k.name(&self.arch);
        if let Some(a) = self.f.get(&key).and_then(|v| v.as_array()) {
            if let Some(e) = self.per_layer_count(&key, a.len(), n_layer) {
                self.push(e);
                return T::default();
            }
        }
        read(self, k)
    }

    /// The error for a per-layer array of `len` entries in a model of `n_layer` layers, if
    /// they differ (none when `n_layer` is 0: a missing or bad block count is reported
    /// already).
    fn per_layer_count(&self, key: &str, len: usize, n_layer: u32) -> Option<MetaError> {
        (n_layer != 0 && len != n_layer as usize).then(|| MetaError::WrongType {
            key: key.to_string(),
            expected: "one entry per layer",
            found: format!(
                "{len} entries ({} is {n_layer})",
                Key::BlockCount.name(&self.arch)
            ),
        })
    }

    /// Sliding-window attention as llama.cpp reads it: the window from
    /// `attention.sliding_window` (absent or 0: none); the local layers from
    /// `attention.sliding_window_pattern`, either a bool per layer or a period `n` (every n-th
    /// layer global, the others local), `default_period` when absent.
    pub fn swa(&mut self, n_layer: u32, default_period: u32) -> Option<Swa> {
        let window = self.opt_u32(Key::SlidingWindow).filter(|&w| w > 0)?;
        let key = Key::SlidingWindowPattern.name(&self.arch);
        let f = self.f;
        let layers = match f.get(&key).and_then(|v| v.as_array()) {
            Some(arr) => {
                let found = match arr {
                    crate::gguf::Array::Bool(b) if b.len() == n_layer as usize => Ok(b.clone()),
                    crate::gguf::Array::Bool(b) => {
                        Err(self.per_layer_count(&key, b.len(), n_layer))
                    }
                    other => Err(Some(MetaError::WrongType {
                        key,
                        expected: "one bool per layer",
                        found: format!("an array of {}", other.elem_type().name()),
                    })),
                };
                found.unwrap_or_else(|e| {
                    self.errors.extend(e);
                    vec![false; n_layer as usize]
                })
            }
            None => {
                let n = self
                    .opt_u32(Key::SlidingWindowPattern)
                    .unwrap_or(default_period);
                (0..n_layer).map(|il| n == 0 || il % n < n - 1).collect()
            }
        };
        let freq_base = self.opt_f32(Key::RopeFreqBaseSwa).unwrap_or(10_000.0);
        Some(Swa {
            window,
            layers,
            freq_base,
            freq_scale: 1.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::gguf::{GgufFile, GgufWriter, Value, ValueType};
    use crate::model::Arch;

    /// Metadata of a 4-layer Gemma 3, changed by `edit`. Hparams read only metadata, but
    /// the layer count may not exceed the tensor count, so four placeholder tensors are added.
    fn gemma3(edit: impl FnOnce(&mut GgufWriter)) -> Result<super::Hparams, String> {
        let mut w = GgufWriter::new();
        let u = Value::U32;
        w.add("general.architecture", Value::String("gemma3".into()));
        for (k, v) in [
            ("context_length", 256),
            ("embedding_length", 64),
            ("block_count", 4),
            ("feed_forward_length", 96),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 2),
            ("attention.sliding_window", 8),
        ] {
            w.add(&format!("gemma3.{k}"), u(v));
        }
        w.add("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
        w.add(
            "tokenizer.ggml.tokens",
            Value::array(ValueType::String, vec![Value::String("a".into()); 8]),
        );
        for i in 0..4 {
            w.add_tensor(
                &format!("t{i}"),
                crate::gguf::GgmlType::F32,
                &[1],
                vec![0; 4],
            );
        }
        edit(&mut w);
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        Arch::Gemma3.hparams(&f).map_err(|e| e.to_string())
    }

    fn bools(b: &[bool]) -> Value {
        Value::array(ValueType::Bool, b.iter().map(|&x| Value::Bool(x)).collect())
    }

    fn u32s(n: usize, v: u32) -> Value {
        Value::array(ValueType::U32, vec![Value::U32(v); n])
    }

    #[test]
    fn sliding_window_pattern_array_has_one_bool_per_layer() {
        let hp = gemma3(|w| {
            w.add(
                "gemma3.attention.sliding_window_pattern",
                bools(&[true, false, true, true]),
            );
        })
        .unwrap();
        assert_eq!(
            (0..4).map(|il| hp.is_swa(il)).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        // Every layer local, or none: both are patterns too.
        let hp = gemma3(|w| {
            w.add("gemma3.attention.sliding_window_pattern", bools(&[true; 4]));
        })
        .unwrap();
        assert!((0..4).all(|il| hp.is_swa(il)));
    }

    #[test]
    fn a_per_layer_array_of_another_length_names_both_counts() {
        let e = gemma3(|w| {
            w.add(
                "gemma3.attention.sliding_window_pattern",
                bools(&[true, false, true]),
            );
        })
        .unwrap_err();
        assert_eq!(
            e,
            "bad model metadata: metadata key 'gemma3.attention.sliding_window_pattern' \
             should be one entry per layer, found 3 entries (gemma3.block_count is 4)"
        );
        let e = gemma3(|w| {
            w.add("gemma3.attention.sliding_window_pattern", u32s(4, 1));
        })
        .unwrap_err();
        assert!(
            e.ends_with("should be one bool per layer, found an array of u32"),
            "{e}"
        );
        for key in [
            "attention.head_count",
            "attention.head_count_kv",
            "feed_forward_length",
        ] {
            let e = gemma3(|w| {
                w.add(&format!("gemma3.{key}"), u32s(5, 4));
            })
            .unwrap_err();
            assert_eq!(
                e,
                format!(
                    "bad model metadata: metadata key 'gemma3.{key}' should be one entry per \
                     layer, found 5 entries (gemma3.block_count is 4)"
                )
            );
            // The right length is still one value Ember cannot take per layer: one error.
            let e = gemma3(|w| {
                w.add(&format!("gemma3.{key}"), u32s(4, 4));
            })
            .unwrap_err();
            assert_eq!(e.matches("metadata key").count(), 1, "{e}");
            assert!(e.contains(&format!("'gemma3.{key}' should be u32")), "{e}");
        }
    }
}
