//! Structured output: on a random-weight model (whatever it would say) the text always satisfies
//! the schema or grammar — one-shot, speculative, the chat and `ember batch`; bad grammars and
//! schemas are usage errors naming the place; a text cut short by `-n` exits 3.

use crate::common;

use common::{run_ember, show};
use serde_json::Value as Json;

/// A schema whose every valid text is short, so random models finish it within `-n`.
const PERSON: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 6},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "kind": {"enum": ["cat", "dog", "fish"]},
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,3}$"}, "minItems": 1, "maxItems": 2}
  },
  "required": ["name", "age", "kind", "tags"],
  "additionalProperties": false
}"#;

fn check_person(text: &str) {
    let v: Json = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 4, "{text}");
    assert!(v["name"].as_str().unwrap().chars().count() <= 6, "{text}");
    assert!((0..=150).contains(&v["age"].as_i64().unwrap()), "{text}");
    assert!(
        ["cat", "dog", "fish"].contains(&v["kind"].as_str().unwrap()),
        "{text}"
    );
    let tags = v["tags"].as_array().unwrap();
    assert!((1..=2).contains(&tags.len()), "{text}");
    for t in tags {
        let t = t.as_str().unwrap();
        assert!((1..=3).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase()));
    }
}

fn json_run(args: &[&str]) -> (std::process::Output, Json) {
    let mut all = args.to_vec();
    all.push("--json");
    let o = run_ember(&all, None, &[]);
    let v: Json = serde_json::from_slice(&o.stdout).unwrap_or(Json::Null);
    (o, v)
}

#[test]
fn schema_texts_validate_at_any_seed() {
    let (_d, m) = common::tiny_model(41);
    let m = m.to_str().unwrap();
    for seed in ["1", "2", "3", "4"] {
        let (o, v) = json_run(&[
            "-m", m, "-p", "the", "-t", "1", "-n", "400", "--temp", "0.8", "-s", seed, "-j", PERSON,
        ]);
        assert!(o.status.success(), "{}", show(&o));
        check_person(v["text"].as_str().unwrap());
        assert_eq!(v["stop_reason"], "eog", "{}", show(&o));
    }
}

