//! The speculative loop: hand out a token, draft after it, verify the token and the draft in
//! one batched target pass, hand out the accepted prefix, roll both caches back to it. How
//! many tokens to draft is the [`Policy`]'s call; which drafter drafts, the [`Drafter`]'s.

use std::time::Instant;

use crate::generate::decode::{check_prompt, Emitter};
use crate::generate::{
    EvalError, GenerateError, GenerateParams, Session, StopReason, Timings, Want,
};
use crate::model::WeightSet;
use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;

use super::drafter::{Draft, Drafter};
use super::policy::Policy;
use super::stats::SpecStats;
use super::{accept, timed, Speculator};

/// The longest draft a step may verify with `draft_max` asked for: one verification batch,
/// and for greedy sampling (`greedy`) no more than picks exactly the tokens plain decoding
/// would. Each weight's kernel route knows how many columns one product can take and still
/// give one-column decoding's results bit for bit (ggml's repacked kernels multiply groups of
/// 4 rows differently from single rows; its tiled K-quant path takes over from 8; f16 matrices
/// from 2): at temperature 0 a longer verification batch could pick another argmax than plain
/// decoding in a near-tie. A draft of n tokens is a batch of n + 1 columns.
pub(crate) fn draft_cap(draft_max: usize, greedy: bool, weights: &WeightSet) -> usize {
    let exact = weights
        .exact_columns()
        .filter(|_| greedy)
        .map_or(usize::MAX, |cols| cols.saturating_sub(1));
    draft_max.clamp(1, crate::model::VERIFY_ROWS - 1).min(exact)
}

/// The longest draft whose verification is exact for greedy decoding on `target`'s weights
/// (see [`draft_cap`]); None when any length is.
pub(crate) fn exact_cap(target: &Session) -> Option<usize> {
    let cols = target.model().weights.exact_columns()?;
    Some(cols.saturating_sub(1))
}

/// Speculative generation; see [`Speculator::generate`].
pub(super) fn generate(
    speculator: &mut Speculator,
    target: &mut Session,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    prompt: &[u32],
    params: GenerateParams,
    on_token: impl FnMut(u32) -> bool,
) -> Result<(StopReason, Timings, SpecStats), GenerateError> {
    let (drafter, spec) = (&mut *speculator.drafter, &speculator.params);
    check_prompt(target, prompt)?;
    // verification passes attend row by row, as decoding does (see `Session::eval_verify`)
    target.enable_verify()?;
    let draft_max = draft_cap(spec.draft_max, sampler.is_greedy(), &target.model().weights);
    // a hybrid model rolls back a rejected draft from its recurrent snapshots: one per token
    // of a verification batch (memory: `Session::set_snapshots`)
    target.set_snapshots(draft_max as u32 + 1)?;
    let draft_max = draft_max.min(target.max_rollback());
    for &id in prompt {
        sampler.accept(id);
    }
    let mut em = Emitter::new(tok, params, on_token, prompt.len());
    debug_assert_eq!(target.n_past(), 0, "speculation starts from an empty cache");
    let logits = sampler.overlap(|| target.eval(prompt, Want::Last).map(<[f32]>::to_vec))?;
    target.checkpoint()?;
    let mut policy = Policy::new(draft_max, spec.fixed);
    let last = *prompt.last().expect("check_prompt refuses an empty prompt");
    if policy.measures() {
        // The target's pass times (kept from an earlier run, else measured now) and one
        // drafted token's, before the drafter reads the prompt: one that cannot pay never
        // does, and plain decoding pays nothing more for it.
        let prior = &speculator.prior;
        if prior.target.len() >= 2 {
            prior
                .target
                .iter()
                .for_each(|&(n, s)| policy.record_target(n, s));
        } else {
            calibrate(target, 0, &mut policy, last, draft_max + 1)?;
        }
        let draft = match prior.draft {
            Some(d) => d,
            None => drafter.token_cost(last)?,
        };
        policy.record_draft(draft);
        if policy.never_pays(draft_max) {
            log::info!(
                "speculation: no draft can pay here (target {:.1} ms per pass, {:.1} ms for 2 tokens; {:.1} ms per drafted token): plain decoding",
                policy.costs().target.first().map_or(0.0, |t| t.1 * 1e3),
                policy.costs().target.get(1).map_or(0.0, |t| t.1 * 1e3),
                draft * 1e3
            );
            policy.give_up();
        }
    }
    // One drafted token's own cost, without catching up on the text (what the tune file
    // keeps; the cost model's figure includes catching up, which a long plain streak inflates).
    let mut token_secs = policy.costs().draft;
    if !policy.given_up() {
        if let Some(secs) = drafter.start(prompt)? {
            policy.record_draft(secs);
            token_secs = Some(secs);
        }
    }
    em.prompt_done();
    // A verified batch stays within one micro-batch, so rolling it back never reaches past
    // what a sliding-window ring holds.
    let n_ubatch = target.params().n_ubatch;
    let max_batch = drafter
        .max_batch()
        .map_or(n_ubatch, |d| d.min(n_ubatch))
        .max(2) as usize;
    let drafter_is_free = drafter.is_free();
    let run = Run {
        n_ctx: target.n_ctx(),
        target,
        drafter,
        sampler,
        em,
        policy,
        stats: SpecStats {
            k_hist: vec![0; draft_max + 1],
            ..SpecStats::default()
        },
        n_vocab: logits.len(),
        draft_max,
        draft_min: spec.draft_min.max(1),
        max_batch,
        n_predict: params.n_predict,
    };
    let (stop, timings, mut stats) = run.decode(logits)?;
    if let Some(c) = &mut stats.costs {
        c.draft = token_secs.filter(|_| !drafter_is_free);
    }
    Ok((stop, timings, stats))
}

