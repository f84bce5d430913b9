//! The cost model that picks the draft length: expected tokens per second of a speculative
//! step against plain decoding, from measured times and the acceptance rate.
//!
//! A step with `k` drafted tokens costs `k · t_draft + t_target(k + 1)` and yields, when each
//! drafted token is accepted with probability `α` independently, `1 + α + … + α^k` tokens (the
//! accepted prefix plus the target's own token). `k = 0` is plain decoding: one token per
//! `t_target(1)`. Target times per batch size are exponential moving averages of measurements;
//! sizes not measured yet are interpolated linearly from the measured ones.

/// Weight of a new measurement in the moving averages.
const EMA: f64 = 0.3;

#[derive(Clone, Debug)]
pub struct CostModel {
    /// Measured target time (seconds) per batch size; index = batch size.
    target: Vec<Option<f64>>,
    /// Seconds per drafted token (0 for prompt lookup).
    draft: Option<f64>,
    /// Probability that a drafted token is accepted.
    alpha: f64,
    max_k: usize,
}

fn ema(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(o) => o + EMA * (new - o),
        None => new,
    }
}

impl CostModel {
    /// `alpha` is the prior acceptance rate, `max_k` the largest draft.
    pub fn new(max_k: usize, alpha: f64) -> Self {
        CostModel {
            target: vec![None; max_k + 2],
            draft: None,
            alpha,
            max_k,
        }
    }

    pub fn record_target(&mut self, batch: usize, secs: f64) {
        if batch >= 1 && batch < self.target.len() {
            self.target[batch] = Some(ema(self.target[batch], secs));
        }
    }

    pub fn record_draft(&mut self, secs_per_token: f64) {
        self.draft = Some(ema(self.draft, secs_per_token));
    }

    /// One drafted token's verdict.
    pub fn record_acceptance(&mut self, accepted: bool) {
        let x = if accepted { 1.0 } else { 0.0 };
        self.alpha += 0.1 * (x - self.alpha);
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn draft_secs(&self) -> Option<f64> {
        self.draft
    }

    /// Target seconds for a batch of `n`: measured, or interpolated/extrapolated linearly
    /// from the measured sizes; `None` before any measurement.
    pub fn target_secs(&self, n: usize) -> Option<f64> {
        if let Some(Some(t)) = self.target.get(n) {
            return Some(*t);
        }
        let known: Vec<(f64, f64)> = self
            .target
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i as f64, t)))
            .collect();
        let x = n as f64;
        match known.as_slice() {
            [] => None,
            [(_, t)] => Some(*t * x.max(1.0)),
            _ => {
                let below = known.iter().rev().find(|(i, _)| *i <= x);
                let above = known.iter().find(|(i, _)| *i >= x);
                let (a, b) = match (below, above) {
                    (Some(a), Some(b)) => (*a, *b),
                    (None, _) => (known[0], known[1]),
                    (_, None) => (known[known.len() - 2], known[known.len() - 1]),
                };
                let slope = (b.1 - a.1) / (b.0 - a.0);
                Some((a.1 + slope * (x - a.0)).max(a.1.min(b.1)))
            }
        }
    }

    /// The target times measured so far (moving averages), by batch size.
    pub fn measured(&self) -> Vec<(usize, f64)> {
        (self.target.iter().enumerate())
            .filter_map(|(n, t)| t.map(|t| (n, t)))
            .collect()
    }

    /// Expected tokens per second with `k` drafted tokens at acceptance `alpha`.
    pub fn rate(&self, k: usize, alpha: f64) -> Option<f64> {
        let t = self.target_secs(k + 1)? + k as f64 * self.draft.unwrap_or(0.0);
        let tokens: f64 = (0..=k).map(|i| alpha.powi(i as i32)).sum();
        Some(tokens / t)
    }

    /// The draft length with the highest expected rate (0 = plain decoding), capped at
    /// `limit`. Without target measurements, plain decoding.
    pub fn best_k(&self, limit: usize) -> usize {
        self.best_k_at(limit, self.alpha, 1.02)
    }

    /// The best draft length at acceptance `alpha`, where a draft must beat plain decoding's
    /// expected rate by the factor `margin`.
    pub fn best_k_at(&self, limit: usize, alpha: f64, margin: f64) -> usize {
        let limit = limit.min(self.max_k);
        let plain = match self.rate(0, alpha) {
            Some(r) => r,
            None => return 0,
        };
        let mut best = (0, plain * margin);
        for k in 1..=limit {
            if let Some(r) = self.rate(k, alpha) {
                if r > best.1 {
                    best = (k, r);
                }
            }
        }
        best.0
    }

    /// Whether probing is worth it: some draft beats plain decoding by `margin` at an
    /// optimistic acceptance rate (the estimate plus 0.2, at most 0.95).
    pub fn worth_probing(&self, limit: usize, margin: f64) -> bool {
        self.best_k_at(limit, (self.alpha + 0.2).min(0.95), margin) > 0
    }
}

/// Pass times known before a generation (kept from an earlier run, see
/// `crate::model::tune::pass_times`), or measured during one: the target's seconds per pass by
/// batch size, the drafter's seconds per drafted token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Costs {
    pub target: Vec<(usize, f64)>,
    pub draft: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's figures for Qwen2.5-Coder 1.5B on this machine: pp1 25.8, pp5 44.8, pp9
    /// 49.2 t/s; the 0.5B draft decodes at about 48 t/s.
    fn qwen15() -> CostModel {
        let mut m = CostModel::new(8, 0.9);
        m.record_target(1, 1.0 / 25.8);
        m.record_target(5, 5.0 / 44.8);
        m.record_target(9, 9.0 / 49.2);
        m
    }

    #[test]
    fn a_slow_draft_model_loses_to_plain_decoding() {
        let mut m = qwen15();
        m.record_draft(1.0 / 48.0);
        assert_eq!(m.best_k(8), 0);
        assert!(!m.worth_probing(8, 1.2));
    }

    #[test]
    fn free_drafts_with_good_acceptance_win() {
        let mut m = qwen15();
        m.record_draft(0.0);
        let k = m.best_k(8);
        assert!(k >= 3, "k = {k}");
        assert!(m.rate(k, 0.9).unwrap() > 1.3 * m.rate(0, 0.9).unwrap());
        // with poor acceptance even free drafts are not worth a wider batch
        for _ in 0..60 {
            m.record_acceptance(false);
        }
        assert_eq!(m.best_k(8), 0);
    }

    #[test]
    fn interpolation_between_and_beyond_measured_sizes() {
        let m = qwen15();
        let (t1, t5) = (m.target_secs(1).unwrap(), m.target_secs(5).unwrap());
        let t3 = m.target_secs(3).unwrap();
        assert!((t3 - (t1 + t5) / 2.0).abs() < 1e-12);
        assert!(m.target_secs(10).unwrap() > m.target_secs(9).unwrap());
        let mut only_one = CostModel::new(4, 0.8);
        assert_eq!(only_one.target_secs(3), None);
        only_one.record_target(1, 0.01);
        assert!((only_one.target_secs(3).unwrap() - 0.03).abs() < 1e-12);
    }
}
