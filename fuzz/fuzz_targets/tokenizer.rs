//! GGUF bytes → `Tokenizer::from_gguf`: building a tokenizer from hostile `tokenizer.ggml.*`
//! metadata must return `Ok` or `Err`, never panic. A tokenizer that builds then encodes a
//! fixed string and the bytes after the metadata (the reader ignores trailing bytes when a
//! file has no tensors, so the fuzzer can mutate the text too), and decodes what it got
//! back, whole and streamed, plus ids outside the vocabulary (`ember::fuzz_steps`, which
//! tests/it/fuzz_regressions.rs replays for the inputs kept as regression tests).
#![no_main]

use ember::fuzz_steps::exercise_tokenizer;
use ember::gguf::GgufFile;
use ember::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    if let Ok(tok) = Tokenizer::from_gguf(&f) {
        exercise_tokenizer(&tok, &f, data);
    }
});
