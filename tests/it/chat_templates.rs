//! The real chat templates of our models, rendered as `transformers` renders them. SmolLM2's
//! comes with the default model (`models/fetch-default`); Qwen2.5's is read from the Qwen model
//! (`~/.cache/models`, or `EMBER_QWEN_MODEL`; an ignored test, the model is large); the larger
//! templates in llama.cpp's vocabulary test files (`scripts/fetch-vocab-tests`) check that the
//! Jinja subset we support is enough for them; the 70 templates llama.cpp tests with
//! (`scripts/fetch-chat-templates`) render exactly as Jinja2 renders them.

use crate::common;

use std::path::PathBuf;

use ember::chat::{ChatTemplate, Message};
use ember::gguf::GgufFile;

fn template_of(path: &std::path::Path) -> ChatTemplate {
    let f = GgufFile::open(path).unwrap();
    let src = f.get_str("tokenizer.chat_template").unwrap();
    let tok = ember::tokenizer::Tokenizer::from_gguf(&f).unwrap();
    let text = |id: Option<u32>| id.map_or(String::new(), |i| tok.token_text(i).to_string());
    ChatTemplate::new("the model's", src, &text(tok.bos()), &text(tok.eos())).unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::new("user", "What is 2+2?"),
        Message::new("assistant", "4."),
        Message::new("user", "And 3+3?"),
    ]
}

#[test]
fn smollm2_template() {
    let m = common::smollm2();
    let t = template_of(&m);
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n\
         <|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
    );
    let mut with_system = vec![Message::new("system", "Be terse.")];
    with_system.extend(conversation());
    let out = t.render(&with_system, false).unwrap();
    assert!(out.starts_with("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n"));
    assert!(out.ends_with("And 3+3?<|im_end|>\n"));
}

fn qwen_model() -> PathBuf {
    let p = std::env::var_os("EMBER_QWEN_MODEL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h).join(".cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
            })
        })
        .unwrap_or_default();
    assert!(
        p.is_file(),
        "Qwen2.5 model not found at {}: fetch it with ../shared/tools/fetch-models.sh qwen05 \
         (or set EMBER_QWEN_MODEL)",
        p.display()
    );
    p
}

#[test]
#[ignore = "needs the Qwen2.5-Coder 0.5B model (491 MB, not fetched by .ci/run): \
            ../shared/tools/fetch-models.sh qwen05, then --ignored"]
fn qwen25_template() {
    let m = qwen_model();
    let t = template_of(&m);
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n\
         <|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
    );
    let mut with_system = vec![Message::new("system", "Be terse.")];
    with_system.extend(conversation());
    assert!(t
        .render(&with_system, false)
        .unwrap()
        .starts_with("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?"));
}

/// Every template in llama.cpp's vocabulary test files renders a conversation.
#[test]
fn vocab_test_templates_render() {
    let dir = std::env::var_os("VOCAB_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vocab-tests")));
    let files = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .expect("llama.cpp's tokenizer vectors are not fetched: run scripts/fetch-vocab-tests");
    let mut n = 0;
    for e in files.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "gguf") {
            continue;
        }
        let f = GgufFile::open(&p).unwrap();
        if f.get_str("tokenizer.chat_template").is_err() {
            continue;
        }
        let t = template_of(&p);
        let mut msgs = vec![Message::new("system", "You are kind.")];
        msgs.extend(conversation());
        let out = t
            .render(&msgs, true)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(out.contains("And 3+3?"), "{}: {out}", p.display());
        n += 1;
    }
    eprintln!("{n} templates rendered");
    assert!(
        n > 0,
        "no vocabulary test file has a chat template: run scripts/fetch-vocab-tests"
    );
}

/// The conversations every template is rendered with: plain turns, a system message, text
/// that needs escaping, reasoning switched off or turned up, an earlier answer's reasoning
/// (`reasoning_content`, as Qwen3's template reads it; `thinking`, as gpt-oss's), and a tool.
fn reference_contexts() -> Vec<serde_json::Value> {
    use serde_json::json;
    let turns = json!([
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}
    ]);
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city, now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string",
            "description": "The city's name"}}, "required": ["city"]}}}]);
    vec![
        json!({"messages": [{"role": "user", "content": "Hello"}], "add_generation_prompt": true}),
        json!({"messages": turns, "add_generation_prompt": true}),
        json!({"messages": turns, "add_generation_prompt": false}),
        json!({"messages": turns, "add_generation_prompt": true, "enable_thinking": false}),
        json!({"messages": turns, "add_generation_prompt": true, "reasoning_effort": "high"}),
        json!({"messages": [
            {"role": "user", "content": "  Ünïcödé “quotes” 'single' \"double\" {braces}\nsecond line \\ "}
        ], "add_generation_prompt": true}),
        json!({"messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4.", "reasoning_content": "Two and two make four.",
             "thinking": "Two and two make four."},
            {"role": "user", "content": "And 3+3?"}
        ], "add_generation_prompt": true}),
        json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools,
               "add_generation_prompt": true}),
    ]
}

