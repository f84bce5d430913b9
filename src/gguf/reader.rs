//! The bounded, validating GGUF parser.
//!
//! [`parse`] walks a byte slice once, front to back, through a [`Cursor`]
//! that refuses every read past the end. Counts read from the file are
//! checked against what the remaining bytes could possibly hold before any
//! allocation is made, and everything the parsed form holds in memory is
//! charged to a budget of [`DECODED_BASE`] + [`DECODED_PER_FILE_BYTE`] × the
//! file size (an array of strings keeps an 8-byte end offset per element, a
//! nested array 32 bytes per element), so a hostile file cannot make
//! the parser allocate more than a small multiple of its own size. All
//! arithmetic on file-supplied numbers is checked.
//!
//! Order of checks: magic, version, counts, key/value pairs (keys unique and
//! non-empty, values well-formed), `general.alignment`, tensor infos (names
//! unique, shape, type, offset alignment), then tensor data bounds and overlap.

use std::collections::HashMap;
use std::fmt;

use super::array::{Array, Strings};
use super::error::GgufError;
use super::file::TensorInfo;
use super::types::GgmlType;
use super::value::{Value, ValueType};

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Metadata key that overrides [`DEFAULT_ALIGNMENT`]; must be a `u32`.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Longest string (key, value or tensor name) accepted, in bytes.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Most elements accepted in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 1 << 26;
/// Deepest accepted array nesting (an array of scalars has depth 1).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Memory the parsed metadata and tensor table may take whatever the file size, in bytes.
pub const DECODED_BASE: u64 = 64 << 20;
/// Memory the parsed metadata and tensor table may take per byte of file, on top of
/// [`DECODED_BASE`]. Real files need at most about 5 bytes per metadata byte (vocabulary-only
/// files, all metadata, stay under 3 per file byte plus a few MiB; models far less).
pub const DECODED_PER_FILE_BYTE: u64 = 4;

/// Smallest possible key/value record: key length, a 1-byte key, type, 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 1 + 4 + 1;
/// Smallest possible tensor info: name length (empty name), n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 8 + 4 + 8;

/// Everything [`parse`] extracts; [`GgufFile`](super::GgufFile) keeps it next to the bytes.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// What the parser was reading, for error messages.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Header,
    Key(u64),
    Value(&'a str),
    TensorName(u64),
    Tensor(&'a str),
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctx::Header => f.write_str("header"),
            Ctx::Key(i) => write!(f, "key #{i}"),
            Ctx::Value(k) => write!(f, "value of key '{k}'"),
            Ctx::TensorName(i) => write!(f, "name of tensor info #{i}"),
            Ctx::Tensor(n) => write!(f, "tensor info '{n}'"),
        }
    }
}

