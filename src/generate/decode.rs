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
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(StopReason, Timings), GenerateError> {
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
    let mut t = Timings {
        prompt_tokens: prompt.len(),
        ..Timings::default()
    };
    for &id in prompt {
        sampler.accept(id);
    }
    let start = Instant::now();
    let mut logits = session.eval(prompt, Want::Last)?.to_vec();
    t.prompt = start.elapsed();
    let mut first_at = None;
    let stop = loop {
        if params.n_predict >= 0 && t.generated as i64 >= params.n_predict {
            break StopReason::Length;
        }
        let id = sampler.sample(&logits);
        sampler.accept(id);
        if !params.ignore_eos && tok.is_eog(id) {
            break StopReason::Eog;
        }
        t.generated += 1;
        if !on_token(id) {
            break StopReason::Cancelled;
        }
        if first_at.is_none() {
            first_at = Some(Instant::now());
            t.ttft = start.elapsed();
        }
        if params.n_predict >= 0 && t.generated as i64 >= params.n_predict {
            break StopReason::Length;
        }
        if session.n_past() >= n_ctx {
            break StopReason::ContextFull;
        }
        logits.clear();
        logits.extend_from_slice(session.eval(&[id], Want::Last)?);
    };
    if let Some(f) = first_at {
        t.decode = f.elapsed();
    }
    Ok((stop, t))
}
