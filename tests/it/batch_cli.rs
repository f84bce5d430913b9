//! `ember batch`: JSONL (or plain lines) in, one result per request out, in input order; bad
//! requests get error lines and the rest still run; each text equals a lone `ember -p` run's.

use crate::common;

use common::{run_ember, show};
use serde_json::Value as Json;

fn tiny() -> (tempfile::TempDir, String) {
    let (d, p) = common::tiny_model(31);
    let m = p.to_str().unwrap().to_string();
    (d, m)
}

fn lines(o: &std::process::Output) -> Vec<Json> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The text of a lone one-shot run (one thread unless `extra` says).
fn alone(m: &str, prompt: &str, extra: &[&str]) -> String {
    let mut args = vec!["-m", m, "-p", prompt, "--no-escape", "--json"];
    if !extra.contains(&"-t") {
        args.extend(["-t", "1"]);
    }
    args.extend_from_slice(extra);
    let o = run_ember(&args, None, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Json = serde_json::from_slice(&o.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

const PROMPTS: [&str; 5] = ["the cat", "a dog ran", "the", "cat dog the cat", "ran a"];

#[test]
fn every_text_equals_its_lone_run_greedy_and_seeded() {
    let (_d, m) = tiny();
    let reqs: String = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{}\n",
                serde_json::json!({"id": i, "prompt": p, "n_predict": 4 + i, "seed": 7 + i})
            )
        })
        .collect();
    for temp in ["0", "0.8"] {
        let o = run_ember(
            &[
                "batch",
                "-m",
                &m,
                "-np",
                "3",
                "-t",
                "1",
                "--temp",
                temp,
                "--ignore-eos",
            ],
            Some(&reqs),
            &[],
        );
        assert!(o.status.success(), "{}", show(&o));
        let out = lines(&o);
        assert_eq!(out.len(), PROMPTS.len(), "{}", show(&o));
        for (i, (r, p)) in out.iter().zip(PROMPTS).enumerate() {
            assert_eq!(r["id"], i, "input order");
            assert_eq!(r["stop_reason"], "length");
            assert_eq!(r["timings"]["gen_tokens"], 4 + i);
            let n = (4 + i).to_string();
            let seed = (7 + i).to_string();
            let want = alone(
                &m,
                p,
                &["-n", &n, "--temp", temp, "--seed", &seed, "--ignore-eos"],
            );
            assert_eq!(r["text"], want.as_str(), "prompt {i} at --temp {temp}");
        }
    }
}

