//! End-to-end tests of the `ember` binary: on the tiny model (always) and on SmolLM2 (fetched by
//! `models/fetch-default`; `.ci/run` runs it).

use crate::common;

use std::process::{Command, Output, Stdio};

use common::show;

fn ember(args: &[&str]) -> Output {
    common::run_ember(args, None, &[])
}

fn ember_stdin(args: &[&str], input: &str) -> Output {
    common::run_ember(args, Some(input), &[])
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let o = ember(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = ember(&["-m", "/nonexistent/model.gguf", "-p", "hi"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/model.gguf") && err.lines().count() == 1,
        "{}",
        show(&o)
    );
    assert!(o.stdout.is_empty());
    let o = ember(&["-m", "x.gguf", "-p", "hi", "-ctk", "q9_9"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn version_names_the_build() {
    let o = ember(&["--version"]);
    assert!(o.status.success(), "{}", show(&o));
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.contains("backends: cpu") && v.contains("ggml ") && v.contains("CPU flags"),
        "{v}"
    );
}

#[test]
fn a_malformed_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gguf");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
    let o = ember(&["-m", p.to_str().unwrap(), "-p", "hi"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.gguf"),
        "{}",
        show(&o)
    );
}

#[test]
fn tiny_model_generates_only_text_on_stdout() {
    let (_d, p) = common::tiny_model(11);
    let m = p.to_str().unwrap();
    let o = ember(&[
        "-m",
        m,
        "-p",
        "the cat",
        "-n",
        "8",
        "--temp",
        "0",
        "--ignore-eos",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("generated: 8 tokens"), "{}", show(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("tokens/s"));
    // a prompt that starts with hyphens is a prompt, not a flag
    let o = ember(&["-m", m, "-p", "--help me", "-n", "2", "--ignore-eos"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated: 2 tokens"));
    // --no-perf: nothing on stderr; same seed, same text
    let a = ember(&[
        "-m",
        m,
        "-p",
        "the cat",
        "-n",
        "8",
        "-s",
        "7",
        "--ignore-eos",
        "--no-perf",
    ]);
    let b = ember(&[
        "-m",
        m,
        "-p",
        "the cat",
        "-n",
        "8",
        "-s",
        "7",
        "--ignore-eos",
        "--no-perf",
    ]);
    assert!(a.status.success() && a.stderr.is_empty(), "{}", show(&a));
    assert_eq!(a.stdout, b.stdout);
    // prompt from stdin
    let c = ember_stdin(
        &[
            "-m",
            m,
            "-n",
            "4",
            "--temp",
            "0",
            "--no-perf",
            "--ignore-eos",
        ],
        "the cat",
    );
    let d = ember(&[
        "-m",
        m,
        "-p",
        "the cat",
        "-n",
        "4",
        "--temp",
        "0",
        "--no-perf",
        "--ignore-eos",
    ]);
    assert!(c.status.success(), "{}", show(&c));
    assert_eq!(c.stdout, d.stdout);
}

#[test]
fn info_prints_metadata_and_json() {
    let (_d, p) = common::tiny_model(12);
    let o = ember(&["info", p.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["metadata"]["general.architecture"], "llama");
    // token_embd, output_norm, output, and 9 tensors in each of the 2 layers
    assert_eq!(v["tensors"].as_array().unwrap().len(), 3 + 2 * 9);
    let o = ember(&["info", p.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("blk.0.attn_q.weight"),
        "{}",
        show(&o)
    );
}

/// `ember info` says whether Ember runs a file, and why not; `--help` lists the architectures.
#[test]
fn info_says_whether_ember_runs_the_file() {
    for arch in common::TinyArch::ALL {
        let (_d, p) = common::tiny_model_of(12, arch);
        let o = ember(&["info", p.to_str().unwrap()]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("Ember runs this file"),
            "{arch:?}: {}",
            show(&o)
        );
        let o = ember(&["info", p.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["ember_runs"], true, "{arch:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.gguf");
    let mut w = common::tiny_writer(12, common::TinyArch::Llama);
    w.add(
        "general.architecture",
        ember::gguf::Value::String("rwkv7".into()),
    );
    w.write(&p).unwrap();
    let o = ember(&["info", p.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ember_runs"], false);
    let why = v["ember_runs_error"].as_str().unwrap();
    assert!(
        why.contains("unsupported architecture 'rwkv7'") && why.contains("qwen3moe"),
        "{why}"
    );
    let help = String::from_utf8_lossy(&ember(&["--help"]).stdout).into_owned();
    for a in ember::model::Arch::all() {
        assert!(help.contains(a.name()), "--help lacks {}", a.name());
    }
}

#[test]
fn perplexity_writes_and_reads_saved_logits() {
    let (d, p) = common::tiny_model(13);
    let m = p.to_str().unwrap();
    let text = d.path().join("text.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    let base = d.path().join("base.kld");
    let (t, b) = (text.to_str().unwrap(), base.to_str().unwrap());
    let o = ember(&[
        "perplexity",
        "-m",
        m,
        "-f",
        t,
        "-c",
        "64",
        "--chunks",
        "3",
        "--kl-divergence-base",
        b,
        "--json",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ppl = v["ppl"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl.is_finite(), "{v}");
    let o = ember(&[
        "perplexity",
        "-m",
        m,
        "--kl-divergence-base",
        b,
        "--kl-divergence",
        "--json",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["kld_mean"].as_f64().unwrap().abs() < 1e-4, "{v}");
    assert_eq!(v["same_top_pct"].as_f64().unwrap(), 100.0, "{v}");
}

/// llama.cpp's greedy continuations recorded on a machine of this kind (ggml's float steps
/// follow the CPU it is compiled for: see `golden_*` in build.rs).
#[cfg(golden_avx512vnni)]
const GREEDY_GOLDEN: &str = include_str!("../fixtures/smollm2-greedy-f16.jsonl");
#[cfg(all(golden_avx2, not(golden_avx512vnni)))]
const GREEDY_GOLDEN: &str = include_str!("../fixtures/smollm2-greedy-f16-avx2.jsonl");
#[cfg(not(any(golden_avx512vnni, golden_avx2)))]
const GREEDY_GOLDEN: &str = "";

#[test]
#[cfg_attr(
    not(any(golden_avx512vnni, golden_avx2)),
    ignore = "llama.cpp's outputs are recorded for ggml built natively on AVX-512 VNNI or \
              AVX2-only CPUs, not this one"
)]
fn smollm2_greedy_matches_llama_cpp_golden_outputs() {
    let model = common::smollm2();
    let fixture = GREEDY_GOLDEN;
    let mut matched = 0;
    for line in fixture.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = r["prompt"].as_str().unwrap();
        let o = ember(&[
            "-m",
            model.to_str().unwrap(),
            "-p",
            prompt,
            "-n",
            "64",
            "--temp",
            "0",
            "--no-perf",
        ]);
        assert!(o.status.success(), "{}", show(&o));
        // Text output ends with a newline, added when the text does not end with one.
        let out = String::from_utf8_lossy(&o.stdout);
        let gold = r["text"].as_str().unwrap();
        let text = match gold.ends_with('\n') {
            true => &out[..],
            false => out.strip_suffix('\n').unwrap_or(&out),
        };
        if text == gold {
            matched += 1;
        } else {
            eprintln!(
                "differs for {prompt:?}:\n ours: {text:?}\n gold: {:?}",
                r["text"]
            );
        }
    }
    eprintln!("{matched}/8 golden continuations match exactly");
    assert_eq!(matched, 8);
}

#[test]
fn smollm2_answers_and_pipes_quietly() {
    let model = common::smollm2();
    let m = model.to_str().unwrap();
    let o = ember(&[
        "-m",
        m,
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(" Paris"),
        "{}",
        show(&o)
    );
    // A closed pipe ends the run quietly with status 0.
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args([
            "-m",
            m,
            "-p",
            "Once upon a time",
            "-n",
            "200",
            "--ignore-eos",
            "--no-perf",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn debug_tensors_lists_every_node_on_stderr() {
    let (_d, p) = common::tiny_model(11);
    let o = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args([
            "-m",
            p.to_str().unwrap(),
            "-p",
            "the",
            "-n",
            "1",
            "--temp",
            "0",
        ])
        .env("EMBER_DEBUG_TENSORS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tensor attn_norm-0 MUL [64, 1, 1, 1] sum = "),
        "{err}"
    );
    assert!(
        err.contains("tensor result_output MUL_MAT [260, 1, 1, 1]"),
        "{err}"
    );
    // stdout still carries only the generated text.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("tensor "));
}

/// Kernel tuning on a real model: every choice between an Ember kernel and ggml's is timed
/// (`EMBER_TUNE=refresh`, which a debug build needs), kept in the tune file, shown with `-v`;
/// `--no-tune` times nothing. The text is the same either way (every kernel gives ggml's bits).
#[test]
fn kernel_tuning_times_keeps_and_shows_its_choices() {
    let model = common::smollm2();
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tune.json");
    let f = file.to_str().unwrap();
    let args = [
        "-m",
        m,
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        "-v",
    ];
    let env = [("EMBER_TUNE", "refresh"), ("EMBER_TUNE_FILE", f)];
    let tuned = common::run_ember(&args, None, &env);
    assert!(tuned.status.success(), "{}", show(&tuned));
    let err = String::from_utf8_lossy(&tuned.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("kernel tuning:"))
        .unwrap_or_default();
    assert!(line.contains("timed now"), "{err}");
    assert!(err.contains("(timed: decode@1 cold "), "{err}");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap_or_default()).unwrap_or_default();
    let machines = kept["entries"].as_object().cloned().unwrap_or_default();
    // timings too uneven to keep (a busy machine) are left out, so at least the file exists
    assert!(machines.len() <= 1, "{kept}");
    let off = common::run_ember(&[&args[..], &["--no-tune"]].concat(), None, &env);
    assert!(off.status.success(), "{}", show(&off));
    let err_off = String::from_utf8_lossy(&off.stderr);
    assert!(err_off.contains("kernel tuning: off"), "{err_off}");
    assert_eq!(tuned.stdout, off.stdout);
}
