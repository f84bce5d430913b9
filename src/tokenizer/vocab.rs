//! The vocabulary as llama.cpp sees it after loading (`llama_vocab::impl::load`): token
//! texts and attributes, special-token ids, add-BOS/EOS flags, the end-of-generation set
//! and the list of tokens `tokenizer_st_partition` looks for. Independent of the
//! vocabulary type except for the per-type defaults in [`VocabKind`].

use std::collections::BTreeSet;

use super::error::TokenizerError;
use super::index::TokenIndex;
use super::meta::{
    RawVocab, Slot, KEY_ADD_BOS, KEY_ADD_EOS, KEY_SCORES, KEY_TOKENS, KEY_TOKEN_TYPE, SPECIAL_KEYS,
};
use super::special::SpecialMatcher;

/// Token attributes, bit-compatible with llama.cpp's `llama_token_attr`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub(crate) struct Attr(pub u16);

impl Attr {
    pub const UNDEFINED: Attr = Attr(0);
    pub const UNKNOWN: Attr = Attr(1 << 0);
    pub const UNUSED: Attr = Attr(1 << 1);
    pub const NORMAL: Attr = Attr(1 << 2);
    pub const CONTROL: Attr = Attr(1 << 3);
    pub const USER_DEFINED: Attr = Attr(1 << 4);
    pub const BYTE: Attr = Attr(1 << 5);
    pub const LSTRIP: Attr = Attr(1 << 7);
    pub const RSTRIP: Attr = Attr(1 << 8);

