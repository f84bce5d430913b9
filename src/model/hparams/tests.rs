use crate::gguf::{GgufFile, GgufWriter, Value, ValueType};
use crate::model::Arch;

/// A vocabulary of 8 tokens and four placeholder tensors (hparams read only metadata, but the
/// layer count may not exceed the tensor count).
fn add_vocab_and_tensors(w: &mut GgufWriter) {
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
}

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
    add_vocab_and_tensors(&mut w);
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

#[test]
fn rope_scaling_defaults_to_linear_as_llama_cpp() {
    // A factor without a type scales linearly (llama.cpp's default type), the older key too.
    for key in ["gemma3.rope.scaling.factor", "gemma3.rope.scale_linear"] {
        let hp = gemma3(|w| {
            w.add(key, Value::F32(4.0));
        })
        .unwrap();
        assert_eq!(hp.rope.freq_scale, 0.25, "{key}");
        assert_eq!((hp.rope.ext_factor, hp.rope.attn_factor), (0.0, 1.0));
    }
    let hp = gemma3(|w| {
        w.add("gemma3.rope.scaling.factor", Value::F32(4.0));
        w.add("gemma3.rope.scaling.type", Value::String("none".into()));
    })
    .unwrap();
    assert_eq!(hp.rope.freq_scale, 1.0);
}

#[test]
fn yarn_attention_factor_is_llama_cpps() {
    // Without a log multiplier mscale(f) / (1 + 0.1 ln f) is 1 up to f32 rounding; with one,
    // the ratio of the two magnitude corrections (llama.cpp logs 1.1218 for factor 16 and
    // multiplier 0.5), divided by 1 + 0.1 ln 16 which ggml's YaRN multiplies back in.
    let a = super::rope_attn_factor(true, 1.0 / 16.0, 0.0, 1.0);
    assert!((a - 1.0).abs() < 1e-6, "{a}");
    let a = super::rope_attn_factor(true, 1.0 / 16.0, 0.5, 1.0);
    assert!((a * (1.0 + 0.1 * 16f32.ln()) - 1.1218).abs() < 1e-4, "{a}");
    assert_eq!(super::rope_attn_factor(false, 0.5, 1.0, 1.19), 1.19);
}

#[test]
fn expert_counts_are_checked_naming_the_key() {
    let hp = gemma3(|w| {
        w.add("gemma3.expert_count", Value::U32(8));
        w.add("gemma3.expert_used_count", Value::U32(2));
    })
    .unwrap();
    let moe = hp.moe.unwrap();
    assert_eq!((moe.n_expert, moe.n_expert_used, moe.n_ff_exp), (8, 2, 96));
    let e = gemma3(|w| {
        w.add("gemma3.expert_count", Value::U32(2));
        w.add("gemma3.expert_used_count", Value::U32(3));
    })
    .unwrap_err();
    assert!(e.contains("'gemma3.expert_used_count'"), "{e}");
    let e = gemma3(|w| {
        w.add("gemma3.expert_count", Value::U32(100_000));
    })
    .unwrap_err();
    assert!(e.contains("'gemma3.expert_count'"), "{e}");
}

/// Metadata of a 4-layer gpt-oss with the given `(key, value)` pairs (u32) on top of the
/// shape's.
fn gpt_oss(keys: &[(&str, u32)]) -> Result<super::Hparams, String> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("gpt-oss".into()));
    for (k, v) in [
        ("context_length", 256),
        ("embedding_length", 64),
        ("block_count", 4),
        ("feed_forward_length", 96),
        ("attention.head_count", 4),
        ("attention.head_count_kv", 2),
        ("expert_count", 8),
        ("expert_used_count", 2),
    ]
    .iter()
    .chain(keys)
    {
        w.add(&format!("gpt-oss.{k}"), Value::U32(*v));
    }
    w.add("gpt-oss.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    add_vocab_and_tensors(&mut w);
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    Arch::GptOss.hparams(&f).map_err(|e| e.to_string())
}

#[test]
fn gpt_oss_reads_its_window_experts_and_gating() {
    let hp = gpt_oss(&[
        ("attention.sliding_window", 16),
        ("expert_feed_forward_length", 32),
    ])
    .unwrap();
    // even layers local, as llama.cpp's pattern of 2
    assert_eq!(
        (0..4).map(|il| hp.is_swa(il)).collect::<Vec<_>>(),
        [true, false, true, false]
    );
    let moe = hp.moe.as_ref().unwrap();
    assert_eq!(
        (moe.n_ff_exp, moe.gating),
        (32, super::Gating::SoftmaxWeight)
    );
    assert_eq!(hp.attn_scale, 1.0 / 4.0, "1/√n_rot, heads of 16");
}

#[test]
fn gpt_oss_requires_its_window_and_expert_width_naming_both() {
    let e = gpt_oss(&[]).unwrap_err();
    for key in [
        "gpt-oss.attention.sliding_window",
        "gpt-oss.expert_feed_forward_length",
    ] {
        assert!(e.contains(key), "{e}");
    }
    // heads narrower than the RoPE dimensions
    let e = gpt_oss(&[
        ("attention.sliding_window", 16),
        ("expert_feed_forward_length", 32),
        ("attention.key_length", 8),
        ("attention.value_length", 8),
        ("rope.dimension_count", 4),
    ])
    .unwrap_err();
    assert!(e.contains("gpt-oss.attention.key_length"), "{e}");
}

/// llama.cpp's factors: 1 + scale·ln(⌊p / floor⌋ + 1).
#[test]
fn attention_temperature_steps_once_per_floor() {
    let t = super::AttnTemperature {
        scale: 0.5,
        floor: 64,
    };
    assert_eq!(t.factor(0), 1.0);
    assert_eq!(t.factor(63), 1.0);
    assert_eq!(t.factor(64), (1.0 + 0.5 * 2f64.ln()) as f32);
    assert_eq!(t.factor(200), (1.0 + 0.5 * 4f64.ln()) as f32);
}