/// A forward-only reader over a byte slice; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes of memory the parsed form may still take (see [`Cursor::charge`]).
    budget: u64,
    /// The budget the parse started with, for the error message.
    limit: u64,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn left(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn truncated(&self, what: &'static str, ctx: Ctx<'_>, needed: u64) -> GgufError {
        GgufError::Truncated {
            offset: self.offset(),
            what,
            context: ctx.to_string(),
            needed,
            available: self.left(),
        }
    }

    /// Count `bytes` of memory about to be allocated for the parsed form against the budget.
    fn charge(&mut self, bytes: u64, ctx: Ctx<'_>) -> Result<(), GgufError> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(GgufError::DecodedTooLarge {
                offset: self.offset(),
                context: ctx.to_string(),
                limit: self.limit,
            }),
        }
    }

    fn take(&mut self, n: u64, what: &'static str, ctx: Ctx<'_>) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(self.truncated(what, ctx, n));
        }
        // n <= left <= usize::MAX, so the conversion is lossless.
        let end = self.pos + n as usize;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(
        &mut self,
        what: &'static str,
        ctx: Ctx<'_>,
    ) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what, ctx)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str, ctx: Ctx<'_>) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what, ctx)?[0])
    }

    fn u32(&mut self, what: &'static str, ctx: Ctx<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what, ctx)?))
    }

    fn u64(&mut self, what: &'static str, ctx: Ctx<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what, ctx)?))
    }

    /// A u64 length followed by that many UTF-8 bytes.
    fn string(&mut self, ctx: Ctx<'_>) -> Result<String, GgufError> {
        self.str(ctx).map(str::to_owned)
    }

    /// [`Cursor::string`] without the copy (its bytes are still charged: the caller keeps them).
    fn str(&mut self, ctx: Ctx<'_>) -> Result<&'a str, GgufError> {
        let len_offset = self.offset();
        let len = self.u64("string length", ctx)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::StringTooLong {
                offset: len_offset,
                context: ctx.to_string(),
                len,
                limit: MAX_STRING_LEN,
            });
        }
        let start = self.offset();
        let bytes = self.take(len, "string bytes", ctx)?;
        self.charge(len, ctx)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => Err(GgufError::InvalidUtf8 {
                offset: start + e.valid_up_to() as u64,
                context: ctx.to_string(),
            }),
        }
    }

    /// A u32 GGUF value-type tag.
    fn value_type(&mut self, what: &'static str, ctx: Ctx<'_>) -> Result<ValueType, GgufError> {
        let offset = self.offset();
        let raw = self.u32(what, ctx)?;
        ValueType::from_u32(raw).ok_or_else(|| GgufError::UnknownValueType {
            offset,
            context: ctx.to_string(),
            value_type: raw,
        })
    }

    /// One value of type `ty`; `depth` is the number of enclosing arrays.
    fn value(&mut self, ty: ValueType, ctx: Ctx<'_>, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8("u8", ctx)?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array("i8", ctx)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16", ctx)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16", ctx)?)),
            ValueType::U32 => Value::U32(self.u32("u32", ctx)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32", ctx)?)),
            ValueType::U64 => Value::U64(self.u64("u64", ctx)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64", ctx)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32", ctx)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64", ctx)?)),
            ValueType::Bool => Value::Bool(self.bool(ctx)?),
            ValueType::String => Value::String(self.string(ctx)?),
            ValueType::Array => Value::Array(self.array_value(ctx, depth)?),
        })
    }

    /// A bool: one byte, 0 or 1.
    fn bool(&mut self, ctx: Ctx<'_>) -> Result<bool, GgufError> {
        let offset = self.offset();
        match self.u8("bool", ctx)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::InvalidBool {
                offset,
                context: ctx.to_string(),
                byte,
            }),
        }
    }

    /// `count` numbers of `N` bytes each, decoded by `f`.
    fn numbers<const N: usize, T>(
        &mut self,
        count: u64,
        what: &'static str,
        ctx: Ctx<'_>,
        f: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        (0..count).map(|_| Ok(f(self.array(what, ctx)?))).collect()
    }

    fn array_value(&mut self, ctx: Ctx<'_>, depth: usize) -> Result<Array, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                offset: self.offset(),
                context: ctx.to_string(),
                max_depth: MAX_ARRAY_DEPTH,
            });
        }
        let elem = self.value_type("array element type", ctx)?;
        let count_offset = self.offset();
        let count = self.u64("array count", ctx)?;
        if count > MAX_ARRAY_LEN {
            return Err(GgufError::ArrayTooLong {
                offset: count_offset,
                context: ctx.to_string(),
                count,
                limit: MAX_ARRAY_LEN,
            });
        }
        let min = elem.min_encoded_size();
        if count > self.left() / min {
            return Err(self.truncated("array elements", ctx, count.saturating_mul(min)));
        }
        // count <= left / min: bounded by the bytes actually present, and by the budget.
        let per_item = match elem {
            ValueType::String => size_of::<usize>(),
            ValueType::Array => size_of::<Array>(),
            _ => elem.min_encoded_size() as usize,
        };
        self.charge(count * per_item as u64, ctx)?;
        Ok(match elem {
            ValueType::U8 => Array::U8(self.numbers(count, "u8", ctx, |b: [u8; 1]| b[0])?),
            ValueType::I8 => Array::I8(self.numbers(count, "i8", ctx, i8::from_le_bytes)?),
            ValueType::U16 => Array::U16(self.numbers(count, "u16", ctx, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.numbers(count, "i16", ctx, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.numbers(count, "u32", ctx, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.numbers(count, "i32", ctx, i32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.numbers(count, "u64", ctx, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.numbers(count, "i64", ctx, i64::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.numbers(count, "f32", ctx, f32::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.numbers(count, "f64", ctx, f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool(
                (0..count)
                    .map(|_| self.bool(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            ValueType::String => {
                let mut strings = Strings::with_capacity(count as usize);
                for _ in 0..count {
                    strings.push(self.str(ctx)?);
                }
                Array::String(strings)
            }
            ValueType::Array => {
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.array_value(ctx, depth + 1)?);
                }
                Array::Array(items)
            }
        })
    }
}

/// Parse and fully validate a GGUF image. Never panics; see the module docs.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let file_size = buf.len() as u64;
    let limit = DECODED_BASE.saturating_add(file_size.saturating_mul(DECODED_PER_FILE_BYTE));
    let mut c = Cursor {
        buf,
        pos: 0,
        budget: limit,
        limit,
    };

    // --- header -----------------------------------------------------------
    if buf.is_empty() {
        return Err(GgufError::Empty);
    }
    let head = &buf[..buf.len().min(4)];
    if head != &GGUF_MAGIC[..head.len()] {
        return Err(GgufError::BadMagic {
            found: head.to_vec(),
        });
    }
    c.take(4, "magic", Ctx::Header)?;
    let version_offset = c.offset();
    let version = c.u32("version", Ctx::Header)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion {
            offset: version_offset,
            version,
        });
    }
    let n_tensors_offset = c.offset();
    let n_tensors = c.u64("n_tensors", Ctx::Header)?;
    let n_kv_offset = c.offset();
    let n_kv = c.u64("n_kv", Ctx::Header)?;
    if n_kv > c.left() / MIN_KV_SIZE {
        return Err(GgufError::TooManyKv {
            offset: n_kv_offset,
            n_kv,
            bytes_left: c.left(),
        });
    }
    if n_tensors > c.left() / MIN_TENSOR_INFO_SIZE {
        return Err(GgufError::TooManyTensors {
            offset: n_tensors_offset,
            n_tensors,
            bytes_left: c.left(),
        });
    }

    // --- key/value pairs ----------------------------------------------------
    // Both counts were checked against the bytes left, so these are bounded; each key is
    // held twice (the list and the index).
    const KV_ENTRY: u64 = (size_of::<(String, Value)>() + size_of::<(String, usize)>()) as u64;
    c.charge(n_kv * KV_ENTRY, Ctx::Header)?;
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
    let mut key_index: HashMap<String, usize> = HashMap::with_capacity(n_kv as usize);
    let mut alignment_at: Option<(u64, u64)> = None; // (type tag offset, value offset)
    for i in 0..n_kv {
        let key_offset = c.offset();
        let key = c.string(Ctx::Key(i))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { offset: key_offset });
        }
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                offset: key_offset,
                key,
            });
        }
        c.charge(key.len() as u64, Ctx::Key(i))?;
        let ctx = Ctx::Value(&key);
        let type_offset = c.offset();
        let ty = c.value_type("value type", ctx)?;
        let value_offset = c.offset();
        let value = c.value(ty, ctx, 0)?;
        if key == ALIGNMENT_KEY {
            alignment_at = Some((type_offset, value_offset));
        }
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    // --- general.alignment -------------------------------------------------
    let alignment = match alignment_at {
        None => DEFAULT_ALIGNMENT,
        Some((type_offset, value_offset)) => {
            let value = &metadata[key_index[ALIGNMENT_KEY]].1;
            match *value {
                Value::U32(a) if a.is_power_of_two() => u64::from(a),
                Value::U32(a) => {
                    return Err(GgufError::AlignmentValue {
                        offset: value_offset,
                        value: a.into(),
                    })
                }
                ref other => {
                    return Err(GgufError::AlignmentType {
                        offset: type_offset,
                        found: other.type_description(),
                    })
                }
            }
        }
    };

    // --- tensor infos -------------------------------------------------------
    let cap = n_tensors.min(c.left() / MIN_TENSOR_INFO_SIZE) as usize;
    const TENSOR_ENTRY: u64 =
        (size_of::<TensorInfo>() + size_of::<u64>() + size_of::<(String, usize)>()) as u64;
    c.charge(cap as u64 * TENSOR_ENTRY, Ctx::Header)?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(cap);
    let mut info_offsets: Vec<u64> = Vec::with_capacity(cap);
    let mut tensor_index: HashMap<String, usize> = HashMap::with_capacity(cap);
    for i in 0..n_tensors {
        let info_offset = c.offset();
        let name = c.string(Ctx::TensorName(i))?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor {
                offset: info_offset,
                name,
            });
        }
        c.charge(name.len() as u64, Ctx::TensorName(i))?;
        let (info, offset_field) = tensor_info(&mut c, name, alignment)?;
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
        info_offsets.push(offset_field);
    }

    // --- data section -------------------------------------------------------
    // Tensor offsets are relative to the end of the infos, rounded up.
    let data_offset = align_up(c.offset(), alignment);
    if !tensors.is_empty() && data_offset > file_size {
        return Err(GgufError::DataSectionOutOfBounds {
            offset: c.offset(),
            data_offset,
            alignment,
            file_size,
        });
    }
    for (t, &field) in tensors.iter_mut().zip(&info_offsets) {
        let start = data_offset.checked_add(t.offset);
        match start.and_then(|s| s.checked_add(t.size)) {
            Some(end) if end <= file_size => t.offset += data_offset,
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    offset: field,
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    size: t.size,
                    file_size,
                })
            }
        }
    }
    check_overlap(&tensors)?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

