//! Chat templates: the model's `tokenizer.chat_template` (Jinja, as Hugging Face writes them)
//! rendered with minijinja, or one of our built-ins chosen by `--chat-template NAME|FILE`.
//!
//! Rendering follows `transformers`' `apply_chat_template`: blocks trimmed and left-stripped,
//! Python string and dict methods available (`.strip()`, `.startswith()`, `.items()`, ...),
//! `raise_exception(msg)` fails the render with the template's own message.

use std::collections::BTreeMap;

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
    /// Variables every render gets besides the messages (`enable_thinking`, ...).
    vars: BTreeMap<String, Value>,
}

/// What a template is told besides the messages: whether the model should think before it
/// answers (`enable_thinking`, as Qwen3's and SmolLM3's templates read it) and how hard
/// (`reasoning_effort`, gpt-oss's `low`/`medium`/`high`). `None` leaves the template's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reasoning {
    pub enable_thinking: Option<bool>,
    pub effort: Option<String>,
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
        env.add_filter("tojson", super::tojson::tojson);
        env.set_recursion_limit(100);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Templates that print today's date ask for it with strftime_now (Llama 3.x, gpt-oss,
        // Mistral Small): today in UTC, as `transformers` and llama.cpp give it.
        let today = Date::today();
        env.add_function(
            "strftime_now",
            move |state: &minijinja::State, fmt: String| {
                let date = state
                    .lookup("__ember_date")
                    .and_then(|v| v.as_str().and_then(Date::parse))
                    .unwrap_or(today);
                date.format(&fmt)
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| syntax_err(name, e))?;
        Ok(ChatTemplate {
            name: name.to_string(),
            env,
            source: source.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
            vars: BTreeMap::new(),
        })
    }

    /// Tell every render how to reason (see [`Reasoning`]).
    pub fn set_reasoning(&mut self, r: &Reasoning) {
        self.vars.remove("enable_thinking");
        self.vars.remove("reasoning_effort");
        if let Some(on) = r.enable_thinking {
            self.vars.insert("enable_thinking".into(), Value::from(on));
        }
        if let Some(e) = &r.effort {
            self.vars
                .insert("reasoning_effort".into(), Value::from(e.as_str()));
        }
    }

    /// Render with this date for `strftime_now` instead of today (reproducible tests).
    pub fn set_date(&mut self, year: i32, month: u32, day: u32) {
        let d = Date { year, month, day };
        self.vars
            .insert("__ember_date".into(), Value::from(d.format("%Y-%m-%d")));
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
        let mut ctx: BTreeMap<String, Value> = self.vars.clone();
        ctx.insert("messages".into(), Value::from(msgs));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(self.bos.as_str()));
        ctx.insert("eos_token".into(), Value::from(self.eos.as_str()));
        self.render_value(Value::from(ctx))
    }

    /// Render with a whole context given as JSON (messages with any fields, tools, ...), on
    /// top of the variables set on this template.
    pub fn render_json(&self, ctx: &serde_json::Value) -> Result<String, TemplateError> {
        let mut all: BTreeMap<String, Value> = self.vars.clone();
        if let Some(obj) = ctx.as_object() {
            for (k, v) in obj {
                all.insert(k.clone(), Value::from(minijinja::value::Serde(v)));
            }
        }
        self.render_value(Value::from(all))
    }

    fn render_value(&self, ctx: Value) -> Result<String, TemplateError> {
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

/// A calendar date for `strftime_now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Date {
    year: i32,
    month: u32,
    day: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl Date {
    /// Today in UTC.
    fn today() -> Date {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Date::from_days((secs / 86_400) as i64)
    }

    /// The date `days` after 1970-01-01 (the proleptic Gregorian calendar; H. Hinnant's
    /// civil-from-days).
    fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Days since 1970-01-01 (the inverse of [`from_days`](Self::from_days)).
    fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn parse(s: &str) -> Option<Date> {
        let mut it = s.splitn(3, '-');
        let year = it.next()?.parse().ok()?;
        let month: u32 = it.next()?.parse().ok()?;
        let day: u32 = it.next()?.parse().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Date { year, month, day })
    }

    /// C's strftime for a date at midnight: `%Y %y %m %d %e %j %b %B %h %a %A %u %w %H %M %S
    /// %p %F %D %%`, and `%-d`-style unpadded numbers; other specifiers are kept as written.
    fn format(self, fmt: &str) -> String {
        let month = MONTHS[(self.month - 1) as usize];
        let wd = (self.days() + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        let weekday = WEEKDAYS[wd];
        let yday = self.days()
            - Date {
                year: self.year,
                month: 1,
                day: 1,
            }
            .days()
            + 1;
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = chars.next();
            let unpadded = spec == Some('-');
            if unpadded {
                spec = chars.next();
            }
            let num = |n: i64, w: usize| {
                if unpadded {
                    n.to_string()
                } else {
                    format!("{n:0w$}")
                }
            };
            match spec {
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&num(i64::from(self.year).rem_euclid(100), 2)),
                Some('m') => out.push_str(&num(self.month.into(), 2)),
                Some('d') => out.push_str(&num(self.day.into(), 2)),
                Some('e') => out.push_str(&format!("{:>2}", self.day)),
                Some('j') => out.push_str(&num(yday, 3)),
                Some('b') | Some('h') => out.push_str(&month[..3]),
                Some('B') => out.push_str(month),
                Some('a') => out.push_str(&weekday[..3]),
                Some('A') => out.push_str(weekday),
                Some('u') => out.push_str(&(wd + 1).to_string()),
                Some('w') => out.push_str(&((wd + 1) % 7).to_string()),
                Some('H') | Some('M') | Some('S') => out.push_str(&num(0, 2)),
                Some('I') => out.push_str(&num(12, 2)),
                Some('p') => out.push_str("AM"),
                Some('F') => out.push_str(&self.format("%Y-%m-%d")),
                Some('D') => out.push_str(&self.format("%m/%d/%y")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
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
    fn dates_format_as_c_strftime() {
        let d = Date::parse("2024-07-26").unwrap();
        assert_eq!(Date::from_days(d.days()), d);
        assert_eq!(d.format("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            d.format("%Y-%m-%d (%A, %-d %B) %j %%"),
            "2024-07-26 (Friday, 26 July) 208 %"
        );
        assert_eq!(
            Date::from_days(0).format("%F %a %u %w"),
            "1970-01-01 Thu 4 4"
        );
        assert_eq!(
            Date::parse("2000-02-29").unwrap().format("%e %h %y %D"),
            "29 Feb 00 02/29/00"
        );
        let mut t = ChatTemplate::new("t", "{{ strftime_now('%d %B %Y') }}", "", "").unwrap();
        t.set_date(2026, 12, 3);
        assert_eq!(t.render(&[], false).unwrap(), "03 December 2026");
    }

    #[test]
    fn reasoning_variables_reach_the_template() {
        let src = "{% if enable_thinking is defined and enable_thinking %}on{% else %}off{% endif %}/{{ reasoning_effort | default('medium') }}";
        let mut t = ChatTemplate::new("t", src, "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "off/medium");
        t.set_reasoning(&Reasoning {
            enable_thinking: Some(true),
            effort: Some("high".into()),
        });
        assert_eq!(t.render(&[], false).unwrap(), "on/high");
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
