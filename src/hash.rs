//! The crate's one 64-bit non-cryptographic hash: the model fingerprint and the checksums of
//! state files (`/save`, `--prompt-cache`) both use it. It guards against accidents (a flipped
//! bit, a truncated copy, a file from another model), not against someone forging a file.
//!
//! Four lanes each take 8 bytes per step (xor, multiply by an odd constant, rotate), so it runs
//! at about memory speed, several times faster than a byte-at-a-time hash like FNV-1a, which
//! matters for state files of a gigabyte. Each step is a bijection of its lane for a given
//! input word, so any change to a single 8-byte word always changes the result; the length is
//! mixed in at the end. The value depends only on the bytes, never on how they were split
//! across [`Hasher::write`] calls.

/// An odd 64-bit multiplier with its bits spread evenly (2^64 divided by the golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;
/// A second odd multiplier for the final mixing.
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// Lane starting values: distinct, so that equal words in different lanes differ.
const SEEDS: [u64; 4] = [
    0xcbf2_9ce4_8422_2325,
    0x8422_2325_cbf2_9ce4,
    0x27d4_eb4f_9e37_79b9,
    0x7f4a_7c15_c2b2_ae3d,
];
const BLOCK: usize = 32;

/// A streaming hasher: feed bytes with [`Hasher::write`], read the hash with
/// [`Hasher::finish`] (which can be called at any point and changes nothing).
#[derive(Clone, Debug)]
pub struct Hasher {
    lanes: [u64; 4],
    /// Bytes waiting for a whole block.
    tail: [u8; BLOCK],
    tail_len: usize,
    total: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

fn step(lane: u64, word: u64) -> u64 {
    (lane ^ word).wrapping_mul(K).rotate_left(29)
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            lanes: SEEDS,
            tail: [0; BLOCK],
            tail_len: 0,
            total: 0,
        }
    }

    fn block(&mut self, b: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            *lane = step(*lane, word(&b[8 * i..8 * i + 8]));
        }
    }

    pub fn write(&mut self, mut bytes: &[u8]) {
        self.total = self.total.wrapping_add(bytes.len() as u64);
        if self.tail_len > 0 {
            let take = (BLOCK - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < BLOCK {
                return;
            }
            let tail = self.tail;
            self.block(&tail);
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(BLOCK);
        for b in &mut blocks {
            self.block(b);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> u64 {
        let mut h = self.total.wrapping_mul(K) ^ SEEDS[0];
        for &lane in &self.lanes {
            h = step(h, lane);
        }
        // The unfinished block, zero-padded (the length above tells the padding apart).
        let mut tail = [0u8; BLOCK];
        tail[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        for w in tail[..self.tail_len.div_ceil(8) * 8].chunks_exact(8) {
            h = step(h, word(w));
        }
        // Final mixing, so that every input bit reaches every output bit.
        h ^= h >> 32;
        h = h.wrapping_mul(K2);
        h ^= h >> 29;
        h = h.wrapping_mul(K);
        h ^ (h >> 32)
    }
}

/// The hash of `bytes` in one call.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 0x1234_5678_9abc_def0u64;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn the_split_into_writes_does_not_matter() {
        let d = data(1000);
        let whole = hash(&d);
        for sizes in [&[1usize][..], &[7, 33], &[31, 1, 64, 5], &[32], &[999]] {
            let mut h = Hasher::new();
            let mut rest = &d[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                h.write(&rest[..n]);
                rest = &rest[n..];
                i += 1;
            }
            assert_eq!(h.finish(), whole, "writes of {sizes:?}");
        }
    }

    #[test]
    fn finish_can_be_called_midway() {
        let d = data(100);
        let mut h = Hasher::new();
        h.write(&d[..40]);
        assert_eq!(h.finish(), hash(&d[..40]));
        h.write(&d[40..]);
        assert_eq!(h.finish(), hash(&d));
    }

    #[test]
    fn every_single_bit_flip_and_length_change_is_seen() {
        let d = data(200);
        let base = hash(&d);
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut e = d.clone();
                e[i] ^= 1 << bit;
                assert_ne!(hash(&e), base, "byte {i} bit {bit}");
            }
        }
        // Zero padding of the last block is told apart by the length.
        let mut seen = std::collections::HashSet::new();
        for n in 0..=70 {
            assert!(seen.insert(hash(&vec![0u8; n])), "{n} zero bytes");
        }
    }

    #[test]
    fn flips_in_many_words_are_seen() {
        let d = data(4096);
        let base = hash(&d);
        let mut x = 99u64;
        for _ in 0..2000 {
            let mut e = d.clone();
            for _ in 0..50 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(7);
                let at = (x >> 33) as usize % e.len();
                e[at] ^= 1 << ((x >> 20) & 7);
            }
            if e != d {
                assert_ne!(hash(&e), base);
            }
        }
    }

    #[test]
    fn values_are_stable() {
        // State files store these: a change here is a new state-file version.
        assert_eq!(hash(b""), 0xf785_ea62_b86c_087f);
        assert_eq!(hash(b"ember state"), 0xa5aa_ea11_383d_8979);
        assert_eq!(hash(&data(1000)), 0x0ead_d64d_c73e_580e);
    }
}
