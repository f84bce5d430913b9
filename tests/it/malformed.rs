//! The malformed-file suite: each row breaks a valid tiny model (by byte surgery at a located
//! field, or through our writer) or supplies something that is not a model at all. The real
//! binary must then exit with status 1 and exactly one line on stderr naming the problem (and
//! the key or tensor), with nothing on stdout, no panic or abort, within a second, and without
//! allocating more than a fixed virtual-memory cap (enforced by `ulimit -v`: an allocation past
//! it aborts the process, which fails the row).
//!
//! GGUF-level defects also make `ember info` fail the same way; files that are valid GGUF but
//! not a usable model are still described by `ember info` (exit 0).

use crate::common;
mod layout;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{show, TinyArch};
use ember::gguf::{Value, ValueType};
use layout::{put_u32, put_u64, rd_u64, written, Base, Input};

/// Virtual-memory cap for each run (KiB): far below what any absurd count would make us
/// allocate, far above what a tiny model needs.
const VM_LIMIT_KIB: u64 = 1 << 20;
const TIME_LIMIT: Duration = Duration::from_secs(1);

/// Whether `ember info` must fail too (the defect is in the GGUF structure itself).
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Gguf,
    Model,
}

fn u32v(x: u32) -> Value {
    Value::U32(x)
}

struct Case {
    name: &'static str,
    input: Input,
    /// Substrings the error line must contain.
    expect: Vec<String>,
    level: Level,
}

