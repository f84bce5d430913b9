//! The one generation front: a model loaded with its session (context sized once), a prompt
//! turned into tokens, and decoding into an [`Output`]. One-shot runs (`run`) and the chat
//! (`chat`) call it and differ only in where prompts come from and what they keep around them;
//! a new front (batch, server) calls it too.
//!
//! ```text
//! RunConfig ─► Front::open (load, session) ─► prompt_tokens / the conversation's tokens
//!           ─► Front::decode (plain or speculative) ─► Output (text, --json, --jsonl)
//! ```

use std::io::Write;

use anyhow::{Context as _, Result};

use crate::chat::reasoning::Splitter;
use crate::chat::{ChatTemplate, Conversation, Format, Message, Reasoning};
use crate::cli::config::{ModelConfig, RunConfig};
use crate::generate::{generate, GenerateError, GenerateParams, Session, StopReason, Timings};
use crate::sampling::Sampler;
use crate::speculative::{SpecStats, Speculator};

use super::load::{self, Loaded};
use super::output::{stop_reason, Output};
use super::signals::{self, Interrupted};

/// A loaded model and its evaluation session.
pub struct Front {
    pub loaded: Loaded,
    pub session: Session,
    /// The model settings with the context resolved to the session's (a draft model shares it).
    pub model: ModelConfig,
}

/// How a decode ended.
pub struct Decoded {
    pub stop: StopReason,
    pub timings: Timings,
    /// Speculative decoding's statistics, when it ran.
    pub spec: Option<SpecStats>,
    /// The signal that stopped generation, if one did.
    pub interrupted: Option<Interrupted>,
}

impl Decoded {
    /// The `stop_reason` of the run (`stop_hit`: a stop string ended it).
    pub fn stop_reason(&self, stop_hit: bool) -> &'static str {
        stop_reason(self.stop, stop_hit, self.interrupted.is_some())
    }
}

impl Front {
    /// Load the model, then create its session with the configured context. A signal that
    /// arrives while loading ends the run before the session is made.
    pub fn open(cfg: &ModelConfig) -> Result<Front> {
        let loaded = load::load(cfg)?;
        if let Some(i) = signals::received() {
            log::warn!("stopped before generating: {i}");
            return Err(i.into());
        }
        let model = cfg.resolved(loaded.model.hp.n_ctx_train);
        let mut session = load::session(&loaded, &model)?;
        session.set_interrupt(Some(signals::interrupted));
        Ok(Front {
            loaded,
            session,
            model,
        })
    }

    /// The conversation format: `--chat-template`, else the model's template, else raw text.
    pub fn chat_format(
        &self,
        chat_template: Option<&str>,
        reasoning: &Reasoning,
    ) -> Result<Format> {
        chat_format(&self.loaded, chat_template, reasoning)
    }

    /// A one-shot prompt's tokens: the text (with `--chat`, a user message after the system
    /// prompt, rendered by the chat template), BOS where the vocabulary adds one, cut to the
    /// context with `--truncate-prompt`. With `--chat`, also how the answer's reasoning is
    /// told apart (unless `--special` asks for the raw text).
    pub fn prompt_tokens(
        &self,
        cfg: &RunConfig,
        text: &str,
    ) -> Result<(Vec<u32>, Option<Splitter>)> {
        let tok = &self.loaded.tokenizer;
        let rendered;
        let mut split = None;
        let text = if cfg.chat_prompt {
            let format = self.chat_format(cfg.chat_template.as_deref(), &cfg.reasoning)?;
            if matches!(format, Format::Raw) {
                log::warn!("--chat: this model has no chat template; the prompt is used as it is (choose one with --chat-template)");
            }
            let mut c = Conversation::new(format, cfg.system_prompt.as_deref());
            c.messages.push(Message::new("user", text));
            rendered = c.render()?;
            if !cfg.special {
                split = c.reasoning_splitter(&rendered);
            }
            &rendered
        } else {
            text
        };
        let mut ids = tok.encode(text, true, cfg.parse_special);
        // a template that writes BOS itself, and the vocabulary adding one
        if cfg.chat_prompt && ids.len() >= 2 && tok.bos() == Some(ids[0]) && ids[1] == ids[0] {
            ids.remove(0);
        }
        let n_ctx = self.session.n_ctx();
        if cfg.truncate_prompt && ids.len() > n_ctx as usize {
            let kept = truncate_prompt(&ids, n_ctx, cfg.generate.n_predict);
            log::warn!(
                "prompt truncated from {} to {} tokens (its first token and the last {}) to fit the context of {}",
                ids.len(),
                kept.len(),
                kept.len() - 1,
                n_ctx
            );
            ids = kept;
        }
        Ok((ids, split))
    }

