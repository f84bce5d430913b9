//! Inputs the fuzzers (fuzz/, scripts/fuzz) found crashing Ember, kept as regression tests:
//! each file in tests/fixtures/fuzz/ goes through the same steps as its fuzz target and
//! must give the outcome listed in [`CASES`] instead of a panic.
//!
//! Also home of the seed-corpus writer that scripts/fuzz runs (an ignored test, so it can
//! use the tests' tiny-model writer in tests/common).

use crate::common;

use std::path::{Path, PathBuf};

use ember::fuzz_steps::{exercise_tokenizer, walk_gguf};
use ember::gguf::{GgufFile, GgufWriter, Value};
use ember::tokenizer::Tokenizer;

/// What a regression input must do now.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The GGUF reader refuses it.
    ParseErr,
    /// It parses, and building the tokenizer from it fails.
    TokenizerErr,
    /// It parses and gives a tokenizer that encodes and decodes text.
    Tokenizes,
}

/// Every file in tests/fixtures/fuzz/, with the outcome it must have.
const CASES: &[(&str, Outcome)] = &[];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz")
}

/// The fuzz targets' steps (`ember::fuzz_steps`, which the targets in fuzz/fuzz_targets/ run):
/// parse and walk the file, build the tokenizer, encode and decode with it.
fn run(bytes: &[u8]) -> Outcome {
    let Ok(f) = GgufFile::from_bytes(bytes.to_vec()) else {
        return Outcome::ParseErr;
    };
    walk_gguf(&f);
    let Ok(tok) = Tokenizer::from_gguf(&f) else {
        return Outcome::TokenizerErr;
    };
    exercise_tokenizer(&tok, &f, bytes);
    Outcome::Tokenizes
}

