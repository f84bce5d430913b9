//! One test per validation rule, each on a file built byte by byte.

use super::*;

/// Size of the fixed header (magic, version, n_tensors, n_kv).
const HDR: usize = 24;
const F32: u32 = 0;
const Q4_0: u32 = 2;

/// A header with no metadata and the given tensor infos, padded, plus `data` bytes.
fn with_tensors(infos: &[(&str, &[u64], u32, u64)], data: usize) -> Vec<u8> {
    let mut b = B::header(3, infos.len() as u64, 0);
    for (name, dims, ty, off) in infos {
        b = b.tensor(name, dims, *ty, *off);
    }
    b.pad(32).zeros(data).build()
}

#[test]
fn bad_magic() {
    let e = err(B::default().raw(b"GGML").u32(3).u64(0).u64(0).build());
    assert!(matches!(e, GgufError::BadMagic { ref found } if found == b"GGML"));
    assert_msg(&e, &["bad magic", "offset 0"]);
    assert!(matches!(err(b"XY".to_vec()), GgufError::BadMagic { .. }));
    // A prefix of the magic is a truncated file, not a foreign one.
    assert!(matches!(err(b"GG".to_vec()), GgufError::Truncated { .. }));
}

#[test]
fn unsupported_version() {
    for v in [0, 1, 4, u32::MAX] {
        let e = err(B::header(v, 0, 0).build());
        assert!(matches!(e, GgufError::UnsupportedVersion { version, offset: 4 } if version == v));
        assert_msg(&e, &["offset 4", &format!("version {v}")]);
    }
    ok(B::header(2, 0, 0).build());
    ok(B::header(3, 0, 0).build());
}

#[test]
fn truncated_at_each_section() {
    // One long key and one tensor, so the count plausibility checks pass for
    // every cut below and the reads themselves must detect the truncation.
    const KEY: &str = "general.a_fairly_long_key_name_for_this_test";
    const TENSOR: &str = "tensor.with.a.fairly.long.name";
    let mut w = GgufWriter::new();
    w.add(KEY, Value::String("v".repeat(100)));
    w.add_tensor(TENSOR, GgmlType::F32, &[64], pseudo_random(256, 3));
    let full = w.to_bytes();
    let data = ok(full.clone()).tensors()[0].offset as usize;
    let key = HDR + 8; // first byte of the key
    let value = key + KEY.len() + 4; // the value's string length
    let info = full
        .windows(TENSOR.len())
        .position(|w| w == TENSOR.as_bytes())
        .unwrap()
        - 8;
    let tensor_ctx = format!("tensor info '{TENSOR}'");
    let value_ctx = format!("value of key '{KEY}'");
    let cases: [(usize, &str, &str); 7] = [
        (10, "header", "n_tensors"),
        (HDR - 1, "header", "n_kv"),
        (key + 40, "key #0", "string bytes"),
        (value + 5, &value_ctx, "string length"),
        (value + 8 + 50, &value_ctx, "string bytes"),
        (info + 8 + TENSOR.len() + 4 + 3, &tensor_ctx, "dimension"),
        (
            info + 8 + TENSOR.len() + 4 + 8 + 4 + 1,
            &tensor_ctx,
            "data offset",
        ),
    ];
    for (cut, context, what) in cases {
        let e = err(full[..cut].to_vec());
        assert!(
            matches!(e, GgufError::Truncated { offset, .. } if offset < cut as u64),
            "cut at {cut}: {e}"
        );
        assert_msg(&e, &["truncated", context, what]);
    }
    // Cut inside the tensor data: the tensor's range runs past the end of the file.
    let e = err(full[..data + 5].to_vec());
    assert!(matches!(e, GgufError::TensorOutOfBounds { ref name, .. } if name == TENSOR));
    assert_msg(
        &e,
        &[
            TENSOR,
            "outside",
            &format!("offset {}", info + 8 + TENSOR.len() + 4 + 8 + 4),
        ],
    );
}

