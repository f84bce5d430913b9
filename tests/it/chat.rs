//! The chat REPL driven through a real pseudo-terminal: a two-turn conversation that re-uses
//! the cache, Ctrl-C during an answer then a follow-up, history recall, /save + /load, and the
//! ways out (Ctrl-D, Ctrl-C twice). Plus the chat fed from a pipe.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_ember, show, tiny_writer, TinyArch};
use ember::gguf::Value;
use rexpect::session::{spawn_command, PtySession};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The tiny model with a chat template and a long training context.
fn chat_model(dir: &Path) -> PathBuf {
    let mut w = tiny_writer(5, TinyArch::Llama);
    w.add("llama.context_length", Value::U32(1 << 16));
    w.add("tokenizer.chat_template", Value::String(CHATML.into()));
    let p = dir.join("tiny-chat.gguf");
    w.write(&p).unwrap();
    p
}

fn spawn(model: &Path, history: &Path, extra: &[&str]) -> PtySession {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.arg("chat")
        .args([
            "-m",
            model.to_str().unwrap(),
            "--temp",
            "0",
            "--ignore-eos",
            "-t",
            "1",
        ])
        .args(extra)
        .env("EMBER_HISTORY", history)
        .env("TERM", "xterm");
    spawn_command(c, Some(20_000)).expect("spawn ember chat in a pty")
}

/// Waits until the answer to `line` is being written. Ctrl-C sent earlier can reach the line
/// editor while it still holds the terminal in raw mode, as a byte and not as a signal (seen on
/// a loaded machine: the answer then never stopped).
fn answer_started(p: &mut PtySession, line: &str) {
    p.exp_string(line).unwrap();
    p.exp_regex(r"\n[^\r\n]").unwrap();
    std::thread::sleep(Duration::from_millis(100));
}

/// `/show stats` → (prompt tokens, re-used, evaluated).
fn stats(p: &mut PtySession) -> (usize, usize, usize) {
    p.send_line("/show stats").unwrap();
    let (_, m) = p
        .exp_regex(r"prompt \d+ tokens, \d+ re-used from the cache, \d+ evaluated")
        .unwrap();
    let n: Vec<usize> = m
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    p.exp_string(">>> ").unwrap();
    (n[0], n[1], n[2])
}

