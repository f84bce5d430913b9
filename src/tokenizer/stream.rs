//! UTF-8-safe streaming detokenization: token pieces are bytes, and a character may be
//! split across tokens (byte-level BPE emits single bytes of rare characters).
//! Written here because `tokenizers`' DecodeStream re-decodes through its own decoder and
//! has no notion of llama.cpp's hidden control tokens.

use super::Tokenizer;

/// Turns a stream of token ids into printable text. Complete UTF-8 is returned as soon as
/// it is available; an incomplete multi-byte sequence at the end is held back until the
/// next token completes it; bytes that can never become valid UTF-8 come out as U+FFFD
/// (one per maximal invalid subsequence, like `String::from_utf8_lossy`).
///
/// Pieces are llama.cpp's `token_to_piece` with `lstrip = 0`, as `common_token_to_piece`
/// gives them to llama.cpp's generation loop: no leading space is stripped (SPM pieces such
/// as `▁Hello` print as " Hello") and no spaces are cleaned up; for that on a whole sequence
/// see [`Tokenizer::detokenize`].
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// `special`: render control tokens (e.g. `<|im_end|>`) instead of hiding them.
    pub fn new(special: bool) -> Self {
        StreamDecoder {
            special,
            pending: Vec::new(),
        }
    }

    /// Adds token `id`; returns the text that became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.piece(id, self.special));
        self.drain(false)
    }

    /// True when no incomplete character is held back.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty()
    }

    /// Returns whatever is held back, an incomplete sequence becoming U+FFFD.
    pub fn flush(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, all: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None if all => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}
