//! BPE ("gpt2" and "gemma4" vocabularies): pre-tokenizer + merges by rank, as llama.cpp's
//! `llm_tokenizer_bpe_session`. The merge loop is the `tokenizers` crate's BPE model, which
//! applies the lowest-rank pair first and, between equal ranks, the leftmost one, exactly
//! like llama.cpp's bigram queue. Byte-level vocabularies drop characters they lack;
//! SPM-style ones (Gemma 4: `▁` for spaces, raw UTF-8) fall back to `<0xXX>` byte tokens.

use std::collections::HashSet;

use tokenizers::models::bpe::{Vocab as HfVocab, BPE};
use tokenizers::Model;

use super::error::TokenizerError;
use super::pretok::{Pre, PreKind, WordSplitter};
use super::spm::{byte_tokens, SPACE};
use super::vocab::Vocab;

pub(crate) struct BpeEngine {
    pre: WordSplitter,
    model: BPE,
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

impl BpeEngine {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[String],
        pre: Pre,
        pre_name: &str,
    ) -> Result<BpeEngine, TokenizerError> {
        // Rank = index in tokenizer.ggml.merges; a repeated pair keeps its first rank (llama.cpp
        // uses map::emplace). The `tokenizers` BPE needs both sides and the result in the
        // vocabulary; a merge that is not can only differ from llama.cpp on words that reach
        // it, so it is dropped with a warning.
        let mut seen = HashSet::with_capacity(merges.len());
        let mut pairs = Vec::with_capacity(merges.len());
        let mut dropped = Vec::new();
        for line in merges {
            let Some((a, b)) = split_merge(line) else {
                dropped.push(line.as_str());
                continue;
            };
            let in_vocab = |s: &str| vocab.token_to_id.contains_key(s);
            if !(in_vocab(a) && in_vocab(b) && in_vocab(&format!("{a}{b}"))) {
                dropped.push(line.as_str());
                continue;
            }
            if seen.insert((a, b)) {
                pairs.push((a.to_string(), b.to_string()));
            }
        }
        if let Some(first) = dropped.first() {
            log::warn!(
                "tokenizer.ggml.merges: {} entries ignored (not 'left right' over vocabulary tokens), e.g. {first:?}",
                dropped.len()
            );
        }
        let hf_vocab: HfVocab = vocab
            .token_to_id
            .iter()
            .map(|(k, &v)| (k.clone(), v))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(hf_vocab, pairs)
            // Applied per whole word in `tokenize`, not per piece as `tokenizers` would.
            .ignore_merges(false)
            .build()
            .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        Ok(BpeEngine {
            pre: WordSplitter::new(pre.kind, pre_name)?,
            model,
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
        for word in self.pre.split(text) {
            let whole =
                self.ignore_merges || (self.whole_newline_runs && word.bytes().all(|b| b == b'\n'));
            if whole {
                if let Some(&id) = vocab.token_to_id.get(&word) {
                    out.push(id);
                    continue;
                }
            }
            // A character missing from the vocabulary never merges in llama.cpp (it is dropped
            // or becomes byte tokens), while `tokenizers` would merge its neighbours across
            // it: cut the word there.
            let mut start = 0;
            let mut buf = [0u8; 4];
            for (i, c) in word.char_indices() {
                let ch = &*c.encode_utf8(&mut buf);
                if !vocab.token_to_id.contains_key(ch) {
                    self.merge(&word[start..i], out);
                    if let Some(bytes) = &self.byte_fallback {
                        out.extend(ch.bytes().filter_map(|b| bytes[b as usize]));
                    }
                    start = i + c.len_utf8();
                }
            }
            self.merge(&word[start..], out);
        }
    }

    fn merge(&self, piece: &str, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        // Every character of `piece` is in the vocabulary, so the model cannot fail.
        if let Ok(tokens) = self.model.tokenize(piece) {
            out.extend(tokens.iter().map(|t| t.id));
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
