//! Pure-Rust GGUF reader and writer.
//!
//! GGUF is the single-file model format of llama.cpp/ggml. A file is, in
//! little-endian order:
//!
//! ```text
//! "GGUF"  u32 version (2 or 3)  u64 n_tensors  u64 n_kv
//! n_kv      × { string key, u32 value type, value }
//! n_tensors × { string name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset }
//! padding to `general.alignment` (default 32)
//! tensor data (each tensor at data_offset + offset, offsets aligned)
//! ```
//!
//! Strings are a u64 byte length plus UTF-8 bytes; arrays are a u32 element
//! type, a u64 count and the elements (arrays of arrays allowed).
//!
//! * [`GgufFile`] owns the file's bytes (a read-only page-aligned memory map,
//!   or a `Vec<u8>`), and exposes the metadata ([`Value`]s, O(1) look-up and
//!   typed getters returning [`MetaError`]) and the tensor table
//!   ([`TensorInfo`], [`GgufFile::tensor_data`]).
//! * Files are untrusted: parsing validates everything up front and reports
//!   each kind of defect as its own [`GgufError`] variant naming the byte
//!   offset (and key or tensor). Reads are bounds-checked, arithmetic is
//!   checked, and no allocation exceeds what the remaining bytes could hold.
//!   The limits are [`MAX_STRING_LEN`], [`MAX_ARRAY_LEN`], [`MAX_ARRAY_DEPTH`],
//!   [`MAX_DIMS`], and the memory budget of the parsed form, [`DECODED_BASE`] +
//!   [`DECODED_PER_FILE_BYTE`] × the file size.
//! * [`GgufWriter`] produces valid files (used by tests and tools).
//! * [`describe_text`] / [`describe_json`] summarise a file for `ember info`.
//! * [`GgmlType`] is ggml's tensor type table (numbers, names, block sizes).
//!
//! This module contains no `unsafe` code.

#![forbid(unsafe_code)]

mod array;
mod describe;
mod error;
mod file;
mod reader;
mod types;
mod value;
mod writer;

pub use array::{Array, Strings};
pub use describe::{describe_json, describe_text};
pub use error::{GgufError, MetaError};
pub use file::{GgufFile, TensorInfo};
pub use reader::{
    ALIGNMENT_KEY, DECODED_BASE, DECODED_PER_FILE_BYTE, DEFAULT_ALIGNMENT, GGUF_MAGIC,
    MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_STRING_LEN,
};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

#[cfg(test)]
mod tests;
