//! The steps the fuzz targets (fuzz/fuzz_targets/*.rs) run on an input, shared with the
//! regression test that replays the inputs they found (tests/it/fuzz_regressions.rs), so the
//! two cannot drift apart. Each step must end in `Ok`/`Err`, never a panic; the assertions
//! here are invariants the fuzzer checks along the way.

use crate::gguf::{describe_json, describe_text, GgufFile};
use crate::model::Arch;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// The fixed text the tokenizer step encodes besides the input's own bytes.
pub const FIXED_TEXT: &str = "Hello world! <|im_start|>user\n  12345 ünïcödé 🙂\t<s></s>[CLS] x";

/// Walk a parsed file as `ember info` does (every value, every tensor's data, both
/// summaries), then read a known architecture's hyper-parameters.
pub fn walk_gguf(f: &GgufFile) {
    for (key, value) in f.metadata() {
        assert!(std::ptr::eq(f.get(key).unwrap(), value));
        let _ = value.type_description();
        let _ = f.get_str_array(key);
        let _ = f.get_f32_array(key);
        let _ = f.get_i32_array(key);
        let _ = f.get_u64(key);
    }
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.size);
        assert!(f.tensor(&t.name).is_some());
        let _ = t.n_elements();
    }
    let mut text = Vec::new();
    describe_text(f, &mut text).unwrap();
    let _ = describe_json(f).to_string();
    let arch = f
        .get_str("general.architecture")
        .ok()
        .and_then(Arch::from_name);
    if let Some(Ok(hp)) = arch.map(|a| a.hparams(f)) {
        let _ = (hp.kv_shape(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        for il in 0..hp.n_layer as usize {
            let _ = (hp.is_swa(il), hp.rope_base_scale(il));
        }
    }
}

/// Encode [`FIXED_TEXT`] and up to 1 KiB of the bytes after the file's metadata (`bytes` is
/// the whole input: the reader ignores trailing bytes when a file has no tensors, so the
/// fuzzer can mutate the text too), decode the ids whole and streamed, then ids outside the
/// vocabulary.
pub fn exercise_tokenizer(tok: &Tokenizer, f: &GgufFile, bytes: &[u8]) {
    let start = usize::try_from(f.data_offset()).unwrap_or(usize::MAX);
    let tail = bytes.get(start..).unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail[..tail.len().min(1024)]);
    let n = tok.n_vocab() as u32;
    for text in [FIXED_TEXT, &tail] {
        for (add_special, parse_special) in [(true, true), (false, false)] {
            let ids = tok.encode(text, add_special, parse_special);
            assert!(ids.iter().all(|&id| id < n), "id out of range");
            let _ = tok.detokenize(&ids, true, false);
            let _ = tok.detokenize(&ids, false, true);
            let mut stream = StreamDecoder::new(parse_special);
            for &id in &ids {
                let _ = stream.push(tok, id);
            }
            let _ = stream.flush();
        }
    }
    let probe = [0, 1, n / 2, n.saturating_sub(1), n, n + 1, u32::MAX];
    let _ = tok.detokenize(&probe, true, true);
    for id in probe {
        let _ = (tok.describe_token(id), tok.token_text(id), tok.is_eog(id));
    }
    let _ = (tok.bos(), tok.eos(), tok.eot(), tok.vocab_type());
}
