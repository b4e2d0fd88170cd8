//! The binary the container image ships as `/usr/local/bin/hodometer`: `hodometer daemon` and
//! nothing else. An always-on daemon's resident memory is mostly the code pages it touches, and
//! the kernel maps code in 64 KiB windows around each touch; leaving the inspector, simulator
//! and receiver out of this binary keeps the daemon's code dense (see BENCHMARKS.md).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hodometer::cmd::{daemon, run_to_exit_code};

#[derive(Debug, Parser)]
#[command(
    name = "hodometer",
    version,
    about = "Anonymous usage metrics for Seldon Core v2: the in-cluster daemon (the full hodometer binary also has the inspector)"
)]
struct DaemonCli {
    #[command(subcommand)]
    command: DaemonOnly,
}

#[derive(Debug, Subcommand)]
enum DaemonOnly {
    /// Collect and publish at start and every --interval: the headless, in-cluster mode.
    Daemon(daemon::DaemonArgs),
}

fn main() -> ExitCode {
    let DaemonOnly::Daemon(args) = DaemonCli::parse().command;
    // One thread, as `hodometer daemon` runs (see `Command::runtime`).
    run_to_exit_code(
        tokio::runtime::Builder::new_current_thread(),
        daemon::run(args),
    )
}
