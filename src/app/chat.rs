//! The chat REPL: `ember chat -m MODEL`, `ember -cnv`, or plain `ember -m MODEL` on a terminal.
//! Answers stream to stdout; notices go to stderr. Each turn evaluates only the tokens the KV
//! cache does not already hold; Ctrl-C stops an answer and keeps it in the conversation.

use std::io::Write;

use anyhow::{anyhow, Context as _, Result};
use serde_json::json;

use crate::chat::{Conversation, Format, Message};
use crate::cli::args::ContextFullPolicy;
use crate::cli::config::{OutputFormat, RunConfig};
use crate::generate::{EvalError, GenerateError, GenerateParams};
use crate::sampling::{Sampler, SamplingParams};

use super::chat_commands::{self as cmds, Command, Setting, Show};
use super::chat_input::{Input, Read};
use super::front::Front;
use super::output::{Output, Summary};

/// Figures of the last turn, for `/show stats`.
struct TurnStats {
    prompt_tokens: usize,
    dropped: usize,
    /// How the answer ended; `prompt_cached` is what the KV cache already held.
    summary: Summary,
}

struct Repl<'a> {
    cfg: &'a RunConfig,
    /// The model file's name.
    name: String,
    front: Front,
    conv: Conversation,
    params: SamplingParams,
    sampler: Sampler,
    /// `-n` and `--ignore-eos`; `/set n-predict` changes the first.
    generate: GenerateParams,
    /// What each answer must satisfy (`/set format`).
    format: Option<crate::constrain::Format>,
    last: Option<TurnStats>,
}

pub fn run(cfg: &RunConfig) -> Result<()> {
    super::signals::install_chat();
    let front = Front::open(&cfg.model)?;
    let format = front.chat_format(cfg.chat_template.as_deref(), &cfg.reasoning)?;
    let name = cfg
        .model
        .path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    match &format {
        Format::Template(t) => eprintln!(
            "ember: chatting with {name} ({} chat template, context {}). /? for help, Ctrl-D or /bye to exit.",
            t.name(),
            front.session.n_ctx()
        ),
        Format::Raw => eprintln!(
            "ember: {name} has no chat template: raw completion, each message continues the text (choose a template with --chat-template). /? for help, Ctrl-D or /bye to exit."
        ),
    }
    let params = cfg.sampling.clone();
    let mut repl = Repl {
        cfg,
        name,
        front,
        conv: Conversation::new(format, cfg.system_prompt.as_deref()),
        sampler: Sampler::new(params.clone()),
        params,
        generate: cfg.generate,
        format: cfg.format.clone(),
        last: None,
    };
    let mut input = Input::open();
    let mut ctrl_c = false;
    loop {
        if let Some(i) = super::signals::received() {
            // On a terminal the editor reads Ctrl-C as a key; a SIGINT seen here is a late one
            // from the answer before (two Ctrl-C pressed fast: the second can reach the process
            // after the answer stopped, before the editor took the terminal). It ends nothing.
            if !(input.is_terminal() && i.is_ctrl_c()) {
                return Err(i.into());
            }
            super::signals::reset_interrupt();
        }
        // Reading piped lines, nothing is lost by ending at once on SIGINT (the history is saved
        // per entry). On a terminal the editor turns Ctrl-C into `Read::Interrupted`.
        super::signals::at_prompt(!input.is_terminal());
        let read = input.read(">>> ");
        super::signals::at_prompt(false);
        let line = match read {
            Read::Line(l) => l,
            Read::Interrupted if ctrl_c => break,
            Read::Interrupted => {
                ctrl_c = true;
                eprintln!("(Ctrl-C again, Ctrl-D or /bye to exit)");
                continue;
            }
            Read::Eof => break,
        };
        ctrl_c = false;
        let Some(text) = input.read_message(line) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        input.add_history(&text);
        if text.trim_start().starts_with('/') {
            match cmds::parse(&text) {
                Ok(Command::Bye) => break,
                Ok(c) => {
                    if let Err(e) = repl.command(c) {
                        eprintln!("ember: {e:#}");
                    }
                }
                Err(msg) => eprintln!("ember: {msg}"),
            }
            continue;
        }
        if let Err(e) = repl.turn(&text) {
            if super::is_broken_pipe(&e) {
                return Ok(());
            }
            eprintln!("ember: error: {e:#}");
        }
    }
    if input.is_terminal() {
        eprintln!();
    }
    Ok(())
}

