//! Ember in scripts: the prompt from stdin, `--json` and `--jsonl`, stop strings, the final
//! newline, `--chat`, exit codes, and `--prompt-cache` (re-use, refusal of a mismatch).

use crate::common;

use common::{run_ember, show};
use serde_json::Value as Json;

fn tiny() -> (tempfile::TempDir, String) {
    let (d, p) = common::tiny_model(21);
    let m = p.to_str().unwrap().to_string();
    (d, m)
}

const GREEDY: &[&str] = &["--temp", "0", "--ignore-eos", "-t", "1"];

fn run(m: &str, extra: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut args = vec!["-m", m];
    args.extend_from_slice(GREEDY);
    args.extend_from_slice(extra);
    run_ember(&args, stdin, &[])
}

#[test]
fn json_is_one_object_with_text_tokens_reason_and_timings() {
    let (_d, m) = tiny();
    let o = run(&m, &["-p", "the cat", "-n", "6", "--json"], None);
    assert!(o.status.success(), "{}", show(&o));
    let v: Json = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(v["stop_reason"], "length");
    let t = &v["timings"];
    for k in [
        "load_ms",
        "prompt_tokens",
        "prompt_tps",
        "ttft_ms",
        "gen_tokens",
        "gen_tps",
    ] {
        assert!(t[k].is_number(), "timings.{k} missing: {v}");
    }
    assert_eq!(t["gen_tokens"], 6);
    // The same text as the plain output (which ends with a newline).
    let plain = run(&m, &["-p", "the cat", "-n", "6", "--no-perf"], None);
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let json_text = v["text"].as_str().unwrap();
    assert!(
        text == json_text || text == format!("{json_text}\n"),
        "{text:?} vs {json_text:?}"
    );
}

#[test]
fn jsonl_streams_one_object_per_token_then_a_summary() {
    let (_d, m) = tiny();
    let o = run(&m, &["-p", "the", "-n", "5", "--jsonl"], None);
    assert!(o.status.success(), "{}", show(&o));
    let lines: Vec<Json> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let tokens = lines.iter().filter(|l| l["id"].is_number()).count();
    assert_eq!(tokens, 5);
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["stop_reason"], "length");
    let streamed: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(streamed, last["text"].as_str().unwrap());
}

#[test]
fn stop_strings_end_generation_and_are_not_printed() {
    let (_d, m) = tiny();
    let o = run(&m, &["-p", "the cat", "-n", "40", "--json"], None);
    let full = serde_json::from_slice::<Json>(&o.stdout).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    // Stop at a piece of the greedy text that starts after its first few characters.
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 8, "{full:?}");
    let stop: String = chars[5..7].iter().collect();
    let before = &full[..full.find(&stop).unwrap()];
    for flag in ["--stop", "-r"] {
        let o = run(
            &m,
            &["-p", "the cat", "-n", "40", "--json", flag, &stop],
            None,
        );
        assert!(o.status.success(), "{}", show(&o));
        let v: Json = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["text"].as_str().unwrap(), before, "{flag} {stop:?}");
        assert_eq!(v["stop_reason"], "stop");
    }
}

#[test]
fn stdin_prompt_and_exit_codes() {
    let (_d, m) = tiny();
    let piped = run(&m, &["-n", "4", "--no-perf"], Some("the cat"));
    let given = run(&m, &["-p", "the cat", "-n", "4", "--no-perf"], None);
    assert!(piped.status.success(), "{}", show(&piped));
    assert_eq!(piped.stdout, given.stdout);
    assert!(piped.stderr.is_empty(), "{}", show(&piped));
    // usage error: 2; runtime error: 1
    let o = run_ember(&["-m", &m, "-p", "x", "--frobnicate"], None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = run_ember(&["-m", "/nonexistent.gguf", "-p", "x"], None, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    // -no-cnv with nothing on stdin never waits for a keyboard: it reads the empty stdin.
    let o = run_ember(&["-m", &m, "-no-cnv"], Some(""), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("prompt is empty"),
        "{}",
        show(&o)
    );
}

#[test]
fn chat_flag_applies_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gguf");
    let mut w = common::tiny_writer(21, common::TinyArch::Llama);
    w.add(
        "tokenizer.chat_template",
        ember::gguf::Value::String(
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}".into(),
        ),
    );
    w.write(&p).unwrap();
    let m = p.to_str().unwrap();
    let chat = run(
        m,
        &["-p", "hi", "-n", "4", "--chat", "-sys", "S", "--json"],
        None,
    );
    let raw = run(
        m,
        &["-p", "<system>S<user>hi<a>", "-n", "4", "--json"],
        None,
    );
    assert!(chat.status.success(), "{}", show(&chat));
    let t = |o: &std::process::Output| {
        serde_json::from_slice::<Json>(&o.stdout).unwrap()["tokens"].clone()
    };
    assert_eq!(t(&chat), t(&raw));
}

