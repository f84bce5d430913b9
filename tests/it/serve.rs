//! `ember serve` end to end over HTTP on a tiny random model: the OpenAI shapes, answers equal
//! to lone `ember -p` runs (batch invariance through the server), streams, concurrency, errors
//! with their statuses, a client leaving mid-stream, and SIGTERM ending it with 0.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run_ember, show, tiny_writer, TinyArch};
use ember::gguf::Value;
use serde_json::{json, Value as Json};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the server wrote on stderr (once it has exited).
fn stderr_of(s: &mut Server) -> String {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = s.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn start(model: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["serve", "-m", model.to_str().unwrap(), "-t", "1", "--port"])
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = agent().get(format!("{}/health", s.base)).call() {
            if r.status() == 200 {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ember serve did not become ready");
}

fn post(s: &Server, path: &str, body: &Json, key: Option<&str>) -> (u16, Json) {
    let mut req = agent().post(format!("{}{path}", s.base));
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let mut r = req.send(body.to_string()).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

/// The data lines of a stream, until `[DONE]`.
fn stream(s: &Server, path: &str, body: &Json) -> Vec<Json> {
    let r = agent()
        .post(format!("{}{path}", s.base))
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut out = Vec::new();
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            return out;
        }
        out.push(serde_json::from_str(data).unwrap());
    }
    panic!("the stream ended without [DONE]: {out:?}");
}

fn model(dir: &Path) -> std::path::PathBuf {
    let mut w = tiny_writer(61, TinyArch::Llama);
    w.add("tokenizer.chat_template", Value::String(CHATML.into()));
    let p = dir.join("tiny-serve.gguf");
    w.write(&p).unwrap();
    p
}

/// What `ember -p` gives alone (`--chat`: as a chat message).
fn alone(m: &Path, prompt: &str, chat: bool, n: u32, seed: u32, temp: &str) -> String {
    let n = n.to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "-m",
        m.to_str().unwrap(),
        "-p",
        prompt,
        "--no-escape",
        "-n",
        &n,
        "-s",
        &seed,
        "--temp",
        temp,
        "-t",
        "1",
        "--json",
    ];
    if chat {
        args.push("--chat");
    }
    let o = run_ember(&args, None, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let v: Json = serde_json::from_slice(&o.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn answers_streams_and_models_in_the_openai_shapes() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let s = start(&m, &["-np", "4", "-c", "1024"]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"model": "x", "messages": [{"role": "user", "content": "the cat"}], "max_tokens": 12, "temperature": 0}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, alone(&m, "the cat", true, 12, 1, "0"));
    let n = v["usage"]["completion_tokens"].as_u64().unwrap();
    let finish = if n == 12 { "length" } else { "stop" };
    assert_eq!(v["choices"][0]["finish_reason"], finish, "{v}");
    assert_eq!(
        v["usage"]["total_tokens"].as_u64().unwrap(),
        n + v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    // streamed: the same text in chunks, the role first, usage last
    let chunks = stream(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "the cat"}], "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );
    // completions, with a seed at temperature 0.8
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "a dog ran", "max_tokens": 9, "temperature": 0.8, "seed": 5}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        alone(&m, "a dog ran", false, 9, 5, "0.8")
    );
    // models and health
    let mut r = agent().get(format!("{}/v1/models", s.base)).call().unwrap();
    let models: Json = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-serve.gguf");
    // a schema through response_format
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"], "additionalProperties": false, "x-guidance": {"whitespace_flexible": false}});
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 40, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let out: Json =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(out["n"].as_i64().unwrap() <= 9);
}

#[test]
fn concurrent_streams_each_equal_their_lone_run() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let s = start(&m, &["-np", "4", "-c", "1024"]);
    let prompts = [
        "the cat",
        "a dog ran",
        "the",
        "cat dog the cat",
        "ran a",
        "dog",
        "the the",
        "a",
    ];
    let texts: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = &s;
                sc.spawn(move || {
                    let chunks = stream(
                        s,
                        "/v1/completions",
                        &json!({"prompt": p, "max_tokens": 10 + i, "temperature": 0.8, "seed": 100 + i, "stream": true}),
                    );
                    chunks
                        .iter()
                        .filter_map(|c| c["choices"][0]["text"].as_str())
                        .collect::<String>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(
            texts[i],
            alone(&m, p, false, 10 + i as u32, 100 + i as u32, "0.8"),
            "{p}"
        );
    }
}

