//! Cutting special-token texts out of the input before pre-tokenization, with the
//! semantics of llama.cpp's `tokenizer_st_partition`: special tokens are tried longest
//! first, each over every text fragment left by the previous ones, matching left to right
//! without overlap. Control and unknown tokens are only recognised with `parse_special`;
//! user-defined tokens always are (as in Hugging Face `tokenizers`' added tokens).
//! Written here because `tokenizers`' AddedVocabulary matches all added tokens in one
//! leftmost-longest pass with its own strip/normalization rules, not token by token.
//!
//! llama.cpp searches every fragment for every special token (Gemma has 6,000+ of them);
//! instead one Aho-Corasick pass finds which of them occur in the text at all, and only
//! those are searched for, fragment by fragment, with a precomputed substring finder.

use aho_corasick::AhoCorasick;
use memchr::memmem::Finder;

use super::vocab::{Attr, Vocab};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fragment<'a> {
    /// Text still to be tokenized by the vocabulary's algorithm.
    Text(&'a str),
    /// A special token found verbatim in the input.
    Token(u32),
}

/// All special-token texts in one automaton.
pub(crate) struct SpecialMatcher {
    /// `None` if it could not be built: then every special token is searched for.
    ac: Option<AhoCorasick>,
    /// For each entry of `Vocab::special_cache`, its pattern in `ac` (equal texts share one).
    pattern_of: Vec<usize>,
    n_patterns: usize,
}

impl SpecialMatcher {
    /// `None` when the vocabulary has no special tokens.
    pub(crate) fn new(vocab: &Vocab) -> Option<SpecialMatcher> {
        let mut patterns: Vec<&str> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let pattern_of = vocab
            .special_cache
            .iter()
            .map(|&id| {
                let text = vocab.tokens[id as usize].text.as_str();
                *index.entry(text).or_insert_with(|| {
                    patterns.push(text);
                    patterns.len() - 1
                })
            })
            .collect();
        if patterns.is_empty() {
            return None;
        }
        let ac = AhoCorasick::new(&patterns)
            .map_err(|e| log::warn!("special tokens: no Aho-Corasick automaton ({e}); slower"))
            .ok();
        Some(SpecialMatcher {
            ac,
            pattern_of,
            n_patterns: patterns.len(),
        })
    }
}

/// C `isspace` on one byte, as llama.cpp's lstrip/rstrip use it.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub(crate) fn partition<'a>(
    vocab: &Vocab,
    text: &'a str,
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    if text.is_empty() {
        return Vec::new();
    }
    let Some(matcher) = &vocab.special_matcher else {
        return vec![Fragment::Text(text)];
    };
    // Which texts occur anywhere (overlapping matches: one inside another counts too).
    let mut present = vec![matcher.ac.is_none(); matcher.n_patterns];
    if let Some(ac) = &matcher.ac {
        for m in ac.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
        }
    }

    // Text fragments are kept as byte ranges of `text`.
    enum Frag {
        Text(usize, usize),
        Token(u32),
    }
    let bytes = text.as_bytes();
    let mut frags = vec![Frag::Text(0, text.len())];
    for (&id, &pattern) in vocab.special_cache.iter().zip(&matcher.pattern_of) {
        if !present[pattern] {
            continue;
        }
        let data = &vocab.tokens[id as usize];
        if !parse_special && data.attr.any(Attr::CONTROL | Attr::UNKNOWN) {
            continue;
        }
        let finder = Finder::new(data.text.as_bytes());
        let len = data.text.len();
        let lstrip = data.attr.any(Attr::LSTRIP);
        let rstrip = data.attr.any(Attr::RSTRIP);
        let mut out = Vec::with_capacity(frags.len() + 2);
        for frag in frags {
            let Frag::Text(mut start, end) = frag else {
                out.push(frag);
                continue;
            };
            // Leftmost occurrences inside the fragment, left to right, without overlap.
            while let Some(rel) = finder.find(&bytes[start..end]) {
                let at = start + rel;
                let mut left_end = at;
                if lstrip {
                    while left_end > start && is_c_space(bytes[left_end - 1]) {
                        left_end -= 1;
                    }
                }
                if left_end > start {
                    out.push(Frag::Text(start, left_end));
                }
                out.push(Frag::Token(id));
                start = at + len;
                if rstrip {
                    while start < end && is_c_space(bytes[start]) {
                        start += 1;
                    }
                }
            }
            if start < end {
                out.push(Frag::Text(start, end));
            }
        }
        frags = out;
    }
    frags
        .into_iter()
        .map(|f| match f {
            Frag::Text(s, e) => Fragment::Text(&text[s..e]),
            Frag::Token(id) => Fragment::Token(id),
        })
        .collect()
}
