#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = ember::cli::normalize_args(std::env::args());
    let cli = ember::cli::Cli::parse_from(args);
    ember::app::rpc_server::passive_threads_for_rpc(&cli);
    ember::app::main(cli)
}
