//! Shared test helpers: a tiny random-weight llama model written by our own GGUF writer, and
//! the real SmolLM2 model (fetched by `models/fetch-default`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ember::gguf::{Array, GgmlType, GgufWriter, Value, ValueType};

/// Shape of the tiny test model.
pub struct Tiny {
    pub n_vocab: u64,
    pub n_embd: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ff: u64,
    pub n_layer: u64,
    pub ctx: u32,
}

pub const TINY: Tiny = Tiny {
    n_vocab: 260,
    n_embd: 64,
    n_head: 4,
    n_head_kv: 2,
    n_ff: 96,
    n_layer: 2,
    ctx: 256,
};

/// The tiny Qwen3.5's delta-net: state (head) size and value heads.
const TINY_SSM_STATE: u64 = 16;
const TINY_SSM_HEADS: u64 = 4;

/// Deterministic pseudo-random numbers in [-scale, scale).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * scale
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// IEEE half from f32 (round to nearest even; test values are small and finite).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if exp <= 0 {
        return sign; // flush tiny values to zero
    }
    let m = mant >> 13;
    let round = (mant >> 12) & 1 == 1 && ((mant & 0xfff) != 0 || m & 1 == 1);
    let h = ((exp as u32) << 10 | m) + round as u32;
    sign | h as u16
}

/// `n` random MXFP4 values (a multiple of 32): blocks of an E8M0 exponent (2^-6 · the
/// FP4 value halved: up to ±0.1875, about the scale of the f16 matrices) and 16 bytes of random 4-bit E2M1 codes.
fn mxfp4_random(rng: &mut Lcg, n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize / 32 * 17);
    for _ in 0..n / 32 {
        out.push(122);
        out.extend((0..16).map(|_| ((rng.next(1.0) + 1.0) * 128.0) as u8));
    }
    out
}

/// Q8_0 blocks of 32: an f16 scale (the largest magnitude / 127), then 32 rounded i8 quants.
fn q8_0_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() / 32 * 34);
    for block in v.chunks(32) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16_bits(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    out
}

/// The GPT-2 byte-to-unicode table (bytes as printable characters).
fn byte_chars() -> Vec<String> {
    let mut keep: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut out = vec![String::new(); 256];
    for &b in &keep {
        out[b as usize] = char::from_u32(b).unwrap().to_string();
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !keep.contains(&b) {
            out[b as usize] = char::from_u32(256 + n).unwrap().to_string();
            n += 1;
        }
    }
    keep.clear();
    out
}

/// Which architecture a tiny model is written for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TinyArch {
    Llama,
    /// Q/K/V biases, split-half RoPE.
    Qwen2,
    /// Per-head Q/K norms, heads twice as wide as n_embd / n_head.
    Qwen3,
    /// Qwen3 with a mixture of 4 experts, 2 per token.
    Qwen3Moe,
    /// Q/K norms, post norms, tied output, sliding window `window` on every other layer.
    Gemma3 {
        window: u32,
    },
    /// Post norms, tied output, soft-capped attention and logits, sliding window `window` on
    /// every other layer.
    Gemma2 {
        window: u32,
    },
    /// Fused gate+up matrices; fused QKV too, or the same weights as separate Q, K and V.
    Phi3 {
        fused_qkv: bool,
    },
    /// Attention temperature tuning (Q scaled per position, a step every 4 positions).
    Mistral3,
    /// Four layers, the last without RoPE.
    Smollm3,
    /// No pre-norms; Q/K norms over the whole projection; post norms.
    Olmo2,
    /// Embedding, attention, residual and logit scales.
    Granite,
    /// gpt-oss: biases everywhere (Q/K/V/O, router, experts), attention sinks, a mixture of 4
    /// MXFP4 experts (2 per token, clamped SwiGLU), sliding window 4 on the even layers, YaRN.
    GptOss,
    /// Qwen3.5: a Gated DeltaNet layer (recurrent state, causal convolution) then a gated
    /// attention layer (Q's projection carries a gate), multi-section RoPE, post norms.
    Qwen35,
}

impl TinyArch {
    pub const ALL: [TinyArch; 13] = [
        TinyArch::Llama,
        TinyArch::Qwen2,
        TinyArch::Qwen3,
        TinyArch::Qwen3Moe,
        TinyArch::Gemma3 { window: 4 },
        TinyArch::Gemma2 { window: 4 },
        TinyArch::Phi3 { fused_qkv: true },
        TinyArch::Mistral3,
        TinyArch::Smollm3,
        TinyArch::Olmo2,
        TinyArch::Granite,
        TinyArch::GptOss,
        TinyArch::Qwen35,
    ];