fn cases() -> Vec<Case> {
    use Level::*;
    let base = Base::new();
    let l = &base.l;
    let tokens = base.kv("tokenizer.ggml.tokens");
    let last = l.tensors.last().unwrap();
    let mut out = Vec::new();
    let mut case = |name, input, expect: &[&str], level| {
        out.push(Case {
            name,
            input,
            expect: expect.iter().map(|s| s.to_string()).collect(),
            level,
        })
    };

    // --- truncation inside every section
    case("empty file", Input::Bytes(Vec::new()), &["empty"], Gguf);
    case(
        "cut in the header",
        base.cut(14),
        &["truncated", "n_tensors"],
        Gguf,
    );
    // (Cut in the last key: an earlier cut leaves too few bytes for n_kv, another error.)
    let k = l.kvs.len() - 1;
    case(
        "cut in a key",
        base.cut(l.kvs[k].at + 10),
        &["truncated", &format!("key #{k}")],
        Gguf,
    );
    case(
        "cut in a value",
        base.cut(tokens.value_at + 400),
        &["truncated", "tokenizer.ggml.tokens"],
        Gguf,
    );
    case(
        "cut in a tensor info",
        base.cut(l.tensors[5].offset_at + 3),
        &["truncated", "data offset", &l.tensors[5].name],
        Gguf,
    );
    assert!(l.data_start > l.infos_end + 1, "the tiny model has padding");
    case(
        "cut in the padding",
        base.cut(l.infos_end + 1),
        &["data section", "past the end"],
        Gguf,
    );
    case(
        "cut in the tensor data",
        base.cut(base.bytes.len() - 100),
        &["outside", &last.name],
        Gguf,
    );

    // --- header
    case(
        "bad magic",
        base.with(|b, _| b[..4].copy_from_slice(b"GGML")),
        &["not a GGUF file", "magic"],
        Gguf,
    );
    case(
        "version 1",
        base.with(|b, _| put_u32(b, 4, 1)),
        &["version 1"],
        Gguf,
    );
    case(
        "version 4",
        base.with(|b, _| put_u32(b, 4, 4)),
        &["version 4"],
        Gguf,
    );
    case(
        "n_tensors far beyond the file",
        base.with(|b, _| put_u64(b, 8, 1 << 40)),
        &["n_tensors 1099511627776"],
        Gguf,
    );
    case(
        "n_kv far beyond the file",
        base.with(|b, _| put_u64(b, 16, u64::MAX)),
        &["n_kv 18446744073709551615"],
        Gguf,
    );

    // --- key/value pairs
    case(
        "key length 2^63",
        base.with(|b, s| put_u64(b, s.l.kvs[2].at, 1 << 63)),
        &["string length 9223372036854775808", "key #2"],
        Gguf,
    );
    case(
        "string value length 2^63",
        base.with(|b, s| put_u64(b, s.kv("general.name").value_at, 1 << 63)),
        &["string length 9223372036854775808", "general.name"],
        Gguf,
    );
    case(
        "array length 2^63",
        base.with(|b, _| put_u64(b, tokens.value_at + 4, 1 << 63)),
        &["array count 9223372036854775808", "tokenizer.ggml.tokens"],
        Gguf,
    );
    case(
        "arrays nested too deep",
        Input::Bytes(nested_arrays(64)),
        &["nested deeper", "'deep'"],
        Gguf,
    );
    case(
        "key that is not UTF-8",
        base.with(|b, s| b[s.l.kvs[1].at + 8 + 2] = 0xff),
        &["UTF-8", "key #1"],
        Gguf,
    );
    case(
        "string value that is not UTF-8",
        base.with(|b, s| b[s.kv("general.name").value_at + 8] = 0xc3),
        &["UTF-8", "general.name"],
        Gguf,
    );
    case(
        "duplicate key",
        base.rename_key("llama.context_length", "general.architecture"),
        &["duplicate metadata key 'general.architecture'"],
        Gguf,
    );
    case(
        "unknown value type",
        base.with(|b, s| put_u32(b, s.kv("general.name").type_at, 99)),
        &["value type 99", "general.name"],
        Gguf,
    );
    case(
        "bool that is neither 0 nor 1",
        base.with(|b, s| b[s.kv("tokenizer.ggml.add_bos_token").value_at] = 7),
        &["bool", "tokenizer.ggml.add_bos_token"],
        Gguf,
    );
    case(
        "control characters in a key are escaped",
        match base.rename_key("general.name", "general\n\x1b[2J") {
            Input::Bytes(mut b) => {
                put_u32(&mut b, base.kv("general.name").type_at, 99);
                Input::Bytes(b)
            }
            _ => unreachable!(),
        },
        &["value type 99", "'general\\n\\u{1b}[2J'"],
        Gguf,
    );

    // --- alignment
    for (name, a, expect) in [
        ("alignment 0", 0, &["general.alignment", "is 0"][..]),
        ("alignment 3", 3, &["general.alignment", "is 3"]),
        ("alignment 2^31", 1 << 31, &["alignment 2147483648"]),
    ] {
        let w = written(TinyArch::Llama, |w| {
            w.add("general.alignment", u32v(a));
        });
        case(name, w, expect, Gguf);
    }
    case(
        "alignment of the wrong type",
        written(TinyArch::Llama, |w| {
            w.add("general.alignment", Value::U64(32));
        }),
        &["general.alignment", "must be u32"],
        Gguf,
    );

    // --- tensor infos
    case(
        "duplicate tensor name",
        base.rename_tensor("blk.0.attn_k.weight", "blk.0.attn_q.weight"),
        &["duplicate tensor name 'blk.0.attn_q.weight'"],
        Gguf,
    );
    case(
        "zero dimensions",
        base.with(|b, s| put_u32(b, s.ti("output_norm.weight").n_dims_at, 0)),
        &["'output_norm.weight'", "0 dimensions"],
        Gguf,
    );
    case(
        "five dimensions",
        base.with(|b, s| put_u32(b, s.ti("output_norm.weight").n_dims_at, 5)),
        &["'output_norm.weight'", "5 dimensions"],
        Gguf,
    );
    case(
        "negative dimension",
        base.with(|b, s| put_u64(b, s.ti("token_embd.weight").dims_at + 8, u64::MAX)),
        &["'token_embd.weight'", "dimension 1 is -1"],
        Gguf,
    );
    case(
        "element count overflows",
        base.with(|b, s| {
            let at = s.ti("token_embd.weight").dims_at;
            put_u64(b, at, 1 << 32);
            put_u64(b, at + 8, 1 << 32);
        }),
        &["'token_embd.weight'", "overflows"],
        Gguf,
    );
    case(
        "byte size overflows",
        base.with(|b, s| {
            let at = s.ti("token_embd.weight").dims_at;
            put_u64(b, at, 1 << 31);
            put_u64(b, at + 8, 1 << 31);
        }),
        &["'token_embd.weight'", "overflows"],
        Gguf,
    );
    case(
        "unknown ggml type 4 (removed Q4_2)",
        base.with(|b, s| put_u32(b, s.ti("blk.1.ffn_up.weight").type_at, 4)),
        &["'blk.1.ffn_up.weight'", "unknown ggml type 4"],
        Gguf,
    );
    case(
        "unknown ggml type 1000",
        base.with(|b, s| put_u32(b, s.ti("blk.1.ffn_up.weight").type_at, 1000)),
        &["'blk.1.ffn_up.weight'", "unknown ggml type 1000"],
        Gguf,
    );
    case(
        "row size not a multiple of the block size",
        // q4_K has 256-element blocks; output_norm.weight has 64 elements.
        base.with(|b, s| put_u32(b, s.ti("output_norm.weight").type_at, 12)),
        &[
            "'output_norm.weight'",
            "not a multiple of the q4_K block size 256",
        ],
        Gguf,
    );
    case(
        "tensor offset out of range",
        base.with(|b, s| put_u64(b, s.l.tensors.last().unwrap().offset_at, 1 << 40)),
        &["outside", &last.name],
        Gguf,
    );
    case(
        "overlapping tensors",
        base.with(|b, s| {
            let first = rd_u64(b, s.l.tensors[1].offset_at);
            put_u64(b, s.l.tensors[2].offset_at, first);
        }),
        &["overlaps", &l.tensors[1].name, &l.tensors[2].name],
        Gguf,
    );
    case(
        "misaligned tensor offset",
        base.with(|b, s| {
            let at = s.l.tensors[3].offset_at;
            let off = rd_u64(b, at);
            put_u64(b, at, off + 4);
        }),
        &["not a multiple of the alignment 32", &l.tensors[3].name],
        Gguf,
    );

    // --- valid GGUF, unusable model
    case(
        "missing required tensor",
        base.rename_tensor("output_norm.weight", "output_norX.weight"),
        &["'output_norm.weight' is missing"],
        Model,
    );
    case(
        "zero-sized tensor",
        base.with(|b, s| put_u64(b, s.ti("token_embd.weight").dims_at, 0)),
        &[
            "'token_embd.weight'",
            "shape [0, 260]",
            "expected [64, 260]",
        ],
        Model,
    );
    case(
        "tensor shape disagrees with the hparams",
        base.with(|b, s| put_u32(b, s.kv("llama.feed_forward_length").value_at, 97)),
        &[
            "'blk.0.ffn_gate.weight'",
            "shape [64, 96]",
            "expected [64, 97]",
        ],
        Model,
    );
    case(
        "vocabulary size differs from the embedding rows",
        written(TinyArch::Llama, |w| {
            w.add("llama.vocab_size", u32v(300));
        }),
        &["llama.vocab_size is 300", "token_embd.weight has 260 rows"],
        Model,
    );
    case(
        "head size does not divide the embedding",
        base.with(|b, s| put_u32(b, s.kv("llama.attention.head_count").value_at, 5)),
        &[
            "llama.attention.head_count",
            "divisor of llama.embedding_length",
        ],
        Model,
    );
    case(
        "head count kv does not divide head count",
        base.with(|b, s| put_u32(b, s.kv("llama.attention.head_count_kv").value_at, 3)),
        &["llama.attention.head_count_kv", "divisor"],
        Model,
    );
    case(
        "head dimension overflows",
        written(TinyArch::Llama, |w| {
            w.add("llama.attention.key_length", u32v(1 << 31));
        }),
        &["llama.attention.key_length"],
        Model,
    );
    case(
        "rope dimensions beyond the head dimension",
        written(TinyArch::Llama, |w| {
            w.add("llama.rope.dimension_count", u32v(1000));
        }),
        &["llama.rope.dimension_count", "1000"],
        Model,
    );
    case(
        "zero soft-capping",
        written(TinyArch::Gemma2 { window: 4 }, |w| {
            w.add("gemma2.attn_logit_softcapping", Value::F32(0.0));
        }),
        &["gemma2.attn_logit_softcapping", "non-zero"],
        Model,
    );
    case(
        "zero logit scale",
        written(TinyArch::Granite, |w| {
            w.add("granite.logit_scale", Value::F32(0.0));
        }),
        &["granite.logit_scale", "non-zero"],
        Model,
    );
    case(
        "more experts used than there are",
        written(TinyArch::Qwen3Moe, |w| {
            w.add("qwen3moe.expert_used_count", u32v(5));
        }),
        &["qwen3moe.expert_used_count", "5 (of 4)"],
        Model,
    );
    case(
        "absurd block count",
        written(TinyArch::Gemma3 { window: 4 }, |w| {
            w.add("gemma3.block_count", u32v(u32::MAX));
        }),
        &["gemma3.block_count", "4294967295"],
        Model,
    );
    case(
        "absurd embedding length",
        written(TinyArch::Llama, |w| {
            w.add("llama.embedding_length", u32v(1 << 30));
        }),
        &["'token_embd.weight'", "expected [1073741824, 260]"],
        Model,
    );
    case(
        "missing hparam key",
        base.rename_key("llama.block_count", "llama.block_counx"),
        &["llama.block_count", "missing"],
        Model,
    );
    case(
        "hparam of the wrong type",
        written(TinyArch::Llama, |w| {
            w.add("llama.context_length", Value::String("long".into()));
        }),
        &["llama.context_length", "string"],
        Model,
    );
    case(
        "unsupported architecture",
        base.with(|b, s| b[s.kv("general.architecture").value_at + 8 + 4] = b'b'),
        &["unsupported architecture 'llamb'"],
        Model,
    );
    case(
        "token types shorter than the tokens",
        written(TinyArch::Llama, |w| {
            w.add(
                "tokenizer.ggml.token_type",
                Value::array(ValueType::I32, vec![Value::I32(1); 10]),
            );
        }),
        &["tokenizer.ggml.token_type"],
        Model,
    );
    case(
        "tokens that are not strings",
        written(TinyArch::Llama, |w| {
            w.add(
                "tokenizer.ggml.tokens",
                Value::array(ValueType::U32, vec![u32v(1); 260]),
            );
        }),
        &["tokenizer.ggml.tokens"],
        Model,
    );

    // --- not a model file at all
    case(
        "a text file",
        Input::Bytes(b"just some text\nover two lines\n".to_vec()),
        &["not a GGUF file"],
        Gguf,
    );
    case(
        "a PNG image",
        Input::Bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec()),
        &["not a GGUF file"],
        Gguf,
    );
    case("a directory", Input::Dir, &["is a directory"], Gguf);
    case("a missing file", Input::Missing, &["No such file"], Gguf);
    out
}

