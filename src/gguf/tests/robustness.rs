//! Robustness sweeps: every truncation and many corruptions of a valid file
//! must be rejected (or accepted) without panicking; counts are checked
//! before anything is allocated; errors expose their offsets.

use super::*;

#[test]
fn every_truncation_is_an_error_without_panic() {
    let full = sample_writer().to_bytes();
    let last_data_end = ok(full.clone())
        .tensors()
        .iter()
        .map(|t| t.offset + t.size)
        .max()
        .unwrap();
    for cut in 0..full.len() {
        let r = GgufFile::from_bytes(full[..cut].to_vec());
        // Only trailing padding after the last tensor may be dropped.
        assert_eq!(r.is_ok(), cut as u64 >= last_data_end, "cut at {cut}");
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let full = sample_writer().to_bytes();
    for pos in 0..full.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[pos] ^= x;
            let _ = GgufFile::from_bytes(bytes);
        }
    }
    for seed in 0..200 {
        let mut bytes = full.clone();
        let noise = pseudo_random(16, seed);
        for pair in noise.chunks(2) {
            let pos = pair[0] as usize * full.len() / 256;
            bytes[pos] = pair[1];
        }
        let _ = GgufFile::from_bytes(bytes);
    }
}

#[test]
fn counts_are_checked_before_allocating() {
    // Claims 2^40 u8 array elements and 2^20 keys: rejected cheaply either way.
    let e = err(B::header(3, 0, 1 << 20).build());
    assert!(matches!(e, GgufError::TooManyKv { .. }));
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::I32)
        .u64(1 << 40)
        .build());
    assert!(matches!(e, GgufError::ArrayTooLong { .. }));
    let e = err(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::U8)
        .u64(1 << 20)
        .zeros(100)
        .build());
    assert!(matches!(e, GgufError::Truncated { .. }));
}

/// The memory the parsed form may take, for a file of `len` bytes.
fn decoded_limit(len: usize) -> u64 {
    DECODED_BASE + DECODED_PER_FILE_BYTE * len as u64
}

#[test]
fn decoded_size_is_bounded_by_the_file_size() {
    // Many tiny keys: room for a list entry and an index entry each is made up front.
    let n_kv = 5 << 19;
    let bytes = B::header(3, 0, n_kv).zeros(n_kv as usize * 14).build();
    let limit = decoded_limit(bytes.len());
    let e = err(bytes);
    assert!(
        matches!(e, GgufError::DecodedTooLarge { limit: l, .. } if l == limit),
        "{e}"
    );
    assert_msg(&e, &["bytes of memory once decoded"]);
    // Arrays are held compactly (a u8 element in one byte, a string as its bytes and an end
    // offset), so an array as large as the budget's base parses.
    let n = 3 << 20;
    let f = ok(B::header(3, 0, 1)
        .str("a")
        .u32(vt::ARRAY)
        .u32(vt::U8)
        .u64(n)
        .zeros(n as usize)
        .build());
    assert_eq!(f.get("a").unwrap().as_array().unwrap().len(), n as usize);
}

#[test]
fn error_offsets_are_exposed() {
    assert_eq!(err(b"nope".to_vec()).offset(), Some(0));
    assert_eq!(err(B::header(9, 0, 0).build()).offset(), Some(4));
    let e = err(B::header(3, 0, 1)
        .str("k")
        .u32(vt::U64)
        .u32(1)
        .zeros(1)
        .build());
    assert_eq!(e.offset(), Some(37));
}
