//! The constraint on the byte-level test vocabulary: random logits, masked, always give text
//! the schema or grammar accepts.

use super::*;
use crate::tokenizer::tests::byte_level;

/// xorshift: deterministic "logits" for the walks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Samples argmax of masked random logits until an end token or `max` tokens; returns the
/// text and whether it ended on its own. End tokens get a boost so walks finish.
fn walk(format: &Format, seed: u64, max: usize) -> (String, bool) {
    let tok = byte_level();
    let vocab = Vocab::new(&tok);
    let mut g = Guard::new(&vocab, format).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut text = Vec::new();
    for step in 0..max {
        let mut logits: Vec<f32> = (0..tok.n_vocab()).map(|_| rng.next()).collect();
        let eos = tok.eos().unwrap() as usize;
        logits[eos] += step as f32 / 40.0;
        g.apply(&mut logits);
        let id = crate::sampling::argmax(&logits);
        assert!(
            logits[id as usize].is_finite(),
            "nothing allowed at {text:?}"
        );
        if tok.is_eog(id) {
            assert!(g.is_complete());
            return (
                String::from_utf8(text).expect("a complete text is UTF-8"),
                true,
            );
        }
        g.commit(id);
        text.extend_from_slice(tok.piece(id, false));
    }
    (String::from_utf8_lossy(&text).into_owned(), false)
}

#[test]
fn schema_outputs_parse_and_validate() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    });
    let f = Format::Schema(schema);
    for seed in 1..6 {
        let (text, ended) = walk(&f, seed, 400);
        assert!(ended, "seed {seed}: {text:?}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let age = v["age"].as_i64().unwrap();
        assert!((0..=120).contains(&age), "{text}");
        assert!(v["name"].as_str().unwrap().chars().count() <= 8, "{text}");
        let tags = v["tags"].as_array().unwrap();
        assert!(tags.len() <= 3 && tags.iter().all(|t| t == "a" || t == "b"));
    }
}

#[test]
fn any_json_is_an_object() {
    for seed in 1..4 {
        let (text, ended) = walk(&Format::AnyJson, seed, 300);
        if ended {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v.is_object(), "{text}");
        } else {
            assert!(text.starts_with('{'), "{text}");
        }
    }
}

/// Our own GBNF grammars in the styles of llama.cpp's examples: a list, arithmetic, JSON.
const LIST: &str = "root ::= item+\n# lines\nitem ::= \"- \" [^\\r\\n\\x0b]+ \"\\n\"\n";
const ARITH: &str = r#"root ::= (expr "=" ws term "\n")+
expr ::= term ([-+*/] term)*
term ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num ::= [0-9]+ ws
ws ::= [ \t\n]*
"#;
const JSON: &str = r#"root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
    string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

#[test]
fn gbnf_grammars_constrain_the_walk() {
    let list = Format::grammar(LIST, "list", false).unwrap();
    for seed in 1..4 {
        let (text, _) = walk(&list, seed, 60);
        for line in text.split_inclusive('\n') {
            assert!(line.starts_with("- "), "{text:?}");
        }
    }
    let arith = Format::grammar(ARITH, "arith", false).unwrap();
    for seed in 1..4 {
        let (text, _) = walk(&arith, seed, 60);
        assert!(!text.is_empty());
        let first = text.chars().next().unwrap();
        assert!(first.is_ascii_lowercase() || first.is_ascii_digit() || first == '(');
    }
    let json = Format::grammar(JSON, "json", false).unwrap();
    for seed in 1..6 {
        let (text, ended) = walk(&json, seed, 400);
        if ended {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v.is_object(), "{text}");
        } else {
            assert!(text.starts_with('{'), "{text}");
        }
    }
}

