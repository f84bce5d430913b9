//! [`GgufWriter`]: builds GGUF files (v3 by default) in memory.
//!
//! Layout written: header, key/value pairs in insertion order, tensor infos in
//! insertion order, zero padding to the alignment, then each tensor's data
//! followed by zero padding to the alignment (as llama.cpp does). Tensor
//! offsets are assigned consecutively from 0.
//!
//! The writer trusts its caller: misuse (an array whose elements do not match
//! its declared element type, tensor data of the wrong length, an invalid
//! shape, a duplicate tensor name, a bad alignment) is a programming error and
//! panics at the call that introduced it, with a message saying why.

use std::path::Path;

use super::reader::{
    align_up, element_count, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS,
};
use super::types::GgmlType;
use super::value::{Value, ValueType};

struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builder for a GGUF file. See the module docs for the layout and panics.
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Set the header version. Written as given; only 2 and 3 are readable
    /// (other values are useful for testing the reader).
    pub fn version(mut self, v: u32) -> Self {
        self.version = v;
        self
    }

    /// Set the data alignment. When it is not 32, `general.alignment` is
    /// written as a `u32` (replacing any value added for that key).
    ///
    /// # Panics
    /// If `a` is not a power of two that fits in `u32`.
    pub fn alignment(mut self, a: u64) -> Self {
        assert!(
            a.is_power_of_two() && a <= u64::from(u32::MAX),
            "GgufWriter: alignment {a} must be a power of two that fits in u32"
        );
        self.alignment = a;
        self
    }

    /// Add (or replace, keeping its position) a metadata key.
    ///
    /// # Panics
    /// If `key` is empty.
    pub fn add(&mut self, key: &str, v: Value) -> &mut Self {
        assert!(!key.is_empty(), "GgufWriter: empty metadata key");
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.metadata.push((key.to_string(), v)),
        }
        self
    }

    /// Add a tensor with shape `dims` (`ne[0]` first) and its raw data.
    ///
    /// # Panics
    /// If the name is already used, `dims` has 0 or more than 4 entries, the
    /// element count overflows, `dims[0]` is not a multiple of the type's block
    /// size, or `data.len()` is not the tensor's byte size.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> &mut Self {
        assert!(
            !self.tensors.iter().any(|t| t.name == name),
            "GgufWriter: duplicate tensor name '{name}'"
        );
        assert!(
            (1..=MAX_DIMS as usize).contains(&dims.len()),
            "GgufWriter: tensor '{name}' has {} dimensions (must be 1..=4)",
            dims.len()
        );
        let n = element_count(dims)
            .unwrap_or_else(|| panic!("GgufWriter: tensor '{name}' shape {dims:?} overflows"));
        assert!(
            dims[0].is_multiple_of(ty.block_size()),
            "GgufWriter: tensor '{name}': ne[0] = {} is not a multiple of the {ty} block size {}",
            dims[0],
            ty.block_size()
        );
        let size = ty.row_bytes(n);
        assert!(
            size == Some(data.len() as u64),
            "GgufWriter: tensor '{name}' ({ty} {dims:?}) needs {size:?} bytes, got {}",
            data.len()
        );
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ggml_type: ty,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    /// The metadata as written: `general.alignment` set when the alignment is not 32.
    fn effective_metadata(&self) -> Vec<(&str, Value)> {
        let mut out: Vec<(&str, Value)> = Vec::with_capacity(self.metadata.len() + 1);
        let forced =
            (self.alignment != DEFAULT_ALIGNMENT).then_some(Value::U32(self.alignment as u32));
        for (k, v) in &self.metadata {
            match &forced {
                Some(a) if k == ALIGNMENT_KEY => out.push((k, a.clone())),
                _ => out.push((k, v.clone())),
            }
        }
        if let Some(a) = forced {
            if !out.iter().any(|(k, _)| *k == ALIGNMENT_KEY) {
                out.push((ALIGNMENT_KEY, a));
            }
        }
        out
    }

    /// Serialize the whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let metadata = self.effective_metadata();
        let align = self.alignment;
        let data_len: u64 = self
            .tensors
            .iter()
            .map(|t| align_up(t.data.len() as u64, align))
            .sum();
        let mut out = Vec::with_capacity(data_len as usize + 4096);
        out.extend_from_slice(&GGUF_MAGIC);
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, metadata.len() as u64);
        for (k, v) in &metadata {
            put_str(&mut out, k);
            put_u32(&mut out, v.value_type().as_u32());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ggml_type.as_u32());
            put_u64(&mut out, offset);
            offset += align_up(t.data.len() as u64, align);
        }
        pad(&mut out, align);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad(&mut out, align);
        }
        out
    }

    /// Serialize and write to `path` (created or truncated).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn pad(out: &mut Vec<u8>, align: u64) {
    let target = align_up(out.len() as u64, align) as usize;
    out.resize(target, 0);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => put_u32(out, *x),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => put_u64(out, *x),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            put_u32(out, ValueType::as_u32(items.elem_type()));
            put_u64(out, items.len() as u64);
            for it in items.iter() {
                put_value(out, &it);
            }
        }
    }
}
