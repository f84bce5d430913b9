//! SentencePiece BPE ("llama" vocabularies: Llama 2, Phi-3, Gemma 3), as llama.cpp's
//! `llm_tokenizer_spm_session`: the text (spaces already `▁`) starts as one symbol per
//! character; the adjacent pair whose concatenation is the vocabulary token with the
//! highest score merges first (equal scores: the leftmost pair); merging stops when no
//! adjacent pair is a token; a symbol that is not a token becomes its bytes' `<0xXX>` tokens.
//! Written here because `tokenizers` has no such model: its BPE ranks merges by a merge
//! list and its Unigram picks the best-scoring segmentation, neither of which is this.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// The `▁` that stands for a space in SentencePiece vocabularies.
pub(crate) const SPACE: &str = "\u{2581}";

pub(crate) struct SpmEngine {
    /// Byte fallback: `<0xXX>`, else the byte itself as a one-character token (llama.cpp's
    /// `byte_to_token`); `None` when the vocabulary has neither.
    byte_tokens: Box<[Option<u32>; 256]>,
    /// Longest token text in bytes: longer pairs cannot be tokens and are not looked up.
    max_token_len: usize,
}

/// A span of the text, linked to its neighbours; `len == 0` once merged into its left one.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    /// The token this span is, once known.
    id: Option<u32>,
}

/// A candidate merge of symbol `left` with its right neighbour into token `id`.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
    id: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// The byte-fallback tokens of a vocabulary (`<0x41>`, else `A`), shared with Gemma 4's BPE.
pub(crate) fn byte_tokens(vocab: &Vocab, plain_ascii: bool) -> Box<[Option<u32>; 256]> {
    let mut out = Box::new([None; 256]);
    for (b, slot) in out.iter_mut().enumerate() {
        *slot = vocab.text_to_id(&format!("<0x{b:02X}>"));
        if slot.is_none() && plain_ascii && b < 0x80 {
            *slot = vocab.text_to_id((b as u8 as char).encode_utf8(&mut [0; 4]));
        }
    }
    out
}

impl SpmEngine {
    pub(crate) fn new(vocab: &Vocab) -> SpmEngine {
        let max_token_len = vocab.tokens.iter().map(|t| t.text.len()).max().unwrap_or(0);
        SpmEngine {
            byte_tokens: byte_tokens(vocab, true),
            max_token_len,
        }
    }

    /// Appends the tokens of one text fragment: spaces become `▁`, with one `▁` in front
    /// when `space_prefix` (llama.cpp: `add_space_prefix` at the start or after a special token).
    pub(crate) fn tokenize(
        &self,
        vocab: &Vocab,
        text: &str,
        space_prefix: bool,
        out: &mut Vec<u32>,
    ) {
        let mut escaped = String::with_capacity(text.len() + 3);
        if space_prefix {
            escaped.push_str(SPACE);
        }
        escaped.push_str(&text.replace(' ', SPACE));
        self.tokenize_escaped(vocab, &escaped, out);
    }

    fn tokenize_escaped(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start: start as u32,
                len: c.len_utf8() as u32,
                prev: i as i32 - 1,
                next: i as i32 + 1,
                id: None,
            });
        }
        let n = symbols.len();
        symbols[n - 1].next = -1;

        let mut queue = BinaryHeap::with_capacity(n);
        let try_add =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
                if left < 0 || right < 0 {
                    return;
                }
                let (l, r) = (symbols[left as usize], symbols[right as usize]);
                let size = (l.len + r.len) as usize;
                if size > self.max_token_len {
                    return;
                }
                let start = l.start as usize;
                if let Some(id) = vocab.text_to_id(&text[start..start + size]) {
                    queue.push(Bigram {
                        // +0.0 turns -0.0 into 0.0: C++ compares them equal, total_cmp does not.
                        score: vocab.tokens[id as usize].score + 0.0,
                        left: left as u32,
                        right: right as u32,
                        size: size as u32,
                        id,
                    });
                }
            };
        for i in 1..n as i32 {
            try_add(&symbols, &mut queue, i - 1, i);
        }

        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
            // Stale: one side already merged elsewhere (then the lengths no longer add up).
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            let left = &mut symbols[b.left as usize];
            left.len = b.size;
            left.next = r.next;
            left.id = Some(b.id);
            let prev = left.prev;
            symbols[b.right as usize].len = 0;
            if r.next >= 0 {
                symbols[r.next as usize].prev = b.left as i32;
            }
            try_add(&symbols, &mut queue, prev, b.left as i32);
            try_add(&symbols, &mut queue, b.left as i32, r.next);
        }

        let mut i = 0i32;
        while i >= 0 {
            let s = symbols[i as usize];
            let piece = &text[s.start as usize..(s.start + s.len) as usize];
            match s.id.or_else(|| vocab.text_to_id(piece)) {
                Some(id) => out.push(id),
                None => self.push_bytes(piece, out),
            }
            i = s.next;
        }
    }

    fn push_bytes(&self, piece: &str, out: &mut Vec<u32>) {
        for &b in piece.as_bytes() {
            match self.byte_tokens[b as usize] {
                Some(id) => out.push(id),
                // llama.cpp throws (std::map::at) here; a vocabulary without byte tokens
                // loses the character instead.
                None => log::warn!("SPM vocabulary has no token for byte 0x{b:02X}; dropped"),
            }
        }
    }
}
