//! BPE ("gpt2" and "gemma4" vocabularies): pre-tokenizer + merges by rank, as llama.cpp's
//! `llm_tokenizer_bpe_session`. Each word starts as one symbol per character; the adjacent
//! pair with the lowest merge rank merges first (equal ranks: the leftmost pair) until no
//! pair has a rank. Byte-level vocabularies drop characters they lack; SPM-style ones
//! (Gemma 4: `▁` for spaces, raw UTF-8) fall back to `<0xXX>` byte tokens.
//!
//! The merge loop is written here, not taken from `tokenizers`' BPE model (which applies the
//! same order): building that model took ~1 s for Gemma 4's 515k merges, more than all of
//! llama.cpp's loading, and it returns a `String` per token; ours keys merges by id pairs.

use std::collections::BinaryHeap;

use super::error::TokenizerError;
use super::index::FxHashMap;
use super::pretok::{Pre, PreKind, WordSplitter};
use super::spm::{byte_tokens, SPACE};
use super::vocab::Vocab;

/// No token: a character the vocabulary lacks.
const NONE: u32 = u32::MAX;
/// Code points below this get their ids from a table (all of the GPT-2 byte characters).
const TABLE_CHARS: usize = 0x180;

pub(crate) struct BpeEngine {
    pre: WordSplitter,
    /// `(left id << 32) | right id` → (rank, merged id).
    merges: FxHashMap<u64, (u32, u32)>,
    /// Token id of each character below `TABLE_CHARS` (`NONE` if it is not a token).
    char_ids: Vec<u32>,
    ignore_merges: bool,
    /// Spaces become `▁` before splitting (Gemma 4).
    escape_whitespaces: bool,
    /// Gemma 4: a word of newlines only that is a token is not merged.
    whole_newline_runs: bool,
    /// `<0xXX>` tokens for characters missing from the vocabulary, in SPM-style vocabularies;
    /// `None` for byte-level ones, where such characters are dropped.
    byte_fallback: Option<Box<[Option<u32>; 256]>>,
}

/// llama.cpp's split of a merge line: at the first space after the first byte.
fn split_merge(line: &str) -> Option<(&str, &str)> {
    let pos = 1 + line.as_bytes().get(1..)?.iter().position(|&b| b == b' ')?;
    Some((&line[..pos], &line[pos + 1..]))
}

/// A span of the word, linked to its neighbours; `len == 0` once merged into its left one.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    id: u32,
}

/// A candidate merge of symbol `left` with its right neighbour.
#[derive(PartialEq, Eq)]
struct Pair {
    rank: u32,
    left: u32,
    right: u32,
    size: u32,
    id: u32,
}

impl Ord for Pair {
    /// Max-heap order: lowest rank first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Buffers reused from word to word.
#[derive(Default)]
struct Scratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Pair>,
}

