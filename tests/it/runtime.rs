//! Runtime behaviour of one-shot generation on the tiny model: signals (SIGINT → what was
//! generated, then exit 130; SIGTERM → exit 143), a closed stdout (exit 0, quiet), a prompt longer
//! than the context (a clear error, or `--truncate-prompt`), `-n` past the context (stops with
//! the reason on stderr).

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_ember, show, tiny_writer, TinyArch};
use ember::gguf::Value;

/// The tiny model with a long training context, so that generation runs long enough to be
/// interrupted.
fn long_context_model(dir: &Path) -> PathBuf {
    let mut w = tiny_writer(7, TinyArch::Llama);
    w.add("llama.context_length", Value::U32(1 << 16));
    let p = dir.join("tiny-long.gguf");
    w.write(&p).unwrap();
    p
}

fn spawn_endless(model: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["-m", model.to_str().unwrap(), "-p", "the", "-c", "65536"])
        .args(["-n", "-1", "--ignore-eos", "-t", "1", "--temp", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ember")
}

/// Wait for the child's exit, killing it (and failing) after `limit`.
fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("ember did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start a long generation, wait for its first output, send `signal`, and check that it stops
/// promptly with `code`, keeping what it generated and saying why on stderr.
/// Everything the (finished) child wrote on stderr.
fn stderr_text(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn signal_stops_generation(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let model = long_context_model(dir.path());
    let mut child = spawn_endless(&model);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("first output byte");
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        rest
    });
    let status = wait_within(&mut child, Duration::from_secs(10));
    let rest = reader.join().unwrap();
    let err = stderr_text(&mut child);
    assert_eq!(status.code(), Some(code), "stderr: {err}");
    assert!(
        err.contains(&format!("warning: stopped: interrupted by SIG{signal}")),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    // The run ended by itself (perf line printed), it was not killed by the signal.
    assert!(err.contains("ember: load:"), "{err}");
    assert!(rest.len() < 65536 * 16, "stopped promptly");
}

#[test]
fn sigint_keeps_the_output_and_exits_130() {
    signal_stops_generation("INT", 130);
}

#[test]
fn sigterm_stops_cleanly_with_143() {
    signal_stops_generation("TERM", 143);
}

#[test]
fn a_closed_stdout_ends_the_run_quietly_with_0() {
    let dir = tempfile::tempdir().unwrap();
    let model = long_context_model(dir.path());
    let mut child = spawn_endless(&model);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("first output byte");
    drop(stdout); // `ember ... | head -c1`
    let status = wait_within(&mut child, Duration::from_secs(10));
    let err = stderr_text(&mut child);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.is_empty(), "stderr: {err}");
}

#[test]
fn a_prompt_longer_than_the_context_is_one_clear_error() {
    let (_dir, model) = common::tiny_model(3);
    let m = model.to_str().unwrap();
    let prompt = "abcdefghij".repeat(10); // byte tokens: about 100 of them
    let args = ["-m", m, "-p", &prompt, "-c", "32", "-n", "4", "-t", "1"];
    let o = run_ember(&args, None, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(err.lines().count(), 1, "{}", show(&o));
    assert!(
        err.contains("more than the context of 32") && err.contains("--truncate-prompt"),
        "{}",
        show(&o)
    );
    assert!(o.stdout.is_empty());

    let mut args = args.to_vec();
    args.extend(["--truncate-prompt", "--ignore-eos", "--no-perf"]);
    let o = run_ember(&args, None, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        err.contains("prompt truncated from ") && err.contains(" to 28 tokens"),
        "{}",
        show(&o)
    );
    assert!(!o.stdout.is_empty(), "{}", show(&o));
}

#[test]
fn truncation_keeps_the_first_token_and_the_end() {
    use ember::app::run::truncate_prompt;
    let ids: Vec<u32> = (0..100).collect();
    assert_eq!(truncate_prompt(&ids, 200, 10), ids);
    let t = truncate_prompt(&ids, 32, 4);
    assert_eq!(t.len(), 28);
    assert_eq!(t[0], 0);
    assert_eq!(t[1..], ids[73..]);
    // -n -1 or a large -n leaves half the context.
    assert_eq!(truncate_prompt(&ids, 32, -1).len(), 16);
    assert_eq!(truncate_prompt(&ids, 32, 1000).len(), 16);
    assert_eq!(truncate_prompt(&ids, 32, 0).len(), 32);
}

#[test]
fn n_predict_past_the_context_stops_with_the_reason() {
    let (_dir, model) = common::tiny_model(3);
    let m = model.to_str().unwrap();
    let args = [
        "-m",
        m,
        "-p",
        "the",
        "-c",
        "24",
        "-n",
        "100",
        "--ignore-eos",
        "-t",
        "1",
        "--no-perf",
    ];
    let o = run_ember(&args, None, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        err.contains("warning: stopped: the context of 24 tokens is full"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_model_file_that_vanished_is_a_clear_error() {
    let (dir, model) = common::tiny_model(3);
    std::fs::remove_file(&model).unwrap();
    let o = run_ember(&["-m", model.to_str().unwrap(), "-p", "hi"], None, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(err.lines().count(), 1, "{}", show(&o));
    assert!(
        err.contains("tiny.gguf") && err.contains("No such file"),
        "{}",
        show(&o)
    );
    drop(dir);
}