impl Repl<'_> {
    /// One exchange: the user's message in, the answer streamed out.
    fn turn(&mut self, text: &str) -> Result<()> {
        self.conv.messages.push(Message::new("user", text));
        let (prompt, dropped) = match self.fit_prompt() {
            Ok(p) => p,
            Err(e) => {
                self.conv.messages.pop();
                return Err(e);
            }
        };
        let session = &mut self.front.session;
        if dropped > 0 {
            eprintln!(
                "(the context of {} tokens is full: dropped the {dropped} oldest exchange{})",
                session.n_ctx(),
                if dropped == 1 { "" } else { "s" }
            );
        }
        let reused = self.conv.reusable(&prompt.tokens);
        // fewer (none) when a sliding-window ring has moved past the shared prefix
        let reused = session.truncate(reused as u32) as usize;
        for &id in &prompt.tokens[..reused] {
            self.sampler.accept(id);
        }
        super::signals::reset_interrupt();
        let stdout = std::io::stdout();
        let split = if self.cfg.special {
            None
        } else {
            self.conv.reasoning_splitter(&prompt.text)
        };
        let mut out = Output::new(
            OutputFormat::Text,
            stdout.lock(),
            self.cfg.special,
            self.cfg.stops.clone(),
        )
        .with_reasoning(split, self.cfg.show_reasoning);
        let guard = self
            .format
            .as_ref()
            .map(|f| self.front.loaded.guard(f, self.front.model.n_threads));
        self.sampler.set_guard(guard);
        let new = &prompt.tokens[reused..];
        let result = self
            .front
            .decode(&mut self.sampler, None, new, self.generate, &mut out);
        super::signals::reset_interrupt();
        let session = &mut self.front.session;
        let decoded = match result {
            Ok(d) => d,
            Err(GenerateError::Eval(EvalError::Interrupted)) => {
                // Stopped inside the prompt: the question goes, what was evaluated stays.
                self.conv.messages.pop();
                let n = session.n_past() as usize;
                self.conv
                    .set_cached_tokens(&prompt.tokens[..n.min(prompt.tokens.len())]);
                eprintln!("(stopped)");
                return Ok(());
            }
            Err(e) => {
                self.conv.messages.pop();
                self.conv.reset_cache();
                session.clear();
                return Err(e.into());
            }
        };
        let summary = Summary {
            stop_reason: decoded.stop_reason(out.stop_hit()),
            load: self.front.loaded.load_time,
            timings: decoded.timings,
            prompt_cached: reused,
        };
        if let Some(e) = out.take_error() {
            return Err(anyhow::Error::new(e).context("writing the answer"));
        }
        out.finish(&summary).context("writing the answer")?;
        self.conv
            .messages
            .push(Message::new("assistant", out.text()));
        let n_past = session.n_past() as usize;
        self.conv.set_cached(
            &self.front.loaded.tokenizer,
            prompt.clone(),
            out.ids(),
            n_past,
        );
        drop(out);
        if summary.stop_reason != "stop"
            && summary.stop_reason != "interrupted"
            && !self.sampler.is_complete()
        {
            eprintln!("(the answer ended before its format was complete)");
        }
        if summary.stop_reason == "context_full" {
            eprintln!(
                "(the answer filled the context; older exchanges will be dropped for the next one)"
            );
        }
        self.last = Some(TurnStats {
            prompt_tokens: prompt.tokens.len(),
            dropped,
            summary,
        });
        Ok(())
    }

    /// The prompt for the next answer, dropping the oldest exchanges while it leaves too little
    /// room (unless `--context-full error`). Returns it with the number of exchanges dropped.
    fn fit_prompt(&mut self) -> Result<(crate::chat::Prompt, usize)> {
        let n_ctx = self.front.session.n_ctx() as usize;
        let room = match usize::try_from(self.generate.n_predict) {
            Ok(n) => n.min(n_ctx / 2),
            Err(_) => n_ctx / 4,
        }
        .max(1);
        let mut dropped = 0;
        // Once something must go, go down to half the context: dropping changes the prompt
        // right after the system message, so everything after it is evaluated again, and this
        // way that happens once every many turns rather than on every turn (llama.cpp's
        // context shift also discards half).
        let mut limit = n_ctx;
        loop {
            let p = self.conv.prompt(&self.front.loaded.tokenizer)?;
            if p.tokens.len() + room <= limit {
                return Ok((p, dropped));
            }
            if self.cfg.context_full == ContextFullPolicy::Error {
                return Err(anyhow!(
                    "the conversation ({} tokens, plus {room} for the answer) no longer fits the context of {n_ctx} tokens (/clear, or run with --context-full drop)",
                    p.tokens.len()
                ));
            }
            if !self.conv.drop_oldest_turn() {
                if p.tokens.len() < n_ctx {
                    return Ok((p, dropped));
                }
                return Err(anyhow!(
                    "this message ({} tokens with the system prompt) does not fit the context of {n_ctx} tokens (raise -c)",
                    p.tokens.len()
                ));
            }
            dropped += 1;
            limit = n_ctx / 2;
        }
    }

    fn command(&mut self, c: Command) -> Result<()> {
        match c {
            Command::Help => eprintln!("{}", cmds::HELP),
            Command::Bye => {}
            Command::Clear => {
                self.conv.clear();
                eprintln!("(conversation cleared)");
            }
            Command::Set(s) => self.set(s),
            Command::Show(s) => self.show(s),
            Command::Save(path) => self.save(&path)?,
            Command::Load(path) => self.load(&path)?,
        }
        Ok(())
    }

    fn set(&mut self, s: Setting) {
        let p = &mut self.params;
        match s {
            Setting::Temp(v) => p.temp = v,
            Setting::TopK(v) => p.top_k = v,
            Setting::TopP(v) => p.top_p = v,
            Setting::MinP(v) => p.min_p = v,
            Setting::RepeatPenalty(v) => p.repeat_penalty = v,
            Setting::Seed(v) => p.seed = v,
            Setting::NPredict(v) => self.generate.n_predict = v,
            Setting::Format(v) => {
                let f = match v.as_str() {
                    "off" | "none" => Ok(None),
                    "json" => Ok(Some(crate::constrain::Format::AnyJson)),
                    file => crate::constrain::Format::file(std::path::Path::new(file)).map(Some),
                };
                match f {
                    Ok(f) => {
                        eprintln!(
                            "({})",
                            f.as_ref().map_or("format off".to_string(), |f| format!(
                                "answers as {}",
                                f.describe()
                            ))
                        );
                        self.format = f;
                    }
                    Err(e) => eprintln!("/set format: {e}"),
                }
                return;
            }
            Setting::System(text) => {
                self.conv.set_system(Some(&text));
                eprintln!(
                    "{}",
                    if text.is_empty() {
                        "(system prompt removed)"
                    } else {
                        "(system prompt set)"
                    }
                );
                return;
            }
        }
        self.sampler = Sampler::new(self.params.clone());
        eprintln!("(set)");
    }

    fn show(&self, s: Show) {
        match s {
            Show::Info => {
                let m = &self.front.loaded.model;
                let session = &self.front.session;
                let kv = session.kv();
                eprintln!(
                    "model: {} ({} arch, {} layers, vocab {})\ncontext: {} of {} tokens used\nKV cache: K {} V {} ({:.1} MiB)\nmessages: {}",
                    self.name,
                    m.arch.name(),
                    m.hp.n_layer,
                    m.hp.n_vocab,
                    session.n_past(),
                    session.n_ctx(),
                    kv.type_k,
                    kv.type_v,
                    (kv.bytes().k + kv.bytes().v) as f64 / 1048576.0,
                    self.conv.messages.len()
                );
            }
            Show::Template => match &self.conv.format {
                Format::Template(t) => eprintln!("{} chat template:\n{}", t.name(), t.source()),
                Format::Raw => eprintln!("no chat template: raw completion"),
            },
            Show::System => eprintln!("{}", self.conv.system().unwrap_or("(no system prompt)")),
            Show::Params => {
                let p = &self.params;
                eprintln!(
                    "temp {} | top-k {} | top-p {} | min-p {} | repeat-penalty {} (last {}) | seed {} | n-predict {}",
                    p.temp, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n,
                    self.sampler.seed(), self.generate.n_predict
                );
            }
            Show::Stats => match &self.last {
                None => eprintln!("no turn yet"),
                Some(s) => {
                    let t = &s.summary.timings;
                    eprintln!(
                        "last turn: prompt {} tokens, {} re-used from the cache, {} evaluated{} | {} | stop: {}\ncontext: {} of {} tokens used",
                        s.prompt_tokens,
                        s.summary.prompt_cached,
                        t.prompt_tokens,
                        if s.dropped > 0 { format!(" ({} exchanges dropped)", s.dropped) } else { String::new() },
                        t.report(),
                        s.summary.stop_reason,
                        self.front.session.n_past(),
                        self.front.session.n_ctx()
                    );
                }
            },
        }
    }

    /// `/save FILE`: the messages and the KV cache of what is cached.
    fn save(&self, path: &std::path::Path) -> Result<()> {
        let cached = self.conv.cached();
        let extra = json!({
            "messages": self.conv.messages,
            "cached_text": cached.text,
        });
        let tmp = path.with_extension("tmp");
        let write = || -> Result<()> {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            self.front
                .session
                .save_state(&mut w, &cached.tokens, extra.to_string().as_bytes())?;
            w.flush()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.context(format!("saving {}", path.display()))
        })?;
        eprintln!(
            "(saved {} messages and {} cached tokens to {})",
            self.conv.messages.len(),
            cached.tokens.len(),
            path.display()
        );
        Ok(())
    }

    /// `/load FILE`: replaces the conversation and the cache.
    fn load(&mut self, path: &std::path::Path) -> Result<()> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let restored = self
            .front
            .session
            .load_state(&mut std::io::BufReader::new(f));
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                self.conv.reset_cache();
                return Err(anyhow::Error::new(e).context(format!("loading {}", path.display())));
            }
        };
        let parsed: Result<(Vec<Message>, String)> = (|| {
            let v: serde_json::Value = serde_json::from_slice(&restored.extra)?;
            let messages = serde_json::from_value(v["messages"].clone())?;
            let text = v["cached_text"].as_str().unwrap_or_default().to_string();
            Ok((messages, text))
        })();
        let (messages, text) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.front.session.clear();
                self.conv.reset_cache();
                return Err(e.context(format!("{} holds no conversation", path.display())));
            }
        };
        self.conv.messages = messages;
        let n = restored.tokens.len();
        self.conv.restore_cache(restored.tokens, text);
        eprintln!(
            "(loaded {} messages and {n} cached tokens from {})",
            self.conv.messages.len(),
            path.display()
        );
        Ok(())
    }
}
