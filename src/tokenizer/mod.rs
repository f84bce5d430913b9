//! Text ↔ token ids, built from GGUF metadata alone, tokenizing exactly like llama.cpp.
//!
//! Layout: `meta` reads the `tokenizer.ggml.*` keys; `vocab` turns them into llama.cpp's
//! view of the vocabulary (attributes, special ids, EOG set); `special` cuts special-token
//! texts out of the input (`tokenizer_st_partition`); then the engine of the vocabulary
//! type tokenizes the remaining text: `bpe` (+ `pretok`) for BPE ("gpt2" byte-level
//! vocabularies and Gemma 4's SPM-style "gemma4"), `spm` for SentencePiece ("llama": Llama 2,
//! Phi-3, Gemma 3), `wpm` for WordPiece ("bert"). `index` maps token texts to ids, `bytes`
//! gives token pieces, `detok` whole detokenization, `stream` incremental detokenization.
//!
//! The `tokenizers` crate supplies the regular expressions (Oniguruma, with the Unicode
//! classes llama.cpp's splitters use) and canonical decomposition; its pre-tokenizer
//! pipeline is the reference our splitter is tested against. Everything with llama.cpp
//! semantics it has no equivalent for, or that was too slow through it (the SPM and
//! WordPiece algorithms, the BPE merge loop, special-token partitioning), is written here;
//! each module says why.

mod bpe;
mod bytes;
mod detok;
mod error;
mod index;
mod meta;
mod pretok;
mod special;
mod spm;
mod stream;
mod vocab;
mod wpm;

pub use error::TokenizerError;
pub use stream::StreamDecoder;

use crate::gguf::{GgufFile, MetaError};
use bpe::BpeEngine;
use meta::{RawVocab, Slot, KEY_MERGES};
use pretok::{Pre, PreKind};
use special::Fragment;
use spm::SpmEngine;
use vocab::{Attr, TypeDefaults, Vocab, VocabKind};
use wpm::WpmEngine;

/// The tokenization algorithm of a vocabulary type.
enum Engine {
    Bpe(Box<BpeEngine>),
    Spm(SpmEngine),
    Wpm(WpmEngine),
}