/// Read the rest of one tensor info (after its name). Returns the info with
/// `offset` still relative to the data section, and the file offset of the
/// offset field (for later error messages).
fn tensor_info(
    c: &mut Cursor<'_>,
    name: String,
    alignment: u64,
) -> Result<(TensorInfo, u64), GgufError> {
    let ctx = Ctx::Tensor(&name);
    let n_dims_offset = c.offset();
    let n_dims = c.u32("n_dims", ctx)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            offset: n_dims_offset,
            name,
            n_dims,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("dimension", ctx)?);
    }
    let type_offset = c.offset();
    let raw_type = c.u32("ggml type", ctx)?;
    let offset_field = c.offset();
    let rel_offset = c.u64("data offset", ctx)?;

    if let Some(index) = dims.iter().position(|&d| d > i64::MAX as u64) {
        return Err(GgufError::NegativeDim {
            offset: n_dims_offset + 4 + 8 * index as u64,
            value: dims[index] as i64,
            name,
            index,
        });
    }
    let n_elements = element_count(&dims);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::ElementCountOverflow {
            offset: n_dims_offset,
            name,
            dims,
        });
    };
    let Some(ggml_type) = GgmlType::from_u32(raw_type) else {
        return Err(GgufError::UnknownGgmlType {
            offset: type_offset,
            name,
            type_id: raw_type,
        });
    };
    let block_size = ggml_type.block_size();
    if !dims[0].is_multiple_of(block_size) {
        return Err(GgufError::BadBlockMultiple {
            offset: n_dims_offset + 4,
            name,
            ggml_type: ggml_type.name(),
            ne0: dims[0],
            block_size,
        });
    }
    // ne[0] is a multiple of the block size, so the element count is too.
    let Some(size) = (n_elements / block_size).checked_mul(ggml_type.type_size()) else {
        return Err(GgufError::ElementCountOverflow {
            offset: n_dims_offset,
            name,
            dims,
        });
    };
    if !rel_offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            offset: offset_field,
            name,
            data_offset: rel_offset,
            alignment,
        });
    }
    let info = TensorInfo {
        name,
        dims,
        ggml_type,
        offset: rel_offset,
        size,
    };
    Ok((info, offset_field))
}

