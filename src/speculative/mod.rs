//! Speculative decoding: a cheap drafter (a smaller model, or prompt lookup) proposes tokens,
//! the target checks them all in one batched pass, and the rule of [`accept`] keeps the output
//! distribution exactly the target's (at temperature 0: the tokens plain decoding gives).
//! Both caches roll back to the accepted prefix. [`cost`] decides each step how many tokens
//! to draft, 0 (plain decoding) included, from measured times and the acceptance rate.

pub mod accept;
pub mod compat;
pub mod cost;
pub mod lookup;

use std::time::{Duration, Instant};

use crate::generate::decode::{check_prompt, Emitter};
use crate::generate::{
    EvalError, GenerateError, GenerateParams, Session, StopReason, Timings, Want,
};
use crate::sampling::{argmax, Sampler};
use crate::tokenizer::Tokenizer;

use cost::CostModel;
use lookup::Lookup;

/// Longest draft at temperature 0 on repacked weights (batch of 3 rows, see `generate`).
pub const GREEDY_REPACKED_MAX_DRAFT: usize = 2;

/// A draft must promise this much more than plain decoding's rate to be tried: the estimates
/// are noisy and a wrong guess costs a wide batch.
const DRAFT_MARGIN: f64 = 1.1;

#[derive(Clone, Debug)]
pub struct SpecParams {
    /// Most tokens drafted per step.
    pub draft_max: usize,
    /// Drafts shorter than this are not verified (plain step instead).
    pub draft_min: usize,
    /// The draft model stops when its top probability falls below this.
    pub p_min: f32,
    /// Always draft `draft_max` (no cost model), for experiments and tests.
    pub fixed: bool,
}

/// A draft model with its own cache; the cache holds `history[..evaluated]`.
pub struct DraftModel {
    pub session: Session,
    pub sampler: Sampler,
    evaluated: usize,
}

impl DraftModel {
    pub fn new(session: Session, sampler: Sampler) -> Self {
        DraftModel {
            session,
            sampler,
            evaluated: 0,
        }
    }
}

pub enum Drafter {
    Model(Box<DraftModel>),
    Lookup(Lookup),
}

/// What speculation did, for the report.
#[derive(Clone, Debug, Default)]
pub struct SpecStats {
    pub drafted: usize,
    pub accepted: usize,
    /// Target evaluations after the prompt.
    pub target_passes: usize,
    /// How often each draft length was chosen (index = k).
    pub k_hist: Vec<usize>,
    /// Target decode rate alone (one token per pass), as measured.
    pub target_alone_tps: Option<f64>,
    pub draft_time: Duration,
}

impl SpecStats {
    pub fn report(&self, generated: usize, decode: Duration) -> String {
        let pct = if self.drafted > 0 {
            100.0 * self.accepted as f64 / self.drafted as f64
        } else {
            0.0
        };
        let per_pass = if self.target_passes > 0 {
            generated.saturating_sub(1) as f64 / self.target_passes as f64
        } else {
            0.0
        };
        let hist: Vec<String> = self
            .k_hist
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        let tps = generated.saturating_sub(1) as f64 / decode.as_secs_f64().max(1e-9);
        format!(
            "speculation: drafted {} accepted {} ({pct:.1}%) | {per_pass:.2} tokens per target pass ({} passes) | draft length chosen {{{}}} | decode {tps:.1} tokens/s, target alone {}",
            self.drafted,
            self.accepted,
            self.target_passes,
            hist.join(" "),
            self.target_alone_tps
                .map_or("not measured".to_string(), |t| format!("{t:.1} tokens/s")),
        )
    }

    pub fn json(&self, generated: usize, decode: Duration) -> serde_json::Value {
        serde_json::json!({
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance": if self.drafted > 0 { self.accepted as f64 / self.drafted as f64 } else { 0.0 },
            "target_passes": self.target_passes,
            "tokens_per_pass": if self.target_passes > 0 {
                generated.saturating_sub(1) as f64 / self.target_passes as f64 } else { 0.0 },
            "k_hist": self.k_hist,
            "decode_tps": generated.saturating_sub(1) as f64 / decode.as_secs_f64().max(1e-9),
            "target_alone_tps": self.target_alone_tps,
        })
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed().as_secs_f64())
}

/// Measures the target's time for batches of 1, 2 and 3 or 4 (evaluated, then rolled back) so the
/// cost model starts from facts where drafts are short; the user pays this once, before the
/// first token. Longer batches are extrapolated (conservatively: the cost per token falls as
/// batches grow) until steps measure them.
fn calibrate(
    target: &mut Session,
    cost: &mut CostModel,
    last: u32,
    n: usize,
) -> Result<(), EvalError> {
    let n0 = target.n_past();
    let room = (target.n_ctx() - n0) as usize;
    let sizes: &[usize] = if n <= 3 { &[1, 2, 3] } else { &[1, 2, 4] };
    for &size in sizes {
        if size > n || size > room {
            continue;
        }
        let batch = vec![last; size];
        let (r, secs) = timed(|| target.eval(&batch, Want::All).map(|_| ()));
        r?;
        let kept = target.truncate(n0);
        debug_assert_eq!(kept, n0, "a rollback of a few tokens keeps the window");
        cost.record_target(size, secs);
    }
    Ok(())
}

