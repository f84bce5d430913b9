//! Text ↔ token ids, built from GGUF metadata alone, tokenizing exactly like llama.cpp.
//!
//! Layout: `meta` reads the `tokenizer.ggml.*` keys; `vocab` turns them into llama.cpp's
//! view of the vocabulary (attributes, special ids, EOG set); `special` cuts special-token
//! texts out of the input (`tokenizer_st_partition`); then the engine of the vocabulary
//! type tokenizes the remaining text: `bpe` (+ `pretok`, `bytes`) for byte-level BPE
//! ("gpt2"). SPM ("llama": scores, byte fallback, space prefix) and Gemma vocabularies
//! become further [`Engine`] variants next to it. `stream` detokenizes incrementally.
//!
//! The `tokenizers` crate supplies the regex pre-tokenizer, the GPT-2 byte mapping and the
//! BPE merge loop; llama.cpp-specific rules around them are written here.

mod bpe;
mod bytes;
mod error;
mod meta;
mod pretok;
mod special;
mod stream;
mod vocab;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors_tests;

pub use error::TokenizerError;
pub use stream::StreamDecoder;

use crate::gguf::{GgufFile, MetaError};
use bpe::BpeEngine;
use meta::{RawVocab, Slot, KEY_MERGES};
use pretok::Pre;
use special::Fragment;
use vocab::{Attr, Vocab, VocabKind};

/// The tokenization algorithm of a vocabulary type.
enum Engine {
    Bpe(BpeEngine),
}

/// A vocabulary with its tokenizer. Immutable; share it by reference across threads.
pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    /// `token_to_piece(id, special = true)` for every token (llama.cpp caches the same).
    pieces: Vec<Vec<u8>>,
}

impl Tokenizer {
    /// Builds the tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_raw(&RawVocab::from_gguf(f)?)
    }

    pub(crate) fn from_raw(raw: &RawVocab) -> Result<Tokenizer, TokenizerError> {
        let kind = VocabKind::from_model(&raw.model)?;
        match kind {
            VocabKind::Bpe => {
                let pre = Pre::resolve(&raw.model, raw.pre.as_deref())?;
                let merges = raw.merges.as_ref().ok_or_else(|| MetaError::Missing {
                    key: KEY_MERGES.to_string(),
                })?;
                let vocab = Vocab::build(raw, kind, pre.add_bos_default)?;
                let engine =
                    BpeEngine::new(&vocab, merges, pre, raw.pre.as_deref().unwrap_or("default"))?;
                let pieces = vocab.tokens.iter().map(bytes::bpe_piece).collect();
                Ok(Tokenizer {
                    vocab,
                    engine: Engine::Bpe(engine),
                    pieces,
                })
            }
        }
    }

    /// Tokenizes `text` like `llama_tokenize`. `add_special` adds BOS/EOS where the model asks
    /// for them (`tokenizer.ggml.add_bos_token` / `add_eos_token`); `parse_special` turns
    /// control-token texts in the input (e.g. `<|im_start|>`) into those tokens.
    /// User-defined tokens are always matched verbatim.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let fragments = special::partition(&self.vocab, text, parse_special);
        match &self.engine {
            Engine::Bpe(bpe) => {
                if add_special && self.vocab.add_bos {
                    out.extend(self.vocab.bos());
                }
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => bpe.tokenize(&self.vocab, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special && self.vocab.add_eos {
                    out.extend(self.vocab.eos());
                }
            }
        }
        if add_special {
            self.warn_double_bos_eos(&out);
        }
        out
    }

    fn warn_double_bos_eos(&self, out: &[u32]) {
        if self.vocab.add_bos && out.len() >= 2 && Some(out[1]) == self.vocab.bos() {
            log::warn!(
                "the prompt starts with BOS and BOS was added: it now starts with 2 BOS tokens"
            );
        }
        if self.vocab.add_eos && out.len() >= 2 && Some(out[out.len() - 2]) == self.vocab.eos() {
            log::warn!("the prompt ends with EOS and EOS was added: it now ends with 2 EOS tokens");
        }
    }

    /// The bytes token `id` stands for (llama.cpp's `token_to_piece` with `lstrip = 0`).
    /// Control and unknown tokens give nothing unless `special`; an id outside the
    /// vocabulary gives nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        if !special && self.vocab.attr(id).any(Attr::CONTROL | Attr::UNKNOWN) {
            return Vec::new();
        }
        self.pieces.get(id as usize).cloned().unwrap_or_default()
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos()
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos()
    }

    /// End-of-turn token (`tokenizer.ggml.eot_token_id`, else found by text, e.g. `<|im_end|>`).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.id(Slot::Eot)
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether generating `id` ends generation: EOS, EOT, EOM, FIM pad/repo/separator and
    /// the tokens llama.cpp recognises by text (`<|im_end|>`, `<|endoftext|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// Whether `id` is a control token (hidden by `token_to_piece(.., false)`).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id).any(Attr::CONTROL)
    }

    /// The token's text as stored in the vocabulary (byte-level BPE: GPT-2 table characters,
    /// e.g. `Ġthe`); empty for an id outside the vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab
            .tokens
            .get(id as usize)
            .map_or("", |t| t.text.as_str())
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.bos())
            .field("eos", &self.eos())
            .field("add_bos", &self.add_bos())
            .finish_non_exhaustive()
    }
}
