//! Repetition / frequency / presence penalties over a sliding window of the
//! most recently accepted tokens (llama.cpp's `penalties` sampler).

use std::collections::{HashMap, VecDeque};

/// Token history and per-token counts inside the penalty window.
#[derive(Clone, Debug, Default)]
pub struct Penalties {
    /// Window length; `None` = unbounded (every accepted token counts).
    window: Option<usize>,
    history: VecDeque<u32>,
    counts: HashMap<u32, u32>,
}

impl Penalties {
    /// `last_n > 0`: window of that many tokens; `0`: no tokens are recorded
    /// (penalties disabled); `< 0`: unbounded window.
    pub fn new(last_n: i32) -> Self {
        let window = usize::try_from(last_n).ok();
        Penalties {
            window,
            history: VecDeque::with_capacity(window.unwrap_or(0).min(1 << 16)),
            counts: HashMap::new(),
        }
    }

    /// Whether penalties change anything for these parameters
    /// (llama.cpp: disabled when last_n == 0 or all penalties are neutral).
    pub fn active(last_n: i32, repeat: f32, freq: f32, present: f32) -> bool {
        last_n != 0 && !(repeat == 1.0 && freq == 0.0 && present == 0.0)
    }

    pub fn accept(&mut self, token: u32) {
        match self.window {
            Some(0) => {}
            Some(n) => {
                if self.history.len() >= n {
                    if let Some(old) = self.history.pop_front() {
                        self.decrement(old);
                    }
                }
                self.history.push_back(token);
                *self.counts.entry(token).or_insert(0) += 1;
            }
            None => *self.counts.entry(token).or_insert(0) += 1,
        }
    }

    fn decrement(&mut self, token: u32) {
        if let Some(c) = self.counts.get_mut(&token) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&token);
            }
        }
    }

    pub fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
    }

    /// Number of occurrences of `token` inside the window.
    #[cfg(test)]
    pub fn count(&self, token: u32) -> u32 {
        self.counts.get(&token).copied().unwrap_or(0)
    }

    /// Applies the penalties in place to a full logits row indexed by token
    /// id. Tokens outside the row are ignored. Each token is touched
    /// independently, so the (unordered) map iteration is deterministic.
    pub fn apply(&self, logits: &mut [f32], repeat: f32, freq: f32, present: f32) {
        for (&token, &count) in &self.counts {
            if let Some(l) = logits.get_mut(token as usize) {
                *l = penalize(*l, count, repeat, freq, present);
            }
        }
    }
}

/// llama.cpp's rule: a positive logit is divided by the repeat penalty, a
/// non-positive one multiplied; then `count*freq + present` is subtracted.
#[inline]
pub fn penalize(logit: f32, count: u32, repeat: f32, freq: f32, present: f32) -> f32 {
    let l = if logit <= 0.0 {
        logit * repeat
    } else {
        logit / repeat
    };
    let present_term = if count > 0 { present } else { 0.0 };
    l - (count as f32 * freq + present_term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let mut p = Penalties::new(3);
        for t in [1, 2, 1, 3] {
            p.accept(t);
        }
        // window is now [2, 1, 3]
        assert_eq!(p.count(1), 1);
        assert_eq!(p.count(2), 1);
        assert_eq!(p.count(3), 1);
        p.accept(4); // [1, 3, 4]
        assert_eq!(p.count(2), 0);
        p.reset();
        assert_eq!(p.count(1), 0);
    }

    #[test]
    fn zero_window_records_nothing() {
        let mut p = Penalties::new(0);
        p.accept(1);
        assert_eq!(p.count(1), 0);
        let mut u = Penalties::new(-1);
        for _ in 0..1000 {
            u.accept(7);
        }
        assert_eq!(u.count(7), 1000);
    }

    #[test]
    fn penalty_rule() {
        assert_eq!(penalize(2.0, 1, 2.0, 0.0, 0.0), 1.0);
        assert_eq!(penalize(-2.0, 1, 2.0, 0.0, 0.0), -4.0);
        assert_eq!(penalize(0.0, 1, 2.0, 0.0, 0.0), 0.0);
        assert_eq!(penalize(1.0, 3, 1.0, 0.5, 0.25), 1.0 - 1.75);
    }
}