    fn name(self) -> &'static str {
        match self {
            TinyArch::Llama => "llama",
            TinyArch::Qwen2 => "qwen2",
            TinyArch::Qwen3 => "qwen3",
            TinyArch::Qwen3Moe => "qwen3moe",
            TinyArch::Gemma3 { .. } => "gemma3",
            TinyArch::Gemma2 { .. } => "gemma2",
            TinyArch::Phi3 { .. } => "phi3",
            TinyArch::Mistral3 => "mistral3",
            TinyArch::Smollm3 => "smollm3",
            TinyArch::Olmo2 => "olmo2",
            TinyArch::Granite => "granite",
            TinyArch::GptOss => "gpt-oss",
            TinyArch::Qwen35 => "qwen35",
        }
    }

    fn gemma(self) -> bool {
        matches!(self, TinyArch::Gemma3 { .. } | TinyArch::Gemma2 { .. })
    }
}

/// Write a tiny llama model with random weights (matrices f16, norms f32) and a byte-level
/// BPE vocabulary (256 bytes, 3 merges, `<|endoftext|>` as EOS).
pub fn write_tiny_llama(path: &Path, seed: u64) {
    write_tiny(path, seed, TinyArch::Llama);
}

/// The tiny model with heads of 64 (two heads, one KV head): every quantized cache type's
/// block divides it, and it is large enough for the Hadamard rotation of quantized caches.
pub const TINY_HEAD64: Tiny = Tiny {
    n_embd: 128,
    n_head: 2,
    n_head_kv: 1,
    ..TINY
};

/// Write a tiny model of architecture `arch` (see [`write_tiny_llama`]).
pub fn write_tiny(path: &Path, seed: u64, arch: TinyArch) {
    write_tiny_shaped(path, seed, arch, &TINY);
}

/// Write a tiny model of architecture `arch` with the shape `t`.
pub fn write_tiny_shaped(path: &Path, seed: u64, arch: TinyArch, t: &Tiny) {
    tiny_writer_shaped(seed, arch, t)
        .write(path)
        .expect("write tiny model");
}

/// The writer of a tiny model of architecture `arch`, to change before writing it out.
pub fn tiny_writer(seed: u64, arch: TinyArch) -> GgufWriter {
    tiny_writer_shaped(seed, arch, &TINY)
}

/// The writer of a tiny model of architecture `arch` with the shape `t`.
pub fn tiny_writer_shaped(seed: u64, arch: TinyArch, t: &Tiny) -> GgufWriter {
    tiny_writer_typed(seed, arch, t, GgmlType::F16)
}