/// Speculative generation; the counterpart of [`crate::generate::generate`] with the same
/// stop rules and callback.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    target: &mut Session,
    drafter: &mut Drafter,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    prompt: &[u32],
    params: GenerateParams,
    spec: &SpecParams,
    on_token: impl FnMut(u32) -> bool,
) -> Result<(StopReason, Timings, SpecStats), GenerateError> {
    check_prompt(target, prompt)?;
    let n_ctx = target.n_ctx();
    // ggml's repacked kernels multiply groups of 4 rows differently from single rows (gemm
    // vs gemv): at temperature 0 a verification batch of more than 3 could pick another
    // argmax than plain decoding in a near-tie. Up to 3 rows every row takes the single-row
    // path, so the text stays plain decoding's bit for bit; --no-repack lifts the cap.
    let exact_cap = if sampler.is_greedy() && target.model().weights.placements.n_repacked > 0 {
        GREEDY_REPACKED_MAX_DRAFT
    } else {
        usize::MAX
    };
    let draft_max = spec.draft_max.max(1).min(exact_cap);
    let mut stats = SpecStats {
        k_hist: vec![0; draft_max + 1],
        ..SpecStats::default()
    };
    for &id in prompt {
        sampler.accept(id);
    }
    let mut em = Emitter::new(tok, params, on_token, prompt.len());
    // The prompt and the tokens handed out; the target's cache holds all but the last (sampled,
    // not evaluated yet). Sessions start empty here.
    debug_assert_eq!(target.n_past(), 0, "speculation starts from an empty cache");
    let mut history = prompt.to_vec();
    let mut logits = target.eval(prompt, Want::Last)?.to_vec();
    let mut cost = CostModel::new(draft_max, 0.8);
    match drafter {
        Drafter::Lookup(l) => {
            l.extend(&history);
            cost.record_draft(0.0);
        }
        Drafter::Model(d) => {
            // the draft reads the prompt now, then one token is timed and rolled back
            d.session.clear();
            d.session.eval(&history, Want::Last)?;
            d.evaluated = history.len();
            let last = *history.last().expect("non-empty prompt");
            if d.session.n_past() < d.session.n_ctx() {
                let (r, secs) = timed(|| d.session.eval(&[last], Want::Last).map(|_| ()));
                r?;
                d.session.truncate(d.evaluated as u32);
                cost.record_draft(secs);
            }
        }
    }
    if !spec.fixed {
        calibrate(
            target,
            &mut cost,
            *prompt.last().expect("non-empty"),
            draft_max + 1,
        )?;
    }
    em.prompt_done();

    let mut forced: Option<u32> = None;
    let max_batch = match drafter {
        Drafter::Model(d) => d.session.params().n_ubatch.min(target.params().n_ubatch),
        Drafter::Lookup(_) => target.params().n_ubatch,
    }
    .max(2) as usize;
    let mut plain_streak = 0usize;
    let mut probe_after = 16usize;
    let stop = 'gen: loop {
        if em.length_reached() {
            break StopReason::Length;
        }
        let id = match forced.take() {
            Some(id) => id,
            None => sampler.sample(&logits),
        };
        if let Some(reason) = em.emit(sampler, id) {
            break reason;
        }
        history.push(id);
        if target.n_past() + 1 >= n_ctx {
            break StopReason::ContextFull;
        }
        if let Drafter::Lookup(l) = drafter {
            l.extend(&[id]);
        }
        // choose the draft length
        let room = (n_ctx - target.n_past() - 1) as usize;
        let remaining = if params.n_predict >= 0 {
            (params.n_predict as usize).saturating_sub(em.generated())
        } else {
            usize::MAX
        };
        // A verified batch stays within one micro-batch, so rolling it back never reaches
        // past what a sliding-window ring holds.
        let limit = draft_max.min(room).min(remaining).min(max_batch - 1);
        let mut k = if spec.fixed {
            limit
        } else {
            cost.best_k_at(limit, cost.alpha(), DRAFT_MARGIN)
        };
        if k == 0 && !spec.fixed && limit > 0 && plain_streak >= probe_after {
            // Probe now and then, so a pessimistic acceptance estimate can recover; less and
            // less often while probes fail, never where even optimistic acceptance would not pay.
            if cost.worth_probing(limit, 1.2) {
                k = limit.min(2);
            }
            probe_after *= 2;
        }
        stats.k_hist[k.min(draft_max)] += 1;
        let n0 = target.n_past() as usize;
        let (drafts, qs) = if k > 0 {
            let t0 = Instant::now();
            let d = draft(drafter, &history, k, spec.p_min, logits.len())?;
            let spent = t0.elapsed();
            stats.draft_time += spent;
            if matches!(drafter, Drafter::Model(_)) {
                // catching up and sampling included; an empty draft still cost its time
                cost.record_draft(spent.as_secs_f64() / d.0.len().max(1) as f64);
            }
            d
        } else {
            (Vec::new(), Vec::new())
        };
        let (drafts, qs) = if drafts.len() < spec.draft_min.max(1) {
            (Vec::new(), Vec::new())
        } else {
            (drafts, qs)
        };
        plain_streak = if drafts.is_empty() {
            plain_streak + 1
        } else {
            0
        };
        let mut batch = Vec::with_capacity(drafts.len() + 1);
        batch.push(id);
        batch.extend_from_slice(&drafts);
        let want = if drafts.is_empty() {
            Want::Last
        } else {
            Want::All
        };
        let (rows, secs) = timed(|| target.eval(&batch, want).map(<[f32]>::to_vec));
        let rows = rows?;
        cost.record_target(batch.len(), secs);
        stats.target_passes += 1;
        let n_vocab = logits.len();
        if drafts.is_empty() {
            logits = rows;
            continue;
        }
        stats.drafted += drafts.len();
        // verify: row i holds the target's prediction after batch[i]
        let mut n_accepted = 0;
        for (i, (&x, q)) in drafts.iter().zip(&qs).enumerate() {
            let row = &rows[i * n_vocab..(i + 1) * n_vocab];
            let p = sampler.distribution(row);
            let ok = if sampler.is_greedy() {
                p[0].0 == x
            } else {
                let u = sampler.uniform();
                accept::accept(&p, q, x, u)
            };
            cost.record_acceptance(ok);
            if !ok {
                let next = if sampler.is_greedy() {
                    p[0].0
                } else {
                    let r = accept::residual(&p, q);
                    accept::draw(&r, sampler.uniform())
                };
                forced = Some(next);
                break;
            }
            n_accepted += 1;
            stats.accepted += 1;
            if let Some(reason) = em.emit(sampler, x) {
                // as in plain decoding, the last token handed out (or the end-of-generation
                // token) is not left in the cache
                rollback(target, drafter, n0 + n_accepted);
                break 'gen reason;
            }
            history.push(x);
            if let Drafter::Lookup(l) = drafter {
                l.extend(&[x]);
            }
        }
        rollback(target, drafter, n0 + 1 + n_accepted);
        if forced.is_none() {
            // every draft accepted: the last row predicts the next token
            let last = drafts.len();
            logits.clear();
            logits.extend_from_slice(&rows[last * n_vocab..(last + 1) * n_vocab]);
        }
    };
    stats.target_alone_tps = cost.target_secs(1).map(|t| 1.0 / t);
    Ok((stop, em.finish(), stats))
}