#[test]
fn bad_grammars_and_schemas_name_the_place() {
    let e = Format::grammar("root ::= \"a\"\nx ::= (\"b\"\n", "g.gbnf", false).unwrap_err();
    assert!(
        e.0.starts_with("g.gbnf: line 3, column 1: expecting ')'"),
        "{e}"
    );
    let e = Format::grammar("start: foo\n", "g.lark", true).unwrap_err();
    assert!(e.0.contains("foo"), "{e}");
    let e = Format::schema("{\"type\": ", "s.json").unwrap_err();
    assert!(e.0.starts_with("s.json: not valid JSON"), "{e}");
    let e = Format::schema("[1]", "s.json").unwrap_err();
    assert!(e.0.contains("object"), "{e}");
    let e = Format::schema(r#"{"type": "nonsense"}"#, "s.json").unwrap_err();
    assert!(e.0.contains("nonsense"), "{e}");
}

#[test]
fn drafts_are_cut_at_the_first_invalid_token() {
    let tok = byte_level();
    let vocab = Vocab::new(&tok);
    let f = Format::grammar("root ::= \"ab\" [0-9]+\n", "g", false).unwrap();
    let mut g = Guard::new(&vocab, &f).unwrap();
    let ids: Vec<u32> = b"ab1x".iter().map(|&b| 3 + b as u32).collect();
    assert_eq!(g.valid_prefix(&ids), 3);
    let mut end = ids[..3].to_vec();
    end.push(tok.eos().unwrap());
    assert_eq!(
        g.valid_prefix(&end),
        4,
        "the end token after a complete text"
    );
    assert!(!g.is_complete());
    for &id in &ids[..3] {
        assert!(g.allows(id));
        g.commit(id);
    }
    assert!(g.is_complete());
    assert!(g.allows(tok.eos().unwrap()));
    assert!(!g.allows(3 + b'x' as u32));
}

/// A rule that ends in optional whitespace followed by a required newline (llama.cpp's
/// `arithmetic.gbnf` has this shape): after "1\n" the text is complete. Greedy multi-character
/// lexemes would have put the newline into the whitespace and never finished.
#[test]
fn gbnf_keeps_its_non_greedy_meaning() {
    let tok = byte_level();
    let vocab = Vocab::new(&tok);
    let g = "root ::= (num \"\\n\")+\nnum ::= [0-9]+ ws\nws ::= [ \\t\\n]*\n";
    let f = Format::grammar(g, "g", false).unwrap();
    let mut guard = Guard::new(&vocab, &f).unwrap();
    for b in *b"12 \n" {
        assert!(guard.allows(3 + b as u32), "{}", b as char);
        guard.commit(3 + b as u32);
    }
    assert!(guard.is_complete());
    assert!(guard.allows(tok.eos().unwrap()));
    // and the text may go on: more whitespace, or another line
    assert!(guard.allows(3 + b'\n' as u32) && guard.allows(3 + b'7' as u32));
}

/// Every end-of-generation token keeps its logit where the text may end (chat models end a turn
/// with their end-of-turn token, not the vocabulary's EOS), and none where it may not.
#[test]
fn every_end_token_is_allowed_exactly_where_the_text_may_end() {
    let tok = byte_level();
    let vocab = Vocab::new(&tok);
    let eog: Vec<u32> = (0..tok.n_vocab() as u32)
        .filter(|&i| tok.is_eog(i))
        .collect();
    assert!(
        eog.len() >= 2,
        "the test vocabulary has EOS and <|im_end|>: {eog:?}"
    );
    let f = Format::grammar("root ::= \"ab\"\n", "g", false).unwrap();
    let mut g = Guard::new(&vocab, &f).unwrap();
    let mut logits = vec![1.0f32; tok.n_vocab()];
    g.apply(&mut logits);
    assert!(eog.iter().all(|&e| logits[e as usize] == f32::NEG_INFINITY));
    for b in *b"ab" {
        g.commit(3 + b as u32);
    }
    let mut logits = vec![1.0f32; tok.n_vocab()];
    g.apply(&mut logits);
    assert!(eog.iter().all(|&e| logits[e as usize] == 1.0), "{eog:?}");
    assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), eog.len());
}