/// The writer of a tiny model whose matrices are `mat_type` (F16 or Q8_0).
fn tiny_writer_typed(seed: u64, arch: TinyArch, t: &Tiny, mat_type: GgmlType) -> GgufWriter {
    let mut w = GgufWriter::new();
    let s = |x: &str| Value::String(x.to_string());
    let a = arch.name();
    let u = |x: u64| Value::U32(x as u32);
    w.add("general.architecture", s(a));
    w.add("general.name", s("tiny-test"));
    w.add(&format!("{a}.context_length"), Value::U32(t.ctx));
    w.add(&format!("{a}.embedding_length"), u(t.n_embd));
    w.add(&format!("{a}.feed_forward_length"), u(t.n_ff));
    w.add(&format!("{a}.attention.head_count"), u(t.n_head));
    w.add(&format!("{a}.attention.head_count_kv"), u(t.n_head_kv));
    w.add(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    w.add(&format!("{a}.rope.freq_base"), Value::F32(10000.0));
    let n_layer = if arch == TinyArch::Smollm3 {
        t.n_layer.max(4)
    } else {
        t.n_layer
    };
    w.add(&format!("{a}.block_count"), u(n_layer));
    let (e, v, ff) = (t.n_embd, t.n_vocab, t.n_ff);
    // Qwen3's heads are wider than n_embd / n_head.
    let qwen3 = matches!(arch, TinyArch::Qwen3 | TinyArch::Qwen3Moe);
    let hd = if qwen3 {
        2 * e / t.n_head
    } else {
        e / t.n_head
    };
    let gpt_oss = arch == TinyArch::GptOss;
    let n_expert = if arch == TinyArch::Qwen3Moe || gpt_oss {
        4
    } else {
        0
    };
    // (MXFP4 rows are multiples of 32)
    let ffe = if gpt_oss { e } else { ff / 2 };
    if n_expert > 0 {
        w.add(&format!("{a}.expert_count"), u(n_expert));
        w.add(&format!("{a}.expert_used_count"), u(2));
        w.add(&format!("{a}.expert_feed_forward_length"), u(ffe));
    }
    if qwen3 {
        w.add(&format!("{a}.attention.key_length"), u(hd));
        w.add(&format!("{a}.attention.value_length"), u(hd));
    }
    match arch {
        TinyArch::Gemma3 { window } | TinyArch::Gemma2 { window } => {
            w.add(&format!("{a}.attention.sliding_window"), Value::U32(window));
            w.add(
                &format!("{a}.attention.sliding_window_pattern"),
                Value::U32(2),
            );
        }
        TinyArch::Mistral3 => {
            w.add(&format!("{a}.attention.temperature_scale"), Value::F32(0.5));
            w.add(
                &format!("{a}.rope.scaling.original_context_length"),
                Value::U32(4),
            );
        }
        TinyArch::GptOss => {
            w.add(&format!("{a}.attention.sliding_window"), Value::U32(4));
            w.add(&format!("{a}.rope.scaling.type"), s("yarn"));
            w.add(&format!("{a}.rope.scaling.factor"), Value::F32(4.0));
            w.add(
                &format!("{a}.rope.scaling.original_context_length"),
                Value::U32(64),
            );
        }
        TinyArch::Granite => {
            for (k, x) in [
                ("logit_scale", 2.0),
                ("residual_scale", 0.5),
                ("embedding_scale", 2.0),
                ("attention.scale", 0.125),
            ] {
                w.add(&format!("{a}.{k}"), Value::F32(x));
            }
        }
        TinyArch::Qwen35 => {
            w.add(&format!("{a}.rope.dimension_count"), u(hd));
            w.add(
                &format!("{a}.rope.dimension_sections"),
                Value::Array(
                    Array::from_values(
                        ValueType::I32,
                        [3, 3, 2, 0].into_iter().map(Value::I32).collect(),
                    )
                    .unwrap(),
                ),
            );
            for (k, x) in [
                ("ssm.conv_kernel", 4),
                ("ssm.state_size", TINY_SSM_STATE),
                ("ssm.group_count", 2),
                ("ssm.time_step_rank", TINY_SSM_HEADS),
                ("ssm.inner_size", TINY_SSM_STATE * TINY_SSM_HEADS),
                ("full_attention_interval", 2),
            ] {
                w.add(&format!("{a}.{k}"), u(x));
            }
        }
        _ => {}
    }
    add_tiny_vocab(&mut w, false);

    let mut rng = Lcg(seed);
    let mut f32_t = |w: &mut GgufWriter, name: &str, dims: &[u64], scale: f32, offset: f32| {
        let n: u64 = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + rng.next(scale)).collect();
        w.add_tensor(name, GgmlType::F32, dims, f32_bytes(&v));
    };
    let gemma = arch.gemma();
    let (q, kv) = (hd * t.n_head, hd * t.n_head_kv);
    // Gemma scales embeddings up by √n_embd: keep its inputs at unit scale after that.
    let embd_scale = if gemma { 1.0 / (e as f32).sqrt() } else { 1.0 };
    f32_t(&mut w, "token_embd.weight", &[e, v], embd_scale, 0.0);
    f32_t(&mut w, "output_norm.weight", &[e], 0.1, 1.0);
    let mut mats = Vec::new();
    for il in 0..n_layer {
        let mut norm = |w: &mut GgufWriter, n: &str, d: u64| {
            f32_t(w, &format!("blk.{il}.{n}.weight"), &[d], 0.1, 1.0)
        };
        let qwen35 = arch == TinyArch::Qwen35;
        // (Qwen3.5: layer 0 recurrent, layer 1 attention, and so on)
        let recurrent = qwen35 && il % 2 == 0;
        if gpt_oss || qwen35 {
            norm(&mut w, "attn_norm", e);
            norm(&mut w, "post_attention_norm", e);
        } else if arch != TinyArch::Olmo2 {
            norm(&mut w, "attn_norm", e);
            norm(&mut w, "ffn_norm", e);
        }
        match arch {
            TinyArch::Qwen35 if !recurrent => {
                norm(&mut w, "attn_q_norm", hd);
                norm(&mut w, "attn_k_norm", hd);
            }
            TinyArch::Qwen3 | TinyArch::Qwen3Moe | TinyArch::Gemma3 { .. } => {
                norm(&mut w, "attn_q_norm", hd);
                norm(&mut w, "attn_k_norm", hd);
            }
            TinyArch::Olmo2 => {
                norm(&mut w, "attn_q_norm", q);
                norm(&mut w, "attn_k_norm", kv);
            }
            _ => {}
        }
        if gemma || arch == TinyArch::Olmo2 {
            norm(&mut w, "post_attention_norm", e);
            norm(&mut w, "post_ffw_norm", e);
        }
        if gpt_oss {
            let biases = [
                ("attn_q", vec![q]),
                ("attn_k", vec![kv]),
                ("attn_v", vec![kv]),
                ("attn_output", vec![e]),
                ("ffn_gate_inp", vec![n_expert]),
                ("ffn_gate_exps", vec![ffe, n_expert]),
                ("ffn_up_exps", vec![ffe, n_expert]),
                ("ffn_down_exps", vec![e, n_expert]),
            ];
            for (n, d) in biases {
                f32_t(&mut w, &format!("blk.{il}.{n}.bias"), &d, 0.3, 0.0);
            }
            f32_t(
                &mut w,
                &format!("blk.{il}.attn_sinks.weight"),
                &[t.n_head],
                1.0,
                0.0,
            );
        }
        if arch == TinyArch::Qwen2 {
            for (n, d) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                f32_t(&mut w, &format!("blk.{il}.{n}.bias"), &[d], 0.5, 0.0);
            }
        }
        let blk = |n: &str| format!("blk.{il}.{n}.weight");
        let phi3 = matches!(arch, TinyArch::Phi3 { .. });
        let (ssm_v, ssm_heads) = (TINY_SSM_STATE * TINY_SSM_HEADS, TINY_SSM_HEADS);
        let ssm_channels = ssm_v + 2 * 2 * TINY_SSM_STATE;
        if recurrent {
            f32_t(&mut w, &blk("ssm_conv1d"), &[4, ssm_channels], 0.5, 0.0);
            f32_t(
                &mut w,
                &format!("blk.{il}.ssm_dt.bias"),
                &[ssm_heads],
                0.5,
                0.0,
            );
            // -exp(A_log): negative decays
            f32_t(&mut w, &format!("blk.{il}.ssm_a"), &[ssm_heads], 0.5, -1.0);
            f32_t(&mut w, &blk("ssm_norm"), &[TINY_SSM_STATE], 0.1, 1.0);
            mats.push((blk("attn_qkv"), vec![e, ssm_channels]));
            mats.push((blk("attn_gate"), vec![e, ssm_v]));
            mats.push((blk("ssm_beta"), vec![e, ssm_heads]));
            mats.push((blk("ssm_alpha"), vec![e, ssm_heads]));
            mats.push((blk("ssm_out"), vec![ssm_v, e]));
        } else if qwen35 {
            mats.push((blk("attn_q"), vec![e, 2 * q]));
            mats.push((blk("attn_k"), vec![e, kv]));
            mats.push((blk("attn_v"), vec![e, kv]));
        } else if phi3 {
            mats.push((blk("attn_qkv"), vec![e, q + 2 * kv]));
            mats.push((blk("ffn_up"), vec![e, 2 * ff]));
        } else {
            mats.push((blk("attn_q"), vec![e, q]));
            mats.push((blk("attn_k"), vec![e, kv]));
            mats.push((blk("attn_v"), vec![e, kv]));
        }
        if !recurrent {
            mats.push((blk("attn_output"), vec![q, e]));
        }
        if n_expert > 0 {
            mats.push((blk("ffn_gate_inp"), vec![e, n_expert]));
            mats.push((blk("ffn_gate_exps"), vec![e, ffe, n_expert]));
            mats.push((blk("ffn_up_exps"), vec![e, ffe, n_expert]));
            mats.push((blk("ffn_down_exps"), vec![ffe, e, n_expert]));
        } else {
            if !phi3 {
                mats.push((blk("ffn_gate"), vec![e, ff]));
                mats.push((blk("ffn_up"), vec![e, ff]));
            }
            mats.push((blk("ffn_down"), vec![ff, e]));
        }
    }
    if !gemma {
        mats.push(("output.weight".into(), vec![e, v]));
    }
    for (name, dims) in mats {
        let n: u64 = dims.iter().product();
        if gpt_oss && name.ends_with("_exps.weight") {
            w.add_tensor(&name, GgmlType::MXFP4, &dims, mxfp4_random(&mut rng, n));
            continue;
        }
        let scale = 1.0 / (dims[0] as f32).sqrt() * 1.7;
        let v: Vec<f32> = (0..n).map(|_| rng.next(scale)).collect();
        let bytes = match mat_type {
            GgmlType::Q8_0 => q8_0_bytes(&v),
            _ => v.iter().flat_map(|&x| f16_bits(x).to_le_bytes()).collect(),
        };
        if arch == (TinyArch::Phi3 { fused_qkv: false }) && name.ends_with("attn_qkv.weight") {
            // The same rows as separate Q, K and V matrices.
            let row = bytes.len() / dims[1] as usize;
            let mut at = 0;
            for (part, rows) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                let n = rows as usize * row;
                let name = name.replace("attn_qkv", part);
                w.add_tensor(&name, mat_type, &[e, rows], bytes[at..at + n].to_vec());
                at += n;
            }
            continue;
        }
        w.add_tensor(&name, mat_type, &dims, bytes);
    }
    w
}

