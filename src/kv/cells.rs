//! KV cell bookkeeping for one sequence, pure Rust (unit-tested without ggml).
//!
//! Cells `0..used` hold positions `0..used` in order: appending fills the next cells, truncating
//! (speculative rollback, context shifting by re-evaluation) forgets the tail.

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
}

/// llama.cpp pads the attended KV length to a multiple of 256 so graphs keep their shape.
pub const KV_PAD: u32 = 256;

impl Cells {
    pub fn new(size: u32) -> Self {
        Cells { size, used: 0 }
    }

    pub fn size(&self) -> u32 {
        self.size
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
                Ok(first)
            }
            _ => Err(ContextFull {
                used: self.used,
                size: self.size,
                wanted: n,
            }),
        }
    }

    /// Forget every position at or after `n`.
    pub fn truncate(&mut self, n: u32) {
        self.used = self.used.min(n);
    }

    pub fn clear(&mut self) {
        self.used = 0;
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
        c.truncate(12);
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
}