    /// Whether any bit of `other` is set.
    pub fn any(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    fn or(self, other: Attr) -> Attr {
        Attr(self.0 | other.0)
    }

    /// `tokenizer.ggml.token_type` value (llama.cpp's `llama_token_type`) → attribute.
    fn from_token_type(t: i32) -> Attr {
        match t {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }
}

impl std::ops::BitOr for Attr {
    type Output = Attr;
    fn bitor(self, rhs: Attr) -> Attr {
        self.or(rhs)
    }
}

/// Vocabulary types (`tokenizer.ggml.model`), as llama.cpp's `llama_vocab_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VocabKind {
    /// "llama": SentencePiece BPE over scores with byte fallback (Llama 2, Phi-3, Gemma 3).
    Spm,
    /// "gpt2" and "gemma4": BPE over merges, pre-tokenized per `tokenizer.ggml.pre`.
    Bpe,
    /// "bert": WordPiece.
    Wpm,
}

/// `tokenizer.ggml.model` values llama.cpp accepts but Ember does not implement (yet).
const KNOWN_UNSUPPORTED_MODELS: &[&str] = &[
    "t5",
    "rwkv",
    "plamo2",
    "hybriddna",
    "whitespace",
    "no_vocab",
    "none",
    "test",
];

impl VocabKind {
    pub(crate) fn from_model(model: &str) -> Result<VocabKind, TokenizerError> {
        match model {
            "llama" => Ok(VocabKind::Spm),
            "gpt2" | "gemma4" => Ok(VocabKind::Bpe),
            "bert" => Ok(VocabKind::Wpm),
            m if KNOWN_UNSUPPORTED_MODELS.contains(&m) => {
                Err(TokenizerError::UnsupportedModel(m.to_string()))
            }
            m => Err(TokenizerError::UnknownModel(m.to_string())),
        }
    }
}

/// What the vocabulary type (and, for BPE, the pre-tokenizer) sets before the
/// `tokenizer.ggml.*` flags are read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TypeDefaults {
    pub add_bos: bool,
    pub clean_spaces: bool,
    /// Gemma 4: llama.cpp turns `add_bos` on even when the metadata says false.
    pub force_add_bos: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct TokenData {
    pub text: String,
    /// SPM merge priority (`tokenizer.ggml.scores`); 0 when absent.
    pub score: f32,
    pub attr: Attr,
}

impl AsRef<str> for TokenData {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

pub(crate) struct Vocab {
    pub tokens: Vec<TokenData>,
    index: TokenIndex,
    ids: [Option<u32>; Slot::COUNT],
    pub add_bos: bool,
    pub add_eos: bool,
    /// SPM prefixes a space to text at the start and after special tokens; detokenizing
    /// drops the first piece's leading space (all vocabulary types).
    pub add_space_prefix: bool,
    /// Detokenizing removes spaces before punctuation and some contractions.
    pub clean_spaces: bool,
    /// End-of-generation tokens (llama.cpp's `special_eog_ids`).
    pub eog: BTreeSet<u32>,
    /// Control / user-defined / unknown tokens, longest text first: what
    /// `tokenizer_st_partition` cuts out of the input, in this order.
    pub special_cache: Vec<u32>,
    /// Finds the texts of `special_cache` in the input.
    pub special_matcher: Option<SpecialMatcher>,
}

// Texts llama.cpp uses to find special tokens the metadata does not name. llama.cpp walks an
// unordered_map, so when a vocabulary holds several candidates the winner is unspecified;
// Ember takes the first candidate in list order, which is deterministic.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts that end generation wherever they occur (llama.cpp's EOG list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl Vocab {
    /// `defaults`: what llama.cpp sets for this vocabulary type and pre-tokenizer before
    /// the `tokenizer.ggml.*` flags are read.
    /// `texts`: `tokenizer.ggml.tokens`, taken out of `raw` (they become the vocabulary's).
    pub(crate) fn build(
        raw: &RawVocab,
        texts: Vec<String>,
        kind: VocabKind,
        defaults: TypeDefaults,
    ) -> Result<Vocab, TokenizerError> {
        let n = texts.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::BadVocabSize(n));
        }
        // Per-type defaults (llama.cpp: load(), "determine vocab type").
        let mut ids = [None; Slot::COUNT];
        let (mut add_bos, mut add_eos) = (defaults.add_bos, false);
        let mut add_space_prefix = kind == VocabKind::Spm;
        let defaults_ids: &[(Slot, u32)] = match kind {
            VocabKind::Spm => &[(Slot::Bos, 1), (Slot::Eos, 2), (Slot::Unk, 0)],
            VocabKind::Bpe if raw.model == "gemma4" => &[],
            VocabKind::Bpe => &[(Slot::Bos, 11), (Slot::Eos, 11)],
            VocabKind::Wpm => &[
                (Slot::Bos, 101),
                (Slot::Unk, 100),
                (Slot::Sep, 102),
                (Slot::Pad, 0),
                (Slot::Mask, 103),
            ],
        };
        for &(slot, id) in defaults_ids {
            ids[slot as usize] = Some(id);
        }
        if let Some(v) = raw.add_space_prefix {
            add_space_prefix = v;
        }

