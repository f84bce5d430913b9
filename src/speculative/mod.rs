//! Speculative decoding: a cheap [`Drafter`] (a smaller model, or prompt lookup) proposes
//! tokens, the target checks them all in one batched pass, and the rule of [`accept`] keeps
//! the output distribution exactly the target's (at temperature 0: the tokens plain decoding
//! gives). Both caches roll back to the accepted prefix.
//!
//! - [`decode`]: the loop (draft → verify → accept → roll back), and the draft cap that keeps
//!   greedy output exact;
//! - [`policy`]: how many tokens to draft each step, 0 (plain decoding) included, from the
//!   [`cost`] model over measured times and the acceptance rate;
//! - [`drafter`]: the one trait every drafter implements; [`draft_model`] and [`lookup`] are
//!   the two there are, one file each;
//! - [`compat`]: whether a draft model's vocabulary can stand in for the target's;
//! - [`stats`]: what speculation did, for the report.

pub mod accept;
pub mod compat;
pub mod cost;
mod decode;
pub(crate) use decode::{calibrate, draft_cap, exact_cap};
pub mod draft_model;
pub mod drafter;
pub mod lookup;
pub mod policy;
pub mod stats;

use std::time::Instant;

use crate::generate::{GenerateError, GenerateParams, Session, StopReason, Timings};
use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;

pub use draft_model::DraftModel;
pub use drafter::{Draft, Drafter};
pub use lookup::Lookup;
pub use stats::SpecStats;

#[derive(Clone, Debug)]
pub struct SpecParams {
    /// Most tokens drafted per step.
    pub draft_max: usize,
    /// Drafts shorter than this are not verified (plain step instead).
    pub draft_min: usize,
    /// Always draft `draft_max` (no cost model), for experiments and tests.
    pub fixed: bool,
}

/// A drafter and the limits it drafts within: what a generation needs besides what plain
/// decoding needs.
pub struct Speculator {
    pub(crate) drafter: Box<dyn Drafter>,
    pub(crate) params: SpecParams,
    /// Pass times known before the run (from an earlier one): with the target's, no
    /// calibration passes; with the drafter's too, a drafter that cannot pay is known before
    /// it reads the prompt.
    pub prior: cost::Costs,
}

impl Speculator {
    pub fn new(drafter: Box<dyn Drafter>, params: SpecParams) -> Self {
        Speculator {
            drafter,
            params,
            prior: cost::Costs::default(),
        }
    }

    /// Speculative generation; the counterpart of [`crate::generate::generate`] with the same
    /// arguments, stop rules and callback. The session starts empty.
    pub fn generate(
        &mut self,
        target: &mut Session,
        tok: &Tokenizer,
        sampler: &mut Sampler,
        prompt: &[u32],
        params: GenerateParams,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<(StopReason, Timings, SpecStats), GenerateError> {
        decode::generate(self, target, tok, sampler, prompt, params, on_token)
    }
}

/// Runs `f`, with the seconds it took.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed().as_secs_f64())
}
