//! Unit tests on a hand-made byte-level vocabulary; by topic, SentencePiece (`spm`), parity
//! with llama.cpp on real vocabularies (`vectors`) and timings (`bench`, ignored).

mod bench;
mod spm;
mod vectors;

use super::bytes::byte_to_char;
use super::meta::RawVocab;
use super::*;

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 6] = ["Ġ t", "h e", "Ġt he", "l l", "ll o", "he llo"];

/// Specials 0..3, the 256 byte characters 3..259, then one token per merge.
fn raw(pre: &str) -> RawVocab {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| byte_to_char(b).to_string()));
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![3; SPECIALS.len()];
    types.resize(tokens.len(), 1);
    RawVocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: Some(types),
        merges: Some(MERGES.iter().map(|m| m.to_string()).collect()),
        special_ids: vec![
            ("tokenizer.ggml.bos_token_id", 1),
            ("tokenizer.ggml.eos_token_id", 2),
        ],
        add_bos: Some(false),
        ..RawVocab::default()
    }
}

fn tok(raw: &RawVocab) -> Tokenizer {
    Tokenizer::from_raw(raw.clone()).unwrap()
}

fn id_of(t: &Tokenizer, text: &str) -> u32 {
    (0..t.n_vocab() as u32)
        .find(|&i| t.token_text(i) == text)
        .unwrap()
}

fn byte_id(b: u8) -> u32 {
    3 + b as u32
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}

#[test]
fn merges_apply_by_rank() {
    let t = tok(&raw("smollm"));
    let ids = t.encode("the hello", false, false);
    let texts: Vec<&str> = ids.iter().map(|&i| t.token_text(i)).collect();
    assert_eq!(texts, ["t", "he", "Ġ", "hello"]);
    assert_eq!(t.encode(" the", false, false), [id_of(&t, "Ġthe")]);
}

#[test]
fn specials_only_with_parse_special() {
    let t = tok(&raw("smollm"));
    let with = t.encode("<|im_start|>he<|im_end|>", false, true);
    assert_eq!(with, [1, id_of(&t, "he"), 2]);
    let without = t.encode("<|im_start|>", false, false);
    assert_eq!(without[0], byte_id(b'<'));
    assert!(!without.contains(&1));
}

#[test]
fn add_special_follows_metadata_flags() {
    let mut r = raw("smollm");
    assert_eq!(tok(&r).encode("he", true, false), [id_of(&tok(&r), "he")]);
    r.add_bos = Some(true);
    r.add_eos = Some(true);
    let t = tok(&r);
    assert_eq!(t.encode("he", true, false), [1, id_of(&t, "he"), 2]);
    assert_eq!(t.encode("he", false, false), [id_of(&t, "he")]);
    assert_eq!(t.encode("", true, false), [1, 2]);
}

#[test]
fn user_defined_tokens_always_match() {
    let mut r = raw("smollm");
    r.tokens.push("<tool>".into());
    r.token_types.as_mut().unwrap().push(4);
    let t = tok(&r);
    let id = (t.n_vocab() - 1) as u32;
    assert_eq!(t.encode("a<tool>", false, false), [byte_id(b'a'), id]);
    assert_eq!(t.token_to_piece(id, false), b"<tool>");
}

#[test]
fn rstrip_on_phi3_specials() {
    let mut r = raw("smollm");
    r.general_name = Some("Phi-3 mini".into());
    let t = tok(&r);
    assert_eq!(t.encode("<|im_end|>  a", false, true), [2, byte_id(b'a')]);
    // "<|endoftext|>" is exempt.
    assert_eq!(
        t.encode("<|endoftext|> a", false, true),
        [0, byte_id(b' '), byte_id(b'a')]
    );
}

#[test]
fn lstrip_on_bert_family_mask() {
    let mut r = raw("jina-v2-es");
    r.tokens.push("<mask>".into());
    r.token_types.as_mut().unwrap().push(4);
    let t = tok(&r);
    let mask = (t.n_vocab() - 1) as u32;
    assert_eq!(
        t.encode("he \t<mask>", false, false),
        [id_of(&t, "he"), mask]
    );
    r.pre = Some("gpt-2".into());
    let t = tok(&r);
    assert_eq!(t.encode("he <mask>", false, false).len(), 3);
}

#[test]
fn chars_missing_from_vocab_are_dropped_without_merging_across() {
    let mut r = raw("smollm");
    // Make 'x' unknown by renaming its token; "h" + "e" must not merge across it.
    let x = byte_id(b'x') as usize;
    r.tokens[x] = "<unused-x>".into();
    let t = tok(&r);
    assert_eq!(
        t.encode("hxe", false, false),
        [byte_id(b'h'), byte_id(b'e')]
    );
    assert_eq!(t.encode("he", false, false), [id_of(&t, "he")]);
}