/// A fresh tiny model in a temporary directory (kept alive by the returned guard).
pub fn tiny_model(seed: u64) -> (tempfile::TempDir, PathBuf) {
    tiny_model_of(seed, TinyArch::Llama)
}

/// A fresh tiny llama model whose matrices are Q8_0: products of any number of columns give
/// one column's results bit for bit, so greedy speculation on it is not capped (f16 matrices
/// are exact for one column only, see `WeightSet::exact_columns`).
pub fn tiny_model_q8(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny-q8.gguf");
    tiny_writer_typed(seed, TinyArch::Llama, &TINY, GgmlType::Q8_0)
        .write(&p)
        .expect("write tiny model");
    (dir, p)
}

/// A fresh tiny model of architecture `arch` whose matrices are Q8_0 (see [`tiny_model_q8`]).
pub fn tiny_model_q8_of(seed: u64, arch: TinyArch) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny-q8.gguf");
    tiny_writer_typed(seed, arch, &TINY, GgmlType::Q8_0)
        .write(&p)
        .expect("write tiny model");
    (dir, p)
}

/// [`tiny_model_q8`] trained for `ctx` tokens (long enough for caches of 512 cells and more).
pub fn tiny_model_q8_ctx(seed: u64, ctx: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny-q8-long.gguf");
    let mut w = tiny_writer_typed(seed, TinyArch::Llama, &TINY, GgmlType::Q8_0);
    w.add("llama.context_length", Value::U32(ctx));
    w.write(&p).expect("write tiny model");
    (dir, p)
}