#[test]
fn errors_have_openai_bodies_and_statuses() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let s = start(&m, &["--api-key", "sesame", "--max-body", "2000"]);
    let chat = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2});
    let (st, v) = post(&s, "/v1/chat/completions", &chat, None);
    assert_eq!(st, 401, "{v}");
    assert!(v["error"]["message"].is_string());
    let (st, _) = post(&s, "/v1/chat/completions", &chat, Some("wrong"));
    assert_eq!(st, 401);
    let (st, v) = post(&s, "/v1/chat/completions", &chat, Some("sesame"));
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": "hi"}),
        Some("sesame"),
    );
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("messages")),
        "{v}"
    );
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "x", "temperature": -1}),
        Some("sesame"),
    );
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("temperature")),
        "{v}"
    );
    let r = agent()
        .post(format!("{}/v1/completions", s.base))
        .header("Authorization", "Bearer sesame")
        .send("{not json")
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = agent()
        .post(format!("{}/v1/completions", s.base))
        .header("Authorization", "Bearer sesame")
        .send(format!("{{\"prompt\": \"{}\"}}", "x".repeat(5000)))
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = agent()
        .get(format!("{}/v2/nothing", s.base))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    // /health needs no key
    let r = agent().get(format!("{}/health", s.base)).call().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_client_leaving_frees_its_slot_and_sigterm_exits_0() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let mut s = start(&m, &["-np", "1", "-c", "1024"]);
    // one slot: a stream that runs long (its grammar wants 400 letters), dropped after its
    // first chunk
    let r = agent()
        .post(format!("{}/v1/completions", s.base))
        .send(
            json!({"prompt": "the", "max_tokens": 600, "stream": true, "grammar": "root ::= [a-z]{400}"})
                .to_string(),
        )
        .unwrap();
    let mut lines = BufReader::new(r.into_body().into_reader()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("data: "), "{first}");
    drop(lines);
    // the next request gets the slot
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 3}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    // SIGTERM: exit 0, the log line per request on stderr
    let (status, err) = stop(&mut s);
    assert_eq!(status.code(), Some(0));
    assert!(err.contains("POST /v1/completions 200"), "{err}");
    assert!(err.contains("client went away"), "{err}");
}

/// A chat's next turn (its messages extend what a slot holds: the previous prompt and answer)
/// continues in that slot from its cache, as the chat REPL does: the answers equal the REPL's.
#[test]
fn a_next_turn_continues_from_the_slot_cache_like_the_repl() {
    let m = common::smollm2();
    let q1 = "What is the capital of France?";
    let q2 = "And of Italy?";
    let o = run_ember(
        &["chat", "-m", m.to_str().unwrap(), "--temp", "0", "-n", "6"],
        Some(&format!("{q1}\n{q2}\n")),
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    let repl = String::from_utf8_lossy(&o.stdout).to_string();
    let mut s = start(&m, &["-np", "2", "-c", "2048", "-v", "-v"]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": q1}], "max_tokens": 6, "temperature": 0}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let a1 = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": q1}, {"role": "assistant", "content": a1}, {"role": "user", "content": q2}], "max_tokens": 6, "temperature": 0}),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let a2 = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(format!("{a1}\n{a2}\n"), repl);
    let _ = s.child.kill();
    let err = stderr_of(&mut s);
    assert!(err.contains("request 1 continues sequence"), "{err}");
}

/// SIGTERM: the exit status (within 10 s) and everything the server wrote on stderr.
fn stop(s: &mut Server) -> (std::process::ExitStatus, String) {
    let pid = s.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, stderr_of(s))
}

