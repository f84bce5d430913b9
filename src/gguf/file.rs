//! [`GgufFile`]: a parsed, validated GGUF file that owns its bytes, and
//! [`TensorInfo`], one entry of its tensor table.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use memmap2::{Mmap, MmapMut};

use super::array::Array;
use super::error::{GgufError, MetaError};
use super::reader::{parse, Parsed};
use super::types::GgmlType;
use super::value::Value;

/// One tensor of a GGUF file, as described by its tensor-info record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape, `ne[0]` (the contiguous dimension) first, as stored in GGUF.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dimensions; saturating, though the
    /// parser guarantees it fits in `i64`).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// The bytes a [`GgufFile`] was parsed from.
enum Storage {
    Mmap(Mmap),
    Vec(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Vec(v) => v,
        }
    }
}

/// A parsed and validated GGUF file that owns its bytes.
///
/// Every tensor's data range was checked to lie inside the file and not to
/// overlap another tensor, so [`tensor_data`](Self::tensor_data) is a plain
/// slice. Metadata look-ups by key are O(1).
pub struct GgufFile {
    storage: Storage,
    parsed: Parsed,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.parsed.version)
            .field("file_size", &self.file_size())
            .field("n_kv", &self.parsed.metadata.len())
            .field("n_tensors", &self.parsed.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Read the file at `path` into a page-aligned, read-only memory map and
    /// parse + validate it.
    ///
    /// The file's contents are *copied* into an anonymous mapping, because
    /// mapping the file itself requires `unsafe` (another process could change
    /// it under us), which this module does not use. Code that is allowed
    /// `unsafe` can map the file itself and hand the map to
    /// [`from_mmap`](Self::from_mmap) to avoid the copy.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            return Self::from_bytes(Vec::new());
        }
        let len = usize::try_from(len).map_err(|_| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "file does not fit in the address space",
            ))
        })?;
        let mut map = MmapMut::map_anon(len).map_err(io_err)?;
        file.read_exact(&mut map).map_err(io_err)?;
        let map = map.make_read_only().map_err(io_err)?;
        Self::from_mmap(map)
    }

    /// Parse + validate an existing read-only memory map (e.g. a file mapping
    /// made by code that is allowed `unsafe`).
    pub fn from_mmap(map: Mmap) -> Result<GgufFile, GgufError> {
        let parsed = parse(&map)?;
        Ok(GgufFile {
            storage: Storage::Mmap(map),
            parsed,
        })
    }

    /// Parse + validate an in-memory image (tests, generated files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        let parsed = parse(&bytes)?;
        Ok(GgufFile {
            storage: Storage::Vec(bytes),
            parsed,
        })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    /// Data alignment: `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Absolute offset of the data section (end of the tensor infos, aligned
    /// up). With no tensors this may point just past the end of the file.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// All metadata key/value pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.parsed.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.parsed.key_index.get(key)?;
        Some(&self.parsed.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value, MetaError> {
        self.get(key).ok_or_else(|| MetaError::Missing {
            key: key.to_string(),
        })
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, MetaError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }

    /// Any integer type whose value fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, MetaError> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| wrong_type(key, "u32 (an integer in 0..=u32::MAX)", v))
    }

    /// Any non-negative integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, MetaError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong_type(key, "u64 (a non-negative integer)", v))
    }

    /// An `f32` or `f64` (narrowed), or an integer (converted).
    pub fn get_f32(&self, key: &str) -> Result<f32, MetaError> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| wrong_type(key, "f32 (a number)", v))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, MetaError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| wrong_type(key, "bool", v))
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, MetaError> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::String(items)) => Ok(items.iter().collect()),
            _ => Err(wrong_type(key, "array[string]", v)),
        }
    }

    /// An array of `f32` (or `f64`, narrowed).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, MetaError> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::F32(items)) => Ok(items.clone()),
            Value::Array(Array::F64(items)) => Ok(items.iter().map(|&x| x as f32).collect()),
            _ => Err(wrong_type(key, "array[f32]", v)),
        }
    }

    /// An array of any integer type whose elements all fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, MetaError> {
        const EXPECTED: &str = "array[i32] (integers in i32 range)";
        let v = self.require(key)?;
        match v {
            Value::Array(items) if items.elem_type().is_integer() => items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    it.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| MetaError::WrongType {
                            key: key.to_string(),
                            expected: EXPECTED,
                            found: format!(
                                "{} with element {i} = {}",
                                v.type_description(),
                                scalar(&it)
                            ),
                        })
                })
                .collect(),
            _ => Err(wrong_type(key, EXPECTED, v)),
        }
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    /// The tensor named `name`, if present (O(1)).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.parsed.tensor_index.get(name)?;
        Some(&self.parsed.tensors[i])
    }

    /// The data bytes of `t` (`t.size` bytes at `t.offset`). Ranges of this
    /// file's tensors were validated at parse time; a `TensorInfo` that does
    /// not fit this file (e.g. from another file) yields an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().zip(
            t.offset
                .checked_add(t.size)
                .and_then(|e| usize::try_from(e).ok()),
        );
        match range {
            Some((start, end)) => self.bytes().get(start..end).unwrap_or(&[]),
            None => &[],
        }
    }

    /// The whole file. When opened with [`open`](Self::open) or
    /// [`from_mmap`](Self::from_mmap) the base address is page aligned.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }
}

/// `found` text for a scalar: type and value, e.g. `i32 -1`.
fn scalar(v: &Value) -> String {
    match v {
        Value::U8(x) => format!("u8 {x}"),
        Value::I8(x) => format!("i8 {x}"),
        Value::U16(x) => format!("u16 {x}"),
        Value::I16(x) => format!("i16 {x}"),
        Value::U32(x) => format!("u32 {x}"),
        Value::I32(x) => format!("i32 {x}"),
        Value::U64(x) => format!("u64 {x}"),
        Value::I64(x) => format!("i64 {x}"),
        Value::F32(x) => format!("f32 {x}"),
        Value::F64(x) => format!("f64 {x}"),
        Value::Bool(x) => format!("bool {x}"),
        Value::String(_) | Value::Array(..) => v.type_description(),
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> MetaError {
    MetaError::WrongType {
        key: key.to_string(),
        expected,
        found: scalar(found),
    }
}
