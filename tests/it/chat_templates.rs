//! The real chat templates of our models, rendered as `transformers` renders them. SmolLM2's
//! comes with the default model (`models/fetch-default`); Qwen2.5's is read from the Qwen model
//! (`~/.cache/models`, or `EMBER_QWEN_MODEL`; an ignored test, the model is large); the larger
//! templates in llama.cpp's vocabulary test files (`scripts/fetch-vocab-tests`) check that the
//! Jinja subset we support is enough for them.

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
