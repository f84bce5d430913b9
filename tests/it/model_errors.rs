//! A model file that is valid GGUF but not a usable model gets one clear error naming what is
//! wrong (architecture, every missing key, the missing or misshapen tensor).

use std::sync::Arc;

use ember::gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};
use ember::model::{LoadOptions, Model};

fn load(w: &GgufWriter) -> String {
    let f = Arc::new(GgufFile::from_bytes(w.to_bytes()).expect("valid gguf"));
    match Model::load(
        f,
        LoadOptions {
            mmap: false,
            repack: false,
            ..LoadOptions::default()
        },
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn base(arch: &str) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String(arch.into()));
    w.add(
        "tokenizer.ggml.tokens",
        Value::array(
            ValueType::String,
            (0..8).map(|i| Value::String(format!("t{i}"))).collect(),
        ),
    );
    w
}

#[test]
fn unsupported_architecture_lists_supported_ones() {
    let e = load(&base("mamba"));
    assert!(e.contains("'mamba'") && e.contains("llama"), "{e}");
}

#[test]
fn every_missing_key_is_named_at_once() {
    let e = load(&base("llama"));
    for k in [
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.feed_forward_length",
    ] {
        assert!(e.contains(k), "missing {k} in: {e}");
    }
}

fn with_hparams() -> GgufWriter {
    let mut w = base("llama");
    for (k, v) in [
        ("context_length", 64),
        ("embedding_length", 32),
        ("block_count", 1),
        ("feed_forward_length", 64),
        ("attention.head_count", 2),
    ] {
        w.add(&format!("llama.{k}"), Value::U32(v));
    }
    w.add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let e = load(&with_hparams());
    assert!(
        e.contains("token_embd.weight") && e.contains("missing"),
        "{e}"
    );
    let mut w = with_hparams();
    w.add_tensor(
        "token_embd.weight",
        GgmlType::F32,
        &[31, 8],
        vec![0; 31 * 8 * 4],
    );
    let e = load(&w);
    assert!(
        e.contains("token_embd.weight") && e.contains("[32, 8]"),
        "{e}"
    );
}

/// A Qwen3.5 file without its delta-net keys names each of them; a geometry that does not add
/// up (or would need a huge state) and RoPE sections that sum to 0 are refused, by key.
#[test]
fn qwen35_delta_net_keys_are_checked() {
    let mut w = base("qwen35");
    for (k, v) in [
        ("context_length", 64),
        ("embedding_length", 32),
        ("block_count", 2),
        ("feed_forward_length", 64),
        ("attention.head_count", 2),
    ] {
        w.add(&format!("qwen35.{k}"), Value::U32(v));
    }
    w.add("qwen35.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
    let e = load(&w);
    for k in [
        "qwen35.ssm.conv_kernel",
        "qwen35.ssm.inner_size",
        "qwen35.ssm.state_size",
        "qwen35.ssm.time_step_rank",
        "qwen35.ssm.group_count",
        "qwen35.rope.dimension_sections",
    ] {
        assert!(e.contains(k), "missing {k} in: {e}");
    }
    for (k, v) in [
        ("ssm.conv_kernel", 4),
        ("ssm.state_size", 1 << 20),
        ("ssm.group_count", 1),
        ("ssm.time_step_rank", 1),
        ("ssm.inner_size", 1 << 20),
    ] {
        w.add(&format!("qwen35.{k}"), Value::U32(v));
    }
    w.add(
        "qwen35.rope.dimension_sections",
        Value::array(ValueType::I32, vec![Value::I32(0); 4]),
    );
    let e = load(&w);
    assert!(e.contains("qwen35.ssm.inner_size"), "{e}");
    assert!(e.contains("qwen35.rope.dimension_sections"), "{e}");
}