    /// Evaluate `new` (the prompt tokens the cache does not hold; the sampler has seen those it
    /// does) and decode, handing each token to `out` until a stop condition, a stop string, a
    /// failed write or a signal. The caller then checks `out` for a write error and finishes it.
    pub fn decode<W: Write>(
        &mut self,
        sampler: &mut Sampler,
        spec: Option<&mut Speculator>,
        new: &[u32],
        params: GenerateParams,
        out: &mut Output<W>,
    ) -> Result<Decoded, GenerateError> {
        let tok = &self.loaded.tokenizer;
        let on_token = |id| signals::received().is_none() && out.token(tok, id);
        let (stop, timings, spec) = match spec {
            Some(s) => {
                let (stop, t, stats) =
                    s.generate(&mut self.session, tok, sampler, new, params, on_token)?;
                (stop, t, Some(stats))
            }
            None => {
                let (stop, t) = generate(&mut self.session, tok, sampler, new, params, on_token)?;
                (stop, t, None)
            }
        };
        Ok(Decoded {
            stop,
            timings,
            spec,
            interrupted: signals::received(),
        })
    }
}

/// The conversation format of a loaded model: `chat_template` (a name, a file, or raw), else
/// the model's template, else raw text.
pub fn chat_format(
    loaded: &Loaded,
    chat_template: Option<&str>,
    reasoning: &Reasoning,
) -> Result<Format> {
    let tok = &loaded.tokenizer;

    let text = |id: Option<u32>| id.map_or(String::new(), |id| tok.token_text(id).to_string());
    let (bos, eos) = (text(tok.bos()), text(tok.eos()));
    if let Some(arg) = chat_template {
        if arg == "raw" || arg == "none" {
            return Ok(Format::Raw);
        }
        let mut t = ChatTemplate::from_arg(arg, &bos, &eos)?;
        t.set_reasoning(reasoning);
        return Ok(Format::Template(Box::new(t)));
    }
    match loaded.model.file.get_str("tokenizer.chat_template") {
        Ok(src) => {
            let mut t = ChatTemplate::new("the model's", src, &bos, &eos)
                .context("the model's chat template (choose another with --chat-template)")?;
            t.set_reasoning(reasoning);
            Ok(Format::Template(Box::new(t)))
        }
        Err(_) => Ok(Format::Raw),
    }
}

/// The prompt's first token and its last ones, so that it leaves room for `n_predict` tokens
/// (at most half of `n_ctx`); unchanged when it already fits.
pub fn truncate_prompt(ids: &[u32], n_ctx: u32, n_predict: i64) -> Vec<u32> {
    let n_ctx = n_ctx.max(2) as usize;
    if ids.len() <= n_ctx {
        return ids.to_vec();
    }
    let room = usize::try_from(n_predict)
        .unwrap_or(usize::MAX)
        .min(n_ctx / 2);
    let keep = (n_ctx - room).max(2);
    let mut out = Vec::with_capacity(keep);
    out.push(ids[0]);
    out.extend_from_slice(&ids[ids.len() - (keep - 1)..]);
    out
}
