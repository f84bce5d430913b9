//! `ember tokenize` end to end: on a vocab-only file (always) and on SmolLM2 (`models/fetch-default`).

use crate::common;

use std::process::Output;

fn ember(args: &[&str], stdin: Option<&str>) -> Output {
    let args: Vec<&str> = std::iter::once("tokenize")
        .chain(args.iter().copied())
        .collect();
    common::run_ember(&args, stdin, &[])
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", common::show(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn vocab(add_bos: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vocab.gguf");
    common::write_vocab_only(&p, add_bos);
    (dir, p.to_str().unwrap().to_string())
}

#[test]
fn ids_pieces_json_and_count_from_a_vocab_only_file() {
    let (_d, m) = vocab(false);
    // Byte b is token b; "the" merges to token 257 (th = 256, Ġthe = 258).
    let ids = stdout(&ember(&["-m", &m, "-p", "the cat", "--ids"], None));
    assert_eq!(ids, "[257, 32, 99, 97, 116]\n");
    let lines = stdout(&ember(&["-m", &m, "-p", "the", "--show-count"], None));
    assert_eq!(lines, "   257 -> 'the'\nTotal number of tokens: 1\n");
    let json = stdout(&ember(&["-m", &m, "-p", "the", "--json"], None));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["n_tokens"], 1);
    assert_eq!(v["tokens"][0]["id"], 257);
    assert_eq!(v["tokens"][0]["piece"], "the");
}

#[test]
fn input_from_file_and_stdin_with_escapes() {
    let (d, m) = vocab(false);
    let f = d.path().join("text.txt");
    std::fs::write(&f, "a\\nb\n").unwrap();
    let from_file = stdout(&ember(
        &["-m", &m, "-f", f.to_str().unwrap(), "--ids"],
        None,
    ));
    let from_stdin = stdout(&ember(&["-m", &m, "--ids"], Some("a\\nb\n")));
    let from_prompt = stdout(&ember(&["-m", &m, "-p", "a\nb\n", "--ids"], None));
    assert_eq!(from_file, from_prompt);
    assert_eq!(from_stdin, from_prompt);
    let literal = stdout(&ember(
        &["-m", &m, "-p", "a\\nb", "--ids", "--no-escape"],
        None,
    ));
    assert_eq!(literal, "[97, 92, 110, 98]\n");
}

#[test]
fn bos_and_special_tokens() {
    let (_d, m) = vocab(true);
    let ids = stdout(&ember(&["-m", &m, "-p", "a<|endoftext|>", "--ids"], None));
    assert_eq!(ids, "[259, 97, 259]\n");
    let ids = stdout(&ember(&["-m", &m, "-p", "a", "--ids", "--no-bos"], None));
    assert_eq!(ids, "[97]\n");
    let ids = stdout(&ember(
        &[
            "-m",
            &m,
            "-p",
            "<|",
            "--ids",
            "--no-bos",
            "--no-parse-special",
        ],
        None,
    ));
    assert_eq!(ids, "[60, 124]\n");
    let ids = stdout(&ember(
        &[
            "-m",
            &m,
            "-p",
            "a<|endoftext|>",
            "--ids",
            "--no-parse-special",
        ],
        None,
    ));
    assert!(!ids.contains("259]"), "{ids}");
}

#[test]
fn errors_are_clear() {
    let o = ember(&["-m", "/nonexistent.gguf", "-p", "x"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.gguf"));
    let (_d, m) = vocab(false);
    let o = ember(&["-m", &m, "-p", "x", "--ids", "--json"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn smollm2_ids_match_llama_tokenize() {
    let model = common::smollm2();
    // Recorded with llama.cpp's `llama-tokenize -m SmolLM2 -p TEXT --ids --log-disable`.
    let ids = stdout(&ember(
        &[
            "-m",
            model.to_str().unwrap(),
            "-p",
            "<|im_start|>user\\nHello, wörld!<|im_end|>",
            "--ids",
        ],
        None,
    ));
    assert_eq!(ids, LLAMA_TOKENIZE_IDS);
}

const LLAMA_TOKENIZE_IDS: &str = "[1, 4093, 198, 19556, 28, 267, 29989, 400, 17, 2]\n";

#[test]
fn a_prompt_may_start_with_a_hyphen() {
    let (_d, m) = vocab(false);
    // "--help" and "-n" are the prompt's text here, not flags.
    let ids = stdout(&ember(&["-m", &m, "-p", "--help", "--ids"], None));
    assert_eq!(ids, "[45, 45, 104, 101, 108, 112]\n");
    let ids = stdout(&ember(&["-m", &m, "-p", "-n", "--ids"], None));
    assert_eq!(ids, "[45, 110]\n");
}
