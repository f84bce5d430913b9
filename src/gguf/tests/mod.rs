//! Tests for the GGUF module: writer→reader round trips, one test per
//! validation rule (broken files built byte by byte with [`B`]), robustness
//! sweeps (robustness.rs), the describe output, and the real SmolLM2 model (model.rs).

use super::*;

mod model;
mod robustness;
mod roundtrip;
mod validation;

/// GGUF value-type numbers, for hand-built files.
pub(super) mod vt {
    pub const U8: u32 = 0;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// Tiny little-endian byte builder for hand-made (often broken) GGUF files.
#[derive(Clone, Default)]
pub(super) struct B(pub Vec<u8>);

impl B {
    /// Magic, version, n_tensors, n_kv.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        B::default()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(self, v: u8) -> Self {
        self.raw(&[v])
    }
    pub fn u32(self, v: u32) -> Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Self {
        self.raw(&v.to_le_bytes())
    }
    /// u64 length + bytes.
    pub fn str(self, s: &str) -> Self {
        self.bytes_str(s.as_bytes())
    }
    /// u64 length + arbitrary (possibly non-UTF-8) bytes.
    pub fn bytes_str(self, b: &[u8]) -> Self {
        self.u64(b.len() as u64).raw(b)
    }
    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key).u32(vt::U32).u32(v)
    }
    pub fn kv_str(self, key: &str, v: &str) -> Self {
        self.str(key).u32(vt::STRING).str(v)
    }
    /// A tensor info record with a raw ggml type number.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    /// Zero-pad to a multiple of `align`.
    pub fn pad(mut self, align: usize) -> Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(mut self, n: usize) -> Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// Parse bytes that must be rejected; return the error.
pub(super) fn err(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected a parse error, got {f:?}"),
        Err(e) => e,
    }
}

/// Parse bytes that must be accepted.
pub(super) fn ok(bytes: Vec<u8>) -> GgufFile {
    GgufFile::from_bytes(bytes).unwrap_or_else(|e| panic!("unexpected parse error: {e}"))
}

/// Assert the error message mentions every needle.
pub(super) fn assert_msg(e: &GgufError, needles: &[&str]) {
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} does not mention {n:?}");
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub(super) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A small valid file with metadata of several kinds and two tensors.
pub(super) fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .add("general.name", Value::String("tiny".into()))
        .add("llama.context_length", Value::U32(2048))
        .add("llama.rope.freq_base", Value::F32(10000.0))
        .add("flag", Value::Bool(true))
        .add(
            "tokenizer.ggml.tokens",
            Value::array(
                ValueType::String,
                vec![Value::String("a".into()), Value::String("b".into())],
            ),
        )
        .add(
            "ints",
            Value::array(ValueType::I32, vec![Value::I32(-1), Value::I32(7)]),
        );
    w.add_tensor("a.weight", GgmlType::F32, &[4, 2], pseudo_random(32, 1))
        .add_tensor("b.weight", GgmlType::Q4_0, &[32, 1], pseudo_random(18, 2));
    w
}