#[test]
fn fuzz_regressions() {
    let mut listed: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .collect();
    present.sort_unstable();
    assert_eq!(present, listed, "tests/fixtures/fuzz/ and CASES disagree");
    for (name, expected) in CASES {
        let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
        let got =
            std::panic::catch_unwind(|| run(&bytes)).unwrap_or_else(|_| panic!("{name}: panicked"));
        assert_eq!(&got, expected, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Seed corpus (scripts/fuzz runs this with EMBER_FUZZ_SEEDS=<dir>)
// ---------------------------------------------------------------------------------------

/// Tokens kept in a shrunk vocabulary (plus special, byte and merge-less tokens, see
/// [`shrink`]); small enough for fast fuzzing, large enough for real merges to apply.
const SEED_TOKENS: usize = 1500;
/// Raw prefixes taken of each real file: header and the start of the metadata.
const PREFIXES: [usize; 2] = [4 << 10, 64 << 10];
/// Files larger than this are not read whole for shrinking (only their prefixes are taken).
const MAX_SHRINK_INPUT: u64 = 600 << 20;

/// A copy of `f` small enough to fuzz: the token-indexed `tokenizer.ggml.*` arrays keep the
/// first `keep` tokens plus every special, byte and user-defined token (ids renumbered,
/// special-id keys too), merges keep those whose parts and result survive, any other long
/// array keeps 256 elements. With `tensors`, every tensor keeps its name, type and rank but
/// shrinks to one block (zeros).
fn shrink(f: &GgufFile, keep: usize, tensors: bool) -> GgufWriter {
    let tokens: Vec<&str> = f.get_str_array("tokenizer.ggml.tokens").unwrap_or_default();
    let n = tokens.len();
    let types = f.get_i32_array("tokenizer.ggml.token_type").ok();
    let special_ids: Vec<u64> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.ggml.") && k.ends_with("_token_id"))
        .filter_map(|(_, v)| v.as_u64())
        .collect();
    let token_type = |i: usize| types.as_ref().and_then(|t| t.get(i).copied());
    // The first 256 control and user-defined tokens (Gemma 3 has thousands: a special-token
    // matcher over all of them would slow every fuzz run down), and every byte token.
    let mut n_special = 0;
    let kept: Vec<usize> = (0..n)
        .filter(|&i| {
            let special = matches!(token_type(i), Some(3..=4));
            n_special += usize::from(special);
            i < keep
                || special_ids.contains(&(i as u64))
                || (special && n_special <= 256)
                || token_type(i) == Some(6)
        })
        .collect();
    let mut new_id = std::collections::HashMap::new();
    for (new, &old) in kept.iter().enumerate() {
        new_id.insert(old, new);
    }
    let kept_text: std::collections::HashSet<&str> = kept.iter().map(|&i| tokens[i]).collect();

    let mut w = GgufWriter::new();
    if f.alignment() != 32 {
        w = w.alignment(f.alignment());
    }
    for (key, value) in f.metadata() {
        let v = match value {
            Value::Array(items) if key == "tokenizer.ggml.merges" => {
                let merges = items
                    .iter()
                    .filter(|m| {
                        let Some((a, b)) = m.as_str().and_then(|m| m.split_once(' ')) else {
                            return false;
                        };
                        kept_text.contains(a)
                            && kept_text.contains(b)
                            && kept_text.contains(format!("{a}{b}").as_str())
                    })
                    .take(4 * keep)
                    .collect();
                Value::array(items.elem_type(), merges)
            }
            Value::Array(items) if key.starts_with("tokenizer.ggml.") && items.len() == n => {
                let kept = kept.iter().map(|&i| items.get(i).expect("in range"));
                Value::array(items.elem_type(), kept.collect())
            }
            Value::Array(items) if items.len() > 256 => {
                Value::array(items.elem_type(), items.iter().take(256).collect())
            }
            v if key.starts_with("tokenizer.ggml.") && key.ends_with("_token_id") => {
                match v.as_u64().and_then(|id| new_id.get(&(id as usize))) {
                    Some(&id) => Value::U32(id as u32),
                    None => continue,
                }
            }
            v => v.clone(),
        };
        if key != "general.alignment" {
            w.add(key, v);
        }
    }
    if tensors {
        for t in f.tensors() {
            let mut dims = vec![1; t.dims.len()];
            dims[0] = t.ggml_type.block_size();
            let size = t.ggml_type.type_size() as usize;
            w.add_tensor(&t.name, t.ggml_type, &dims, vec![0; size]);
        }
    }
    w
}

/// The real models and vocabulary-only files that exist on this machine.
fn seed_sources() -> Vec<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let dirs = [
        std::env::var_os("EMBER_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or(home.join(".cache/models")),
        std::env::var_os("VOCAB_DIR")
            .map(PathBuf::from)
            .unwrap_or(home.join(".cache/vocab-tests")),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    ];
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file())
        .collect();
    out.sort();
    out
}

fn prefix(path: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(n as u64)
        .read_to_end(&mut buf)
        .unwrap();
    buf
}

/// Writes the seed corpora of both fuzz targets: `$EMBER_FUZZ_SEEDS/gguf` (raw prefixes of
/// the real files, shrunk copies with their tensor tables, the tests' tiny models) and
/// `$EMBER_FUZZ_SEEDS/tokenizer` (shrunk vocabularies followed by some text, which the
/// tokenizer target encodes).
#[test]
#[ignore = "run by scripts/fuzz with EMBER_FUZZ_SEEDS set"]
fn write_seed_corpus() {
    let out = std::env::var_os("EMBER_FUZZ_SEEDS")
        .map(PathBuf::from)
        .expect("EMBER_FUZZ_SEEDS is not set (scripts/fuzz sets it)");
    let (gguf_dir, tok_dir) = (out.join("gguf"), out.join("tokenizer"));
    std::fs::create_dir_all(&gguf_dir).unwrap();
    std::fs::create_dir_all(&tok_dir).unwrap();
    let text = "\nHello world! <|im_start|>user\nWhat's 2+2? ünïcödé 🙂\t<s>[CLS]";
    let (mut n_gguf, mut n_tok, mut n_builds) = (0, 0, 0);

    // The tests' tiny models (every architecture) and vocabulary-only file.
    for arch in common::TinyArch::ALL {
        let bytes = common::tiny_writer(1, arch).to_bytes();
        std::fs::write(gguf_dir.join(format!("tiny-{arch:?}.gguf")), &bytes).unwrap();
        n_gguf += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab.gguf");
    common::write_vocab_only(&vocab, true);
    let mut bytes = std::fs::read(&vocab).unwrap();
    std::fs::write(gguf_dir.join("tiny-vocab.gguf"), &bytes).unwrap();
    bytes.extend_from_slice(text.as_bytes());
    std::fs::write(tok_dir.join("tiny-vocab.gguf"), &bytes).unwrap();
    (n_gguf, n_tok) = (n_gguf + 1, n_tok + 1);

    for path in seed_sources() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for n in PREFIXES {
            let bytes = prefix(&path, n);
            std::fs::write(gguf_dir.join(format!("{stem}.prefix{}k", n >> 10)), bytes).unwrap();
            n_gguf += 1;
        }
        if std::fs::metadata(&path).unwrap().len() > MAX_SHRINK_INPUT {
            continue;
        }
        let f = match GgufFile::open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                continue;
            }
        };
        let small = shrink(&f, 256, true).to_bytes();
        GgufFile::from_bytes(small.clone()).expect("shrunk file parses");
        std::fs::write(gguf_dir.join(format!("{stem}.shrunk")), small).unwrap();
        n_gguf += 1;
        if f.get("tokenizer.ggml.tokens").is_none() {
            continue;
        }
        let mut vocab = shrink(&f, SEED_TOKENS, false).to_bytes();
        vocab.extend_from_slice(text.as_bytes());
        let parsed = GgufFile::from_bytes(vocab.clone()).expect("shrunk vocab parses");
        match Tokenizer::from_gguf(&parsed) {
            Ok(_) => n_builds += 1,
            Err(e) => eprintln!("{stem}: shrunk vocabulary does not build a tokenizer: {e}"),
        }
        std::fs::write(tok_dir.join(format!("{stem}.vocab")), vocab).unwrap();
        n_tok += 1;
    }
    eprintln!(
        "seed corpus: {n_gguf} gguf seeds, {n_tok} tokenizer seeds ({n_builds} + 1 build a \
         tokenizer) in {}",
        out.display()
    );
}
