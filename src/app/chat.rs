//! The chat REPL: `ember chat -m MODEL`, `ember -cnv`, or plain `ember -m MODEL` on a terminal.
//! Answers stream to stdout; notices go to stderr. Each turn evaluates only the tokens the KV
//! cache does not already hold; Ctrl-C stops an answer and keeps it in the conversation.

use std::io::{IsTerminal, Write};

use anyhow::{anyhow, Context as _, Result};
use serde_json::json;

use crate::chat::{ChatTemplate, Conversation, Format, Message};
use crate::cli::args::{ContextFullPolicy, RunArgs};
use crate::cli::config::{ModelConfig, UsageError};
use crate::generate::stop::StopStrings;
use crate::generate::{generate, EvalError, GenerateError, GenerateParams, Session, Timings};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::StreamDecoder;

use super::chat_commands::{self as cmds, Command, Setting, Show};
use super::chat_input::{Input, Read};
use super::load::Loaded;

/// Context size of the chat unless -c says otherwise.
const DEFAULT_CTX: u32 = 4096;

/// Whether the command line asks for the chat: -cnv, or no prompt and a terminal on stdin.
pub fn wanted(a: &RunArgs) -> bool {
    a.conversation
        || (!a.no_conversation
            && a.prompt.is_none()
            && a.file.is_none()
            && std::io::stdin().is_terminal())
}

/// The conversation format: `--chat-template`, else the model's template, else raw text.
pub fn format(a: &RunArgs, l: &Loaded) -> Result<Format> {
    let tok = &l.tokenizer;
    let text = |id: Option<u32>| id.map_or(String::new(), |id| tok.token_text(id).to_string());
    let (bos, eos) = (text(tok.bos()), text(tok.eos()));
    if let Some(arg) = &a.chat_template {
        if arg == "raw" || arg == "none" {
            return Ok(Format::Raw);
        }
        return Ok(Format::Template(Box::new(ChatTemplate::from_arg(
            arg, &bos, &eos,
        )?)));
    }
    match l.model.file.get_str("tokenizer.chat_template") {
        Ok(src) => Ok(Format::Template(Box::new(
            ChatTemplate::new("the model's", src, &bos, &eos)
                .context("the model's chat template (choose another with --chat-template)")?,
        ))),
        Err(_) => Ok(Format::Raw),
    }
}

/// `--chat`: the one-shot prompt as a user message (after `-sys`), rendered for the answer.
pub fn one_shot_prompt(a: &RunArgs, l: &Loaded, prompt: &str) -> Result<String> {
    let format = format(a, l)?;
    if matches!(format, Format::Raw) {
        log::warn!("--chat: this model has no chat template; the prompt is used as it is (choose one with --chat-template)");
    }
    let mut c = Conversation::new(format, a.system_prompt.as_deref());
    c.messages.push(Message::new("user", prompt));
    Ok(c.render()?)
}

/// Figures of the last turn, for `/show stats`.
struct TurnStats {
    prompt_tokens: usize,
    reused: usize,
    dropped: usize,
    timings: Timings,
    stop: &'static str,
}

struct Repl<'a> {
    a: &'a RunArgs,
    /// The model file's name.
    name: String,
    loaded: &'a Loaded,
    session: Session,
    conv: Conversation,
    params: SamplingParams,
    sampler: Sampler,
    n_predict: i64,
    last: Option<TurnStats>,
}

