//! Raw tokenizer metadata as stored in GGUF (`tokenizer.ggml.*`), read but not yet
//! interpreted. Everything type-specific (defaults, pre-tokenizer choice) happens in
//! `vocab.rs` / `pretok.rs`; tests build a [`RawVocab`] by hand instead of a GGUF file.

use super::error::TokenizerError;
use crate::gguf::{Array, GgufFile, MetaError, Value};

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_PRE: &str = "tokenizer.ggml.pre";
pub(crate) const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub(crate) const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub(crate) const KEY_SCORES: &str = "tokenizer.ggml.scores";
pub(crate) const KEY_MERGES: &str = "tokenizer.ggml.merges";
pub(crate) const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub(crate) const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
pub(crate) const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
pub(crate) const KEY_REMOVE_EXTRA_WS: &str = "tokenizer.ggml.remove_extra_whitespaces";
pub(crate) const KEY_LOWERCASE: &str = "tokenizer.ggml.normalizer.lowercase";
pub(crate) const KEY_STRIP_ACCENTS: &str = "tokenizer.ggml.normalizer.strip_accents";

/// The special-token id slots llama.cpp reads, in its order (`llama-vocab.cpp`, "special tokens").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Bos,
    Eos,
    Eot,
    Eom,
    Unk,
    Sep,
    Pad,
    Mask,
    FimPre,
    FimSuf,
    FimMid,
    FimPad,
    FimRep,
    FimSep,
}

impl Slot {
    pub(crate) const COUNT: usize = 14;
}

/// GGUF key → slot. The last three are deprecated spellings of the FIM keys; like
/// llama.cpp they are read after the new ones and so win when both are present.
pub(crate) const SPECIAL_KEYS: [(&str, Slot); 17] = [
    ("tokenizer.ggml.bos_token_id", Slot::Bos),
    ("tokenizer.ggml.eos_token_id", Slot::Eos),
    ("tokenizer.ggml.eot_token_id", Slot::Eot),
    ("tokenizer.ggml.eom_token_id", Slot::Eom),
    ("tokenizer.ggml.unknown_token_id", Slot::Unk),
    ("tokenizer.ggml.seperator_token_id", Slot::Sep),
    ("tokenizer.ggml.padding_token_id", Slot::Pad),
    ("tokenizer.ggml.mask_token_id", Slot::Mask),
    ("tokenizer.ggml.fim_pre_token_id", Slot::FimPre),
    ("tokenizer.ggml.fim_suf_token_id", Slot::FimSuf),
    ("tokenizer.ggml.fim_mid_token_id", Slot::FimMid),
    ("tokenizer.ggml.fim_pad_token_id", Slot::FimPad),
    ("tokenizer.ggml.fim_rep_token_id", Slot::FimRep),
    ("tokenizer.ggml.fim_sep_token_id", Slot::FimSep),
    ("tokenizer.ggml.prefix_token_id", Slot::FimPre),
    ("tokenizer.ggml.suffix_token_id", Slot::FimSuf),
    ("tokenizer.ggml.middle_token_id", Slot::FimMid),
];

/// Tokenizer metadata exactly as found in the file; `None` = key absent.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawVocab {
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub token_types: Option<Vec<i32>>,
    pub scores: Option<Vec<f32>>,
    pub merges: Option<Vec<String>>,
    /// `(key, id)` for every special-id key present, in [`SPECIAL_KEYS`] order.
    pub special_ids: Vec<(&'static str, u64)>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// Read but unused, as in llama.cpp (its SPM tokenizer ignores it too).
    #[allow(dead_code)]
    pub remove_extra_whitespaces: Option<bool>,
    /// WordPiece ("bert") normalizer options; llama.cpp defaults both to true.
    pub lowercase: Option<bool>,
    pub strip_accents: Option<bool>,
    /// `general.name`, used by llama.cpp for per-model token attributes (phi-3).
    pub general_name: Option<String>,
    /// `general.architecture`, likewise (BERT-family `<mask>` rules).
    pub general_arch: Option<String>,
}

