//! KV cell bookkeeping for one sequence, pure Rust (unit-tested without ggml).
//!
//! Position p of a full-attention layer lives in cell p: appending fills the next cells,
//! truncating (speculative rollback, re-use of a common prefix) forgets the tail.
//!
//! Sliding-window layers only ever look `window` positions back, so they may keep a smaller
//! ring of cells instead, position p in cell `p % ring` (llama.cpp's SWA cache does the same
//! job). The ring holds `window + n_ubatch` cells or more, so a micro-batch never overwrites
//! a position that one of its own tokens still attends to. What the ring costs: positions
//! older than the ring are gone, so truncating far back is only possible down to zero
//! ([`Cells::truncate`] says how much it kept).

/// Not enough free cells for a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the context is full: {used} of {size} positions used, {wanted} more requested")]
pub struct ContextFull {
    pub used: u32,
    pub size: u32,
    pub wanted: u32,
}

#[derive(Clone, Debug)]
pub struct Cells {
    size: u32,
    used: u32,
    swa: Option<SwaCells>,
}

/// The sliding-window layers' side of the bookkeeping.
#[derive(Clone, Copy, Debug)]
struct SwaCells {
    window: u32,
    /// Cells of the local layers (== size when they are not a ring).
    ring: u32,
    /// Lowest position whose local-layer K/V rows are still intact: older ones were
    /// overwritten in the ring, or never restored from a state file.
    lo: u32,
}

/// llama.cpp pads the attended KV length to a multiple of 256 so graphs keep their shape.
pub const KV_PAD: u32 = 256;

/// Cells a ring of sliding-window layers needs: the window plus one micro-batch (at least
/// 64 tokens, room for short rollbacks such as a speculative step's), padded to [`KV_PAD`];
/// never more than the context (then it is no ring at all).
pub fn ring_cells(n_ctx: u32, window: u32, n_ubatch: u32) -> u32 {
    (window.saturating_add(n_ubatch.max(64)))
        .div_ceil(KV_PAD)
        .saturating_mul(KV_PAD)
        .min(n_ctx)
}

impl Cells {
    pub fn new(size: u32) -> Self {
        Cells {
            size,
            used: 0,
            swa: None,
        }
    }