/// A vocabulary with its tokenizer. Immutable; share it by reference across threads.
pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    /// `token_to_piece(id, special = true)` of every token, concatenated (llama.cpp caches
    /// the same); token `i` is `pieces[piece_ends[i - 1]..piece_ends[i]]`.
    pieces: Vec<u8>,
    piece_ends: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_raw(RawVocab::from_gguf(f)?)
    }

    pub(crate) fn from_raw(mut raw: RawVocab) -> Result<Tokenizer, TokenizerError> {
        let kind = VocabKind::from_model(&raw.model)?;
        let texts = std::mem::take(&mut raw.tokens);
        let raw = &raw;
        let (vocab, engine) = match kind {
            VocabKind::Bpe => {
                // llama.cpp ignores tokenizer.ggml.pre for "gemma4" vocabularies.
                let pre_name = if raw.model == "gemma4" {
                    Some("gemma4")
                } else {
                    raw.pre.as_deref()
                };
                let pre = Pre::resolve(&raw.model, pre_name)?;
                let merges = raw.merges.as_ref().ok_or_else(|| MetaError::Missing {
                    key: KEY_MERGES.to_string(),
                })?;
                let defaults = TypeDefaults {
                    add_bos: pre.add_bos_default,
                    clean_spaces: pre.clean_spaces,
                    force_add_bos: pre.kind == PreKind::Gemma4,
                };
                let vocab = Vocab::build(raw, texts, kind, defaults)?;
                let engine = BpeEngine::new(&vocab, merges, pre, pre_name.unwrap_or("default"))?;
                (vocab, Engine::Bpe(Box::new(engine)))
            }
            VocabKind::Spm => {
                let defaults = TypeDefaults {
                    add_bos: true,
                    clean_spaces: false,
                    force_add_bos: false,
                };
                let vocab = Vocab::build(raw, texts, kind, defaults)?;
                let engine = SpmEngine::new(&vocab);
                (vocab, Engine::Spm(engine))
            }
            VocabKind::Wpm => {
                let defaults = TypeDefaults {
                    add_bos: true,
                    clean_spaces: true,
                    force_add_bos: false,
                };
                let vocab = Vocab::build(raw, texts, kind, defaults)?;
                let lowercase = raw.lowercase.unwrap_or(true);
                let strip_accents = raw.strip_accents.unwrap_or(lowercase);
                let engine = WpmEngine::new(&vocab, lowercase, strip_accents)?;
                (vocab, Engine::Wpm(engine))
            }
        };
        let byte_level = matches!(&engine, Engine::Bpe(b) if !b.escapes_whitespace());
        let mut pieces = Vec::new();
        let mut piece_ends = Vec::with_capacity(vocab.tokens.len());
        for t in &vocab.tokens {
            if byte_level {
                bytes::bpe_piece(t, &mut pieces);
            } else {
                bytes::metaspace_piece(t, &mut pieces);
            }
            piece_ends.push(pieces.len() as u32);
        }
        Ok(Tokenizer {
            vocab,
            engine,
            pieces,
            piece_ends,
        })
    }

    /// Tokenizes `text` like `llama_tokenize`. `add_special` adds BOS/EOS where the model asks
    /// for them (`tokenizer.ggml.add_bos_token` / `add_eos_token`; WordPiece: always CLS and
    /// SEP); `parse_special` turns control-token texts in the input (e.g. `<|im_start|>`) into
    /// those tokens. User-defined tokens are always matched verbatim.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let fragments = special::partition(&self.vocab, text, parse_special);
        let v = &self.vocab;
        match &self.engine {
            Engine::Bpe(bpe) => {
                if add_special && v.add_bos {
                    out.extend(v.bos());
                }
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => bpe.tokenize(v, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special && v.add_eos {
                    out.extend(v.eos());
                }
            }
            Engine::Spm(spm) => {
                if add_special && v.add_bos {
                    out.extend(v.bos());
                }
                // A space goes in front of the text at the start and after each special token.
                let mut after_special = true;
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => {
                            spm.tokenize(v, t, v.add_space_prefix && after_special, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
                if add_special && v.add_eos {
                    out.extend(v.eos());
                }
            }
            Engine::Wpm(wpm) => {
                if add_special {
                    out.extend(v.bos());
                }
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => wpm.tokenize(v, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special {
                    out.extend(v.id(Slot::Sep));
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
        self.piece(id, special).to_vec()
    }

    /// [`Tokenizer::token_to_piece`] without copying.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        let i = id as usize;
        if i >= self.piece_ends.len()
            || (!special && self.vocab.attr(id).any(Attr::CONTROL | Attr::UNKNOWN))
        {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        &self.pieces[start as usize..self.piece_ends[i] as usize]
    }

    /// Token ids back to text, like `llama_detokenize` (and `common_detokenize`, which passes
    /// `remove_special = false`). The first piece loses one leading space when the vocabulary
    /// adds a space prefix (SPM), unless `remove_special` dropped a leading BOS; with
    /// `remove_special` a leading BOS and a trailing EOS are dropped where the model adds them;
    /// `unparse_special` renders control tokens. Vocabularies with llama.cpp's `clean_spaces`
    /// then lose the space before `?!.,` and some contractions. Bytes, not necessarily UTF-8.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut strip_space = v.add_space_prefix;
        if remove_special && v.add_bos && ids.first().is_some_and(|&id| Some(id) == v.bos()) {
            strip_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos && ids.last().is_some_and(|&id| Some(id) == v.eos()) {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        for &id in ids {
            let piece = self.piece(id, unparse_special);
            let piece = match piece.split_first() {
                Some((b' ', rest)) if strip_space => rest,
                _ => piece,
            };
            out.extend_from_slice(piece);
            strip_space = false;
        }
        if v.clean_spaces {
            out = detok::clean_spaces(&out);
        }
        out
    }

    /// One line of `llama-tokenize`'s listing, without the newline: `{id:>6} -> '{piece}'`,
    /// the piece rendered with `special = true` and, like `printf("%s")`, cut at a NUL byte.
    /// Bytes, since a piece may be part of a UTF-8 character.
    pub fn describe_token(&self, id: u32) -> Vec<u8> {
        let piece = self.piece(id, true);
        let end = piece.iter().position(|&b| b == 0).unwrap_or(piece.len());
        let mut line = format!("{id:>6} -> '").into_bytes();
        line.extend_from_slice(&piece[..end]);
        line.push(b'\'');
        line
    }

    /// Number of tokens in the vocabulary.
    /// The vocabulary type, as `tokenizer.ggml.model` names its family: "spm", "bpe", "wpm".
    pub fn vocab_type(&self) -> &'static str {
        match self.engine {
            Engine::Spm(_) => "spm",
            Engine::Bpe(_) => "bpe",
            Engine::Wpm(_) => "wpm",
        }
    }

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
    /// e.g. `Ġthe`; SPM: `▁the`); empty for an id outside the vocabulary.
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

#[cfg(test)]
pub(crate) mod tests;
