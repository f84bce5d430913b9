//! ggml's RPC backend end to end: two `ember rpc-server`s on loopback, a client splitting a
//! model's layers across them (and its own CPU) with `--rpc`. The logits through any split
//! equal the local run's bit for bit (saved by `ember perplexity`, compared byte for byte);
//! faults (nobody listening, another protocol version, a server killed mid-run) end in one
//! error line and exit 1.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run_ember, show, tiny_model_q8_ctx, KillOnDrop};

struct RpcServer {
    child: KillOnDrop,
    endpoint: String,
}

/// `ember rpc-server` on a free loopback port, once it accepts connections.
fn rpc_server(extra: &[&str]) -> RpcServer {
    let port = free_port();
    let p = port.to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["rpc-server", "--port", &p, "-t", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ember rpc-server");
    let endpoint = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while TcpStream::connect(&endpoint).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rpc-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    RpcServer {
        child: KillOnDrop(child),
        endpoint,
    }
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles \
begins with a single step. All that glitters is not gold. Where there is smoke there is fire. \
Actions speak louder than words. The early bird catches the worm. Practice makes perfect. ";

/// `ember perplexity` saving its logits to `out` (llama.cpp's file format).
fn save_logits(model: &Path, text: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "perplexity",
        "-m",
        model.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "2",
        "-t",
        "1",
        "--kl-divergence-base",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run_ember(&args, None, &[]);
    assert!(o.status.success(), "{extra:?}: {}", show(&o));
}

#[test]
fn logits_through_two_rpc_servers_equal_the_local_ones_bit_for_bit() {
    let (dir, model) = tiny_model_q8_ctx(31, 256);
    let text = dir.path().join("text.txt");
    std::fs::write(&text, TEXT.repeat(6)).unwrap();
    let local = dir.path().join("local.kld");
    save_logits(&model, &text, &local, &[]);
    let want = std::fs::read(&local).unwrap();
    let (a, b) = (rpc_server(&[]), rpc_server(&[]));
    let servers = format!("{},{}", a.endpoint, b.endpoint);
    for (i, split) in [
        // every layer and the output on the servers, half each
        &["-ngl", "99", "-ts", "1,1"][..],
        // the last two layers and the output on the servers, the rest here
        &["-ngl", "3", "-ts", "1,2"],
        // no -ngl: the servers and this CPU share every layer (by free memory)
        &[],
        // this CPU's share given explicitly
        &["-ts", "1,1,2"],
    ]
    .iter()
    .enumerate()
    {
        let out = dir.path().join(format!("split{i}.kld"));
        let mut args = vec!["--rpc", servers.as_str()];
        args.extend_from_slice(split);
        save_logits(&model, &text, &out, &args);
        assert!(
            std::fs::read(&out).unwrap() == want,
            "logits through the split {split:?} differ from the local run's"
        );
    }
}

#[test]
fn greedy_text_through_rpc_equals_local_and_verbose_says_where_layers_went() {
    let (_dir, model) = tiny_model_q8_ctx(32, 256);
    let m = model.to_str().unwrap();
    let gen = [
        "-m",
        m,
        "-p",
        "Once upon a time",
        "-n",
        "24",
        "--temp",
        "0",
        "-t",
        "1",
    ];
    let local = run_ember(&gen, None, &[]);
    assert!(local.status.success(), "{}", show(&local));
    let s = rpc_server(&[]);
    let mut args = gen.to_vec();
    args.extend(["--rpc", s.endpoint.as_str(), "-ngl", "2", "-v"]);
    let o = run_ember(&args, None, &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(o.stdout, local.stdout, "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("on the CPU") && err.contains("and the output layer on RPC0"),
        "{err}"
    );
    assert!(err.contains("bytes copied between devices"), "{err}");
}

#[test]
fn rpc_server_reports_the_memory_it_is_given() {
    let (_dir, model) = tiny_model_q8_ctx(33, 256);
    let s = rpc_server(&["--mem", "64"]);
    let o = run_ember(
        &[
            "-m",
            model.to_str().unwrap(),
            "-p",
            "hi",
            "-n",
            "2",
            "--rpc",
            &s.endpoint,
            "-v",
        ],
        None,
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("64 MiB, 64 MiB free"), "{err}");
}

/// `ember -m MODEL -p hi --rpc ENDPOINT`.
fn hi_through(model: &Path, endpoint: &str) -> std::process::Output {
    run_ember(
        &["-m", model.to_str().unwrap(), "-p", "hi", "--rpc", endpoint],
        None,
        &[],
    )
}

/// The last line of stderr, which must be the only `error` line.
fn one_error_line(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{}", show(o));
    assert!(errors[0].starts_with("ember: error: "), "{}", show(o));
    errors[0].to_string()
}

#[test]
fn nobody_listening_is_one_error_line_and_exit_1() {
    let (_dir, model) = tiny_model_q8_ctx(34, 256);
    let endpoint = format!("127.0.0.1:{}", free_port());
    let start = Instant::now();
    let o = hi_through(&model, &endpoint);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(one_error_line(&o).contains("cannot reach"), "{}", show(&o));
    assert!(start.elapsed() < Duration::from_secs(30));
    let o = hi_through(&model, "nowhere");
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(one_error_line(&o).contains("HOST:PORT"), "{}", show(&o));
}

#[test]
fn a_server_of_another_protocol_version_is_refused() {
    // Answers HELLO (command 14, 24 bytes of capabilities) as a version 6.0.0 server would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut req = [0u8; 1 + 8 + 24];
            if s.read_exact(&mut req).is_err() {
                continue; // the client's reachability probe
            }
            let mut rsp = 28u64.to_le_bytes().to_vec();
            rsp.extend([6, 0, 0, 0]);
            rsp.extend([0u8; 24]);
            let _ = s.write_all(&rsp);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (_dir, model) = tiny_model_q8_ctx(35, 256);
    let o = hi_through(&model, &endpoint);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let line = one_error_line(&o);
    assert!(
        line.contains("handshake") && line.contains("6.0.0"),
        "{line}"
    );
}

#[test]
fn a_server_killed_mid_run_ends_the_client_with_one_error_line() {
    let (_dir, model) = tiny_model_q8_ctx(36, 4096);
    // Generation is under way once text arrives. Reaching that point is set-up, not what this
    // test checks: a client that ended before its first text (seen once in CI, on a loaded
    // machine, with no stderr kept) is tried again, twice at most, and its output shown if the
    // last try fails too.
    let mut failed = Vec::new();
    let (mut s, mut client) = loop {
        let s = rpc_server(&[]);
        let mut client = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["-m", model.to_str().unwrap(), "-p", "Once upon a time"])
            .args(["-n", "4000", "--ignore-eos", "-t", "1", "-ngl", "99"])
            .args(["--rpc", &s.endpoint])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ember");
        let mut first = [0u8; 1];
        match client.stdout.as_mut().unwrap().read_exact(&mut first) {
            Ok(()) => break (s, client),
            Err(e) => {
                let o = client.wait_with_output().unwrap();
                failed.push(format!("no text before the kill ({e}): {}", show(&o)));
                assert!(failed.len() < 3, "{}", failed.join("\n"));
            }
        }
    };
    s.child.0.kill().unwrap();
    let _ = s.child.0.wait();
    let killed = Instant::now();
    let status = loop {
        if let Some(st) = client.try_wait().unwrap() {
            break st;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            let _ = client.kill();
            panic!("the client did not end within 30 s of the server's death");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = client.stdout.take().unwrap().read_to_end(&mut Vec::new());
    let o = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: err.into_bytes(),
    };
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(one_error_line(&o).contains("RPC"), "{}", show(&o));
}

#[test]
fn a_server_that_never_answers_is_one_error_line_within_the_timeout() {
    // Accepts connections (as a busy rpc-server's backlog does) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let (_dir, model) = tiny_model_q8_ctx(37, 256);
    let start = Instant::now();
    let o = hi_through(&model, &endpoint);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        one_error_line(&o).contains("did not answer"),
        "{}",
        show(&o)
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}
