//! Errors raised while building a [`super::Tokenizer`] from GGUF metadata.

use crate::gguf::MetaError;

/// Why a tokenizer could not be built. Every message names the metadata key
/// (and, where there is one, the offending value).
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A key is missing or has the wrong type.
    #[error("tokenizer metadata: {0}")]
    Meta(#[from] MetaError),

    /// `tokenizer.ggml.model` names a vocabulary type llama.cpp does not know either.
    #[error("unknown tokenizer model '{0}' (tokenizer.ggml.model); Ember supports: llama, gpt2, gemma4, bert")]
    UnknownModel(String),

    /// `tokenizer.ggml.model` names a vocabulary type llama.cpp knows but Ember does not implement yet.
    #[error(
        "tokenizer model '{0}' (tokenizer.ggml.model) is not supported yet; Ember supports: llama, gpt2, gemma4, bert"
    )]
    UnsupportedModel(String),

    /// `tokenizer.ggml.pre` names a pre-tokenizer llama.cpp does not know either.
    #[error("unknown pre-tokenizer '{pre}' (tokenizer.ggml.pre) for tokenizer model '{model}'")]
    UnknownPre { model: String, pre: String },

    /// `tokenizer.ggml.pre` names a pre-tokenizer llama.cpp knows but Ember does not implement yet.
    #[error(
        "pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported yet; supported: {supported}"
    )]
    UnsupportedPre { pre: String, supported: String },

    /// A per-token array is shorter than `tokenizer.ggml.tokens`.
    #[error("metadata key '{key}' has {found} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch {
        key: &'static str,
        found: usize,
        expected: usize,
    },

    /// An array element has the wrong type (e.g. a non-string in `tokenizer.ggml.tokens`).
    #[error("metadata key '{key}': element {index} should be {expected}, found {found}")]
    BadElement {
        key: &'static str,
        index: usize,
        expected: &'static str,
        found: String,
    },

    /// `tokenizer.ggml.tokens` is empty or too large for 32-bit token ids.
    #[error("metadata key 'tokenizer.ggml.tokens' has {0} entries; expected 1 to 2^31-1")]
    BadVocabSize(usize),

    /// A special-token id key names a token past the end of the vocabulary.
    #[error("metadata key '{key}' is {id}, but tokenizer.ggml.tokens has {n} entries (ids 0 to {})", .n - 1)]
    SpecialOutOfRange {
        key: &'static str,
        id: u64,
        n: usize,
    },

    /// A flag asks for a token the vocabulary does not have.
    #[error("metadata key '{flag}' is true but the vocabulary has no {what} token ({id_key})")]
    MissingSpecial {
        flag: &'static str,
        what: &'static str,
        id_key: &'static str,
    },

    /// A pre-tokenizer regular expression failed to compile (a bug in Ember's table).
    #[error(
        "pre-tokenizer '{pre}' (tokenizer.ggml.pre): regex {regex:?} failed to compile: {msg}"
    )]
    Regex {
        pre: String,
        regex: String,
        msg: String,
    },
}