#[test]
fn a_gbnf_file_and_a_lark_grammar_constrain_the_text() {
    let (d, m) = common::tiny_model(42);
    let m = m.to_str().unwrap();
    let gbnf = d.path().join("list.gbnf");
    std::fs::write(
        &gbnf,
        "# two or three items\nroot ::= item{2,3}\nitem ::= \"- \" [a-z]{1,5} \"\\n\"\n",
    )
    .unwrap();
    let lark = d.path().join("pair.lark");
    std::fs::write(
        &lark,
        "start: WORD \"=\" NUM\nWORD: /[a-z]{1,4}/\nNUM: /[0-9]{1,3}/\n",
    )
    .unwrap();
    for seed in ["1", "2", "3"] {
        let base = ["-m", m, "-p", "x", "-t", "1", "-n", "60", "-s", seed];
        let (o, v) = json_run(&[&base[..], &["--grammar-file", gbnf.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", show(&o));
        let text = v["text"].as_str().unwrap();
        let items: Vec<&str> = text.split_inclusive('\n').collect();
        assert!((2..=3).contains(&items.len()), "{text:?}");
        for it in items {
            let word = it
                .strip_prefix("- ")
                .and_then(|w| w.strip_suffix('\n'))
                .unwrap();
            assert!((1..=5).contains(&word.len()), "{text:?}");
            assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{text:?}");
        }
        let (o, v) = json_run(&[&base[..], &["--grammar-file", lark.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", show(&o));
        let text = v["text"].as_str().unwrap();
        let (w, n) = text.split_once('=').unwrap();
        assert!(!w.is_empty() && w.len() <= 4 && w.bytes().all(|b| b.is_ascii_lowercase()));
        assert!(!n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()));
    }
    // --format json: one object
    let (o, v) = json_run(&[
        "-m", m, "-p", "x", "-t", "1", "-n", "200", "-s", "5", "--format", "json",
    ]);
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with('{'), "{}", show(&o));
    if o.status.success() {
        assert!(serde_json::from_str::<Json>(text).unwrap().is_object());
    } else {
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    }
}

#[test]
fn bad_grammars_and_schemas_are_usage_errors() {
    let (d, m) = common::tiny_model(43);
    let m = m.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--grammar", "root ::= \"a\"\nitem ::= (\"b\"\n"],
            "--grammar: line 3, column 1: expecting ')'",
        ),
        (
            &["--grammar", "root ::= item\n"],
            "'item', which is not defined",
        ),
        (
            &["-j", "{\"type\": \"object\""],
            "--json-schema: not valid JSON",
        ),
        (&["-j", "{\"type\": \"nonsense\"}"], "nonsense"),
        (
            &["--grammar-file", "/nonexistent/g.gbnf"],
            "/nonexistent/g.gbnf",
        ),
    ];
    for (flags, want) in cases {
        let o = run_ember(&[&["-m", m, "-p", "x"][..], flags].concat(), None, &[]);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    let o = run_ember(
        &["-m", m, "-p", "x", "-j", "{}", "--format", "json"],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "two constraints: {}", show(&o));
    drop(d);
}

#[test]
fn a_text_cut_short_by_n_says_length_and_exits_3() {
    let (_d, m) = common::tiny_model(44);
    let (o, v) = json_run(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "the",
        "-t",
        "1",
        "-n",
        "3",
        "-s",
        "1",
        "-j",
        PERSON,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(v["stop_reason"], "length");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("incomplete"),
        "{}",
        show(&o)
    );
}

/// Speculation verifies drafted tokens against the constraint: the greedy text is the plain
/// run's, and sampled texts validate.
#[test]
fn speculative_runs_keep_the_constraint() {
    let (_d, m) = common::tiny_model_q8(45);
    let m = m.to_str().unwrap();
    // compact JSON (llguidance's own option, which a schema may set): this model's greedy
    // choice is endless indentation, and its context is 256 tokens
    let mut schema: Json = serde_json::from_str(PERSON).unwrap();
    schema["x-guidance"] = serde_json::json!({"whitespace_flexible": false});
    let schema = schema.to_string();
    let base = [
        "-m",
        m,
        "-p",
        "the the the",
        "-t",
        "1",
        "-n",
        "200",
        "-j",
        &schema,
    ];
    let (o, plain) = json_run(&[&base[..], &["--temp", "0"]].concat());
    assert!(o.status.success(), "{}", show(&o));
    check_person(plain["text"].as_str().unwrap());
    for spec in [
        &["--lookup"][..],
        &["-md", m, "--spec-fixed", "--draft-max", "4"][..],
    ] {
        let (o, v) = json_run(&[&base[..], &["--temp", "0"], spec].concat());
        assert!(o.status.success(), "{spec:?}: {}", show(&o));
        assert_eq!(v["text"], plain["text"], "{spec:?}");
        for seed in ["1", "2"] {
            let (o, v) = json_run(&[&base[..], &["--temp", "0.8", "-s", seed], spec].concat());
            assert!(o.status.success(), "{spec:?}: {}", show(&o));
            check_person(v["text"].as_str().unwrap());
        }
    }
}

#[test]
fn batch_requests_carry_their_own_constraints() {
    let (_d, m) = common::tiny_model(46);
    let m = m.to_str().unwrap();
    let schema: Json = serde_json::from_str(PERSON).unwrap();
    let reqs = [
        serde_json::json!({"id": 0, "prompt": "the", "json_schema": schema, "seed": 1, "temperature": 0.8, "n_predict": 400}),
        serde_json::json!({"id": 1, "prompt": "a", "grammar": "root ::= [0-9]{2} \"!\"", "seed": 2}),
        serde_json::json!({"id": 2, "prompt": "the", "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}, "seed": 3, "n_predict": 400}),
        serde_json::json!({"id": 3, "prompt": "b", "grammar": "root ::= nope"}),
        serde_json::json!({"id": 4, "prompt": "the", "json_schema": schema, "n_predict": 2}),
    ];
    let input: String = reqs.iter().map(|r| format!("{r}\n")).collect();
    let o = run_ember(
        &["batch", "-m", m, "-np", "3", "-t", "1"],
        Some(&input),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "one bad request: {}", show(&o));
    let out: Vec<Json> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check_person(out[0]["text"].as_str().unwrap());
    let t1 = out[1]["text"].as_str().unwrap();
    assert!(t1.len() == 3 && t1.ends_with('!') && t1[..2].bytes().all(|b| b.is_ascii_digit()));
    check_person(out[2]["text"].as_str().unwrap());
    assert!(
        out[3]["error"].as_str().unwrap().contains("nope"),
        "{}",
        out[3]
    );
    assert_eq!(out[4]["complete"], false);
    assert_eq!(out[4]["stop_reason"], "length");
    // the same request alone gives the same text
    let (o, v) = json_run(&[
        "-m", m, "-p", "the", "-t", "1", "-n", "400", "--temp", "0.8", "-s", "1", "-j", PERSON,
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(v["text"], out[0]["text"]);
}

#[test]
fn the_chat_sets_and_lifts_a_format() {
    let (d, _) = common::tiny_model(47);
    let mut w = common::tiny_writer(47, common::TinyArch::Llama);
    w.add(
        "tokenizer.chat_template",
        ember::gguf::Value::String("{% for m in messages %}{{ m.content }}\n{% endfor %}".into()),
    );
    let p = d.path().join("chat.gguf");
    w.write(&p).unwrap();
    let schema = d.path().join("person.json");
    std::fs::write(&schema, PERSON).unwrap();
    let script = format!(
        "/set format {}\nthe\n/set format off\n/set format /nonexistent.json\n",
        schema.display()
    );
    let o = run_ember(
        &[
            "chat",
            "-m",
            p.to_str().unwrap(),
            "-t",
            "1",
            "-n",
            "400",
            "-s",
            "3",
        ],
        Some(&script),
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    let answer = String::from_utf8_lossy(&o.stdout);
    check_person(answer.trim());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(answers as a JSON schema)"), "{err}");
    assert!(err.contains("(format off)"), "{err}");
    assert!(err.contains("/nonexistent.json"), "{err}");
}

/// The real SmolLM2: sampled answers to an extraction prompt parse and validate.
#[test]
fn smollm2_answers_validate() {
    let m = common::smollm2();
    let m = m.to_str().unwrap();
    for seed in ["1", "2"] {
        let (o, v) = json_run(&[
            "-m",
            m,
            "--chat",
            "-p",
            "Describe a pet as JSON: its name, age, kind and tags.",
            "-n",
            "300",
            "--temp",
            "0.8",
            "-s",
            seed,
            "-j",
            PERSON,
        ]);
        assert!(o.status.success(), "{}", show(&o));
        check_person(v["text"].as_str().unwrap());
    }
}