/// A fresh tiny model of architecture `arch` in a temporary directory.
pub fn tiny_model_of(seed: u64, arch: TinyArch) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    write_tiny(&p, seed, arch);
    (dir, p)
}

/// The real SmolLM2 model (`$EMBER_TEST_MODEL`, `models/` or `~/.cache/models`). A test that
/// needs it fails, naming the command that fetches it, when it is absent (`.ci/run` fetches it).
pub fn smollm2() -> PathBuf {
    let candidates = [
        std::env::var_os("EMBER_TEST_MODEL").map(PathBuf::from),
        Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("the SmolLM2 model is not fetched: run models/fetch-default")
}

/// The tiny models' vocabulary: 256 byte tokens, 3 merges (`th`, `the`, `Ġthe`) and
/// `<|endoftext|>` (id 259, control) as BOS and EOS.
fn add_tiny_vocab(w: &mut GgufWriter, add_bos: bool) {
    let s = |x: &str| Value::String(x.to_string());
    let mut tokens = byte_chars();
    tokens.extend(["th", "the", "Ġthe"].map(String::from));
    tokens.push("<|endoftext|>".into());
    assert_eq!(tokens.len() as u64, TINY.n_vocab);
    let mut types = vec![Value::I32(1); tokens.len()];
    *types.last_mut().unwrap() = Value::I32(3);
    w.add("tokenizer.ggml.model", s("gpt2"));
    w.add("tokenizer.ggml.pre", s("smollm"));
    w.add(
        "tokenizer.ggml.tokens",
        Value::array(ValueType::String, tokens.iter().map(|x| s(x)).collect()),
    );
    w.add(
        "tokenizer.ggml.token_type",
        Value::array(ValueType::I32, types),
    );
    w.add(
        "tokenizer.ggml.merges",
        Value::array(ValueType::String, ["t h", "th e", "Ġ the"].map(s).to_vec()),
    );
    w.add("tokenizer.ggml.bos_token_id", Value::U32(259));
    w.add("tokenizer.ggml.eos_token_id", Value::U32(259));
    w.add("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
}

/// A GGUF file with the tiny vocabulary and no tensors (what `ember tokenize` needs).
pub fn write_vocab_only(path: &Path, add_bos: bool) {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()));
    add_tiny_vocab(&mut w, add_bos);
    w.write(path).expect("write vocab-only file");
}

/// Run the `ember` binary with `args`, `stdin` piped in (or no stdin) and extra environment.
pub fn run_ember(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ember");
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    c.wait_with_output().unwrap()
}

/// Status, stdout and stderr of a run, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped: servers a test started.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