fn templates_dir() -> PathBuf {
    let dir = std::env::var_os("TEMPLATES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/chat-templates"))
        })
        .unwrap();
    assert!(
        std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()),
        "the chat templates are not fetched: run scripts/fetch-chat-templates"
    );
    dir
}

/// Every chat template llama.cpp tests with (Qwen3, gpt-oss, Gemma 2/3/4, Phi, Mistral and
/// Ministral, Llama 3.x, SmolLM3, Granite, DeepSeek R1, ... 70 of them) renders each of
/// [`reference_contexts`] exactly as Jinja2 set up as `transformers` does
/// (`scripts/render-chat-template.py`), or fails where Jinja2 fails.
#[test]
fn chat_templates_render_as_jinja2_does() {
    let dir = templates_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    paths.sort();
    let contexts = reference_contexts();
    // Where Jinja2 itself goes against what a template means, with the tool case (7):
    // functionary's `"..."|safe + text` HTML-escapes the text in Jinja2 (Markup + str), and
    // llama.cpp's own deepseek-r1 template hands `map`'s generator to `tojson`, which Jinja2
    // cannot serialize; minijinja renders both as written.
    let jinja2_quirks = [
        ("meetkai-functionary-medium-v3.1.jinja", 7),
        ("llama-cpp-deepseek-r1.jinja", 7),
    ];
    let mut cases = Vec::new();
    for p in &paths {
        for ctx in &contexts {
            let mut c = ctx.clone();
            c["bos_token"] = "<s>".into();
            c["eos_token"] = "</s>".into();
            cases.push(serde_json::json!({"template": p, "context": c}));
        }
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/render-chat-template.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the reference renderer");
    let req = serde_json::json!({"date": "2024-07-26", "cases": cases});
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(req.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference renderer failed (Python's jinja2 missing? run scripts/fetch-chat-templates)"
    );
    let reference: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), cases.len());
    let mut failures = Vec::new();
    let mut rendered = 0;
    for (i, case) in cases.iter().enumerate() {
        let path = PathBuf::from(case["template"].as_str().unwrap());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let ours = ChatTemplate::new(&name, &src, "<s>", "</s>").map(|mut t| {
            t.set_date(2024, 7, 26);
            t.render_json(&case["context"])
        });
        let ours = ours.and_then(|r| r);
        let want = &reference[i];
        if jinja2_quirks.contains(&(name.as_str(), i % contexts.len())) {
            continue;
        }
        match (ours, want.get("text").and_then(|t| t.as_str())) {
            (Ok(a), Some(b)) if a == b => rendered += 1,
            (Err(_), None) => {}
            (Ok(a), Some(b)) => {
                let at = a
                    .char_indices()
                    .zip(b.chars())
                    .find(|((_, x), y)| x != y)
                    .map_or(a.len().min(b.len()), |((k, _), _)| k);
                let from = a[..at].char_indices().rev().nth(40).map_or(0, |(k, _)| k);
                failures.push(format!(
                    "{name} case {}: differs at byte {at}: ours {:?} / jinja2 {:?}",
                    i % contexts.len(),
                    &a[from..a.len().min(at + 40)],
                    b.get(from..b.len().min(at + 40)).unwrap_or("")
                ));
            }
            (Ok(_), None) => failures.push(format!(
                "{name} case {}: jinja2 fails ({}), ours renders",
                i % contexts.len(),
                want["error"]
            )),
            (Err(e), Some(_)) => failures.push(format!(
                "{name} case {}: ours fails: {e}",
                i % contexts.len()
            )),
        }
    }
    eprintln!("{rendered} of {} renders equal", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} renders differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn fetched_template(file: &str) -> ChatTemplate {
    let p = templates_dir().join(file);
    let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut t = ChatTemplate::new(file, &src, "<|endoftext|>", "<|endoftext|>").unwrap();
    t.set_date(2026, 12, 3);
    t
}

/// Qwen3's `<think>` switch and gpt-oss's reasoning effort reach the rendered prompt through
/// `--reasoning` (`Reasoning`), the way the chat and `ember -p --chat` render.
#[test]
fn reasoning_switches_shape_qwen3_and_gpt_oss_prompts() {
    let msgs = [Message::new("user", "Hi")];
    let mut q = fetched_template("Qwen-Qwen3-0.6B.jinja");
    let on = q.render(&msgs, true).unwrap();
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");
    q.set_reasoning(&ember::chat::Reasoning {
        enable_thinking: Some(false),
        effort: None,
    });
    let off = q.render(&msgs, true).unwrap();
    assert!(
        off.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{off:?}"
    );
    let mut g = fetched_template("openai-gpt-oss-120b.jinja");
    let medium = g.render(&msgs, true).unwrap();
    assert!(medium.contains("Current date: 2026-12-03"), "{medium:?}");
    assert!(medium.contains("Reasoning: medium"), "{medium:?}");
    assert!(medium.ends_with("<|start|>assistant"), "{medium:?}");
    g.set_reasoning(&ember::chat::Reasoning {
        enable_thinking: None,
        effort: Some("high".into()),
    });
    assert!(g.render(&msgs, true).unwrap().contains("Reasoning: high"));
}
