//! One module per user-facing mode; orchestration only.

pub mod batch;
pub mod bench;
pub mod bench_batched;
pub mod bench_plot;
pub mod bench_roof;
pub mod chat;
pub mod chat_commands;
pub mod chat_input;
pub mod front;
pub mod info;
pub mod input;
pub mod kv_compare;
pub mod load;
pub mod output;
pub mod perplexity;
pub mod prompt_cache;
pub mod rpc_server;
pub mod run;
pub mod serve;
pub mod signals;
pub mod speculate;
pub mod tokenize;

use std::process::ExitCode;

use crate::cli::config::{RunConfig, RunMode, UsageError};
use crate::cli::{Cli, Command};

/// Run the parsed command line; errors print as one line on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let verbose = match &cli.command {
        Some(Command::Perplexity(p)) => p.model.verbose,
        Some(Command::Info(_)) => 0,
        Some(Command::Tokenize(t)) => t.verbose,
        Some(Command::Bench(b)) => b.verbose,
        Some(Command::Chat(r)) => r.model.verbose,
        Some(Command::Batch(b)) => b.model.verbose,
        Some(Command::Serve(s)) => s.model.verbose,
        Some(Command::RpcServer(r)) => r.verbose,
        None => cli.run.model.verbose,
    };
    crate::logging::init(verbose);
    if cli.version {
        println!(
            "ember {}\ndevices: {}",
            crate::cli::args::VERSION,
            devices()
        );
        return ExitCode::SUCCESS;
    }
    let result = rpc_server::connect_all(cli.rpc_servers()).and_then(|()| match cli.command {
        Some(Command::Info(a)) => info::run(&a),
        Some(Command::Perplexity(a)) => perplexity::run(&a),
        Some(Command::Tokenize(a)) => tokenize::run(&a),
        Some(Command::Bench(a)) => bench::run(&a),
        Some(Command::Chat(a)) => run_or_chat(&a, true),
        Some(Command::Batch(a)) => batch::run(&a),
        Some(Command::Serve(a)) => serve::run(&a),
        Some(Command::RpcServer(a)) => rpc_server::run(&a),
        None => run_or_chat(&cli.run, false),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<signals::Interrupted>() {
                return ExitCode::from(i.exit_code());
            }
            if e.downcast_ref::<Incomplete>().is_some() {
                eprintln!("ember: {e}");
                return ExitCode::from(Incomplete::EXIT_CODE);
            }
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("ember: error: {}", one_line(&chain(&e)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Generation ended before the output constraint (schema or grammar) was complete: the text
/// on stdout does not parse. Exit code 3.
#[derive(Debug)]
pub struct Incomplete(pub crate::generate::StopReason);

impl Incomplete {
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::generate::StopReason;
        let why = match self.0 {
            StopReason::Length => "-n ran out",
            StopReason::ContextFull => "the context filled up",
            _ => "generation stopped",
        };
        write!(
            f,
            "the output is incomplete: {why} before the schema or grammar was complete"
        )
    }
}

impl std::error::Error for Incomplete {}

/// One-shot generation or the chat (`chat_command`: `ember chat`), from one validated config.
fn run_or_chat(a: &crate::cli::args::RunArgs, chat_command: bool) -> anyhow::Result<()> {
    let cfg = RunConfig::from_args(a, chat_command)?;
    match cfg.mode {
        RunMode::OneShot => run::run(&cfg),
        RunMode::Chat => chat::run(&cfg),
    }
}

/// The devices ggml found, GPUs in `--main-gpu` order: "CPU (...), CUDA0 (..., 81559 MiB)".
pub fn devices() -> String {
    use crate::ggml::{has_gpu_backend, Device};
    let mut s: Vec<String> = Device::all().iter().map(Device::summary).collect();
    if has_gpu_backend() && Device::gpus().is_empty() {
        s.push("no GPU found".into());
    }
    s.join(", ")
}

/// "outer: cause: cause", skipping causes already contained in the message.
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for c in e.chain().skip(1) {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
    }
    out
}

/// Control characters escaped (`\n`, `\u{1b}`), so that an error quoting a hostile file's
/// key or tensor name stays one line and cannot drive the terminal.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
