//! Arbitrary bytes through Ember's GGUF reader: parsing must return `Ok` or `Err`, never
//! panic, hang or allocate more than a small multiple of the input. A file that parses is
//! then walked like `ember info` walks it (every value, every tensor's data, both summaries),
//! and a known architecture's hyper-parameters are read from it (pure Rust, no ggml): the
//! steps of `ember::fuzz_steps`, which tests/it/fuzz_regressions.rs replays.
#![no_main]

use ember::fuzz_steps::walk_gguf;
use ember::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        walk_gguf(&f);
    }
});