#[test]
fn special_ids_and_eog() {
    let t = tok(&raw("smollm"));
    assert_eq!((t.bos(), t.eos(), t.eot()), (Some(1), Some(2), Some(2)));
    assert!(t.is_eog(0) && t.is_eog(2) && !t.is_eog(1) && !t.is_eog(byte_id(b'a')));
    assert!(t.is_control(1) && !t.is_control(byte_id(b'a')));
    assert!(!t.add_bos());
    assert_eq!(t.token_to_piece(2, false), b"");
    assert_eq!(t.token_to_piece(2, true), b"<|im_end|>");
    assert_eq!(t.token_to_piece(id_of(&t, "Ġthe"), false), b" the");
    assert_eq!(t.token_to_piece(99_999, true), b"");
    assert_eq!(t.token_text(99_999), "");
}

#[test]
fn out_of_range_special_id_is_refused_naming_both_sides() {
    // llama.cpp ignores such an id with a warning; Ember refuses the file (issue 19).
    let mut r = raw("smollm");
    let n = r.tokens.len();
    for id in [n as u64, 1_000_000, u64::from(u32::MAX) + 1] {
        r.special_ids = vec![("tokenizer.ggml.eot_token_id", id)];
        let Err(e) = Tokenizer::from_raw(r.clone()) else {
            panic!("id {id} accepted")
        };
        assert_eq!(
            e.to_string(),
            format!(
                "metadata key 'tokenizer.ggml.eot_token_id' is {id}, but tokenizer.ggml.tokens \
                 has {n} entries (ids 0 to {})",
                n - 1
            )
        );
    }
    r.special_ids = vec![("tokenizer.ggml.eot_token_id", n as u64 - 1)];
    assert_eq!(tok(&r).eot(), Some(n as u32 - 1));
}

#[test]
fn clear_errors_name_key_and_value() {
    let mut r = raw("smollm");
    r.model = "wordpiece-x".into();
    let e = Tokenizer::from_raw(r.clone()).unwrap_err().to_string();
    assert!(
        e.contains("wordpiece-x") && e.contains("tokenizer.ggml.model"),
        "{e}"
    );
    r.model = "t5".into();
    let e = Tokenizer::from_raw(r.clone()).unwrap_err().to_string();
    assert!(e.contains("'t5'") && e.contains("not supported"), "{e}");
    let e = Tokenizer::from_raw(raw("my-new-pre"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("my-new-pre") && e.contains("tokenizer.ggml.pre"),
        "{e}"
    );
    let mut r = raw("smollm");
    r.merges = None;
    let e = Tokenizer::from_raw(r.clone()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");
    let mut r = raw("smollm");
    r.token_types.as_mut().unwrap().truncate(5);
    let e = Tokenizer::from_raw(r.clone()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.token_type"), "{e}");
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = tok(&raw("smollm"));
    let ids = t.encode("a€b", false, false);
    assert_eq!(ids.len(), 5);
    let mut d = StreamDecoder::new(false);
    let outs: Vec<String> = ids.iter().map(|&id| d.push(&t, id)).collect();
    assert_eq!(outs, ["a", "", "", "€", "b"]);
    assert_eq!(d.flush(), "");
}

#[test]
fn stream_decoder_replaces_invalid_bytes() {
    let t = tok(&raw("smollm"));
    let mut d = StreamDecoder::new(false);
    assert_eq!(d.push(&t, byte_id(0xff)), "\u{fffd}");
    assert_eq!(d.push(&t, byte_id(0xe2)), "");
    assert_eq!(d.push(&t, byte_id(b'a')), "\u{fffd}a");
    assert_eq!(d.push(&t, byte_id(0xe2)), "");
    assert_eq!(d.push(&t, byte_id(0x82)), "");
    assert_eq!(d.flush(), "\u{fffd}");
    assert_eq!(d.flush(), "");
}

#[test]
fn stream_decoder_special_flag() {
    let t = tok(&raw("smollm"));
    assert_eq!(StreamDecoder::new(false).push(&t, 2), "");
    assert_eq!(StreamDecoder::new(true).push(&t, 2), "<|im_end|>");
}

/// The byte-level test vocabulary (specials, 256 bytes, a few merges), for other modules' tests.
pub(crate) fn byte_level() -> Tokenizer {
    tok(&raw("smollm"))
}
