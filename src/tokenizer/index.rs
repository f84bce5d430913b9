//! Hashing for the lookups tokenization lives on: token text → id (every SPM pair, every
//! BPE character) and BPE merge pair → rank. Written here because loading must be fast for
//! 262k-token vocabularies: a `HashMap<String, u32>` needs a second copy of every token text
//! and SipHash, while this table stores ids only and compares against the token texts.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hash of rustc (FxHash), eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // The length keeps "a" and "a\0" apart.
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 61));
    }

    fn write_u32(&mut self, v: u32) {
        self.add(v.into());
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

fn hash_text(text: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(text.as_bytes());
    h.finish()
}

const EMPTY: u32 = u32::MAX;

/// Open-addressing table from token text to id; the texts stay in the vocabulary.
pub(crate) struct TokenIndex {
    /// `(id, low hash bits)`; `id == EMPTY` marks a free slot.
    slots: Vec<(u32, u32)>,
    shift: u32,
}

impl TokenIndex {
    /// Indexes `texts[i]` as id `i`; a repeated text maps to its last id (as llama.cpp's
    /// `token_to_id[text] = i`).
    pub(crate) fn new(texts: &[impl AsRef<str>]) -> TokenIndex {
        let capacity = (texts.len() * 2).next_power_of_two().max(16);
        let mut index = TokenIndex {
            slots: vec![(EMPTY, 0); capacity],
            shift: 64 - capacity.trailing_zeros(),
        };
        for (id, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            let h = hash_text(text);
            let mut at = index.start(h);
            loop {
                let (slot_id, tag) = index.slots[at];
                if slot_id == EMPTY {
                    index.slots[at] = (id as u32, h as u32);
                    break;
                }
                if tag == h as u32 && texts[slot_id as usize].as_ref() == text {
                    index.slots[at].0 = id as u32;
                    break;
                }
                at = (at + 1) & (index.slots.len() - 1);
            }
        }
        index
    }

    fn start(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    /// The id of `text`, given the texts the index was built from.
    pub(crate) fn get<'t>(&self, text: &str, text_of: impl Fn(u32) -> &'t str) -> Option<u32> {
        let h = hash_text(text);
        let mut at = self.start(h);
        loop {
            let (id, tag) = self.slots[at];
            if id == EMPTY {
                return None;
            }
            if tag == h as u32 && text_of(id) == text {
                return Some(id);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_text_and_nothing_else() {
        let texts: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let index = TokenIndex::new(&texts);
        let get = |s: &str| index.get(s, |id| texts[id as usize].as_str());
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(get(t), Some(i as u32));
        }
        assert_eq!(get("t1000"), None);
        assert_eq!(get(""), None);
    }

    #[test]
    fn repeated_text_maps_to_last_id() {
        let texts = ["a", "b", "a"];
        let index = TokenIndex::new(&texts);
        assert_eq!(index.get("a", |id| texts[id as usize]), Some(2));
    }

    #[test]
    fn hash_tells_lengths_apart() {
        assert_ne!(hash_text("a"), hash_text("a\0"));
        assert_ne!(hash_text(""), hash_text("\0"));
    }
}
