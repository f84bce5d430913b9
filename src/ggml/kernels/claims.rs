//! Work an op's threads share as it goes: each takes a fixed share of the first part of the
//! units (no contention), then the rest one unit at a time from a counter, so that a thread
//! slowed for a moment (a vCPU descheduled, an interrupt, a busier core) is made up for by the
//! others instead of leaving them waiting at the barrier after the op. In a decode step of 8
//! sequences both threads spent 7–8% of their time in that barrier (perf, SmolLM2), with
//! every op splitting its rows evenly and in advance.
//!
//! ggml's custom ops have no barrier of their own to reset a counter before the threads start,
//! so the last thread to finish resets it for the op's next computation: every thread of the
//! op calls [`Claims::run`] exactly once per computation, and the next computation starts only
//! after ggml's barrier behind this one.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Units in the fixed shares, as a fraction of all: the rest are claimed one at a time.
const FIXED: (usize, usize) = (3, 4);

/// One op's counter of claimed units, and of threads done.
#[derive(Default)]
pub struct Claims {
    next: AtomicUsize,
    done: AtomicUsize,
}

impl Claims {
    /// Runs thread `ith` of `nth`'s units of `n`: its fixed share of the first three quarters
    /// as one range, then units of the rest as it claims them. Every thread of the op calls
    /// this once per computation of the op.
    pub fn run(&self, n: usize, ith: usize, nth: usize, mut f: impl FnMut(Range<usize>)) {
        let nth = nth.max(1);
        let fixed = n * FIXED.0 / FIXED.1;
        let mine = fixed * ith / nth..fixed * (ith + 1) / nth;
        if !mine.is_empty() {
            f(mine);
        }
        let rest = n - fixed;
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= rest {
                break;
            }
            f(fixed + i..fixed + i + 1);
        }
        // the last thread through resets the counters for the next computation (which starts
        // after ggml's barrier: nobody claims until then)
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == nth {
            self.next.store(0, Ordering::Relaxed);
            self.done.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Claims;

    /// Every unit is run exactly once per computation, by threads of any count, computation
    /// after computation (the counter resets itself).
    #[test]
    fn every_unit_runs_once_per_computation() {
        let claims = Claims::default();
        for nth in [1, 2, 3, 5] {
            for n in [0, 1, 2, 7, 64, 1000] {
                for _round in 0..3 {
                    let seen: Vec<std::sync::atomic::AtomicUsize> =
                        (0..n).map(|_| Default::default()).collect();
                    std::thread::scope(|s| {
                        for ith in 0..nth {
                            let (claims, seen) = (&claims, &seen);
                            s.spawn(move || {
                                claims.run(n, ith, nth, |r| {
                                    for u in r {
                                        seen[u].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                })
                            });
                        }
                    });
                    assert!(
                        seen.iter()
                            .all(|c| c.load(std::sync::atomic::Ordering::Relaxed) == 1),
                        "{n} units, {nth} threads"
                    );
                }
            }
        }
    }
}
