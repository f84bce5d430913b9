//! GGUF bytes → `Tokenizer::from_gguf`: building a tokenizer from hostile `tokenizer.ggml.*`
//! metadata must return `Ok` or `Err`, never panic. A tokenizer that builds then encodes a
//! fixed string and the bytes after the metadata (the reader ignores trailing bytes when a
//! file has no tensors, so the fuzzer can mutate the text too), and decodes what it got
//! back, whole and streamed, plus ids outside the vocabulary. tests/fuzz_regressions.rs
//! repeats these steps for the inputs kept as regression tests: keep the two in step.
#![no_main]

use ember::gguf::GgufFile;
use ember::tokenizer::{StreamDecoder, Tokenizer};
use libfuzzer_sys::fuzz_target;

const FIXED: &str = "Hello world! <|im_start|>user\n  12345 ünïcödé 🙂\t<s></s>[CLS] x";

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let Ok(tok) = Tokenizer::from_gguf(&f) else {
        return;
    };
    let start = usize::try_from(f.data_offset()).unwrap_or(usize::MAX);
    let tail = data.get(start..).unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail[..tail.len().min(1024)]);
    for text in [FIXED, &tail] {
        for (add_special, parse_special) in [(true, true), (false, false)] {
            let ids = tok.encode(text, add_special, parse_special);
            let n = tok.n_vocab() as u32;
            assert!(ids.iter().all(|&id| id < n), "id out of range");
            let _ = tok.detokenize(&ids, true, false);
            let _ = tok.detokenize(&ids, false, true);
            let mut stream = StreamDecoder::new(parse_special);
            for &id in &ids {
                let _ = stream.push(&tok, id);
            }
            let _ = stream.flush();
        }
    }
    let n = tok.n_vocab() as u32;
    let probe = [0, 1, n / 2, n.saturating_sub(1), n, n + 1, u32::MAX];
    let _ = tok.detokenize(&probe, true, true);
    for id in probe {
        let _ = (tok.describe_token(id), tok.token_text(id), tok.is_eog(id));
    }
    let _ = (tok.bos(), tok.eos(), tok.eot(), tok.vocab_type());
});