#[test]
fn bad_requests_get_error_lines_and_the_rest_run() {
    let (_d, m) = tiny();
    let long = "cat ".repeat(400);
    let reqs = [
        r#"{"id": "ok1", "prompt": "the cat"}"#.to_string(),
        "not json".into(),
        r#"{"id": "type", "prompt": 5}"#.into(),
        String::new(),
        r#"{"id": "unknown", "prompt": "a", "tempreature": 1}"#.into(),
        r#"{"id": "empty", "prompt": ""}"#.into(),
        format!(r#"{{"id": "long", "prompt": "{long}"}}"#),
        r#"{"id": "both", "prompt": "a", "messages": []}"#.into(),
        r#"[1, 2]"#.into(),
        r#"{"id": "ok2", "prompt": "a dog", "stop": ["zzz"], "n_predict": 3}"#.into(),
    ]
    .join("\n");
    let o = run_ember(
        &[
            "batch", "-m", &m, "-np", "2", "-c", "512", "-n", "3", "--temp", "0", "-t", "1",
        ],
        Some(&reqs),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = lines(&o);
    let ids: Vec<String> = out.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(
        ids,
        [
            r#""ok1""#,
            "2",
            r#""type""#,
            r#""unknown""#,
            r#""empty""#,
            r#""long""#,
            r#""both""#,
            "9",
            r#""ok2""#
        ],
        "one line per non-blank input line, in order (no id: the line number)\n{}",
        show(&o)
    );
    let errors: Vec<&str> = out.iter().filter_map(|r| r["error"].as_str()).collect();
    assert_eq!(errors.len(), 7, "{}", show(&o));
    assert!(errors[0].starts_with("not JSON"), "{errors:?}");
    assert!(
        errors[1].contains("'prompt' must be a string"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("unknown field 'tempreature'"),
        "{errors:?}"
    );
    assert!(errors[3].contains("empty"), "{errors:?}");
    assert!(
        errors[4].contains("more than a sequence's 256"),
        "{errors:?}"
    );
    assert!(out[0]["text"].is_string() && out[8]["text"].is_string());
    assert!(String::from_utf8_lossy(&o.stderr).contains("7 of 9 requests failed"));
}

#[test]
fn plain_lines_stdin_and_unordered() {
    let (_d, m) = tiny();
    let input = "the cat\n\na dog ran\nthe\n";
    let common_args = ["-m", &m, "--lines", "-n", "3", "--temp", "0", "-t", "1"];
    let mut args = vec!["batch"];
    args.extend_from_slice(&common_args);
    let o = run_ember(&args, Some(input), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let ordered = lines(&o);
    let ids: Vec<u64> = ordered.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 3, 4], "ids are line numbers; blank lines skipped");
    assert_eq!(
        ordered[1]["text"],
        alone(&m, "a dog ran", &["-n", "3", "--temp", "0"]).as_str()
    );
    args.push("--unordered");
    let o = run_ember(&args, Some(input), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let mut un = lines(&o);
    un.sort_by_key(|r| r["id"].as_u64());
    let strip = |v: &[Json]| -> Vec<Json> { v.iter().map(|r| r["text"].clone()).collect() };
    assert_eq!(strip(&un), strip(&ordered));
}

#[test]
fn a_shared_prompt_head_is_evaluated_once_and_changes_nothing() {
    let (_d, m) = tiny();
    let head = "the cat ran a dog the cat ran a dog the cat ran a dog the cat";
    let prompts: Vec<String> = ["ran", "a dog", "the", "cat cat", "dog ran the"]
        .iter()
        .map(|t| format!("{head} {t}"))
        .collect();
    let reqs: String = prompts
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({"prompt": p})))
        .collect();
    let args = ["-n", "4", "--temp", "0", "-ub", "8", "--ignore-eos"];
    let mut batch = vec!["batch", "-m", &m, "-np", "2", "-t", "1", "-v"];
    batch.extend_from_slice(&args);
    let o = run_ember(&batch, Some(&reqs), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let shared: usize = err
        .split("prompt tokens evaluated (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch summary: {err}"));
    assert!(
        shared >= 4 * 8,
        "later prompts borrow the head's micro-batches: {err}"
    );
    for (r, p) in lines(&o).iter().zip(&prompts) {
        assert_eq!(r["text"], alone(&m, p, &args).as_str(), "{p}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let (_d, m) = tiny();
    let o = run_ember(&["batch", "-m", &m, "-np", "0"], Some(""), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = run_ember(&["batch", "-m", &m, "--chat"], Some(""), &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--chat needs --lines: {}",
        show(&o)
    );
}

#[test]
fn smollm2_batch_equals_lone_runs() {
    let model = common::smollm2();
    let m = model.to_str().unwrap();
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time",
        "The sun",
    ];
    let reqs: String = prompts
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({"id": p, "prompt": p})))
        .collect();
    let o = run_ember(
        &[
            "batch", "-m", m, "-np", "4", "-n", "24", "--temp", "0", "-t", "2",
        ],
        Some(&reqs),
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    for (r, p) in lines(&o).iter().zip(prompts) {
        let want = alone(m, p, &["-n", "24", "--temp", "0", "-t", "2"]);
        assert_eq!(r["text"], want.as_str(), "{p}");
    }
}
