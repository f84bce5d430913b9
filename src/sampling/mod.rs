//! Token sampling over one logits row, with llama.cpp's semantics and default
//! chain order:
//!
//! penalties → top-k → top-p → min-p → temperature → dist (seeded draw)
//!
//! The draw uses a `std::mt19937` seeded like llama.cpp's `dist` sampler and
//! the same single `uniform_real_distribution<double>` draw + cumulative walk,
//! so with equal logits and seed the same tokens come out (up to the order of
//! exactly tied logits, which llama.cpp leaves unspecified).
//!
//! `temp <= 0` (or `top_k == 1`) is greedy: penalties (if any) then argmax,
//! ties going to the lowest token id.
//!
//! The sampler does not record the tokens it returns: call [`Sampler::accept`]
//! for every token that enters the context (prompt and generated) so that the
//! repetition penalties see them.

mod candidates;
mod penalties;
mod rng;

use crate::constrain::Guard;
use candidates::Candidates;
use penalties::Penalties;
use rng::Mt19937;

/// Seed value meaning "pick a random seed" (from OS entropy and the clock).
pub const SEED_RANDOM: u64 = u64::MAX;

/// llama.cpp's `LLAMA_DEFAULT_SEED` (0xFFFFFFFF); also treated as random.
const LLAMA_DEFAULT_SEED: u64 = 0xFFFF_FFFF;

/// Sampling parameters; `Default` gives llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Temperature; `<= 0` samples greedily.
    pub temp: f32,
    /// Keep the `top_k` most likely tokens; `<= 0` disables.
    pub top_k: i32,
    /// Nucleus sampling threshold; `>= 1` disables.
    pub top_p: f32,
    /// Drop tokens with `p < min_p * p_max`; `<= 0` disables.
    pub min_p: f32,
    /// Repetition penalty; `1.0` disables.
    pub repeat_penalty: f32,
    /// Penalty window in tokens; `0` disables penalties, `< 0` = unbounded
    /// (every accepted token since the last reset).
    pub repeat_last_n: i32,
    /// Subtracted `count` times per occurrence in the window; `0` disables.
    pub frequency_penalty: f32,
    /// Subtracted once if the token occurs in the window; `0` disables.
    pub presence_penalty: f32,
    /// RNG seed. [`SEED_RANDOM`] (or llama.cpp's `0xFFFFFFFF`) picks a random
    /// one; other values are truncated to 32 bits like llama.cpp's `uint32_t`.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: SEED_RANDOM,
        }
    }
}

impl SamplingParams {
    fn penalties_active(&self) -> bool {
        Penalties::active(
            self.repeat_last_n,
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        )
    }
}

/// Stateful sampler: penalty history, RNG and reusable scratch buffers.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    seed: u32,
    rng: Mt19937,
    penalties: Penalties,
    cands: Candidates,
    scratch: Vec<f32>,
    /// Structured output: the constraint every sampled token must satisfy.
    guard: Option<Box<Guard>>,
}

