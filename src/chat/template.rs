//! Chat templates: the model's `tokenizer.chat_template` (Jinja, as Hugging Face writes them)
//! rendered with minijinja, or one of our built-ins chosen by `--chat-template NAME|FILE`.
//!
//! Rendering follows `transformers`' `apply_chat_template`: blocks trimmed and left-stripped,
//! Python string and dict methods available (`.strip()`, `.startswith()`, `.items()`, ...),
//! `raise_exception(msg)` fails the render with the template's own message.

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::Message;

/// Built-in templates, by name. Ours, written for the prompt formats they name.
pub const BUILTINS: &[(&str, &str)] = &[
    ("chatml", CHATML),
    ("qwen2", QWEN2),
    ("llama3", LLAMA3),
    ("gemma", GEMMA),
];

const CHATML: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// ChatML with Qwen's default system message when the conversation has none.
const QWEN2: &str = "{% if not messages or messages[0].role != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}\
{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}\
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// Gemma has no system role: a system message is put before the first user turn.
const GEMMA: &str = "{{ bos_token }}{% set ns = namespace(system='') %}\
{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = ns.system + m.content + '\n\n' %}\
{% else %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n\
{% if m.role == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}{{ m.content | trim }}<end_of_turn>\n{% endif %}{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template {name}: {msg}")]
    Syntax { name: String, msg: String },
    #[error("chat template {name} failed: {msg}")]
    Render { name: String, msg: String },
    #[error("--chat-template {0}: neither a built-in ({list}) nor a readable file: {1}", list = builtin_names())]
    NotFound(String, std::io::Error),
}

fn builtin_names() -> String {
    BUILTINS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed chat template with the special tokens it is given.
pub struct ChatTemplate {
    /// Where it came from: "the model's", "built-in chatml", a file name.
    name: String,
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .finish()
    }
}

impl ChatTemplate {
    /// Compile `source`; `bos`/`eos` are the texts of the model's BOS and EOS tokens.
    pub fn new(name: &str, source: &str, bos: &str, eos: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| syntax_err(name, e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_recursion_limit(100);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Templates that print a date ask for it with strftime_now (Llama 3.x); a fixed one
        // keeps renders reproducible.
        env.add_function("strftime_now", |_fmt: String| "26 Jul 2024".to_string());
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| syntax_err(name, e))?;
        Ok(ChatTemplate {
            name: name.to_string(),
            env,
            source: source.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// A built-in template by name.
    pub fn builtin(name: &str, bos: &str, eos: &str) -> Option<Self> {
        let (n, src) = BUILTINS.iter().find(|(n, _)| *n == name)?;
        Some(Self::new(&format!("built-in {n}"), src, bos, eos).expect("built-in templates parse"))
    }

    /// `--chat-template NAME|FILE`: a built-in name, else a file holding a Jinja template.
    pub fn from_arg(arg: &str, bos: &str, eos: &str) -> Result<Self, TemplateError> {
        if let Some(t) = Self::builtin(arg, bos, eos) {
            return Ok(t);
        }
        let src =
            std::fs::read_to_string(arg).map_err(|e| TemplateError::NotFound(arg.into(), e))?;
        Self::new(arg, &src, bos, eos)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render a conversation; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                map([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = map([
            ("messages", Value::from(msgs)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos.as_str())),
            ("eos_token", Value::from(self.eos.as_str())),
        ]);
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Render {
                name: self.name.clone(),
                msg: e.to_string(),
            })?;
        tmpl.render(ctx).map_err(|e| TemplateError::Render {
            name: self.name.clone(),
            msg: describe(&e),
        })
    }
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<std::collections::BTreeMap<String, Value>>(),
    )
}

fn syntax_err(name: &str, e: Error) -> TemplateError {
    TemplateError::Syntax {
        name: name.to_string(),
        msg: describe(&e),
    }
}

/// The error with its line, on one line.
fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(list: &[(&str, &str)]) -> Vec<Message> {
        list.iter().map(|(r, c)| Message::new(r, c)).collect()
    }

    #[test]
    fn chatml_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::builtin("chatml", "<s>", "</s>").unwrap();
        let out = t
            .render(&msgs(&[("system", "Be brief."), ("user", "Hi")]), true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn qwen2_adds_its_default_system_message() {
        let t = ChatTemplate::builtin("qwen2", "", "<|im_end|>").unwrap();
        let out = t.render(&msgs(&[("user", "Hi")]), false).unwrap();
        assert!(out.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"));
        assert!(out.ends_with("<|im_start|>user\nHi<|im_end|>\n"));
    }

    #[test]
    fn llama3_and_gemma() {
        let t = ChatTemplate::builtin("llama3", "<|begin_of_text|>", "<|eot_id|>").unwrap();
        let out = t.render(&msgs(&[("user", " Hi ")]), true).unwrap();
        assert_eq!(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        let g = ChatTemplate::builtin("gemma", "<bos>", "<eos>").unwrap();
        let out = g
            .render(
                &msgs(&[("system", "Sys"), ("user", "Q"), ("assistant", "A")]),
                true,
            )
            .unwrap();
        assert_eq!(out, "<bos><start_of_turn>user\nSys\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n<start_of_turn>model\n");
    }

    #[test]
    fn python_methods_and_trimmed_blocks() {
        let src = "{% for m in messages %}\n  {{ m.content.strip().upper() }}{% if m.role.startswith('us') %}!{% endif %}\n{% endfor %}";
        let t = ChatTemplate::new("test", src, "", "").unwrap();
        assert_eq!(
            t.render(&msgs(&[("user", "  hi ")]), false).unwrap(),
            "  HI!"
        );
    }

    #[test]
    fn errors_are_clear() {
        let e = ChatTemplate::new("bad", "{% for %}", "", "").unwrap_err();
        assert!(e.to_string().starts_with("chat template bad:"), "{e}");
        let t = ChatTemplate::new(
            "strict",
            "{{ raise_exception('Conversation roles must alternate') }}",
            "",
            "",
        )
        .unwrap();
        let e = t.render(&[], true).unwrap_err().to_string();
        assert!(e.contains("Conversation roles must alternate"), "{e}");
        let e = ChatTemplate::from_arg("/nonexistent/tmpl.jinja", "", "").unwrap_err();
        assert!(
            e.to_string().contains("chatml, qwen2, llama3, gemma"),
            "{e}"
        );
    }
}