/// `-md` and `--lookup`: a lone greedy request drafts and verifies (`--spec-fixed`: every step
/// drafts what fits; the random model's text gives prompt lookup little to draft, the target
/// as its own draft model everything), its text still plain decoding's; two at once decode
/// batched, each its lone run's text.
#[test]
fn speculation_keeps_a_lone_greedy_request_s_text() {
    let (_d, m) = common::tiny_model_q8_ctx(62, 1024);
    let prompt = "one two three four one two three four one two three four one two";
    let want = alone(&m, prompt, false, 40, 0, "0");
    let ms = m.to_str().unwrap();
    for flags in [
        &["--lookup", "--spec-fixed"][..],
        &[
            "-md",
            ms,
            "--spec-fixed",
            "--draft-max",
            "5",
            "--draft-p-min",
            "0",
        ],
        &["--lookup"],
    ] {
        let mut args = vec!["-np", "2", "-c", "2048"];
        args.extend_from_slice(flags);
        let mut s = start(&m, &args);
        let body = json!({"prompt": prompt, "max_tokens": 40, "temperature": 0});
        let (st, v) = post(&s, "/v1/completions", &body, None);
        assert_eq!(st, 200, "{flags:?}: {v}");
        assert_eq!(v["choices"][0]["text"], want.as_str(), "{flags:?}");
        // two at once: no speculation, each still its lone run
        let other = "five six seven";
        let want2 = alone(&m, other, false, 24, 0, "0");
        let (a, b) = std::thread::scope(|sc| {
            let a = sc.spawn(|| post(&s, "/v1/completions", &body, None));
            let b = sc.spawn(|| {
                post(
                    &s,
                    "/v1/completions",
                    &json!({"prompt": other, "max_tokens": 24, "temperature": 0}),
                    None,
                )
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(a.1["choices"][0]["text"], want.as_str(), "{flags:?}");
        assert_eq!(b.1["choices"][0]["text"], want2.as_str(), "{flags:?}");
        let (_, err) = stop(&mut s);
        let line = err
            .lines()
            .find(|l| l.contains("speculation:"))
            .unwrap_or_else(|| panic!("{err}"));
        if flags.contains(&"-md") {
            // the draft is the target itself: every drafted token is accepted
            assert!(!line.contains(" 0 tokens drafted"), "{line}");
        }
    }
}

/// On f16 matrices (no exact multi-row verification) the server drafts nothing, as one-shot
/// speculation does, and the text is the lone run's.
#[test]
fn speculation_on_f16_matrices_drafts_nothing() {
    let (_d, m) = common::tiny_model(1);
    let prompt = "one two three four one two three four";
    let want = alone(&m, prompt, false, 24, 0, "0");
    let ms = m.to_str().unwrap();
    let mut s = start(
        &m,
        &[
            "-md",
            ms,
            "--spec-fixed",
            "--draft-max",
            "4",
            "--draft-p-min",
            "0",
        ],
    );
    let body = json!({"prompt": prompt, "max_tokens": 24, "temperature": 0});
    let (st, v) = post(&s, "/v1/completions", &body, None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], want.as_str());
    let (_, err) = stop(&mut s);
    let line = err
        .lines()
        .find(|l| l.contains("speculation:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(" 0 tokens drafted"), "{line}");
}

/// A reasoning model's thoughts come back apart, as llama-server gives them: the message's
/// `reasoning_content`, and `delta.reasoning_content` chunks in a stream.
#[test]
fn reasoning_is_reasoning_content() {
    const THINK: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{# <think> #}";
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_writer(7, TinyArch::Llama);
    w.add("tokenizer.chat_template", Value::String(THINK.into()));
    let m = dir.path().join("think.gguf");
    w.write(&m).unwrap();
    let s = start(&m, &[]);
    let body = json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 60, "temperature": 0,
        "grammar": "root ::= \"<think>\\nplan\\n</think>\\n\\nthe answer\"",
    });
    let (status, v) = post(&s, "/v1/chat/completions", &body, None);
    assert_eq!(status, 200, "{v}");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "the answer", "{v}");
    assert_eq!(msg["reasoning_content"], "\nplan\n", "{v}");
    let mut b = body.clone();
    b["stream"] = true.into();
    let chunks = stream(&s, "/v1/chat/completions", &b);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let thought: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(
        (text.as_str(), thought.as_str()),
        ("the answer", "\nplan\n")
    );
}