pub fn run(a: &RunArgs) -> Result<()> {
    if a.json || a.jsonl || a.prompt_cache.is_some() {
        return Err(UsageError(
            "--json, --jsonl and --prompt-cache are for one-shot runs, not the chat (use /save and /load)".into(),
        )
        .into());
    }
    if a.spec.model_draft.is_some() || a.spec.lookup {
        log::warn!(
            "speculative decoding (-md, --lookup) is for one-shot runs; the chat decodes plainly"
        );
    }
    let cfg = ModelConfig::from_args(&a.model, DEFAULT_CTX)?;
    super::signals::install_chat();
    let loaded = super::load::load(&cfg)?;
    let cfg = ModelConfig {
        n_ctx: cfg.n_ctx.min(loaded.model.hp.n_ctx_train.max(1)),
        ..cfg
    };
    let mut session = super::load::session(&loaded, &cfg)?;
    session.set_interrupt(Some(super::signals::interrupted));
    let format = format(a, &loaded)?;
    // With -cnv, -p gives the system prompt, as in llama.cpp.
    let system = a.system_prompt.as_deref().or(a.prompt.as_deref());
    let name = cfg
        .path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    match &format {
        Format::Template(t) => eprintln!(
            "ember: chatting with {name} ({} chat template, context {}). /? for help, Ctrl-D or /bye to exit.",
            t.name(),
            session.n_ctx()
        ),
        Format::Raw => eprintln!(
            "ember: {name} has no chat template: raw completion, each message continues the text (choose a template with --chat-template). /? for help, Ctrl-D or /bye to exit."
        ),
    }
    let params = super::run::sampling_params(&a.sampling);
    let mut repl = Repl {
        a,
        name,
        loaded: &loaded,
        session,
        conv: Conversation::new(format, system),
        sampler: Sampler::new(params.clone()),
        params,
        n_predict: a.n_predict,
        last: None,
    };
    let mut input = Input::open();
    let mut ctrl_c = false;
    loop {
        if let Some(i) = super::signals::received() {
            return Err(i.into());
        }
        // At the prompt, nothing is lost by ending at once (the history is saved per entry).
        super::signals::at_prompt(true);
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
        let tok = &self.loaded.tokenizer;
        self.conv.messages.push(Message::new("user", text));
        let (prompt, dropped) = match self.fit_prompt() {
            Ok(p) => p,
            Err(e) => {
                self.conv.messages.pop();
                return Err(e);
            }
        };
        if dropped > 0 {
            eprintln!(
                "(the context of {} tokens is full: dropped the {dropped} oldest exchange{})",
                self.session.n_ctx(),
                if dropped == 1 { "" } else { "s" }
            );
        }
        let reused = self.conv.reusable(&prompt.tokens);
        // fewer (none) when a sliding-window ring has moved past the shared prefix
        let reused = self.session.truncate(reused as u32) as usize;
        for &id in &prompt.tokens[..reused] {
            self.sampler.accept(id);
        }
        super::signals::reset_interrupt();
        let stops: Vec<String> = self
            .a
            .stop
            .iter()
            .chain(&self.a.reverse_prompt)
            .cloned()
            .collect();
        let mut stops = StopStrings::new(stops);
        let mut decoder = StreamDecoder::new(self.a.special);
        let mut answer = String::new();
        let mut ids = Vec::new();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut write_err = None;
        let params = GenerateParams {
            n_predict: self.n_predict,
            ignore_eos: self.a.ignore_eos,
        };
        let on_token = |id| {
            if super::signals::received().is_some() {
                return false;
            }
            ids.push(id);
            let shown = stops.push(&decoder.push(tok, id));
            answer.push_str(&shown);
            if let Err(e) = out.write_all(shown.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e);
                return false;
            }
            stops.hit().is_none()
        };
        let new = &prompt.tokens[reused..];
        let result = generate(
            &mut self.session,
            tok,
            &mut self.sampler,
            new,
            params,
            on_token,
        );
        let interrupted = super::signals::received().is_some();
        super::signals::reset_interrupt();
        let (stop, timings) = match result {
            Ok(r) => r,
            Err(GenerateError::Eval(EvalError::Interrupted)) => {
                // Stopped inside the prompt: the question goes, what was evaluated stays.
                self.conv.messages.pop();
                let n = self.session.n_past() as usize;
                self.conv
                    .set_cached_tokens(&prompt.tokens[..n.min(prompt.tokens.len())]);
                eprintln!("(stopped)");
                return Ok(());
            }
            Err(e) => {
                self.conv.messages.pop();
                self.conv.reset_cache();
                self.session.clear();
                return Err(e.into());
            }
        };
        if stops.hit().is_none() {
            let tail = stops.push(&decoder.flush());
            answer.push_str(&tail);
            let tail2 = stops.flush();
            answer.push_str(&tail2);
            let _ = out.write_all(tail.as_bytes());
            let _ = out.write_all(tail2.as_bytes());
        }
        let end = if answer.is_empty() || answer.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let r = out.write_all(end.as_bytes()).and_then(|_| out.flush());
        drop(out);
        if let Some(e) = write_err.or(r.err()) {
            return Err(anyhow::Error::new(e).context("writing the answer"));
        }
        self.conv.messages.push(Message::new("assistant", &answer));
        let n_past = self.session.n_past() as usize;
        self.conv.set_cached(tok, prompt.clone(), &ids, n_past);
        let stop = if interrupted {
            "interrupted"
        } else {
            super::output::stop_reason(stop, stops.hit().is_some(), false)
        };
        if stop == "context_full" {
            eprintln!(
                "(the answer filled the context; older exchanges will be dropped for the next one)"
            );
        }
        self.last = Some(TurnStats {
            prompt_tokens: prompt.tokens.len(),
            reused,
            dropped,
            timings,
            stop,
        });
        Ok(())
    }

    /// The prompt for the next answer, dropping the oldest exchanges while it leaves too little
    /// room (unless `--context-full error`). Returns it with the number of exchanges dropped.
    fn fit_prompt(&mut self) -> Result<(crate::chat::Prompt, usize)> {
        let n_ctx = self.session.n_ctx() as usize;
        let room = match usize::try_from(self.n_predict) {
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
            let p = self.conv.prompt(&self.loaded.tokenizer)?;
            if p.tokens.len() + room <= limit {
                return Ok((p, dropped));
            }
            if self.a.context_full == ContextFullPolicy::Error {
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
            Setting::NPredict(v) => self.n_predict = v,
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
                let m = &self.loaded.model;
                let kv = self.session.kv();
                eprintln!(
                    "model: {} ({} arch, {} layers, vocab {})\ncontext: {} of {} tokens used\nKV cache: K {} V {} ({:.1} MiB)\nmessages: {}",
                    self.name,
                    m.arch.name(),
                    m.hp.n_layer,
                    m.hp.n_vocab,
                    self.session.n_past(),
                    self.session.n_ctx(),
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
                    self.sampler.seed(), self.n_predict
                );
            }
            Show::Stats => match &self.last {
                None => eprintln!("no turn yet"),
                Some(s) => {
                    let t = &s.timings;
                    eprintln!(
                        "last turn: prompt {} tokens, {} re-used from the cache, {} evaluated{} | {} | stop: {}\ncontext: {} of {} tokens used",
                        s.prompt_tokens,
                        s.reused,
                        t.prompt_tokens,
                        if s.dropped > 0 { format!(" ({} exchanges dropped)", s.dropped) } else { String::new() },
                        t.report(),
                        s.stop,
                        self.session.n_past(),
                        self.session.n_ctx()
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
            self.session
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
        let restored = self.session.load_state(&mut std::io::BufReader::new(f));
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
                self.session.clear();
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