impl RawVocab {
    pub(crate) fn from_gguf(f: &GgufFile) -> Result<RawVocab, TokenizerError> {
        let mut special_ids = Vec::new();
        for (key, _) in SPECIAL_KEYS {
            if let Some(v) = f.get(key) {
                let id = v
                    .as_u64()
                    .ok_or_else(|| wrong(key, "a non-negative integer", v))?;
                special_ids.push((key, id));
            }
        }
        Ok(RawVocab {
            model: opt_str(f, KEY_MODEL)?
                .ok_or_else(|| MetaError::Missing {
                    key: KEY_MODEL.to_string(),
                })?
                .to_string(),
            pre: opt_str(f, KEY_PRE)?.map(str::to_string),
            tokens: str_array(f, KEY_TOKENS)?.ok_or_else(|| MetaError::Missing {
                key: KEY_TOKENS.to_string(),
            })?,
            token_types: num_array(f, KEY_TOKEN_TYPE, "i32", |v| {
                v.as_i64().and_then(|x| i32::try_from(x).ok())
            })?,
            scores: num_array(f, KEY_SCORES, "f32", |v| v.as_f64().map(|x| x as f32))?,
            merges: str_array(f, KEY_MERGES)?,
            special_ids,
            add_bos: opt_bool(f, KEY_ADD_BOS)?,
            add_eos: opt_bool(f, KEY_ADD_EOS)?,
            add_space_prefix: opt_bool(f, KEY_ADD_SPACE_PREFIX)?,
            remove_extra_whitespaces: opt_bool(f, KEY_REMOVE_EXTRA_WS)?,
            lowercase: opt_bool(f, KEY_LOWERCASE)?,
            strip_accents: opt_bool(f, KEY_STRIP_ACCENTS)?,
            general_name: opt_str(f, "general.name")?.map(str::to_string),
            general_arch: opt_str(f, "general.architecture")?.map(str::to_string),
        })
    }
}

fn wrong(key: &str, expected: &'static str, v: &Value) -> MetaError {
    MetaError::WrongType {
        key: key.to_string(),
        expected,
        found: v.type_description(),
    }
}

fn opt_str<'a>(f: &'a GgufFile, key: &str) -> Result<Option<&'a str>, MetaError> {
    f.get(key)
        .map(|v| v.as_str().ok_or_else(|| wrong(key, "a string", v)))
        .transpose()
}

fn opt_bool(f: &GgufFile, key: &str) -> Result<Option<bool>, MetaError> {
    f.get(key)
        .map(|v| v.as_bool().ok_or_else(|| wrong(key, "a bool", v)))
        .transpose()
}

fn array<'a>(
    f: &'a GgufFile,
    key: &str,
    what: &'static str,
) -> Result<Option<&'a Array>, MetaError> {
    f.get(key)
        .map(|v| v.as_array().ok_or_else(|| wrong(key, what, v)))
        .transpose()
}

fn str_array(f: &GgufFile, key: &'static str) -> Result<Option<Vec<String>>, TokenizerError> {
    let Some(items) = array(f, key, "an array of strings")? else {
        return Ok(None);
    };
    match items.strings() {
        Some(s) => Ok(Some(s.iter().map(str::to_string).collect())),
        None if items.is_empty() => Ok(Some(Vec::new())),
        None => Err(TokenizerError::BadElement {
            key,
            index: 0,
            expected: "a string",
            found: items.elem_type().name().to_string(),
        }),
    }
}

fn num_array<T>(
    f: &GgufFile,
    key: &'static str,
    expected: &'static str,
    conv: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, TokenizerError> {
    let Some(items) = array(f, key, "a numeric array")? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, v) in items.iter().enumerate() {
        out.push(conv(&v).ok_or_else(|| TokenizerError::BadElement {
            key,
            index,
            expected,
            found: v.type_description(),
        })?);
    }
    Ok(Some(out))
}