        let check_len = |key: &'static str, found: usize| {
            if found < n {
                Err(TokenizerError::LengthMismatch {
                    key,
                    found,
                    expected: n,
                })
            } else {
                Ok(())
            }
        };
        if let Some(t) = &raw.token_types {
            check_len(KEY_TOKEN_TYPE, t.len())?;
        }
        if let Some(s) = &raw.scores {
            check_len(KEY_SCORES, s.len())?;
        }
        let mut tokens = Vec::with_capacity(n);
        for (i, text) in texts.into_iter().enumerate() {
            let text = if text.is_empty() {
                log::warn!("{KEY_TOKENS}: empty token at index {i}");
                format!("[EMPTY_{i}]")
            } else {
                text
            };
            let attr = match &raw.token_types {
                Some(t) => Attr::from_token_type(t[i]),
                None => Attr::NORMAL,
            };
            let score = raw.scores.as_ref().map_or(0.0, |s| s[i]);
            tokens.push(TokenData { text, score, attr });
        }
        let index = TokenIndex::new(&tokens);

        // Special ids: defaults out of range are disabled, keys override. A key out of range
        // is refused (llama.cpp ignores it with a warning): the file disagrees with itself, and
        // the id meant is unknown.
        for id in ids.iter_mut() {
            if id.is_some_and(|v| v as usize >= n) {
                *id = None;
            }
        }
        for (key, slot) in SPECIAL_KEYS {
            let Some(&(_, v)) = raw.special_ids.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            if v >= n as u64 {
                return Err(TokenizerError::SpecialOutOfRange { key, id: v, n });
            }
            ids[slot as usize] = Some(v as u32);
        }
        if let Some(v) = raw.add_bos {
            add_bos = v;
        }
        if let Some(v) = raw.add_eos {
            add_eos = v;
        }
        if defaults.force_add_bos && !add_bos {
            log::warn!("{KEY_ADD_BOS}: overridden to true for Gemma 4 (as llama.cpp does)");
            add_bos = true;
        }

        let mut vocab = Vocab {
            tokens,
            index,
            ids,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces: defaults.clean_spaces,
            eog: BTreeSet::new(),
            special_cache: Vec::new(),
            special_matcher: None,
        };
        vocab.detect_specials_by_text();
        vocab.build_eog();
        vocab.build_special_cache();
        vocab.special_matcher = SpecialMatcher::new(&vocab);
        vocab.model_specific_attrs(raw);

        if vocab.add_bos && vocab.bos().is_none() {
            return Err(missing(KEY_ADD_BOS, "BOS", SPECIAL_KEYS[0].0));
        }
        if vocab.add_eos && vocab.eos().is_none() {
            return Err(missing(KEY_ADD_EOS, "EOS", SPECIAL_KEYS[1].0));
        }
        Ok(vocab)
    }

    /// The id of the token whose text is `text` (llama.cpp's `text_to_token`).
    pub(crate) fn text_to_id(&self, text: &str) -> Option<u32> {
        self.index
            .get(text, |id| self.tokens[id as usize].text.as_str())
    }

    pub(crate) fn id(&self, slot: Slot) -> Option<u32> {
        self.ids[slot as usize]
    }
    pub(crate) fn bos(&self) -> Option<u32> {
        self.id(Slot::Bos)
    }
    pub(crate) fn eos(&self) -> Option<u32> {
        self.id(Slot::Eos)
    }

    pub(crate) fn attr(&self, id: u32) -> Attr {
        self.tokens
            .get(id as usize)
            .map_or(Attr::UNDEFINED, |t| t.attr)
    }

    fn add_attr(&mut self, id: u32, a: Attr) {
        let t = &mut self.tokens[id as usize];
        t.attr = t.attr | a;
    }

    fn find_text(&self, texts: &[&str]) -> Option<u32> {
        texts.iter().find_map(|t| self.text_to_id(t))
    }

    /// EOT/EOM/FIM tokens the metadata does not name, found by text and forced to control.
    fn detect_specials_by_text(&mut self) {
        let table: [(Slot, &[&str]); 8] = [
            (Slot::Eot, EOT_TEXTS),
            (Slot::Eom, EOM_TEXTS),
            (Slot::FimPre, FIM_PRE_TEXTS),
            (Slot::FimSuf, FIM_SUF_TEXTS),
            (Slot::FimMid, FIM_MID_TEXTS),
            (Slot::FimPad, FIM_PAD_TEXTS),
            (Slot::FimRep, FIM_REP_TEXTS),
            (Slot::FimSep, FIM_SEP_TEXTS),
        ];
        for (slot, texts) in table {
            if self.ids[slot as usize].is_none() {
                if let Some(id) = self.find_text(texts) {
                    self.ids[slot as usize] = Some(id);
                    self.add_attr(id, Attr::CONTROL);
                }
            }
        }
        // Control tokens whose text says "unused" are unused.
        for t in &mut self.tokens {
            if t.attr.any(Attr::CONTROL) && t.text.contains("unused") {
                t.attr = t.attr | Attr::UNUSED;
            }
        }
    }

    fn build_eog(&mut self) {
        let mut eog = BTreeSet::new();
        for slot in [Slot::FimPad, Slot::FimRep, Slot::FimSep] {
            eog.extend(self.id(slot));
        }
        for text in EOG_TEXTS {
            if let Some(id) = self.text_to_id(text) {
                eog.insert(id);
                self.add_attr(id, Attr::CONTROL);
            }
        }
        // gpt-oss: these are always rendered.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.text_to_id(text) {
                self.tokens[id as usize].attr = Attr::USER_DEFINED;
            }
        }
        for slot in [Slot::Eos, Slot::Eot, Slot::Eom] {
            eog.extend(self.id(slot));
        }
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        if let Some(end) = find_in(&self.tokens, &eog, &["<|end|>"]) {
            let call = find_in(&self.tokens, &eog, &["<|call|>", "<|calls|>"]).is_some();
            let ret = find_in(&self.tokens, &eog, &["<|return|>"]).is_some();
            let flush = find_in(&self.tokens, &eog, &["<|flush|>"]).is_some();
            if call && (ret || flush) {
                eog.remove(&end);
                self.tokens[end as usize].attr = Attr::USER_DEFINED;
            }
        }
        // Gemma 4 / PLaMo: "</s>" is a normal token there.
        if let Some(s) = find_in(&self.tokens, &eog, &["</s>"]) {
            if find_in(&self.tokens, &eog, &["<|tool_response>", "<|plamo:eos|>"]).is_some() {
                eog.remove(&s);
                self.tokens[s as usize].attr = Attr::NORMAL;
            }
        }
        self.eog = eog;
    }

    fn build_special_cache(&mut self) {
        let mask = Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN;
        let mut cache: Vec<u32> = (0..self.tokens.len() as u32)
            .filter(|&id| self.tokens[id as usize].attr.any(mask))
            .collect();
        // llama.cpp uses an unstable sort by length; ties keep id order here.
        cache.sort_by_key(|&id| std::cmp::Reverse(self.tokens[id as usize].text.len()));
        self.special_cache = cache;
    }

    /// llama.cpp's per-model attribute fix-ups (by `tokenizer.ggml.pre`, `general.architecture`
    /// and `general.name`): BERT-family mask tokens swallow the white space before them,
    /// Phi-3's special tokens the white space after them.
    fn model_specific_attrs(&mut self, raw: &RawVocab) {
        let name = raw
            .general_name
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        let pre = raw.pre.as_deref().unwrap_or("");
        let arch = raw.general_arch.as_deref().unwrap_or("");
        let masked_pre = ["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"];
        let masked_arch = ["nomic-bert-moe", "jina-bert-v3"];
        if masked_pre.iter().any(|p| pre.contains(p))
            || masked_arch.iter().any(|a| arch.contains(a))
        {
            self.lstrip_mask("<mask>");
        } else if name.contains("phi-3") || name.contains("phi3") {
            for id in self.special_cache.clone() {
                self.add_attr(id, Attr::RSTRIP);
            }
            if let Some(id) = self.text_to_id("</s>") {
                self.add_attr(id, Attr::RSTRIP);
            }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = self.text_to_id(text) {
                    let t = &mut self.tokens[id as usize];
                    t.attr = Attr(t.attr.0 & !Attr::RSTRIP.0);
                }
            }
        } else if name.contains("modern-bert") {
            self.lstrip_mask("[MASK]");
        }
    }

    fn lstrip_mask(&mut self, text: &str) {
        match self.text_to_id(text) {
            Some(id) => self.add_attr(id, Attr::LSTRIP),
            None => log::warn!("mask token {text} is missing from the vocabulary"),
        }
    }
}

/// The first id of `eog` whose text is one of `texts`.
fn find_in(tokens: &[TokenData], eog: &BTreeSet<u32>, texts: &[&str]) -> Option<u32> {
    eog.iter()
        .copied()
        .find(|&id| texts.contains(&tokens[id as usize].text.as_str()))
}

fn missing(flag: &'static str, what: &'static str, id_key: &'static str) -> TokenizerError {
    TokenizerError::MissingSpecial { flag, what, id_key }
}
