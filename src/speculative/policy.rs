//! How many tokens to draft each step: the [`CostModel`]'s best length from measured times
//! and the acceptance rate, plus probing (after a streak of plain steps, try a short draft
//! now and then, so a pessimistic acceptance estimate can recover). No ggml here: the loop
//! feeds in what it measured.

use super::cost::CostModel;

/// A draft must promise this much more than plain decoding's rate to be tried: the estimates
/// are noisy and a wrong guess costs a wide batch.
const DRAFT_MARGIN: f64 = 1.1;
/// A probe must promise this much more than plain decoding at optimistic acceptance.
const PROBE_MARGIN: f64 = 1.2;
/// Acceptance assumed before any draft is verified.
const PRIOR_ALPHA: f64 = 0.8;
/// Plain steps in a row before the first probe; the wait doubles after each.
const FIRST_PROBE_AFTER: usize = 16;
/// Longest probe.
const PROBE_LEN: usize = 2;
/// The best acceptance rate a drafter can be hoped to reach: where a draft would not pay even
/// at this rate, it never will.
const BEST_ALPHA: f64 = 0.95;

#[derive(Clone, Debug)]
pub struct Policy {
    cost: CostModel,
    /// Always draft the most that fits (no cost model), for experiments and tests.
    fixed: bool,
    /// Steps in a row that verified no draft.
    plain_streak: usize,
    /// Drafting was found unable to pay: every step is plain.
    given_up: bool,
    /// The streak at which the next probe is considered.
    probe_after: usize,
}

impl Policy {
    /// Drafts of at most `draft_max` tokens; `fixed`: always the longest that fits.
    pub fn new(draft_max: usize, fixed: bool) -> Self {
        Policy {
            cost: CostModel::new(draft_max, PRIOR_ALPHA),
            fixed,
            plain_streak: 0,
            given_up: false,
            probe_after: FIRST_PROBE_AFTER,
        }
    }

    /// Whether no draft of at most `limit` tokens can beat plain decoding by the margin a
    /// draft needs, even at the best acceptance rate, at the times measured (false before the
    /// target's times and the draft's are known).
    pub fn never_pays(&self, limit: usize) -> bool {
        !self.fixed
            && self.cost.draft_secs().is_some()
            && self.cost.target_secs(2).is_some()
            && self.cost.best_k_at(limit, BEST_ALPHA, DRAFT_MARGIN) == 0
    }

    /// Every step from now on decodes plainly.
    pub fn give_up(&mut self) {
        self.given_up = true;
    }

    pub fn given_up(&self) -> bool {
        self.given_up
    }

    /// The target's and the drafter's times as measured so far.
    pub fn costs(&self) -> super::cost::Costs {
        super::cost::Costs {
            target: self.cost.measured(),
            draft: self.cost.draft_secs(),
        }
    }

    /// Whether the cost model decides (else every step drafts the most that fits): only then
    /// are the target's batch times worth calibrating.
    pub fn measures(&self) -> bool {
        !self.fixed
    }

    /// The draft length for a step where at most `limit` tokens fit (0 = plain decoding).
    pub fn draft_len(&mut self, limit: usize) -> usize {
        if self.given_up {
            return 0;
        }
        if self.fixed {
            return limit;
        }
        let mut k = self.cost.best_k_at(limit, self.cost.alpha(), DRAFT_MARGIN);
        if k == 0 && limit > 0 && self.plain_streak >= self.probe_after {
            // less and less often while probes fail, never where even optimistic acceptance
            // would not pay
            if self.cost.worth_probing(limit, PROBE_MARGIN) {
                k = limit.min(PROBE_LEN);
            }
            self.probe_after *= 2;
        }
        k
    }

    /// The step verified `n` drafted tokens (0: it decoded one token plainly).
    pub fn verified(&mut self, n: usize) {
        self.plain_streak = if n == 0 { self.plain_streak + 1 } else { 0 };
    }

    /// The target took `secs` for a batch of `batch` tokens.
    pub fn record_target(&mut self, batch: usize, secs: f64) {
        self.cost.record_target(batch, secs);
    }

    /// A drafted token cost `secs`.
    pub fn record_draft(&mut self, secs: f64) {
        self.cost.record_draft(secs);
    }

    /// One drafted token's verdict.
    pub fn record_acceptance(&mut self, accepted: bool) {
        self.cost.record_acceptance(accepted);
    }

    /// The target's decode rate alone (one token per pass), as measured.
    pub fn target_alone_tps(&self) -> Option<f64> {
        self.cost.target_secs(1).map(|t| 1.0 / t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_that_cannot_pay_is_given_up() {
        let mut p = Policy::new(2, false);
        assert!(!p.never_pays(2), "nothing measured yet");
        // a verification batch of 3 costs 2.5 passes, a drafted token half a pass
        p.record_target(1, 0.040);
        p.record_target(2, 0.070);
        p.record_target(3, 0.100);
        p.record_draft(0.020);
        assert!(p.never_pays(2));
        p.give_up();
        assert_eq!(p.draft_len(2), 0);
        // free drafts and cheap batches pay
        let mut q = cheap_batches();
        assert!(!q.never_pays(4));
        assert_eq!(q.costs().target.len(), 5);
        q.give_up();
        assert_eq!(q.draft_len(4), 0);
    }

    #[test]
    fn fixed_drafts_the_most_that_fits() {
        let mut p = Policy::new(8, true);
        assert!(!p.measures());
        assert_eq!(p.draft_len(5), 5);
        assert_eq!(p.draft_len(0), 0);
    }

    #[test]
    fn no_measurements_mean_plain_decoding() {
        let mut p = Policy::new(8, false);
        assert_eq!(p.draft_len(8), 0);
    }

    /// Each token in a batch adds a tenth of one token's time; drafts are free.
    fn cheap_batches() -> Policy {
        let mut p = Policy::new(4, false);
        for n in 1..=5 {
            p.record_target(n, 0.010 + 0.001 * (n - 1) as f64);
        }
        p.record_draft(0.0);
        p
    }

    #[test]
    fn cheap_verification_drafts_and_rejections_stop_it() {
        let mut p = cheap_batches();
        assert_eq!(p.draft_len(4), 4);
        assert_eq!(p.draft_len(2), 2);
        for _ in 0..40 {
            p.record_acceptance(false);
        }
        assert_eq!(p.draft_len(4), 0);
    }

    #[test]
    fn probes_after_a_plain_streak_less_and_less_often() {
        let mut p = cheap_batches();
        // acceptance low enough that no draft pays, high enough that an optimistic one would
        for _ in 0..15 {
            p.record_acceptance(false);
        }
        assert_eq!(p.draft_len(4), 0);
        let mut probes = Vec::new();
        for step in 0..100 {
            let k = p.draft_len(4);
            if k > 0 {
                probes.push(step);
            }
            p.verified(0);
        }
        assert_eq!(
            probes,
            [16, 32, 64],
            "each probe drafted nothing; the wait doubles"
        );
        // a draft verified resets the streak
        p.verified(2);
        assert_eq!(p.draft_len(4), 0);
    }
}