impl BpeEngine {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[String],
        pre: Pre,
        pre_name: &str,
    ) -> Result<BpeEngine, TokenizerError> {
        // Rank = index in tokenizer.ggml.merges; a repeated pair keeps its first rank (llama.cpp
        // uses map::emplace). Merges are kept by token ids, so both sides and the result must
        // be tokens; a merge that is not can only differ from llama.cpp on words that reach
        // it, so it is dropped with a warning.
        let mut table = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut dropped = Vec::new();
        let mut joined = String::new();
        for (rank, line) in merges.iter().enumerate() {
            let ids = split_merge(line).and_then(|(a, b)| {
                joined.clear();
                joined.push_str(a);
                joined.push_str(b);
                Some((
                    vocab.text_to_id(a)?,
                    vocab.text_to_id(b)?,
                    vocab.text_to_id(&joined)?,
                ))
            });
            match ids {
                Some((a, b, ab)) => {
                    table
                        .entry(((a as u64) << 32) | b as u64)
                        .or_insert((rank as u32, ab));
                }
                None => dropped.push(line.as_str()),
            }
        }
        if let Some(first) = dropped.first() {
            log::warn!(
                "tokenizer.ggml.merges: {} entries ignored (not 'left right' over vocabulary tokens), e.g. {first:?}",
                dropped.len()
            );
        }
        let char_ids = (0..TABLE_CHARS as u32)
            .map(|cp| {
                char::from_u32(cp)
                    .and_then(|c| vocab.text_to_id(c.encode_utf8(&mut [0; 4])))
                    .unwrap_or(NONE)
            })
            .collect();
        Ok(BpeEngine {
            pre: WordSplitter::new(pre.kind, pre_name)?,
            merges: table,
            char_ids,
            ignore_merges: pre.ignore_merges,
            escape_whitespaces: pre.kind.escape_whitespaces(),
            whole_newline_runs: pre.kind == PreKind::Gemma4,
            byte_fallback: (!pre.kind.byte_encode()).then(|| byte_tokens(vocab, false)),
        })
    }

    /// Whether token pieces carry `▁` for spaces rather than GPT-2 table characters.
    pub(crate) fn escapes_whitespace(&self) -> bool {
        self.escape_whitespaces
    }

    /// Appends the tokens of `text` (a fragment without special tokens) to `out`.
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let escaped;
        let text = if self.escape_whitespaces {
            escaped = text.replace(' ', SPACE);
            &escaped
        } else {
            text
        };
        let mut scratch = Scratch::default();
        self.pre.for_each_word(text, |word| {
            let whole =
                self.ignore_merges || (self.whole_newline_runs && word.bytes().all(|b| b == b'\n'));
            if whole {
                if let Some(id) = vocab.text_to_id(word) {
                    out.push(id);
                    return;
                }
            }
            self.merge_word(vocab, word, &mut scratch, out);
        });
    }

    fn char_id(&self, vocab: &Vocab, c: char, text: &str) -> u32 {
        match self.char_ids.get(c as usize) {
            Some(&id) => id,
            None => vocab.text_to_id(text).unwrap_or(NONE),
        }
    }

    fn try_add(&self, s: &mut Scratch, left: i32, right: i32) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
        if l.id == NONE || r.id == NONE {
            return;
        }
        if let Some(&(rank, id)) = self.merges.get(&(((l.id as u64) << 32) | r.id as u64)) {
            s.queue.push(Pair {
                rank,
                left: left as u32,
                right: right as u32,
                size: l.len + r.len,
                id,
            });
        }
    }

    fn merge_word(&self, vocab: &Vocab, word: &str, s: &mut Scratch, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        s.symbols.clear();
        s.queue.clear();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let len = c.len_utf8();
            s.symbols.push(Symbol {
                start: start as u32,
                len: len as u32,
                prev: i as i32 - 1,
                next: i as i32 + 1,
                id: self.char_id(vocab, c, &word[start..start + len]),
            });
        }
        let n = s.symbols.len();
        s.symbols[n - 1].next = -1;
        for i in 1..n as i32 {
            self.try_add(s, i - 1, i);
        }
        while let Some(p) = s.queue.pop() {
            let (l, r) = (s.symbols[p.left as usize], s.symbols[p.right as usize]);
            // Stale: one side already merged elsewhere (then the lengths no longer add up).
            if l.len == 0 || r.len == 0 || l.len + r.len != p.size {
                continue;
            }
            let left = &mut s.symbols[p.left as usize];
            left.len = p.size;
            left.id = p.id;
            left.next = r.next;
            let prev = left.prev;
            s.symbols[p.right as usize].len = 0;
            if r.next >= 0 {
                s.symbols[r.next as usize].prev = p.left as i32;
            }
            self.try_add(s, prev, p.left as i32);
            self.try_add(s, p.left as i32, r.next);
        }
        let mut i = 0;
        while i >= 0 {
            let sym = s.symbols[i as usize];
            if sym.id != NONE {
                out.push(sym.id);
            } else if let Some(bytes) = &self.byte_fallback {
                let piece = &word.as_bytes()[sym.start as usize..(sym.start + sym.len) as usize];
                out.extend(piece.iter().filter_map(|&b| bytes[b as usize]));
            }
            i = sym.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lines_split_like_llama_cpp() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ", "t")));
        assert_eq!(split_merge("a b c"), Some(("a", "b c")));
        assert_eq!(split_merge("ab"), None);
        assert_eq!(split_merge(""), None);
    }
}