/// Product of the dimensions if every dimension and the product fit in `i64`.
pub(crate) fn element_count(dims: &[u64]) -> Option<u64> {
    const MAX: u64 = i64::MAX as u64;
    dims.iter()
        .try_fold(
            1u64,
            |acc, &d| if d > MAX { None } else { acc.checked_mul(d) },
        )
        .filter(|&n| n <= MAX)
}

/// Round `x` up to a multiple of the power of two `align` (saturating).
pub(crate) fn align_up(x: u64, align: u64) -> u64 {
    match x.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => u64::MAX,
    }
}

/// Reject two non-empty tensors whose byte ranges intersect.
fn check_overlap(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].size > 0)
        .collect();
    order.sort_by_key(|&i| (tensors[i].offset, i));
    // The previous tensor and its end; offsets were bounds-checked, so no overflow.
    let mut furthest: Option<(usize, u64)> = None;
    for i in order {
        let t = &tensors[i];
        let end = t.offset + t.size;
        if let Some((j, other_end)) = furthest {
            if t.offset < other_end {
                return Err(GgufError::OverlappingTensors {
                    offset: t.offset,
                    name: t.name.clone(),
                    other: tensors[j].name.clone(),
                    other_end,
                });
            }
        }
        // Sorted by start and disjoint so far, so this tensor now reaches furthest.
        furthest = Some((i, end));
    }
    Ok(())
}