/// Keeps the first `len` positions in the target cache, and no more than those in the
/// draft's (the lookup history is kept in step by its callers).
fn rollback(target: &mut Session, drafter: &mut Drafter, len: usize) {
    let kept = target.truncate(len as u32);
    debug_assert_eq!(
        kept as usize, len,
        "a rollback within one micro-batch keeps the window"
    );
    match drafter {
        Drafter::Model(d) => {
            d.evaluated = d.session.truncate(d.evaluated.min(len) as u32) as usize;
        }
        Drafter::Lookup(l) => l.truncate(len.min(l.len())),
    }
}

type Draft = (Vec<u32>, Vec<Vec<(u32, f32)>>);

/// Up to `k` drafted tokens after `history`, each with the distribution it was drawn from.
fn draft(
    drafter: &mut Drafter,
    history: &[u32],
    k: usize,
    p_min: f32,
    n_vocab_target: usize,
) -> Result<Draft, EvalError> {
    match drafter {
        Drafter::Lookup(l) => {
            let d: Vec<u32> = l
                .draft(k)
                .into_iter()
                .take_while(|&t| (t as usize) < n_vocab_target)
                .collect();
            let qs = d.iter().map(|&t| vec![(t, 1.0)]).collect();
            Ok((d, qs))
        }
        Drafter::Model(m) => {
            let room = (m.session.n_ctx() - m.session.n_past()) as usize;
            let pending = &history[m.evaluated.min(history.len())..];
            if pending.len() + k > room {
                return Ok((Vec::new(), Vec::new()));
            }
            let mut logits = m.session.eval(pending, Want::Last)?.to_vec();
            m.evaluated = history.len();
            let (mut out, mut qs) = (Vec::with_capacity(k), Vec::with_capacity(k));
            for i in 0..k {
                let (x, q, top) = if m.sampler.is_greedy() {
                    let x = argmax(&logits);
                    (x, vec![(x, 1.0)], top_prob(&logits, x))
                } else {
                    let q = m.sampler.distribution(&logits);
                    let top = q.iter().map(|&(_, p)| p).fold(0.0, f32::max);
                    let x = accept::draw(&q, m.sampler.uniform());
                    (x, q, top)
                };
                if top < p_min || x as usize >= n_vocab_target {
                    break;
                }
                out.push(x);
                qs.push(q);
                if i + 1 < k {
                    logits = m.session.eval(&[x], Want::Last)?.to_vec();
                    m.evaluated += 1;
                }
            }
            Ok((out, qs))
        }
    }
}

/// Softmax probability of token `x`.
fn top_prob(logits: &[f32], x: u32) -> f32 {
    let max = logits[x as usize];
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    (1.0 / sum) as f32
}