/// Measures the target's time for verification batches of 1, 2 and 3 or 4 in sequence `slot`
/// (evaluated, then rolled back) so the cost model starts from facts where drafts are short;
/// the user pays this once, before the first token. Longer batches are extrapolated
/// (conservatively: the cost per token falls as batches grow) until steps measure them.
pub(crate) fn calibrate(
    target: &mut Session,
    slot: usize,
    policy: &mut Policy,
    last: u32,
    n: usize,
) -> Result<(), EvalError> {
    let n0 = target.seq_n_past(slot);
    // a hybrid model's recurrent state comes back from a checkpoint (snapshots hold the
    // states after a batch's tokens, not the one before it)
    target.checkpoint_seq(slot)?;
    let room = (target.n_ctx() - n0) as usize;
    let sizes: &[usize] = if n <= 3 { &[1, 2, 3] } else { &[1, 2, 4] };
    for &size in sizes {
        if size > n || size > room {
            continue;
        }
        let batch = vec![last; size];
        let (r, secs) = timed(|| target.eval_verify_seq(slot, &batch).map(|_| ()));
        r?;
        let kept = target.truncate_seq(slot, n0);
        debug_assert_eq!(kept, n0, "a rollback of a few tokens keeps the window");
        policy.record_target(size, secs);
    }
    Ok(())
}

/// What follows a step.
enum Next {
    /// Sample the next token from the logits.
    Sample,
    /// The next token is this one (drawn where a draft was rejected).
    Forced(u32),
    Stop(StopReason),
}

/// One speculative generation after the prompt.
struct Run<'a, 't, F: FnMut(u32) -> bool> {
    target: &'a mut Session,
    drafter: &'a mut dyn Drafter,
    sampler: &'a mut Sampler,
    em: Emitter<'t, F>,
    policy: Policy,
    stats: SpecStats,
    n_ctx: u32,
    n_vocab: usize,
    /// Most tokens drafted per step; shorter drafts than `draft_min` are not verified.
    draft_max: usize,
    draft_min: usize,
    /// Most tokens one verification pass may hold.
    max_batch: usize,
    n_predict: i64,
}

impl<F: FnMut(u32) -> bool> Run<'_, '_, F> {
    /// Steps until a stop; `logits` predicts the first token after the prompt.
    fn decode(
        mut self,
        mut logits: Vec<f32>,
    ) -> Result<(StopReason, Timings, SpecStats), GenerateError> {
        let mut forced = None;
        let stop = loop {
            if self.em.length_reached() {
                break StopReason::Length;
            }
            let id = match forced.take() {
                Some(id) => id,
                None => self.sampler.sample(&logits),
            };
            match self.step(id, &mut logits)? {
                Next::Sample => {}
                Next::Forced(next) => forced = Some(next),
                Next::Stop(reason) => break reason,
            }
        };
        self.stats.target_alone_tps = self.policy.target_alone_tps();
        self.stats.costs = self.policy.measures().then(|| self.policy.costs());
        Ok((stop, self.em.finish(), self.stats))
    }