#[test]
fn string_length_over_cap_or_bytes_left() {
    let e = err(B::header(3, 0, 1).u64(MAX_STRING_LEN + 1).zeros(64).build());
    assert!(
        matches!(e, GgufError::StringTooLong { len, offset, .. } if len == MAX_STRING_LEN + 1 && offset == HDR as u64)
    );
    assert_msg(&e, &["offset 24", "key #0"]);
    // Length within the cap but beyond the end of the file.
    let e = err(B::header(3, 0, 1)
        .str("k")
        .u32(vt::STRING)
        .u64(1000)
        .raw(b"abc")
        .build());
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                needed: 1000,
                available: 3,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["value of key 'k'", "string bytes"]);
}

#[test]
fn invalid_utf8_in_key_and_value() {
    let e = err(B::header(3, 0, 1)
        .bytes_str(b"ab\xffc")
        .u32(vt::U8)
        .u8(1)
        .build());
    assert!(matches!(e, GgufError::InvalidUtf8 { offset, .. } if offset == (HDR + 8 + 2) as u64));
    assert_msg(&e, &["offset 34", "key #0"]);
    let e = err(B::header(3, 0, 1)
        .str("k")
        .u32(vt::STRING)
        .bytes_str(b"\xc3(")
        .build());
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }));
    assert_msg(&e, &["value of key 'k'"]);
    let e = err(B::header(3, 1, 0)
        .bytes_str(b"\x80")
        .u32(1)
        .u64(1)
        .u32(F32)
        .u64(0)
        .build());
    assert_msg(&e, &["name of tensor info #0"]);
}

#[test]
fn unknown_value_type() {
    let e = err(B::header(3, 0, 1).str("k").u32(13).u32(0).build());
    assert!(
        matches!(
            e,
            GgufError::UnknownValueType {
                value_type: 13,
                offset: 33,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["offset 33", "'k'"]);
    // Unknown element type inside an array.
    let e = err(B::header(3, 0, 1)
        .str("k")
        .u32(vt::ARRAY)
        .u32(99)
        .u64(0)
        .build());
    assert!(matches!(
        e,
        GgufError::UnknownValueType { value_type: 99, .. }
    ));
}

#[test]
fn bool_must_be_zero_or_one() {
    let e = err(B::header(3, 0, 1).str("flag").u32(vt::BOOL).u8(2).build());
    assert!(
        matches!(
            e,
            GgufError::InvalidBool {
                byte: 2,
                offset: 40,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["offset 40", "'flag'"]);
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::BOOL)
        .u64(2)
        .u8(1)
        .u8(7)
        .build());
    assert!(matches!(e, GgufError::InvalidBool { byte: 7, .. }));
}

#[test]
fn array_count_over_bytes_left_or_cap() {
    // 10 u32 elements need 40 bytes; only 8 are there.
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::U32)
        .u64(10)
        .zeros(8)
        .build());
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                needed: 40,
                available: 8,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["array elements", "'a'"]);
    // A huge count of strings would need 8 bytes each: rejected before allocating.
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::STRING)
        .u64(u64::MAX)
        .build());
    assert!(matches!(e, GgufError::ArrayTooLong { .. }));
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::U8)
        .u64(MAX_ARRAY_LEN + 1)
        .build());
    assert!(
        matches!(e, GgufError::ArrayTooLong { count, offset: 41, .. } if count == MAX_ARRAY_LEN + 1),
        "{e}"
    );
    assert_msg(&e, &["offset 41", "'a'"]);
}

#[test]
fn array_nesting_over_cap() {
    let mut b = B::header(3, 0, 1).str("deep").u32(vt::ARRAY);
    for _ in 0..MAX_ARRAY_DEPTH {
        b = b.u32(vt::ARRAY).u64(1);
    }
    let inner_offset = b.len() as u64;
    let e = err(b.u32(vt::U8).u64(1).u8(0).build());
    assert!(
        matches!(e, GgufError::ArrayTooDeep { offset, .. } if offset == inner_offset),
        "{e}"
    );
    assert_msg(&e, &["'deep'", &format!("offset {inner_offset}")]);
}

