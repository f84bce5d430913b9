//! Timing of vocabulary loading and tokenization on real models (ignored by default):
//!
//! ```text
//! cargo test --release --lib tokenizer::tests::bench -- --ignored --nocapture
//! ```
//!
//! Tokenizes `~/.cache/corpus/britannica-11th.txt` (or `$EMBER_CORPUS`) with add_special =
//! parse_special = true, as `llama-tokenize -f FILE --no-escape --ids` does, and prints the
//! times next to the token count, to compare with llama.cpp's tool.

use std::path::PathBuf;
use std::time::Instant;

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

use crate::test_data::home;

fn bench(model: &str) {
    let path = home().join(".cache/models").join(model);
    let corpus = std::env::var_os("EMBER_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/corpus/britannica-11th.txt"));
    assert!(
        path.exists(),
        "{} not found: ../shared/tools/fetch-models.sh fetches it",
        path.display()
    );
    let text = std::fs::read_to_string(&corpus).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: ../shared/tools/fetch-corpus.sh fetches it",
            corpus.display()
        )
    });
    let t0 = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    let t1 = Instant::now();
    let tok = Tokenizer::from_gguf(&f).unwrap();
    let t2 = Instant::now();
    let ids = tok.encode(&text, true, true);
    let t3 = Instant::now();
    // A second pass: warm caches (the BPE word cache), as a long-running process would see.
    let again = tok.encode(&text, true, true);
    let t4 = Instant::now();
    assert_eq!(ids, again);
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    eprintln!(
        "{model}: gguf open {:.1} ms, tokenizer build {:.1} ms, encode {} bytes -> {} tokens: \
         {:.1} ms (second run {:.1} ms)",
        ms(t0, t1),
        ms(t1, t2),
        text.len(),
        ids.len(),
        ms(t2, t3),
        ms(t3, t4),
    );
    if let Ok(out) = std::env::var("EMBER_BENCH_IDS") {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        std::fs::write(
            format!("{out}.{model}.ids"),
            format!("[{}]\n", list.join(", ")),
        )
        .unwrap();
    }
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn bench_smollm2() {
    bench("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn bench_gemma3() {
    bench("gemma-3-270m-Q4_K_M.gguf");
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn bench_build_steps() {
    for model in [
        "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "models/gemma-3-270m-Q4_K_M.gguf",
        "vocab-tests/ggml-vocab-gemma-4.gguf",
    ] {
        let path = home().join(".cache").join(model);
        assert!(
            path.exists(),
            "{} not found: ../shared/tools/fetch-models.sh and scripts/fetch-vocab-tests fetch it",
            path.display()
        );
        let f = GgufFile::open(&path).unwrap();
        let t0 = Instant::now();
        let raw = crate::tokenizer::meta::RawVocab::from_gguf(&f).unwrap();
        let t1 = Instant::now();
        let _tok = Tokenizer::from_raw(raw).unwrap();
        let t2 = Instant::now();
        eprintln!(
            "{model}: raw {:.1} ms, from_raw {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
}
