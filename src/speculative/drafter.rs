//! What every drafter does, so the loop in [`super::decode`] never asks which one it has: a
//! new drafter is one file with one `impl Drafter`.
//!
//! A drafter keeps its own view of the text (the prompt, then every token the target handed
//! out, in order): [`start`](Drafter::start) sets it, [`accept`](Drafter::accept) extends it,
//! [`rollback`](Drafter::rollback) shortens it, and [`propose`](Drafter::propose) drafts what
//! follows it.

use crate::generate::EvalError;

/// Drafted tokens, each with the distribution it was drawn from (a point mass where the
/// drafter is deterministic): the acceptance rule of [`super::accept`] needs both.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub tokens: Vec<u32>,
    /// `dists[i]` is the sparse distribution `tokens[i]` was drawn from.
    pub dists: Vec<Vec<(u32, f32)>>,
}

impl Draft {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Appends a token and the distribution it was drawn from.
    pub fn push(&mut self, token: u32, dist: Vec<(u32, f32)>) {
        self.tokens.push(token);
        self.dists.push(dist);
    }

    /// Deterministic drafts: each token drawn from a point mass on itself.
    pub fn point_masses(tokens: Vec<u32>) -> Self {
        let dists = tokens.iter().map(|&t| vec![(t, 1.0)]).collect();
        Draft { tokens, dists }
    }
}

/// A source of drafts for speculative decoding.
pub trait Drafter {
    /// Starts a generation: the text is `prompt` (non-empty), whatever came before is
    /// forgotten. Returns the seconds one drafted token costs where known (measured, or 0 for
    /// a free drafter); the cost model starts from it.
    fn start(&mut self, prompt: &[u32]) -> Result<Option<f64>, EvalError>;

    /// The seconds one drafted token costs, measured without reading the text (a pass over
    /// token `probe` on an empty cache, forgotten after), so that a drafter that cannot pay is
    /// found before it reads the prompt; 0 for a free drafter.
    fn token_cost(&mut self, probe: u32) -> Result<f64, EvalError>;

    /// Up to `k` tokens to follow the text, none with an id of `n_vocab` (the target's
    /// vocabulary) or more; fewer, or none, where the drafter is not confident or has no room.
    fn propose(&mut self, k: usize, n_vocab: usize) -> Result<Draft, EvalError>;

    /// The target handed out `tokens` after the text: they extend it.
    fn accept(&mut self, tokens: &[u32]);

    /// Forgets the text, and anything evaluated, from position `len` on.
    fn rollback(&mut self, len: usize);

    /// True where proposing costs no time worth measuring (prompt lookup): the cost model
    /// keeps the cost [`start`](Self::start) gave instead of timing each draft.
    fn is_free(&self) -> bool {
        false
    }

    /// The largest batch the drafter itself evaluates at once, if it evaluates any.
    fn max_batch(&self) -> Option<u32> {
        None
    }
}