#[test]
fn counts_larger_than_the_file_could_hold() {
    let e = err(B::header(3, 0, 1_000_000).zeros(100).build());
    assert!(matches!(
        e,
        GgufError::TooManyKv {
            n_kv: 1_000_000,
            offset: 16,
            ..
        }
    ));
    assert_msg(&e, &["offset 16"]);
    let e = err(B::header(3, u64::MAX, 0).zeros(100).build());
    assert!(matches!(e, GgufError::TooManyTensors { offset: 8, .. }));
    assert_msg(&e, &["offset 8"]);
}

#[test]
fn duplicate_key() {
    let e = err(B::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).build());
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key, offset: 41 } if key == "k"),
        "{e}"
    );
    assert_msg(&e, &["'k'", "offset 41"]);
    let e = err(B::header(3, 0, 3)
        .kv_str("a", "x")
        .kv_u32("b", 1)
        .kv_str("a", "y")
        .build());
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key, offset: 63 } if key == "a"),
        "{e}"
    );
}

#[test]
fn empty_key() {
    let e = err(B::header(3, 0, 1).kv_u32("", 1).build());
    assert!(matches!(e, GgufError::EmptyKey { offset: 24 }));
    assert_msg(&e, &["offset 24"]);
}

#[test]
fn duplicate_tensor_name() {
    let e = err(with_tensors(
        &[("t", &[8], F32, 0), ("t", &[8], F32, 32)],
        64,
    ));
    let second = (HDR + 8 + 1 + 4 + 8 + 4 + 8) as u64;
    assert!(
        matches!(e, GgufError::DuplicateTensor { ref name, offset } if name == "t" && offset == second)
    );
    assert_msg(&e, &["'t'", &format!("offset {second}")]);
}

#[test]
fn dimension_count_zero_or_over_four() {
    for n in [0u32, 5, u32::MAX] {
        let e = err(B::header(3, 1, 0).str("t").u32(n).zeros(64).build());
        assert!(
            matches!(e, GgufError::BadDimCount { n_dims, offset: 33, .. } if n_dims == n),
            "{e}"
        );
        assert_msg(&e, &["'t'", "offset 33"]);
    }
}

#[test]
fn element_count_must_not_overflow() {
    let big = 1u64 << 32;
    for dims in [&[big, big][..], &[1 << 40, 1 << 40, 1 << 40]] {
        let e = err(with_tensors(&[("t", dims, F32, 0)], 0));
        assert!(
            matches!(e, GgufError::ElementCountOverflow { .. }),
            "{dims:?}: {e}"
        );
        assert_msg(&e, &["'t'", "offset 33"]);
    }
    // i64::MAX elements fit the count, but not as f32 bytes.
    let e = err(with_tensors(&[("t", &[i64::MAX as u64], F32, 0)], 0));
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }));
    // Zero-sized dimensions are fine.
    let f = ok(with_tensors(
        &[("t", &[0, 5], F32, 0), ("u", &[4, 0, 3], F32, 0)],
        0,
    ));
    assert_eq!(f.tensor("t").unwrap().size, 0);
    assert_eq!(f.tensor("u").unwrap().n_elements(), 0);
}

#[test]
fn negative_dimension() {
    // ggml's ne[] are int64_t: a dimension past i64::MAX is negative there.
    for (dims, index) in [
        (&[1, 1, 1, i64::MAX as u64 + 1][..], 3),
        (&[0, u64::MAX], 1),
    ] {
        let e = err(with_tensors(&[("t", dims, F32, 0)], 0));
        let at = 33 + 4 + 8 * index as u64;
        assert!(
            matches!(e, GgufError::NegativeDim { index: i, offset, .. } if i == index && offset == at),
            "{dims:?}: {e}"
        );
        assert_msg(&e, &["'t'", &format!("dimension {index} is -")]);
    }
}