/// A header with no tensors and one key `deep` whose value nests `depth` arrays.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(b"deep");
    b.extend(9u32.to_le_bytes());
    for _ in 0..depth {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(0);
    b
}

/// Run `ember` under the virtual-memory cap; returns its output and wall time. A run over the
/// time limit is repeated once, so that a moment of load on a shared machine does not fail it.
fn run_capped(args: &[&str]) -> (Output, Duration) {
    let (o, took) = run_capped_once(args);
    if took > TIME_LIMIT {
        return run_capped_once(args);
    }
    (o, took)
}

fn run_capped_once(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {VM_LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ember");
    (o, start.elapsed())
}

/// The failure checks of one run; returns a description of what is wrong, if anything.
fn check_failure(o: &Output, took: Duration, expect: &[String]) -> Option<String> {
    let err = String::from_utf8_lossy(&o.stderr);
    let problem = if o.status.code() != Some(1) {
        "exit status is not 1".to_string()
    } else if err.lines().count() != 1 || !err.ends_with('\n') {
        "stderr is not exactly one line".to_string()
    } else if !err.starts_with("ember: error: ") {
        "stderr is not an error line".to_string()
    } else if let Some(s) = expect.iter().find(|s| !err.contains(s.as_str())) {
        format!("the error does not contain {s:?}")
    } else if !o.stdout.is_empty() {
        "stdout is not empty".to_string()
    } else if took > TIME_LIMIT {
        format!("took {took:?}")
    } else {
        return None;
    };
    Some(format!("{problem}\n{}", show(o)))
}

#[test]
fn every_malformed_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let path = match &c.input {
            Input::Bytes(b) => {
                let p = dir.path().join(format!("case{i}.gguf"));
                std::fs::write(&p, b).unwrap();
                p
            }
            Input::Dir => {
                let p = dir.path().join(format!("case{i}.gguf"));
                std::fs::create_dir(&p).unwrap();
                p
            }
            Input::Missing => dir.path().join("no-such-model.gguf"),
        };
        let p = path.to_str().unwrap();
        let (o, took) = run_capped(&["-m", p, "-p", "hi", "-n", "1", "-t", "1"]);
        if let Some(f) = check_failure(&o, took, &c.expect) {
            failures.push(format!("[{}] run: {f}", c.name));
        }
        let (o, took) = run_capped(&["info", p]);
        match c.level {
            Level::Gguf => {
                if let Some(f) = check_failure(&o, took, &c.expect) {
                    failures.push(format!("[{}] info: {f}", c.name));
                }
            }
            Level::Model => {
                if !o.status.success() {
                    failures.push(format!(
                        "[{}] info should describe it: {}",
                        c.name,
                        show(&o)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_valid_base_file_runs_under_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    std::fs::write(&p, Base::new().bytes).unwrap();
    let p = p.to_str().unwrap();
    let (o, _) = run_capped(&["-m", p, "-p", "hi", "-n", "2", "-t", "1", "--no-perf"]);
    assert!(o.status.success(), "{}", show(&o));
    let (o, _) = run_capped(&["info", p]);
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn the_layout_walker_finds_every_field() {
    let base = Base::new();
    let f = ember::gguf::GgufFile::from_bytes(base.bytes.clone()).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let found: Vec<&str> = base.l.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, found);
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    let found: Vec<&str> = base.l.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, found);
    assert_eq!(f.data_offset(), base.l.data_start as u64);
}