#[test]
fn prompt_cache_reuses_the_prompt_and_refuses_a_mismatch() {
    let (_d, m) = tiny();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("p.cache");
    let c = cache.to_str().unwrap();
    let prompt = "the cat sat on the mat and the dog sat on the log. ".repeat(3);
    let args = [
        "-p",
        prompt.as_str(),
        "-n",
        "6",
        "--json",
        "--prompt-cache",
        c,
    ];
    let first = run(&m, &args, None);
    assert!(first.status.success(), "{}", show(&first));
    assert!(cache.is_file());
    let second = run(&m, &args, None);
    assert!(second.status.success(), "{}", show(&second));
    let v1: Json = serde_json::from_slice(&first.stdout).unwrap();
    let v2: Json = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(v1["tokens"], v2["tokens"], "same answer from the cache");
    assert_eq!(v1["timings"]["prompt_cached"], 0);
    let n_prompt = v1["timings"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        v2["timings"]["prompt_cached"].as_u64().unwrap(),
        n_prompt - 1
    );
    assert_eq!(v2["timings"]["prompt_tokens"], 1);
    // A longer prompt re-uses the saved prefix.
    let longer = format!("{prompt}and more");
    let o = run(
        &m,
        &["-p", &longer, "-n", "2", "--json", "--prompt-cache", c],
        None,
    );
    let v: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["timings"]["prompt_cached"].as_u64().unwrap(), n_prompt);
    // Without flash attention V is stored transposed: saved and restored all the same.
    let cache_t = dir.path().join("t.cache");
    let ct = cache_t.to_str().unwrap();
    let args = [
        "-p",
        prompt.as_str(),
        "-n",
        "6",
        "--json",
        "-fa",
        "off",
        "--prompt-cache",
        ct,
    ];
    let a: Json = serde_json::from_slice(&run(&m, &args, None).stdout).unwrap();
    let b: Json = serde_json::from_slice(&run(&m, &args, None).stdout).unwrap();
    assert_eq!(a["tokens"], b["tokens"]);
    assert_eq!(b["timings"]["prompt_tokens"], 1);
    let o = run(&m, &["-p", "x", "-n", "1", "--prompt-cache", ct], None);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("flash attention off"),
        "{}",
        show(&o)
    );
    // Other cache types: a clear error.
    let o = run(
        &m,
        &["-p", "x", "-n", "1", "-ctk", "f32", "--prompt-cache", c],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cache types") && err.contains("f32"), "{err}");
    // Another model: a clear error.
    let (_d2, other) = common::tiny_model(22);
    let o = run(
        other.to_str().unwrap(),
        &["-p", "x", "-n", "1", "--prompt-cache", c],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another model"),
        "{}",
        show(&o)
    );
    // Not a state file.
    let bad = dir.path().join("bad.cache");
    std::fs::write(&bad, b"hello").unwrap();
    let o = run(
        &m,
        &[
            "-p",
            "x",
            "-n",
            "1",
            "--prompt-cache",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not an Ember state file"),
        "{}",
        show(&o)
    );
}

/// A hybrid model (Qwen3.5) keeps its recurrent state at the prompt's end in the prompt cache
/// (and the state one token before): the second run re-uses all but the last prompt token and
/// answers alike; a longer prompt re-uses the whole saved one.
#[test]
fn a_hybrid_model_s_prompt_cache_holds_its_recurrent_state() {
    let (_d, p) = common::tiny_model_of(23, common::TinyArch::Qwen35);
    let m = p.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("h.cache");
    let c = cache.to_str().unwrap();
    let prompt = "the cat sat on the mat and the dog sat on the log. ".repeat(2);
    let args = [
        "-p",
        prompt.as_str(),
        "-n",
        "6",
        "--json",
        "--prompt-cache",
        c,
    ];
    let first: Json = serde_json::from_slice(&run(m, &args, None).stdout).unwrap();
    let second: Json = serde_json::from_slice(&run(m, &args, None).stdout).unwrap();
    assert_eq!(
        first["tokens"], second["tokens"],
        "same answer from the cache"
    );
    let n_prompt = first["timings"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        second["timings"]["prompt_cached"].as_u64().unwrap(),
        n_prompt - 1
    );
    let longer = format!("{prompt}and more");
    let args = ["-p", longer.as_str(), "-n", "4", "--json"];
    let fresh: Json = serde_json::from_slice(&run(m, &args, None).stdout).unwrap();
    let cached = run(m, &[&args[..], &["--prompt-cache", c]].concat(), None);
    let cached: Json = serde_json::from_slice(&cached.stdout).unwrap();
    assert_eq!(
        cached["timings"]["prompt_cached"].as_u64().unwrap(),
        n_prompt
    );
    assert_eq!(cached["tokens"], fresh["tokens"]);
}