fn resolve_seed(seed: u64) -> u32 {
    if seed == SEED_RANDOM || seed == LLAMA_DEFAULT_SEED {
        rng::random_seed()
    } else {
        seed as u32
    }
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = resolve_seed(params.seed);
        Sampler {
            rng: Mt19937::new(seed),
            seed,
            penalties: Penalties::new(params.repeat_last_n),
            cands: Candidates::default(),
            scratch: Vec::new(),
            guard: None,
            params,
        }
    }

    /// Constrains every later token to `guard` (a schema or grammar); `None` lifts it.
    pub fn set_guard(&mut self, guard: Option<Guard>) {
        self.guard = guard.map(Box::new);
    }

    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_deref()
    }

    /// Records a generated token: the penalties see it and the constraint moves past it.
    pub fn commit(&mut self, token: u32) {
        self.accept(token);
        if let Some(g) = &mut self.guard {
            g.commit(token);
        }
    }

    /// Whether the text so far satisfies the constraint (always, without one).
    pub fn is_complete(&mut self) -> bool {
        self.guard.as_mut().is_none_or(|g| g.is_complete())
    }

    /// How many of `tokens` the constraint allows in a row (all of them without one).
    pub fn valid_prefix(&mut self, tokens: &[u32]) -> usize {
        match &mut self.guard {
            Some(g) => g.valid_prefix(tokens),
            None => tokens.len(),
        }
    }

    /// Runs `f` (a forward pass) while the constraint's next mask is computed on another
    /// thread, so that neither waits for the other; where the guard has no core of its own
    /// (`Guard::overlap` off), the mask is computed first, on this thread.
    pub fn overlap<R>(&mut self, f: impl FnOnce() -> R) -> R {
        match &mut self.guard {
            Some(g) if !g.is_prepared() && !g.overlap => {
                g.prepare();
                f()
            }
            Some(g) if !g.is_prepared() => std::thread::scope(|s| {
                let worker = s.spawn(|| {
                    g.prepare();
                    g.stats.overlapped += 1;
                });
                let r = f();
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
                r
            }),
            _ => f(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The 32-bit seed actually in use (resolved if a random seed was asked for).
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// True when sampling is deterministic argmax (`temp <= 0` or `top_k == 1`).
    pub fn is_greedy(&self) -> bool {
        self.params.temp <= 0.0 || self.params.top_k == 1
    }

    /// Records a token for the repetition penalties (prompt tokens too).
    pub fn accept(&mut self, token: u32) {
        self.penalties.accept(token);
    }

    /// Forgets the penalty history and re-seeds the RNG (a random seed is
    /// drawn afresh when the configured seed is random, like llama.cpp).
    pub fn reset(&mut self) {
        self.penalties.reset();
        self.seed = resolve_seed(self.params.seed);
        self.rng = Mt19937::new(self.seed);
    }

    /// The distribution `sample` draws from, after penalties and the whole chain, as
    /// (token, probability) pairs summing to 1; a single pair when greedy. Speculative decoding
    /// compares these between target and draft.
    pub fn distribution(&mut self, logits: &[f32]) -> Vec<(u32, f32)> {
        assert!(
            !logits.is_empty(),
            "Sampler::distribution: empty logits row"
        );
        if let Some(id) = self.apply_chain(logits) {
            return vec![(id, 1.0)];
        }
        let c = &self.cands.data;
        let max = c.iter().map(|x| x.logit).fold(f32::NEG_INFINITY, f32::max);
        let mut out: Vec<(u32, f32)> = c.iter().map(|x| (x.id, (x.logit - max).exp())).collect();
        let sum: f64 = out.iter().map(|&(_, v)| f64::from(v)).sum();
        for (_, v) in &mut out {
            *v = (f64::from(*v) / sum) as f32;
        }
        out
    }

    /// A uniform draw in [0, 1) from the sampler's generator.
    pub fn uniform(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Picks the next token from a logits row (`logits.len()` = n_vocab).
    /// Does not record the token; call [`accept`](Self::accept) for that.
    /// Panics if `logits` is empty.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "Sampler::sample: empty logits row");
        match self.apply_chain(logits) {
            Some(id) => id,
            None => self.cands.draw(&mut self.rng),
        }
    }

    /// Penalties, then either the greedy pick (`Some`) or the chain up to the temperature
    /// applied to the candidates in `self.cands` (`None`), ready to draw from.
    fn apply_chain(&mut self, logits: &[f32]) -> Option<u32> {
        let p = &self.params;
        let row: &[f32] = if p.penalties_active() || self.guard.is_some() {
            self.scratch.clear();
            self.scratch.extend_from_slice(logits);
            if let Some(g) = &mut self.guard {
                g.apply(&mut self.scratch);
            }
            if p.penalties_active() {
                self.penalties.apply(
                    &mut self.scratch,
                    p.repeat_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                );
            }
            &self.scratch
        } else {
            logits
        };

        if self.is_greedy() {
            return Some(argmax(row));
        }

        let c = &mut self.cands;
        c.load_top_k(row, p.top_k);
        c.top_p(p.top_p, 0);
        c.min_p(p.min_p, 0);
        c.temperature(p.temp);
        None
    }
}

/// Index of the largest logit; ties go to the lowest id, NaNs are skipped.
/// Returns 0 for an empty slice (or one without a number above -inf).
pub fn argmax(logits: &[f32]) -> u32 {
    // Vectorisable lane-wise maximum, then the first position holding it.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(tail) {
        if v > max {
            max = v;
        }
    }
    if max == f32::NEG_INFINITY {
        return 0;
    }
    // First chunk holding the maximum (branch-free test per chunk).
    for (ci, chunk) in logits.chunks(LANES).enumerate() {
        if chunk.iter().fold(false, |any, &v| any | (v == max)) {
            let j = chunk.iter().position(|&v| v == max).unwrap_or(0);
            return (ci * LANES + j) as u32;
        }
    }
    0
}

#[cfg(test)]
mod tests;
