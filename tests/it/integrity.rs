//! Files that disagree with themselves are refused with exit 1 and one line on stderr naming
//! both sides: a state file (`--prompt-cache`, `/save`) whose bytes changed after it was
//! written, and a model whose metadata disagrees with its tensors (a vocabulary shorter than
//! the embedding, a special-token id past the vocabulary, a per-layer array of another length).

use crate::common;

use std::path::{Path, PathBuf};

use common::{run_ember, show, tiny_writer, tiny_writer_shaped, TinyArch, TINY};
use ember::gguf::{Value, ValueType};

const GREEDY: &[&str] = &["--temp", "0", "--ignore-eos", "-t", "1"];

fn run(m: &Path, extra: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut args = vec!["-m", m.to_str().unwrap()];
    args.extend_from_slice(GREEDY);
    args.extend_from_slice(extra);
    run_ember(&args, stdin, &[])
}

/// The run failed with exit 1 and printed exactly one line on stderr, which is returned.
fn one_line_error(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", show(o));
    assert!(o.stdout.is_empty(), "{}", show(o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line on stderr: {}", show(o));
    err
}

// ---- state files ----

/// Bytes before the token ids in a version-3 state file: the fixed header and its checksum.
const HEADER: usize = 61;

/// A prompt cache of the tiny model, saved by a first run; returns (dir guard, model, cache).
fn saved_cache(extra: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, model) = common::tiny_model(41);
    let cache = dir.path().join("prompt.cache");
    let prompt = "the cat sat on the mat and the dog sat on the log. ".repeat(2);
    let mut args = vec!["-p", prompt.as_str(), "-n", "2", "--prompt-cache"];
    args.push(cache.to_str().unwrap());
    args.extend_from_slice(extra);
    let o = run(&model, &args, None);
    assert!(o.status.success(), "{}", show(&o));
    (dir, model, cache)
}

/// Where the K and V rows of a state file lie (after the header, the token ids and the
/// application blob; before the final checksum).
fn kv_rows(bytes: &[u8]) -> std::ops::Range<usize> {
    let n_tokens = u32::from_le_bytes(bytes[41..45].try_into().unwrap()) as usize;
    let extra = u64::from_le_bytes(bytes[45..53].try_into().unwrap()) as usize;
    let start = HEADER + 4 * n_tokens + extra;
    assert!(start < bytes.len() - 8, "the file holds K and V rows");
    start..bytes.len() - 8
}

/// Flip one bit in each of `n` bytes spread evenly over `range`.
fn flip(bytes: &mut [u8], range: std::ops::Range<usize>, n: usize) {
    let step = range.len() / n;
    assert!(step > 0);
    for i in 0..n {
        bytes[range.start + i * step] ^= 1 << (i % 8);
    }
}

fn reuse(model: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-p", "the cat", "-n", "1", "--prompt-cache"];
    args.push(cache.to_str().unwrap());
    args.extend_from_slice(extra);
    run(model, &args, None)
}

#[test]
fn a_state_file_with_flipped_kv_bytes_is_refused_naming_the_file() {
    // Regression (issue 19): 50 flipped bytes inside the KV rows loaded without complaint.
    for extra in [&[][..], &["-fa", "off"]] {
        let (_d, model, cache) = saved_cache(extra);
        let mut bytes = std::fs::read(&cache).unwrap();
        let rows = kv_rows(&bytes);
        flip(&mut bytes, rows, 50);
        std::fs::write(&cache, &bytes).unwrap();
        let err = one_line_error(&reuse(&model, &cache, extra));
        assert!(
            err.contains(&format!(
                "prompt cache {}: the state file is corrupt (checksum mismatch in its contents)",
                cache.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn a_state_file_with_a_damaged_header_or_token_list_is_refused_as_corrupt() {
    let (_d, model, cache) = saved_cache(&[]);
    let good = std::fs::read(&cache).unwrap();
    // The fingerprint (a damaged one must not read as "another model"), the token count, the
    // token ids, the final checksum.
    for (at, part) in [
        (14, "header"),
        (42, "header"),
        (HEADER + 2, "contents"),
        (good.len() - 3, "contents"),
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&cache, &bytes).unwrap();
        let err = one_line_error(&reuse(&model, &cache, &[]));
        assert!(
            err.contains(&format!("corrupt (checksum mismatch in its {part})")),
            "byte {at}: {err}"
        );
    }
    // Truncated, or with bytes after the checksum: refused as before.
    for bytes in [&good[..good.len() - 100], &[&good[..], b"x"].concat()[..]] {
        std::fs::write(&cache, bytes).unwrap();
        let err = one_line_error(&reuse(&model, &cache, &[]));
        assert!(
            err.contains("the state file is truncated or corrupt"),
            "{err}"
        );
    }
    // The untouched file is re-used.
    std::fs::write(&cache, &good).unwrap();
    let o = reuse(&model, &cache, &[]);
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn a_chat_state_file_with_flipped_bytes_is_refused_by_load() {
    let (dir, model) = common::tiny_model(43);
    let file = dir.path().join("talk.chat");
    let f = file.to_str().unwrap();
    let m = model.to_str().unwrap();
    let chat = |input: &str| {
        run_ember(
            &[
                "chat",
                "-m",
                m,
                "--chat-template",
                "chatml",
                "-c",
                "512",
                "-n",
                "4",
                "--temp",
                "0",
                "-t",
                "1",
            ],
            Some(input),
            &[("EMBER_HISTORY", dir.path().join("h").to_str().unwrap())],
        )
    };
    let o = chat(&format!("remember this\n/save {f}\n"));
    assert!(o.status.success(), "{}", show(&o));
    let mut bytes = std::fs::read(&file).unwrap();
    let rows = kv_rows(&bytes);
    flip(&mut bytes, rows, 50);
    std::fs::write(&file, &bytes).unwrap();
    let o = chat(&format!("/load {f}\n"));
    let err = String::from_utf8_lossy(&o.stderr);
    let line =
        format!("loading {f}: the state file is corrupt (checksum mismatch in its contents)");
    assert_eq!(
        err.lines().filter(|l| l.contains(&line)).count(),
        1,
        "{}",
        show(&o)
    );
    assert!(!err.contains("loaded"), "{}", show(&o));
}

// ---- model metadata against the tensors ----

fn write(dir: &Path, w: &ember::gguf::GgufWriter) -> PathBuf {
    let p = dir.join("model.gguf");
    w.write(&p).unwrap();
    p
}

#[test]
fn a_vocabulary_shorter_than_the_embedding_is_refused() {
    // Regression (issue 19): with a vocab_size key agreeing with the tensors, a model whose
    // token list is shorter than its embedding and output matrices loaded and generated.
    let dir = tempfile::tempdir().unwrap();
    let rows = TINY.n_vocab + 10;
    let shape = common::Tiny {
        n_vocab: rows,
        ..TINY
    };
    for vocab_size_key in [true, false] {
        let mut w = tiny_writer_shaped(5, TinyArch::Llama, &shape);
        if vocab_size_key {
            w.add("llama.vocab_size", Value::U32(rows as u32));
        }
        let m = write(dir.path(), &w);
        let err = one_line_error(&run(&m, &["-p", "the", "-n", "1"], None));
        assert!(
            err.contains(&format!(
                "model metadata disagrees with the tensors: tokenizer.ggml.tokens lists {} \
                 tokens, but token_embd.weight has {rows} rows",
                TINY.n_vocab
            )),
            "{err}"
        );
        assert!(err.contains(m.to_str().unwrap()), "names the file: {err}");
    }
}

#[test]
fn a_special_token_id_past_the_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_writer(5, TinyArch::Llama);
    w.add("tokenizer.ggml.eos_token_id", Value::U32(300));
    let m = write(dir.path(), &w);
    let err = one_line_error(&run(&m, &["-p", "the", "-n", "1"], None));
    assert!(
        err.contains(&format!(
            "metadata key 'tokenizer.ggml.eos_token_id' is 300, but tokenizer.ggml.tokens has \
             {} entries",
            TINY.n_vocab
        )),
        "{err}"
    );
}

#[test]
fn a_per_layer_array_of_another_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_writer(5, TinyArch::Gemma3 { window: 4 });
    let flags = vec![Value::Bool(true); TINY.n_layer as usize + 1];
    w.add(
        "gemma3.attention.sliding_window_pattern",
        Value::array(ValueType::Bool, flags),
    );
    let m = write(dir.path(), &w);
    let err = one_line_error(&run(&m, &["-p", "the", "-n", "1"], None));
    assert!(
        err.contains(&format!(
            "metadata key 'gemma3.attention.sliding_window_pattern' should be one entry per \
             layer, found {} entries (gemma3.block_count is {})",
            TINY.n_layer + 1,
            TINY.n_layer
        )),
        "{err}"
    );
}