    /// Hands out `id`, drafts after it and verifies `id` and the draft in one target pass;
    /// on `Next::Sample`, `logits` predicts the next token.
    fn step(&mut self, id: u32, logits: &mut Vec<f32>) -> Result<Next, GenerateError> {
        if let Some(reason) = self.em.emit(self.sampler, id) {
            return Ok(Next::Stop(reason));
        }
        self.push(id);
        if self.target.n_past() + 1 >= self.n_ctx {
            return Ok(Next::Stop(StopReason::ContextFull));
        }
        let k = self.policy.draft_len(self.draft_limit());
        self.stats.k_hist[k.min(self.draft_max)] += 1;
        let n0 = self.target.n_past() as usize;
        let mut draft = self.propose(k)?;
        // a drafted token the output constraint refuses would be rejected: do not verify it
        let valid = self.sampler.valid_prefix(&draft.tokens);
        draft.tokens.truncate(valid);
        draft.dists.truncate(valid);
        self.policy.verified(draft.len());
        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(id);
        batch.extend_from_slice(&draft.tokens);
        let target = &mut *self.target;
        let verify = |t: &mut Session| {
            if batch.len() == 1 {
                t.eval(&batch, Want::Last)
            } else {
                t.eval_verify(&batch)
            }
            .map(<[f32]>::to_vec)
        };
        let (rows, secs) = self.sampler.overlap(|| timed(|| verify(target)));
        let rows = rows?;
        self.policy.record_target(batch.len(), secs);
        self.stats.target_passes += 1;
        if draft.is_empty() {
            *logits = rows;
            return Ok(Next::Sample);
        }
        self.stats.drafted += draft.len();
        self.verify(n0, &draft, &rows, logits)
    }

    /// The most tokens a draft may have this step: within the context, the tokens still
    /// wanted and one micro-batch.
    fn draft_limit(&self) -> usize {
        let room = (self.n_ctx - self.target.n_past() - 1) as usize;
        let remaining = if self.n_predict >= 0 {
            (self.n_predict as usize).saturating_sub(self.em.generated())
        } else {
            usize::MAX
        };
        self.draft_max
            .min(room)
            .min(remaining)
            .min(self.max_batch - 1)
    }

    /// Up to `k` drafted tokens (none for `k = 0`, or where fewer than `draft_min` came).
    fn propose(&mut self, k: usize) -> Result<Draft, EvalError> {
        if k == 0 {
            return Ok(Draft::default());
        }
        let t0 = Instant::now();
        let draft = self.drafter.propose(k, self.n_vocab)?;
        let spent = t0.elapsed();
        self.stats.draft_time += spent;
        if !self.drafter.is_free() {
            // catching up and sampling included; an empty draft still cost its time
            self.policy
                .record_draft(spent.as_secs_f64() / draft.len().max(1) as f64);
        }
        if draft.len() < self.draft_min {
            return Ok(Draft::default());
        }
        Ok(draft)
    }

    /// Checks the draft against the target's rows (row i predicts the token after the
    /// batch's token i), hands out the accepted prefix and rolls both caches back to it. The
    /// batch started at cache position `n0`.
    fn verify(
        &mut self,
        n0: usize,
        draft: &Draft,
        rows: &[f32],
        logits: &mut Vec<f32>,
    ) -> Result<Next, GenerateError> {
        let n_vocab = self.n_vocab;
        let greedy = self.sampler.is_greedy();
        for (i, (&x, q)) in draft.tokens.iter().zip(&draft.dists).enumerate() {
            let row = &rows[i * n_vocab..(i + 1) * n_vocab];
            let p = self.sampler.distribution(row);
            let ok = if greedy {
                p[0].0 == x
            } else {
                let u = self.sampler.uniform();
                accept::accept(&p, q, x, u)
            };
            self.policy.record_acceptance(ok);
            if !ok {
                let next = if greedy {
                    p[0].0
                } else {
                    let r = accept::residual(&p, q);
                    accept::draw(&r, self.sampler.uniform())
                };
                // the cache keeps the batch's tokens before the rejected one
                self.rollback(n0 + 1 + i);
                return Ok(Next::Forced(next));
            }
            self.stats.accepted += 1;
            if let Some(reason) = self.em.emit(self.sampler, x) {
                // as in plain decoding, the last token handed out (or the end-of-generation
                // token) is not left in the cache
                self.rollback(n0 + 1 + i);
                return Ok(Next::Stop(reason));
            }
            self.push(x);
        }
        self.rollback(n0 + 1 + draft.len());
        // every draft accepted: the last row predicts the next token
        let last = draft.len();
        logits.clear();
        logits.extend_from_slice(&rows[last * n_vocab..(last + 1) * n_vocab]);
        Ok(Next::Sample)
    }

    /// `id` was handed out: the drafter's text grows by it. The target's cache holds the
    /// text but its last token (sampled, not evaluated yet).
    fn push(&mut self, id: u32) {
        self.drafter.accept(&[id]);
    }

    /// Keeps the first `len` positions in the target cache, and no more than those in the
    /// drafter's.
    fn rollback(&mut self, len: usize) {
        let kept = self.target.truncate(len as u32);
        debug_assert_eq!(
            kept as usize, len,
            "a rollback within one micro-batch keeps the window"
        );
        self.drafter.rollback(len);
    }
}
