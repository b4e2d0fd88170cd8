//! The commands, one file each: its clap arguments, their validation into settings, and its
//! `run`. Options that the original Hodometer reads from the environment keep its variable names;
//! values arrive as text and are validated together (see `validate`), so every bad setting is
//! reported at once.

// Without the `tools` feature (the container image's build) only `daemon` is built in.
#[cfg(feature = "tools")]
pub mod collect;
#[cfg(feature = "tools")]
pub mod consent;
pub mod daemon;
#[cfg(feature = "tools")]
pub mod demo;
#[cfg(feature = "tools")]
pub mod history;
#[cfg(feature = "tools")]
pub mod inspect;
#[cfg(feature = "tools")]
pub mod receive;
#[cfg(feature = "tools")]
pub mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for invalid configuration, as for a command-line usage error.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "hodometer",
    version,
    about = "Anonymous usage metrics for Seldon Core v2: see exactly what would leave the cluster, then share it",
    after_help = "With no command on a terminal, hodometer runs `inspect`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interactive inspector: live metrics, what each level shares, the exact payload, and send.
    #[cfg(feature = "tools")]
    Inspect(inspect::InspectArgs),
    /// Try it with no cluster: a simulated installation and receiver, and the inspector on them.
    #[cfg(feature = "tools")]
    Demo(demo::DemoArgs),
    /// Collect once and print the event that would be sent at --level.
    #[cfg(feature = "tools")]
    Collect(collect::CollectArgs),
    /// Collect and publish at start and every --interval: the headless, in-cluster mode.
    Daemon(daemon::DaemonArgs),
    /// Run a simulated Seldon scheduler for demos, tests and benchmarks.
    #[cfg(feature = "tools")]
    Sim(sim::SimArgs),
    /// Receive published events: validate, deduplicate, record, and serve /events and /metrics.
    #[cfg(feature = "tools")]
    Receive(receive::ReceiveArgs),
    /// Show or approve what the in-cluster reporter shares (the consent ConfigMap).
    #[cfg(feature = "tools")]
    Consent(consent::ConsentArgs),
    /// What the in-cluster reporter sent and who approved it: list, show, diff, verify, export.
    #[cfg(feature = "tools")]
    History(history::HistoryArgs),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            #[cfg(feature = "tools")]
            Command::Inspect(args) => inspect::run(args).await,
            #[cfg(feature = "tools")]
            Command::Demo(args) => demo::run(args).await,
            #[cfg(feature = "tools")]
            Command::Collect(args) => collect::run(args).await,
            Command::Daemon(args) => daemon::run(args).await,
            #[cfg(feature = "tools")]
            Command::Sim(args) => sim::run(args).await,
            #[cfg(feature = "tools")]
            Command::Receive(args) => receive::run(args).await,
            #[cfg(feature = "tools")]
            Command::Consent(args) => consent::run(args).await,
            #[cfg(feature = "tools")]
            Command::History(args) => history::run(args).await,
        }
    }

    /// The runtime this command runs on. The daemon waits on the network and sleeps for hours:
    /// one thread does its work, and leaves the work-stealing scheduler's code and threads out
    /// of its resident memory.
    pub fn runtime(&self) -> tokio::runtime::Builder {
        if matches!(self, Command::Daemon(_)) {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        }
    }
}

/// Runs a parsed command on the runtime `builder` makes and turns its result into the exit code:
/// configuration errors as [`EXIT_CONFIG`], anything else as 1.
pub fn run_to_exit_code(
    mut builder: tokio::runtime::Builder,
    command: impl Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hodometer: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) => {
            // Errors carry text from servers and files: shown through the one sanitiser.
            if let Some(config) = error.downcast_ref::<crate::validate::ConfigErrors>() {
                eprint!("hodometer: {}", crate::sanitize::lines(&config.to_string()));
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!(
                "hodometer: {}",
                crate::sanitize::lines(&format!("{error:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// The inspector needs a terminal; without one, say so and point at `collect`.
#[cfg(feature = "tools")]
fn require_terminal() -> Option<ExitCode> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        return None;
    }
    eprintln!(
        "hodometer: the inspector needs a terminal. Without one, `hodometer collect --output table` \
         shows every metric and `hodometer collect` prints the exact event."
    );
    Some(ExitCode::from(EXIT_CONFIG))
}

/// Prints the line tests and scripts read to learn a port when port 0 was asked for.
#[cfg(feature = "tools")]
fn announce(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(line)?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// Completes on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered now, not when first polled: a signal that arrives between a command saying it
    // is ready and its loop starting is still a clean stop, not the default action's kill.
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
