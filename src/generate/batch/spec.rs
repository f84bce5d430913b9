//! Speculative decoding in the batch engine (the server's `-md` / `--lookup`): while one
//! request is all the engine runs, and it decodes greedily, each decode step drafts after its
//! next token (a draft model or prompt lookup, the one-shot mode's drafters) and verifies the
//! token and the draft in one pass whose rows attend as lone decoding does
//! ([`Session::eval_verify_seq`]), so the text is exactly plain decoding's. The one-shot
//! mode's [`Policy`] picks each draft's length from measured pass times and acceptance (0:
//! plain decoding). With several requests running, decode steps batch them instead: their
//! one pass already shares the weight reads that speculation would share. Sampled requests
//! decode plainly (a speculative sample is distributed as a plain one, but is not the same
//! sample, and the server's answers are lone runs' for a seed).

use std::time::Instant;

use crate::speculative::policy::Policy;
use crate::speculative::{calibrate, exact_cap, timed, Speculator};

use super::{Active, Batch, EvalError, Finished, Session};

/// Speculation's state in a batch.
pub(super) struct Spec {
    cfg: Speculator,
    /// Made on first use, calibrated then.
    policy: Option<Policy>,
    /// The request (admission number) whose text the drafter holds, and that text's length.
    owner: Option<(u64, usize)>,
    /// The longest draft whose verification is exact for greedy decoding.
    cap: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub steps: usize,
}

impl Spec {
    pub(super) fn new(cfg: Speculator, session: &Session) -> Spec {
        let cap = exact_cap(session)
            .unwrap_or(usize::MAX)
            .min(crate::model::VERIFY_ROWS - 1)
            .min(session.params().n_ubatch.max(2) as usize - 1);
        Spec {
            cfg,
            policy: None,
            owner: None,
            cap,
            drafted: 0,
            accepted: 0,
            steps: 0,
        }
    }

    /// The drafter starts over on request `a`'s text: everything before its pending token
    /// read, the pending token after it. Returns the drafter's cost per token, where known.
    fn restart(&mut self, a: &Active) -> Result<Option<f64>, EvalError> {
        let pending = a.pending.expect("a decoding sequence has its next token");
        let mut text = a.req.prompt.clone();
        text.extend_from_slice(&a.tokens[..a.tokens.len() - 1]);
        let secs = self.cfg.drafter.start(&text)?;
        self.cfg.drafter.accept(&[pending]);
        self.owner = Some((a.admitted, text.len() + 1));
        Ok(secs)
    }
}

