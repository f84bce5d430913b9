//! Drafting with a smaller model of the same vocabulary: it decodes `k` tokens ahead on its
//! own cache, stopping early where its top probability falls below `p_min`.

use crate::generate::{EvalError, Session, Want};
use crate::sampling::{argmax, Sampler};

use super::accept;
use super::drafter::{Draft, Drafter};
use super::timed;

/// A draft model with its own cache; the cache holds `text[..evaluated]`, and while a draft
/// is pending also the drafted tokens after it (`evaluated` counts them).
pub struct DraftModel {
    session: Session,
    sampler: Sampler,
    /// The draft stops when its top probability falls below this.
    p_min: f32,
    /// The prompt and the tokens handed out so far.
    text: Vec<u32>,
    evaluated: usize,
}

impl DraftModel {
    pub fn new(session: Session, sampler: Sampler, p_min: f32) -> Self {
        DraftModel {
            session,
            sampler,
            p_min,
            text: Vec::new(),
            evaluated: 0,
        }
    }
}

impl Drafter for DraftModel {
    /// Reads the prompt, then times one token (evaluated and rolled back).
    fn start(&mut self, prompt: &[u32]) -> Result<Option<f64>, EvalError> {
        self.session.clear();
        self.session.eval(prompt, Want::Last)?;
        self.text = prompt.to_vec();
        self.evaluated = prompt.len();
        let Some(&last) = prompt.last() else {
            return Ok(None);
        };
        if self.session.n_past() >= self.session.n_ctx() {
            return Ok(None);
        }
        self.session.checkpoint()?;
        let (r, secs) = timed(|| self.session.eval(&[last], Want::Last).map(|_| ()));
        r?;
        self.session.truncate(self.evaluated as u32);
        Ok(Some(secs))
    }

    /// The second of two one-token passes (the first builds the graph).
    fn token_cost(&mut self, probe: u32) -> Result<f64, EvalError> {
        self.session.clear();
        self.session.eval(&[probe], Want::Last)?;
        self.session.clear();
        let (r, secs) = timed(|| self.session.eval(&[probe], Want::Last).map(|_| ()));
        self.session.clear();
        self.text.clear();
        self.evaluated = 0;
        r.map(|_| secs)
    }

    fn propose(&mut self, k: usize, n_vocab: usize) -> Result<Draft, EvalError> {
        let room = (self.session.n_ctx() - self.session.n_past()) as usize;
        let pending = &self.text[self.evaluated.min(self.text.len())..];
        if pending.len() + k > room {
            return Ok(Draft::default());
        }
        let mut logits = self.session.eval(pending, Want::Last)?.to_vec();
        self.evaluated = self.text.len();
        // a hybrid draft model rolls back its drafted tokens to here from a checkpoint
        self.session.checkpoint()?;
        let mut draft = Draft::default();
        for i in 0..k {
            let (x, q, top) = if self.sampler.is_greedy() {
                let x = argmax(&logits);
                (x, vec![(x, 1.0)], top_prob(&logits, x))
            } else {
                let q = self.sampler.distribution(&logits);
                let top = q.iter().map(|&(_, p)| p).fold(0.0, f32::max);
                let x = accept::draw(&q, self.sampler.uniform());
                (x, q, top)
            };
            if top < self.p_min || x as usize >= n_vocab {
                break;
            }
            draft.push(x, q);
            if i + 1 < k {
                logits = self.session.eval(&[x], Want::Last)?.to_vec();
                self.evaluated += 1;
            }
        }
        Ok(draft)
    }

    /// The cache catches up on the next [`propose`](Drafter::propose).
    fn accept(&mut self, tokens: &[u32]) {
        self.text.extend_from_slice(tokens);
    }

    fn rollback(&mut self, len: usize) {
        self.text.truncate(len);
        self.evaluated = self.session.truncate(self.evaluated.min(len) as u32) as usize;
    }

    fn max_batch(&self) -> Option<u32> {
        Some(self.session.params().n_ubatch)
    }
}

/// Softmax probability of token `x`.
fn top_prob(logits: &[f32], x: u32) -> f32 {
    let max = logits[x as usize];
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    (1.0 / sum) as f32
}