#[test]
fn two_turns_evaluate_only_the_new_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let mut p = spawn(&model, &dir.path().join("h"), &["-c", "2048", "-n", "8"]);
    p.exp_string(">>> ").unwrap();
    p.send_line("hello there").unwrap();
    p.exp_string(">>> ").unwrap();
    let (p1, r1, e1) = stats(&mut p);
    assert_eq!((r1, e1), (0, p1));
    p.send_line("and again").unwrap();
    p.exp_string(">>> ").unwrap();
    let (p2, r2, e2) = stats(&mut p);
    // Turn one is re-used: its prompt and the answer tokens evaluated (7: the 8th was never
    // fed back), less any tokens ending inside a character (the tiny model writes random
    // bytes); only the new message and the template around it are evaluated.
    assert!(
        (p1 + 4..=p1 + 7).contains(&r2),
        "turn one {p1}, prompt {p2}, re-used {r2}, evaluated {e2}"
    );
    assert_eq!(e2, p2 - r2);
    p.send_line("/show info").unwrap();
    p.exp_string("messages: 4").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn ctrl_c_stops_the_answer_and_keeps_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let mut p = spawn(&model, &dir.path().join("h"), &["-c", "65536", "-n", "-1"]);
    p.exp_string(">>> ").unwrap();
    p.send_line("go on forever").unwrap();
    answer_started(&mut p, "go on forever");
    let t = Instant::now();
    p.send_control('c').unwrap();
    p.exp_string(">>> ").unwrap();
    let back = t.elapsed();
    eprintln!("back at the prompt {back:?} after Ctrl-C");
    assert!(back < Duration::from_secs(2), "{back:?}");
    p.send_line("/show stats").unwrap();
    p.exp_string("stop: interrupted").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/set n-predict 3").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("and now?").unwrap();
    p.exp_string(">>> ").unwrap();
    let (_, reused, _) = stats(&mut p);
    assert!(
        reused > 10,
        "the interrupted answer stays in the cache: {reused}"
    );
    p.send_line("/show info").unwrap();
    p.exp_string("messages: 4").unwrap();
    p.exp_string(">>> ").unwrap();
    // Ctrl-C pressed twice during an answer still only stops that answer.
    p.send_line("/set n-predict -1").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("once more").unwrap();
    answer_started(&mut p, "once more");
    p.send_control('c').unwrap();
    p.send_control('c').unwrap();
    p.exp_string(">>> ").unwrap();
    // A SIGINT that reaches the process only once it waits at the prompt again (the second
    // of two fast Ctrl-C on a loaded machine) is a late one: it ends nothing.
    p.process_mut()
        .signal(rexpect::process::Signal::SIGINT)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.send_line("/show info").unwrap();
    p.exp_string("messages: 6").unwrap();
    p.exp_string(">>> ").unwrap();
    // Ctrl-C twice at the prompt exits.
    p.send_control('c').unwrap();
    p.exp_string("Ctrl-C again").unwrap();
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn history_is_recalled_in_the_next_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let hist = dir.path().join("hist");
    let mut p = spawn(
        &model,
        &hist,
        &["-c", "512", "-n", "2", "-sys", "Recall-me-42"],
    );
    p.exp_string(">>> ").unwrap();
    p.send_line("/show system").unwrap();
    p.exp_string("Recall-me-42").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/bye").unwrap();
    p.exp_eof().unwrap();
    assert!(std::fs::read_to_string(&hist)
        .unwrap()
        .contains("/show system"));

    let mut p = spawn(
        &model,
        &hist,
        &["-c", "512", "-n", "2", "-sys", "Second-77"],
    );
    p.exp_string(">>> ").unwrap();
    // Up arrow recalls earlier entries; keys typed too fast after the prompt can arrive before
    // the editor reads the terminal, so give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    p.send("\x1b[A\x1b[A").unwrap(); // past "/bye" to "/show system"
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Second-77").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/bye").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn save_and_load_restore_the_conversation_and_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let file = dir.path().join("talk.chat");
    let f = file.to_str().unwrap();
    let mut p = spawn(&model, &dir.path().join("h"), &["-c", "1024", "-n", "6"]);
    p.exp_string(">>> ").unwrap();
    p.send_line("remember this").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line(&format!("/save {f}")).unwrap();
    p.exp_string("(saved 2 messages").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/bye").unwrap();
    p.exp_eof().unwrap();

    let mut p = spawn(&model, &dir.path().join("h"), &["-c", "1024", "-n", "6"]);
    p.exp_string(">>> ").unwrap();
    p.send_line(&format!("/load {f}")).unwrap();
    let (_, m) = p
        .exp_regex(r"loaded 2 messages and \d+ cached tokens")
        .unwrap();
    let cached: usize = m.split(' ').nth(4).unwrap().parse().unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("what was it?").unwrap();
    p.exp_string(">>> ").unwrap();
    let (_, reused, _) = stats(&mut p);
    assert_eq!(reused, cached);
    p.send_line("/load /nonexistent/file").unwrap();
    p.exp_string("ember: opening /nonexistent/file").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/bye").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn a_piped_chat_prints_only_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let m = model.to_str().unwrap();
    let args = [
        "chat",
        "-m",
        m,
        "-c",
        "512",
        "-n",
        "3",
        "--temp",
        "0",
        "--ignore-eos",
    ];
    let o = run_ember(&args, Some("one\ntwo\n/show stats\n"), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains(">>>"), "{}", show(&o));
    assert_eq!(out.lines().count(), 2, "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("re-used from the cache"),
        "{}",
        show(&o)
    );
    // Without a template: raw completion, with a notice.
    let (_d, plain) = common::tiny_model(5);
    let args = [
        "chat",
        "-m",
        plain.to_str().unwrap(),
        "-n",
        "2",
        "--temp",
        "0",
    ];
    let o = run_ember(&args, Some("the\n"), &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no chat template"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_full_context_drops_the_oldest_exchanges_or_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = chat_model(dir.path());
    let m = model.to_str().unwrap();
    // Byte-level tiny vocabulary: each exchange is ~80 tokens of template and text.
    let input = "first question\nsecond question\nthird question\nfourth question\n/show stats\n";
    let args = [
        "chat",
        "-m",
        m,
        "-c",
        "256",
        "-n",
        "8",
        "--temp",
        "0",
        "--ignore-eos",
        "-t",
        "1",
    ];
    let o = run_ember(&args, Some(input), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is full: dropped the"), "{}", show(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        4,
        "{}",
        show(&o)
    );

    let mut args = args.to_vec();
    args.extend(["--context-full", "error"]);
    let o = run_ember(&args, Some(input), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no longer fits the context of 256"),
        "{}",
        show(&o)
    );
}

/// A hybrid model's chat (Qwen3.5's recurrent layers) re-uses the previous turns: its
/// recurrent state is where the last answer ended, or at the checkpoint after the last prompt.
#[test]
fn a_hybrid_model_s_chat_re_uses_the_previous_turns() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tiny_writer(5, TinyArch::Qwen35);
    w.add("tokenizer.chat_template", Value::String(CHATML.into()));
    let model = dir.path().join("tiny-hybrid-chat.gguf");
    w.write(&model).unwrap();
    let args = [
        "chat",
        "-m",
        model.to_str().unwrap(),
        "-c",
        "512",
        "-n",
        "3",
        "--temp",
        "0",
        "--ignore-eos",
    ];
    let o = run_ember(&args, Some("one\n/show stats\ntwo\n/show stats\n"), &[]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let reused: Vec<u64> = err
        .lines()
        .filter_map(|l| {
            l.split(" re-used from the cache")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(reused.len(), 2, "{}", show(&o));
    assert_eq!(reused[0], 0);
    assert!(reused[1] > 0, "{}", show(&o));
}