impl Batch<'_> {
    /// Speculation: drafts in the decode steps of a lone greedy request (see the module).
    pub fn set_speculation(&mut self, cfg: Option<Speculator>) {
        self.spec = cfg.map(|c| Spec::new(c, self.session));
    }

    /// Tokens drafted, accepted, and speculative steps so far.
    pub fn spec_stats(&self) -> Option<(usize, usize, usize)> {
        self.spec.as_ref().map(|s| (s.drafted, s.accepted, s.steps))
    }

    /// The sequence a speculative step would serve: the only request running, decoding
    /// greedily.
    pub(super) fn lone_speculator(&self) -> Option<usize> {
        // weights whose multi-row products are not exact (f16 matrices) verify no draft: plain
        // decoding, as one-shot speculation does there (`speculative::draft_cap`)
        if self.spec.as_ref()?.cap == 0 {
            return None;
        }
        let mut running = self.slots.iter().enumerate().filter(|(_, a)| a.is_some());
        let (slot, a) = running.next()?;
        if running.next().is_some() {
            return None;
        }
        let a = a.as_ref()?;
        (a.pending.is_some() && a.sampler.is_greedy()).then_some(slot)
    }

    /// A decode step of the lone request in `slot` with a draft (or none, where the policy
    /// says plain decoding pays more).
    pub(super) fn spec_step(
        &mut self,
        slot: usize,
        done: &mut Vec<Finished>,
    ) -> Result<(), EvalError> {
        let n_vocab = self.session.model().hp.n_vocab as usize;
        let n_ctx = self.session.n_ctx() as usize;
        let n0 = self.session.seq_n_past(slot) as usize;
        let spec = self.spec.as_mut().expect("speculation is on");
        let a = self.slots[slot].as_mut().expect("a decoding sequence");
        let pending = a.pending.expect("a decoding sequence has its next token");
        // the drafter's text: the prompt and every token handed out (the last not evaluated)
        let text_len = a.req.prompt.len() + a.tokens.len();
        let params = &spec.cfg.params;
        let draft_max = params
            .draft_max
            .min(spec.cap)
            .min(self.session.max_rollback())
            .max(1);
        if spec.policy.is_none() {
            // first use: the drafter's cost per token (from starting it) and the target's pass
            // times for short batches, measured once
            let mut p = Policy::new(draft_max, params.fixed);
            if let Some(s) = spec.restart(a)? {
                p.record_draft(s);
            }
            if p.measures() {
                calibrate(self.session, slot, &mut p, pending, draft_max + 1)?;
            }
            spec.policy = Some(p);
        }
        let synced = matches!(spec.owner, Some((id, len)) if id == a.admitted && len <= text_len);

        // how long a draft may be: within the context, the tokens still wanted, the cap
        let room = n_ctx.saturating_sub(n0 + 1);
        let wanted = if a.req.n_predict >= 0 {
            (a.req.n_predict as usize).saturating_sub(a.timings.generated)
        } else {
            usize::MAX
        };
        let limit = draft_max.min(room).min(wanted);
        let k = spec.policy.as_mut().expect("made above").draft_len(limit);
        let mut draft = Vec::new();
        if k > 0 {
            // the drafter catches up with this request's text only when it drafts: where the
            // policy decodes plainly, a draft model costs nothing (not even reading a prompt)
            if synced {
                // tokens handed out since it last drafted: the prompt's are already in
                let len = spec.owner.map_or(0, |(_, l)| l) - a.req.prompt.len();
                spec.cfg.drafter.accept(&a.tokens[len..]);
                spec.owner = Some((a.admitted, text_len));
            } else if let Some(s) = spec.restart(a)? {
                spec.policy.as_mut().expect("made above").record_draft(s);
            }
            let policy = spec.policy.as_mut().expect("made above");
            let t0 = Instant::now();
            let d = spec.cfg.drafter.propose(k, n_vocab)?;
            if !spec.cfg.drafter.is_free() {
                policy.record_draft(t0.elapsed().as_secs_f64() / d.len().max(1) as f64);
            }
            if d.len() >= spec.cfg.params.draft_min {
                draft = d.tokens;
            }
            draft.truncate(limit);
            let valid = a.sampler.valid_prefix(&draft);
            draft.truncate(valid);
        }
        let policy = spec.policy.as_mut().expect("made above");
        policy.verified(draft.len());
        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(pending);
        batch.extend_from_slice(&draft);
        let (rows, secs) = timed(|| {
            if batch.len() == 1 {
                self.session
                    .decode_step(&[(slot, pending)])
                    .map(<[f32]>::to_vec)
            } else {
                self.session
                    .eval_verify_seq(slot, &batch)
                    .map(<[f32]>::to_vec)
            }
        });
        let rows = rows?;
        policy.record_target(batch.len(), secs);
        spec.steps += 1;
        spec.drafted += draft.len();

        // row i predicts the token after batch[i]: hand tokens out as plain decoding would,
        // keeping the drafted ones it agrees with (they are in the cache already)
        let mut keep = batch.len();
        let mut stop = None;
        for i in 0..batch.len() {
            let row = &rows[i * n_vocab..(i + 1) * n_vocab];
            a.pending = None;
            let room = n0 + 1 + i < n_ctx;
            if let Some(s) = a.advance(self.tok, row, room) {
                keep = i + 1;
                stop = Some(s);
                break;
            }
            let chosen = a.pending;
            if i + 1 < batch.len() {
                let ok = chosen == Some(batch[i + 1]);
                if !spec.cfg.params.fixed {
                    policy.record_acceptance(ok);
                }
                if ok {
                    a.pending = None;
                    spec.accepted += 1;
                    spec.cfg.drafter.accept(&batch[i + 1..i + 2]);
                    continue;
                }
                keep = i + 1;
                break;
            }
        }
        self.decoded += keep;
        self.session.truncate_seq(slot, (n0 + keep) as u32);
        if !draft.is_empty() {
            // the drafter read the draft: back to the text (the accepted tokens are in it)
            spec.cfg.drafter.rollback(n0 + keep);
            if let Some(p) = a.pending {
                spec.cfg.drafter.accept(&[p]);
            }
            spec.owner = Some((a.admitted, a.req.prompt.len() + a.tokens.len()));
        }
        if let Some(s) = stop {
            spec.owner = None;
            done.extend(self.retire(slot, s));
        }
        Ok(())
    }
}
