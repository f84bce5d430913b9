//! ggml tensor types, as a checked newtype over ggml's enum value.

use std::ffi::CStr;

/// A ggml tensor type (`enum ggml_type`), always within ggml's range.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Type(i32);

impl Type {
    pub const F32: Type = Type(ggml_sys::GGML_TYPE_F32);
    pub const F16: Type = Type(ggml_sys::GGML_TYPE_F16);
    pub const BF16: Type = Type(ggml_sys::GGML_TYPE_BF16);
    pub const Q4_0: Type = Type(ggml_sys::GGML_TYPE_Q4_0);
    pub const Q4_1: Type = Type(ggml_sys::GGML_TYPE_Q4_1);
    pub const Q5_0: Type = Type(ggml_sys::GGML_TYPE_Q5_0);
    pub const Q5_1: Type = Type(ggml_sys::GGML_TYPE_Q5_1);
    pub const Q8_0: Type = Type(ggml_sys::GGML_TYPE_Q8_0);
    pub const Q4_K: Type = Type(ggml_sys::GGML_TYPE_Q4_K);
    pub const Q6_K: Type = Type(ggml_sys::GGML_TYPE_Q6_K);
    pub const IQ4_NL: Type = Type(ggml_sys::GGML_TYPE_IQ4_NL);
    pub const I8: Type = Type(ggml_sys::GGML_TYPE_I8);
    pub const I32: Type = Type(ggml_sys::GGML_TYPE_I32);
    pub const I64: Type = Type(ggml_sys::GGML_TYPE_I64);

    /// The type with ggml enum value `v`, if ggml knows it (removed values are rejected).
    pub fn from_raw(v: u32) -> Option<Type> {
        let t = i32::try_from(v).ok()?;
        if t >= ggml_sys::GGML_TYPE_COUNT
            || (4..=5).contains(&t)
            || (31..=33).contains(&t)
            || (36..=38).contains(&t)
        {
            return None;
        }
        Some(Type(t))
    }

    pub fn raw(self) -> i32 {
        self.0
    }

    /// ggml's name for the type ("f16", "q4_0", ...).
    pub fn name(self) -> &'static str {
        // SAFETY: the value is in range (checked at construction); ggml returns a pointer to a
        // static NUL-terminated string (or NULL for removed types, which we never construct).
        let p = unsafe { ggml_sys::ggml_type_name(self.0) };
        if p.is_null() {
            return "?";
        }
        // SAFETY: non-null pointer to a static C string owned by ggml.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("?")
    }

    /// Elements per block (1 for plain types, 32 for q8_0, 256 for k-quants).
    pub fn block_size(self) -> i64 {
        // SAFETY: pure lookup in ggml's type table; value in range.
        unsafe { ggml_sys::ggml_blck_size(self.0) }
    }

    /// A block-quantized type (q8_0, q4_0, iq4_nl, ...), not a float or integer type.
    pub fn is_quantized(self) -> bool {
        // SAFETY: pure lookup in ggml's type table; value in range.
        unsafe { ggml_sys::ggml_is_quantized(self.0) }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        // SAFETY: pure lookup in ggml's type table; value in range.
        unsafe { ggml_sys::ggml_type_size(self.0) }
    }

    /// Bytes of a row of `n` elements (`n` must be a multiple of the block size).
    pub fn row_size(self, n: i64) -> usize {
        // SAFETY: pure arithmetic in ggml; value in range.
        unsafe { ggml_sys::ggml_row_size(self.0, n) }
    }
}

impl std::fmt::Debug for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
