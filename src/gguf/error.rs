//! Error types: [`GgufError`] for parsing/validating a file and [`MetaError`]
//! for typed metadata look-ups.
//!
//! Every `GgufError` variant except `Io` carries the byte `offset` in the file
//! where the problem was found, and its message states it. `context` fields
//! say what was being read, e.g. `value of key 'general.name'` or
//! `tensor info 'blk.0.attn_q.weight'`.

use std::path::PathBuf;

/// A GGUF file could not be opened, or is malformed / violates a limit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    #[error("cannot read GGUF file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the file is empty (0 bytes), not a GGUF model")]
    Empty,

    #[error("not a GGUF file: bad magic {found:02x?} at offset 0 (expected \"GGUF\")")]
    BadMagic { found: Vec<u8> },

    #[error("unsupported GGUF version {version} at offset {offset} (supported: 2, 3)")]
    UnsupportedVersion { offset: u64, version: u32 },

    #[error("truncated file at offset {offset} reading {what} of {context}: need {needed} bytes, {available} left")]
    Truncated {
        offset: u64,
        what: &'static str,
        context: String,
        needed: u64,
        available: u64,
    },

    #[error(
        "string length {len} at offset {offset} in {context} exceeds {limit} (cap or bytes left)"
    )]
    StringTooLong {
        offset: u64,
        context: String,
        len: u64,
        limit: u64,
    },

    #[error("invalid UTF-8 in string at offset {offset} in {context}")]
    InvalidUtf8 { offset: u64, context: String },

    #[error("unknown metadata value type {value_type} at offset {offset} in {context}")]
    UnknownValueType {
        offset: u64,
        context: String,
        value_type: u32,
    },

    #[error("invalid bool byte {byte:#04x} at offset {offset} in {context} (must be 0 or 1)")]
    InvalidBool {
        offset: u64,
        context: String,
        byte: u8,
    },

    #[error(
        "array count {count} at offset {offset} in {context} exceeds {limit} (cap or bytes left)"
    )]
    ArrayTooLong {
        offset: u64,
        context: String,
        count: u64,
        limit: u64,
    },

    #[error("metadata at offset {offset} in {context} would take more than {limit} bytes of memory once decoded (64 MiB + 4 bytes per file byte)")]
    DecodedTooLarge {
        offset: u64,
        context: String,
        limit: u64,
    },

    #[error("arrays nested deeper than {max_depth} at offset {offset} in {context}")]
    ArrayTooDeep {
        offset: u64,
        context: String,
        max_depth: usize,
    },

    #[error("n_kv {n_kv} at offset {offset} cannot fit in the {bytes_left} bytes left")]
    TooManyKv {
        offset: u64,
        n_kv: u64,
        bytes_left: u64,
    },

    #[error("n_tensors {n_tensors} at offset {offset} cannot fit in the {bytes_left} bytes left")]
    TooManyTensors {
        offset: u64,
        n_tensors: u64,
        bytes_left: u64,
    },

    #[error("empty metadata key at offset {offset}")]
    EmptyKey { offset: u64 },

    #[error("duplicate metadata key '{key}' at offset {offset}")]
    DuplicateKey { offset: u64, key: String },

    #[error("duplicate tensor name '{name}' at offset {offset}")]
    DuplicateTensor { offset: u64, name: String },

    #[error("tensor '{name}' at offset {offset} has {n_dims} dimensions (must be 1..=4)")]
    BadDimCount {
        offset: u64,
        name: String,
        n_dims: u32,
    },

    #[error(
        "tensor '{name}' at offset {offset}: dimension {index} is {value} (must not be negative)"
    )]
    NegativeDim {
        offset: u64,
        name: String,
        index: usize,
        value: i64,
    },

    #[error("tensor '{name}' at offset {offset}: shape {dims:?} overflows the element count (max i64::MAX)")]
    ElementCountOverflow {
        offset: u64,
        name: String,
        dims: Vec<u64>,
    },

    #[error("tensor '{name}' at offset {offset} has unknown ggml type {type_id}")]
    UnknownGgmlType {
        offset: u64,
        name: String,
        type_id: u32,
    },

    #[error("tensor '{name}' at offset {offset}: ne[0] = {ne0} is not a multiple of the {ggml_type} block size {block_size}")]
    BadBlockMultiple {
        offset: u64,
        name: String,
        ggml_type: &'static str,
        ne0: u64,
        block_size: u64,
    },

    #[error("tensor '{name}' at offset {offset}: data offset {data_offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        offset: u64,
        name: String,
        data_offset: u64,
        alignment: u64,
    },

    #[error("tensor '{name}' (info at offset {offset}): data at file offset {start} + {size} bytes lies outside the {file_size}-byte file")]
    TensorOutOfBounds {
        offset: u64,
        name: String,
        start: u64,
        size: u64,
        file_size: u64,
    },

    #[error("data section at offset {data_offset} (end of the tensor infos at {offset}, aligned to {alignment}) lies past the end of the {file_size}-byte file")]
    DataSectionOutOfBounds {
        offset: u64,
        data_offset: u64,
        alignment: u64,
        file_size: u64,
    },

    #[error("tensor '{name}' data at offset {offset} overlaps tensor '{other}' (which ends at {other_end})")]
    OverlappingTensors {
        offset: u64,
        name: String,
        other: String,
        other_end: u64,
    },

    #[error("metadata key 'general.alignment' at offset {offset} has type {found} (must be u32)")]
    AlignmentType { offset: u64, found: String },

    #[error("metadata key 'general.alignment' at offset {offset} is {value} (must be a non-zero power of two)")]
    AlignmentValue { offset: u64, value: u64 },
}

impl GgufError {
    /// The byte offset the error refers to (`None` for I/O errors).
    pub fn offset(&self) -> Option<u64> {
        use GgufError::*;
        match self {
            Io { .. } | Empty => None,
            BadMagic { .. } => Some(0),
            UnsupportedVersion { offset, .. }
            | Truncated { offset, .. }
            | StringTooLong { offset, .. }
            | InvalidUtf8 { offset, .. }
            | UnknownValueType { offset, .. }
            | InvalidBool { offset, .. }
            | ArrayTooLong { offset, .. }
            | ArrayTooDeep { offset, .. }
            | DecodedTooLarge { offset, .. }
            | TooManyKv { offset, .. }
            | TooManyTensors { offset, .. }
            | EmptyKey { offset }
            | DuplicateKey { offset, .. }
            | DuplicateTensor { offset, .. }
            | BadDimCount { offset, .. }
            | NegativeDim { offset, .. }
            | ElementCountOverflow { offset, .. }
            | UnknownGgmlType { offset, .. }
            | BadBlockMultiple { offset, .. }
            | MisalignedTensor { offset, .. }
            | TensorOutOfBounds { offset, .. }
            | DataSectionOutOfBounds { offset, .. }
            | OverlappingTensors { offset, .. }
            | AlignmentType { offset, .. }
            | AlignmentValue { offset, .. } => Some(*offset),
        }
    }
}

/// A typed metadata look-up failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("metadata key '{key}' is missing")]
    Missing { key: String },

    #[error("metadata key '{key}' should be {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
}

impl MetaError {
    /// The key the failed look-up was for.
    pub fn key(&self) -> &str {
        match self {
            MetaError::Missing { key } | MetaError::WrongType { key, .. } => key,
        }
    }
}
