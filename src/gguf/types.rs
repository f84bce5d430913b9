//! The ggml tensor element types that can appear in a GGUF tensor-info record.
//!
//! Numbering, names, block sizes and block byte sizes follow ggml's
//! `enum ggml_type` and its type-traits table. Retired numbers (4, 5, 31–33,
//! 36–38) and types newer than `MXFP4` (39) are not accepted: a tensor using
//! them is reported as [`GgufError::UnknownGgmlType`](super::GgufError).

use std::fmt;

/// A ggml tensor element type (quantisation format).
///
/// Data of every type is stored as a sequence of *blocks*; a block holds
/// [`block_size`](Self::block_size) elements in
/// [`type_size`](Self::type_size) bytes. Plain types have a block size of 1.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Size of a "K-quant" super-block (ggml's `QK_K`).
const QK_K: u64 = 256;

/// One row of the type table: (type, ggml number, ggml name, block size, bytes per block).
type Row = (GgmlType, u32, &'static str, u64, u64);

/// The whole table, in ggml numbering order. Block byte sizes are the
/// `sizeof(block_*)` values asserted in ggml-common.h.
const TABLE: [Row; 32] = [
    (GgmlType::F32, 0, "f32", 1, 4),
    (GgmlType::F16, 1, "f16", 1, 2),
    (GgmlType::Q4_0, 2, "q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "q2_K", QK_K, 84),
    (GgmlType::Q3_K, 11, "q3_K", QK_K, 110),
    (GgmlType::Q4_K, 12, "q4_K", QK_K, 144),
    (GgmlType::Q5_K, 13, "q5_K", QK_K, 176),
    (GgmlType::Q6_K, 14, "q6_K", QK_K, 210),
    (GgmlType::Q8_K, 15, "q8_K", QK_K, 292),
    (GgmlType::IQ2_XXS, 16, "iq2_xxs", QK_K, 66),
    (GgmlType::IQ2_XS, 17, "iq2_xs", QK_K, 74),
    (GgmlType::IQ3_XXS, 18, "iq3_xxs", QK_K, 98),
    (GgmlType::IQ1_S, 19, "iq1_s", QK_K, 50),
    (GgmlType::IQ4_NL, 20, "iq4_nl", 32, 18),
    (GgmlType::IQ3_S, 21, "iq3_s", QK_K, 110),
    (GgmlType::IQ2_S, 22, "iq2_s", QK_K, 82),
    (GgmlType::IQ4_XS, 23, "iq4_xs", QK_K, 136),
    (GgmlType::I8, 24, "i8", 1, 1),
    (GgmlType::I16, 25, "i16", 1, 2),
    (GgmlType::I32, 26, "i32", 1, 4),
    (GgmlType::I64, 27, "i64", 1, 8),
    (GgmlType::F64, 28, "f64", 1, 8),
    (GgmlType::IQ1_M, 29, "iq1_m", QK_K, 56),
    (GgmlType::BF16, 30, "bf16", 1, 2),
    (GgmlType::TQ1_0, 34, "tq1_0", QK_K, 54),
    (GgmlType::TQ2_0, 35, "tq2_0", QK_K, 66),
    (GgmlType::MXFP4, 39, "mxfp4", 32, 17),
];

impl GgmlType {
    /// Every supported type, in ggml numbering order.
    pub const ALL: [GgmlType; 32] = {
        let mut all = [GgmlType::F32; 32];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        // The enum's declaration order matches TABLE's order.
        &TABLE[self as usize]
    }

    /// The type with ggml enum value `v`, if it is supported.
    pub fn from_u32(v: u32) -> Option<Self> {
        TABLE.iter().find(|r| r.1 == v).map(|r| r.0)
    }

    /// ggml's enum value for this type (what GGUF stores).
    pub fn as_u32(self) -> u32 {
        self.row().1
    }

    /// ggml's name for the type: `"f32"`, `"q4_0"`, `"q4_K"`, `"iq2_xxs"`, ...
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Parse a ggml type name; case-insensitive (`"Q4_K"`, `"q4_k"` and `"q4_K"` all work).
    pub fn from_name(s: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|r| r.2.eq_ignore_ascii_case(s))
            .map(|r| r.0)
    }

    /// Number of elements in one block.
    pub fn block_size(self) -> u64 {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().4
    }

    /// Bytes needed for `n` consecutive elements; `None` when `n` is not a
    /// multiple of the block size or the byte count overflows `u64`.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let bs = self.block_size();
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size())
    }

    /// Whether this is a block-quantised type (block size > 1).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