    /// Bookkeeping for a model with sliding-window layers (window `window`) whose cache holds
    /// `ring` cells (at most `size`, and at least `window` + the largest micro-batch when less).
    pub fn with_window(size: u32, window: u32, ring: u32) -> Self {
        Cells {
            size,
            used: 0,
            swa: Some(SwaCells {
                window,
                ring: ring.min(size),
                lo: 0,
            }),
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Cells of the sliding-window layers (the size when there is no ring or no window).
    pub fn ring(&self) -> u32 {
        self.swa.map_or(self.size, |s| s.ring)
    }

    /// The sliding window, if the model has one.
    pub fn window(&self) -> Option<u32> {
        self.swa.map(|s| s.window)
    }

    /// Number of positions stored (the next position to write).
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Claim cells for `n` new tokens; returns the first cell (= first position).
    pub fn append(&mut self, n: u32) -> Result<u32, ContextFull> {
        match self.used.checked_add(n) {
            Some(end) if end <= self.size => {
                let first = self.used;
                self.used = end;
                if let Some(s) = &mut self.swa {
                    s.lo = s.lo.max(end.saturating_sub(s.ring));
                }
                Ok(first)
            }
            _ => Err(ContextFull {
                used: self.used,
                size: self.size,
                wanted: n,
            }),
        }
    }

    /// Forget every position at or after `n`; returns how many positions are kept. That is
    /// `min(n, used)` unless the local layers no longer hold the window before `n` (a ring
    /// that has moved on, or a restored state that did not include it): then nothing is kept
    /// and the caller evaluates from the start.
    pub fn truncate(&mut self, n: u32) -> u32 {
        let n = self.used.min(n);
        self.used = match self.swa {
            Some(s) if n.saturating_sub(s.window) < s.lo => 0,
            _ => n,
        };
        if self.used == 0 {
            self.clear();
        }
        self.used
    }

    pub fn clear(&mut self) {
        self.used = 0;
        if let Some(s) = &mut self.swa {
            s.lo = 0;
        }
    }

    /// Mark positions `0..n` as filled, the local layers holding only the positions from
    /// [`Cells::window_start`]`(n)` on (what a state file restores).
    pub fn restore(&mut self, n: u32) {
        debug_assert!(n <= self.size);
        self.used = n.min(self.size);
        let lo = self.window_start(self.used);
        if let Some(s) = &mut self.swa {
            s.lo = lo;
        }
    }

    /// The first position a token at position `n` (or later) may attend to in the local
    /// layers: what a state file of `n` positions must keep of them. 0 without a window.
    pub fn window_start(&self, n: u32) -> u32 {
        self.swa.map_or(0, |s| n.saturating_sub(s.window))
    }

    /// Whether the local layers still hold positions `window_start(n)..n`.
    pub fn holds_window(&self, n: u32) -> bool {
        n <= self.used && self.swa.is_none_or(|s| self.window_start(n) >= s.lo)
    }

    /// The cell of position `p` in the local layers.
    pub fn ring_cell(&self, p: u32) -> u32 {
        p % self.ring()
    }

    /// How many cells a graph attends to when `used` cells are filled (after the batch was
    /// appended): padded to [`KV_PAD`], at most the cache size.
    pub fn n_kv(&self) -> u32 {
        let padded = self.used.div_ceil(KV_PAD).max(1) * KV_PAD;
        padded.min(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_truncate_and_full() {
        let mut c = Cells::new(512);
        assert_eq!(c.append(10), Ok(0));
        assert_eq!(c.append(5), Ok(10));
        assert_eq!(c.used(), 15);
        assert_eq!(c.truncate(12), 12);
        assert_eq!(c.append(1), Ok(12));
        assert_eq!(
            c.append(600),
            Err(ContextFull {
                used: 13,
                size: 512,
                wanted: 600
            })
        );
        c.clear();
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn n_kv_is_padded_and_capped() {
        let mut c = Cells::new(600);
        c.append(1).unwrap();
        assert_eq!(c.n_kv(), 256);
        c.append(300).unwrap();
        assert_eq!(c.n_kv(), 512);
        c.append(250).unwrap();
        assert_eq!(c.n_kv(), 600);
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(ring_cells(4096, 512, 512), 1024);
        assert_eq!(ring_cells(4096, 512, 1), 768);
        assert_eq!(ring_cells(600, 512, 512), 600);
        assert_eq!(ring_cells(4096, u32::MAX, 512), 4096);
    }

    #[test]
    fn ring_keeps_the_window_and_forgets_older_positions() {
        // window 100, ring 256: positions 0..1000 appended in batches of 50
        let mut c = Cells::with_window(1024, 100, 256);
        for _ in 0..20 {
            c.append(50).unwrap();
        }
        assert_eq!(c.used(), 1000);
        assert_eq!((c.n_kv(), c.ring()), (1024, 256));
        assert_eq!(c.ring_cell(999), 999 % 256);
        // the ring holds 744..1000: a rollback of a few positions keeps them
        assert!(c.holds_window(990));
        assert_eq!(c.truncate(990), 990);
        c.append(10).unwrap();
        // 844 needs 744..844: still there; 843 needs 743, overwritten
        assert!(c.holds_window(844));
        assert!(!c.holds_window(843));
        assert_eq!(c.truncate(843), 0);
        assert_eq!(c.used(), 0);
        // after a clear the whole ring is fresh again
        c.append(5).unwrap();
        assert_eq!(c.truncate(1), 1);
    }

    #[test]
    fn restored_state_holds_only_the_window() {
        let mut c = Cells::with_window(1024, 100, 1024);
        c.restore(300);
        assert_eq!(c.used(), 300);
        assert_eq!(c.window_start(300), 200);
        assert!(c.holds_window(300));
        assert_eq!(c.truncate(250), 0);
        let mut plain = Cells::new(1024);
        plain.restore(300);
        assert_eq!(plain.window_start(300), 0);
        assert_eq!(plain.truncate(5), 5);
    }
}
