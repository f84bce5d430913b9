//! What generation writes on stdout, for one-shot runs and chat answers alike: the text as it
//! is generated (ending with a newline), or one JSON object at the end (`--json`), or one JSON
//! object per token and a summary (`--jsonl`). Stop strings are applied here, on the text.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::chat::reasoning::Splitter;
use crate::cli::config::OutputFormat;
use crate::generate::text::TextStream;
use crate::generate::{StopReason, Timings};
use crate::tokenizer::Tokenizer;

pub struct Output<W: Write> {
    format: OutputFormat,
    out: W,
    /// The text released so far (after stop strings).
    text: TextStream,
    ids: Vec<u32>,
    write_err: Option<std::io::Error>,
    /// Text output: the model's reasoning goes to stderr (`--show-reasoning`).
    show_reasoning: bool,
    /// Reasoning was written to stderr and the answer has not begun: a newline is owed.
    reasoning_open: bool,
}

impl<W: Write> Output<W> {
    pub fn new(format: OutputFormat, out: W, special: bool, stops: Vec<String>) -> Self {
        Output {
            format,
            out,
            text: TextStream::new(special, stops),
            ids: Vec::new(),
            write_err: None,
            show_reasoning: false,
            reasoning_open: false,
        }
    }

    /// Keep the model's reasoning out of the answer (`split`); with text output, `show` writes
    /// it to stderr as it comes. JSON outputs carry it as `reasoning`.
    pub fn with_reasoning(mut self, split: Option<Splitter>, show: bool) -> Self {
        self.text = self.text.with_reasoning(split);
        self.show_reasoning = show;
        self
    }

    /// All the reasoning kept apart so far.
    pub fn reasoning(&self) -> &str {
        self.text.reasoning()
    }

    /// A generated token; false when generation should stop (a stop string, or stdout failed).
    pub fn token(&mut self, tok: &Tokenizer, id: u32) -> bool {
        self.ids.push(id);
        let shown = self.text.push(tok, id);
        let thought = self.text.take_reasoning();
        let r = match self.format {
            OutputFormat::Text => {
                if self.show_reasoning && !thought.is_empty() {
                    show_reasoning(thought);
                    self.reasoning_open = true;
                }
                if self.reasoning_open && !shown.is_empty() {
                    eprintln!();
                    self.reasoning_open = false;
                }
                self.write_text(&shown)
            }
            OutputFormat::Json => Ok(()),
            OutputFormat::Jsonl => {
                let line = if thought.is_empty() {
                    json!({"id": id, "text": shown})
                } else {
                    json!({"id": id, "text": shown, "reasoning": thought})
                };
                writeln!(self.out, "{line}").and_then(|_| self.out.flush())
            }
        };
        if let Err(e) = r {
            self.write_err = Some(e);
            return false;
        }
        self.text.stop_hit().is_none()
    }

    fn write_text(&mut self, s: &str) -> std::io::Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        self.out.write_all(s.as_bytes())?;
        self.out.flush()
    }

    /// A write to stdout failed (e.g. the reader went away).
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.write_err.take()
    }

    pub fn stop_hit(&self) -> bool {
        self.text.stop_hit().is_some()
    }

    /// The text released so far (all of it after [`finish`](Self::finish)).
    pub fn text(&self) -> &str {
        self.text.text()
    }

    /// The tokens handed to [`token`](Self::token).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Release what is held back and end the output: a final newline for text, the object
    /// for `--json`, the summary line for `--jsonl`.
    pub fn finish(&mut self, summary: &Summary) -> std::io::Result<()> {
        let mut tail = self.text.finish();
        let thought = self.text.take_reasoning().to_string();
        let text = self.text.text();
        let reasoning = self.text.reasoning();
        match self.format {
            OutputFormat::Text => {
                if self.show_reasoning && !thought.is_empty() {
                    show_reasoning(&thought);
                    self.reasoning_open = true;
                }
                if self.reasoning_open {
                    eprintln!();
                    self.reasoning_open = false;
                }
                if !text.is_empty() && !text.ends_with('\n') {
                    tail.push('\n');
                }
                self.write_text(&tail)?;
            }
            OutputFormat::Json => {
                let mut v = json!({
                    "text": text,
                    "tokens": self.ids,
                    "stop_reason": summary.stop_reason,
                    "timings": summary.timings_json(),
                });
                if !reasoning.is_empty() {
                    v["reasoning"] = reasoning.into();
                }
                writeln!(self.out, "{v}")?;
            }
            OutputFormat::Jsonl => {
                if !tail.is_empty() || !thought.is_empty() {
                    let mut v = json!({"text": tail});
                    if !thought.is_empty() {
                        v["reasoning"] = thought.into();
                    }
                    writeln!(self.out, "{v}")?;
                }
                let mut v = json!({
                    "done": true,
                    "text": text,
                    "stop_reason": summary.stop_reason,
                    "timings": summary.timings_json(),
                });
                if !reasoning.is_empty() {
                    v["reasoning"] = reasoning.into();
                }
                writeln!(self.out, "{v}")?;
            }
        }
        self.out.flush()
    }
}

/// Reasoning on stderr: dimmed on a terminal, so it reads apart from the answer.
fn show_reasoning(text: &str) {
    use std::io::IsTerminal;
    let mut err = std::io::stderr().lock();
    let _ = if err.is_terminal() {
        write!(err, "\x1b[2m{text}\x1b[0m")
    } else {
        write!(err, "{text}")
    };
    let _ = err.flush();
}

/// How a run ended, for the JSON outputs.
pub struct Summary {
    pub stop_reason: &'static str,
    pub load: Duration,
    pub timings: Timings,
    /// Prompt tokens taken from the prompt cache instead of evaluated.
    pub prompt_cached: usize,
}

impl Summary {
    fn timings_json(&self) -> serde_json::Value {
        let t = &self.timings;
        let rate = |n: usize, d: Duration| {
            let s = d.as_secs_f64();
            if s > 0.0 {
                n as f64 / s
            } else {
                0.0
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json!({
            "load_ms": ms(self.load),
            "prompt_tokens": t.prompt_tokens,
            "prompt_cached": self.prompt_cached,
            "prompt_ms": ms(t.prompt),
            "prompt_tps": rate(t.prompt_tokens, t.prompt),
            "ttft_ms": ms(t.ttft),
            "gen_tokens": t.generated,
            "gen_ms": ms(t.decode),
            "gen_tps": rate(t.generated.saturating_sub(1), t.decode),
        })
    }
}

/// The `stop_reason` string of a run.
pub fn stop_reason(stop: StopReason, stop_string: bool, interrupted: bool) -> &'static str {
    if interrupted {
        return "interrupted";
    }
    match stop {
        StopReason::Eog => "eog",
        StopReason::Length => "length",
        StopReason::ContextFull => "context_full",
        StopReason::Cancelled if stop_string => "stop",
        StopReason::Cancelled => "cancelled",
    }
}
