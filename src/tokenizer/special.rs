//! Cutting special-token texts out of the input before pre-tokenization, with the
//! semantics of llama.cpp's `tokenizer_st_partition`: special tokens are tried longest
//! first, each over every text fragment left by the previous ones, matching left to right
//! without overlap. Control and unknown tokens are only recognised with `parse_special`;
//! user-defined tokens always are (as in Hugging Face `tokenizers`' added tokens).
//! Written here because `tokenizers`' AddedVocabulary matches all added tokens in one
//! leftmost-longest pass with its own strip/normalization rules, not token by token.

use super::vocab::{Attr, Vocab};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fragment<'a> {
    /// Text still to be tokenized by the vocabulary's algorithm.
    Text(&'a str),
    /// A special token found verbatim in the input.
    Token(u32),
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
    // Text fragments are kept as byte ranges of `text`.
    enum Frag {
        Text(usize, usize),
        Token(u32),
    }
    let bytes = text.as_bytes();
    let mut frags = vec![Frag::Text(0, text.len())];
    for &id in &vocab.special_cache {
        let data = &vocab.tokens[id as usize];
        if !parse_special && data.attr.any(Attr::CONTROL | Attr::UNKNOWN) {
            continue;
        }
        let needle = data.text.as_str();
        let lstrip = data.attr.any(Attr::LSTRIP);
        let rstrip = data.attr.any(Attr::RSTRIP);
        let mut out = Vec::with_capacity(frags.len());
        for frag in frags {
            let Frag::Text(mut start, end) = frag else {
                out.push(frag);
                continue;
            };
            while let Some(rel) = text[start..end].find(needle) {
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
                start = at + needle.len();
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