#[test]
fn empty_file_and_data_section_past_the_end() {
    let e = err(Vec::new());
    assert!(matches!(e, GgufError::Empty));
    assert_msg(&e, &["empty"]);
    // One 8-element tensor, the file cut inside the padding before the data section.
    let full = with_tensors(&[("t", &[8], F32, 0)], 32);
    let infos_end = HDR + 8 + 1 + 4 + 8 + 4 + 8;
    let e = err(full[..infos_end + 1].to_vec());
    assert!(
        matches!(
            e,
            GgufError::DataSectionOutOfBounds {
                data_offset: 64,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["data section at offset 64", "past the end"]);
}

#[test]
fn unknown_ggml_type() {
    for ty in [4, 31, 40, 1000] {
        let e = err(with_tensors(&[("t", &[32], ty, 0)], 128));
        assert!(
            matches!(e, GgufError::UnknownGgmlType { type_id, offset: 45, .. } if type_id == ty),
            "{e}"
        );
        assert_msg(&e, &["'t'", "offset 45", &format!("type {ty}")]);
    }
}

#[test]
fn ne0_must_be_a_block_multiple() {
    let e = err(with_tensors(&[("t", &[16, 2], Q4_0, 0)], 64));
    assert!(
        matches!(
            e,
            GgufError::BadBlockMultiple {
                ne0: 16,
                block_size: 32,
                offset: 37,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["'t'", "offset 37", "q4_0"]);
    ok(with_tensors(&[("t", &[32, 2], Q4_0, 0)], 64));
}

#[test]
fn tensor_offset_must_be_aligned() {
    let e = err(with_tensors(&[("t", &[4], F32, 16)], 64));
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                data_offset: 16,
                alignment: 32,
                offset: 49,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["'t'", "offset 49"]);
}

#[test]
fn tensor_data_must_lie_inside_the_file() {
    let e = err(with_tensors(&[("t", &[16], F32, 32)], 64));
    assert!(
        matches!(
            e,
            GgufError::TensorOutOfBounds {
                size: 64,
                offset: 49,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["'t'", "offset 49"]);
    // offset + size overflows u64.
    let e = err(with_tensors(&[("t", &[16], F32, u64::MAX - 31)], 64));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    // Exactly fitting is fine.
    ok(with_tensors(&[("t", &[16], F32, 0)], 64));
}

#[test]
fn tensor_data_must_not_overlap() {
    let e = err(with_tensors(
        &[("a", &[16], F32, 0), ("b", &[16], F32, 32)],
        96,
    ));
    assert!(
        matches!(e, GgufError::OverlappingTensors { ref name, ref other, .. } if name == "b" && other == "a"),
        "{e}"
    );
    assert_msg(&e, &["'a'", "'b'", "offset"]);
    // Out of file order, and a zero-sized tensor in the middle, still fine when disjoint.
    let f = ok(with_tensors(
        &[
            ("late", &[8], F32, 64),
            ("early", &[16], F32, 0),
            ("empty", &[0], F32, 32),
        ],
        96,
    ));
    assert_eq!(f.tensor("late").unwrap().offset, f.data_offset() + 64);
}

#[test]
fn general_alignment_type_and_value() {
    let e = err(B::header(3, 0, 1)
        .str(ALIGNMENT_KEY)
        .u32(vt::U64)
        .u64(64)
        .build());
    assert!(
        matches!(e, GgufError::AlignmentType { ref found, offset: 49 } if found == "u64"),
        "{e}"
    );
    assert_msg(&e, &[ALIGNMENT_KEY, "offset 49", "u64"]);
    let e = err(B::header(3, 0, 1)
        .str(ALIGNMENT_KEY)
        .u32(vt::I32)
        .u32(64)
        .build());
    assert!(matches!(e, GgufError::AlignmentType { .. }));
    for bad in [0u32, 48, u32::MAX] {
        let e = err(B::header(3, 0, 1).kv_u32(ALIGNMENT_KEY, bad).build());
        assert!(
            matches!(e, GgufError::AlignmentValue { value, offset: 53 } if value == u64::from(bad)),
            "{e}"
        );
        assert_msg(&e, &[ALIGNMENT_KEY, "offset 53", "power of two"]);
    }
    // A valid custom alignment moves the data section and governs offsets.
    let mut b = B::header(3, 1, 1)
        .kv_u32(ALIGNMENT_KEY, 256)
        .tensor("t", &[4], F32, 0);
    let unaligned = b.len() as u64;
    b = b.pad(256).zeros(16);
    let f = ok(b.build());
    assert_eq!(
        (f.alignment(), f.data_offset()),
        (256, unaligned.next_multiple_of(256))
    );
}
