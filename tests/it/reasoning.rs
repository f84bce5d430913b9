//! Models that reason before they answer: Qwen3-style `<think>` blocks and gpt-oss's harmony
//! channels stay off stdout, `--show-reasoning` writes them to stderr, `--json` carries them
//! as `reasoning`, `--special` shows the raw text. The tiny model is steered by a grammar to
//! write exactly the marked-up text a reasoning model writes.

use crate::common;

use std::path::{Path, PathBuf};

use common::{run_ember, show, tiny_writer, TinyArch};
use ember::gguf::Value;

/// Qwen3's shape: ChatML, and an empty think block when `enable_thinking` is false.
const THINK_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}";

/// gpt-oss's shape: messages in channels, the answer in `final`.
const HARMONY_TEMPLATE: &str = "{% for m in messages %}<|start|>{{ m.role }}{% if m.role == 'assistant' %}<|channel|>final{% endif %}<|message|>{{ m.content }}<|end|>{% endfor %}\
{% if add_generation_prompt %}<|start|>assistant{% endif %}";

fn model_with(dir: &Path, template: &str) -> PathBuf {
    let mut w = tiny_writer(7, TinyArch::Llama);
    w.add("tokenizer.chat_template", Value::String(template.into()));
    let p = dir.join("tiny-reasoning.gguf");
    w.write(&p).unwrap();
    p
}

fn run(model: &Path, grammar: &str, extra: &[&str]) -> std::process::Output {
    let m = model.to_str().unwrap();
    let args = [
        &[
            "-m", m, "-p", "Hi", "--chat", "-t", "1", "-n", "200", "--temp", "0",
        ][..],
        &["--no-perf", "--grammar", grammar],
        extra,
    ]
    .concat();
    let o = run_ember(&args, None, &[]);
    assert!(o.status.success(), "{}", show(&o));
    o
}

/// stdout is exactly `out`; stderr holds the text of `Ok`, or not the text of `Err`.
fn assert_streams(o: &std::process::Output, out: &str, err: Result<&str, &str>) {
    assert_eq!(String::from_utf8_lossy(&o.stdout), out, "{}", show(o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    match err {
        Ok(has) => assert!(stderr.contains(has), "{}", show(o)),
        Err(absent) => assert!(!stderr.contains(absent), "{}", show(o)),
    }
}

#[test]
fn think_blocks_stay_off_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with(dir.path(), THINK_TEMPLATE);
    let g = r#"root ::= "<think>\nplan it\n</think>\n\nthe answer""#;
    assert_streams(&run(&model, g, &[]), "the answer\n", Err("plan it"));
    let o = run(&model, g, &["--show-reasoning"]);
    assert_streams(&o, "the answer\n", Ok("plan it\n"));

    let o = run(&model, g, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["text"], "the answer", "{v}");
    assert_eq!(v["reasoning"], "\nplan it\n", "{v}");

    // --special: the raw text, tags and all
    let o = run(&model, g, &["--special"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("<think>\nplan it\n</think>"),
        "{}",
        show(&o)
    );

    // without a block, everything is the answer; stop strings apply to the answer only
    let o = run(&model, r#"root ::= "just <think> this""#, &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "just <think> this\n");
    let o = run(&model, g, &["--stop", "answer"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "the \n", "{}", show(&o));
}

#[test]
fn harmony_prints_the_final_channel() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with(dir.path(), HARMONY_TEMPLATE);
    let g = r#"root ::= "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!""#;
    let o = run(&model, g, &["--show-reasoning"]);
    assert_streams(&o, "Hello!\n", Ok("User says hi."));
    let o = run(&model, g, &["--jsonl"]);
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["text"], "Hello!", "{last}");
    assert_eq!(last["reasoning"], "User says hi.", "{last}");
    // `ember info` says how the file's answers are read
    let o = run_ember(&["info", model.to_str().unwrap()], None, &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Chat template: the file's; harmony channels"),
        "{}",
        show(&o)
    );
}

/// In the chat, the conversation keeps each answer without its reasoning (as the templates
/// of reasoning models expect for earlier turns).
#[test]
fn the_chat_keeps_answers_without_their_reasoning() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with(dir.path(), THINK_TEMPLATE);
    let save = dir.path().join("conv.json");
    let g = r#"root ::= "<think>\nhmm\n</think>\n\nok""#;
    let input = format!("one\ntwo\n/save {}\n", save.display());
    let m = model.to_str().unwrap();
    let args = [
        "chat",
        "-m",
        m,
        "-c",
        "1024",
        "-n",
        "40",
        "--temp",
        "0",
        "-t",
        "1",
        "--grammar",
        g,
    ];
    let o = run_ember(&args, Some(&input), &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ok\nok\n",
        "{}",
        show(&o)
    );
    // the saved cache holds the second turn's prompt, which has the first answer as the
    // template rendered it from the kept message (the byte-level ids, as u32, are its text)
    let bytes: Vec<u8> = std::fs::read(&save)
        .unwrap()
        .into_iter()
        .filter(|&b| b != 0)
        .collect();
    let saved = String::from_utf8_lossy(&bytes);
    assert!(
        saved.contains("<|im_start|>assistant\nok<|im_end|>\n<|im_start|>user\ntwo"),
        "{saved}"
    );
}

/// `ember batch`: a chat request's result has the answer as `text` and the reasoning apart.
#[test]
fn batch_results_carry_reasoning_apart() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with(dir.path(), THINK_TEMPLATE);
    let g = r#"root ::= "<think>\nplan it\n</think>\n\nthe answer""#;
    let line = serde_json::json!({"id": "a", "messages": [{"role": "user", "content": "Hi"}],
        "grammar": g, "n_predict": 80, "temperature": 0});
    let plain = serde_json::json!({"id": "b", "prompt": "Hi", "grammar": r#"root ::= "<think>x</think>y""#,
        "n_predict": 30, "temperature": 0});
    let input = format!("{line}\n{plain}\n");
    let m = model.to_str().unwrap();
    let o = run_ember(&["batch", "-m", m, "-t", "1"], Some(&input), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let out: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out[0]["text"], "the answer", "{}", out[0]);
    assert_eq!(out[0]["reasoning"], "\nplan it\n", "{}", out[0]);
    // a raw prompt is not a chat: its text is as generated
    assert_eq!(out[1]["text"], "<think>x</think>y", "{}", out[1]);
    assert!(out[1].get("reasoning").is_none(), "{}", out[1]);
}
