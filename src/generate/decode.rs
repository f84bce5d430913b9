//! The decode loop: prompt prefill, then sample → stream → evaluate, until a stop condition.

use std::time::{Duration, Instant};

use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;

use super::session::{EvalError, Session, Want};

#[derive(Clone, Copy, Debug)]
pub struct GenerateParams {
    /// Tokens to generate; negative = until end of generation or a full context.
    pub n_predict: i64,
    pub ignore_eos: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eog,
    /// `n_predict` tokens were generated.
    Length,
    /// The context is full.
    ContextFull,
    /// The output callback asked to stop (e.g. the reader went away).
    Cancelled,
}

/// Timings of one generation, for the report on stderr.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prompt: Duration,
    /// From the start of prompt processing to the first generated token being handed out.
    pub ttft: Duration,
    pub generated: usize,
    /// Time spent after the first token (per-token decode).
    pub decode: Duration,
}

impl Timings {
    pub fn report(&self) -> String {
        let rate = |n: usize, d: Duration| {
            if d.as_secs_f64() > 0.0 {
                n as f64 / d.as_secs_f64()
            } else {
                0.0
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let decode_tokens = self.generated.saturating_sub(1);
        format!(
            "prompt: {} tokens in {:.1} ms ({:.1} tokens/s) | time to first token: {:.1} ms | generated: {} tokens, decode {:.1} tokens/s ({:.2} ms/token)",
            self.prompt_tokens,
            ms(self.prompt),
            rate(self.prompt_tokens, self.prompt),
            ms(self.ttft),
            self.generated,
            rate(decode_tokens, self.decode),
            if decode_tokens > 0 { ms(self.decode) / decode_tokens as f64 } else { 0.0 },
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt has {prompt} tokens, more than the context of {n_ctx} (raise -c, or --truncate-prompt to keep its end)")]
    PromptTooLong { prompt: usize, n_ctx: u32 },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// Run one generation. `on_token` receives each generated token id and returns false to stop.
pub fn generate(
    session: &mut Session,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    prompt: &[u32],
    params: GenerateParams,
    on_token: impl FnMut(u32) -> bool,
) -> Result<(StopReason, Timings), GenerateError> {
    check_prompt(session, prompt)?;
    let n_ctx = session.n_ctx();
    for &id in prompt {
        sampler.accept(id);
    }
    let mut em = Emitter::new(tok, params, on_token, prompt.len());
    // the first mask (and the constraint's set-up) is computed beside the prompt
    let mut logits = sampler.overlap(|| session.eval(prompt, Want::Last).map(<[f32]>::to_vec))?;
    // a hybrid model's recurrent state at the prompt's end (and one token before), for the
    // next prompt that shares this one (a chat's next turn, `--prompt-cache`)
    session.checkpoint()?;
    em.prompt_done();
    let stop = loop {
        if em.length_reached() {
            break StopReason::Length;
        }
        let id = sampler.sample(&logits);
        if let Some(reason) = em.emit(sampler, id) {
            break reason;
        }
        if session.n_past() >= n_ctx {
            break StopReason::ContextFull;
        }
        // the constraint's next mask is computed beside the forward pass
        sampler.overlap(|| {
            let row = session.eval(&[id], Want::Last)?;
            logits.clear();
            logits.extend_from_slice(row);
            Ok::<_, EvalError>(())
        })?;
    };
    Ok((stop, em.finish()))
}

/// A prompt must be non-empty and fit in what is left of the context.
pub(crate) fn check_prompt(session: &Session, prompt: &[u32]) -> Result<(), GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let n_ctx = session.n_ctx();
    if session.n_past() as usize + prompt.len() > n_ctx as usize {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt.len(),
            n_ctx,
        });
    }
    Ok(())
}

/// Hands generated tokens out under the stop rules and timings every decode loop shares
/// (plain and speculative): end of generation, `n_predict`, the callback asking to stop.
pub(crate) struct Emitter<'a, F: FnMut(u32) -> bool> {
    tok: &'a Tokenizer,
    params: GenerateParams,
    on_token: F,
    t: Timings,
    start: Instant,
    first_at: Option<Instant>,
}

impl<'a, F: FnMut(u32) -> bool> Emitter<'a, F> {
    /// Starts the clock: prompt processing begins now.
    pub(crate) fn new(
        tok: &'a Tokenizer,
        params: GenerateParams,
        on_token: F,
        prompt_tokens: usize,
    ) -> Self {
        Emitter {
            tok,
            params,
            on_token,
            t: Timings {
                prompt_tokens,
                ..Timings::default()
            },
            start: Instant::now(),
            first_at: None,
        }
    }

    /// The prompt (and whatever set-up precedes the first token) is done.
    pub(crate) fn prompt_done(&mut self) {
        self.t.prompt = self.start.elapsed();
    }

    /// Records `id` with the sampler and hands it out; `Some(reason)` ends generation (an
    /// end-of-generation token is not handed out).
    pub(crate) fn emit(&mut self, sampler: &mut Sampler, id: u32) -> Option<StopReason> {
        sampler.commit(id);
        if !self.params.ignore_eos && self.tok.is_eog(id) {
            return Some(StopReason::Eog);
        }
        self.t.generated += 1;
        if !(self.on_token)(id) {
            return Some(StopReason::Cancelled);
        }
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
            self.t.ttft = self.start.elapsed();
        }
        self.length_reached().then_some(StopReason::Length)
    }

    pub(crate) fn length_reached(&self) -> bool {
        self.params.n_predict >= 0 && self.t.generated as i64 >= self.params.n_predict
    }

    pub(crate) fn generated(&self) -> usize {
        self.t.generated
    }

    pub(crate) fn finish(mut self) -> Timings {
        if let Some(f) = self.first_at {
            self.t.decode = f.elapsed();
        }
        self.t
    }
}
