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
pub mod shell;
#[cfg(feature = "tools")]
pub mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for invalid configuration, as for a command-line usage error.
pub const EXIT_CONFIG: u8 = 2;

/// Exit code for a runtime failure: a source unreachable or forbidden, a publish that failed, a
/// write conflict.
pub const EXIT_FAILURE: u8 = 1;

macro_rules! exit_codes_help {
    () => {
        "Exit codes: 0 done; 1 a runtime failure (a source unreachable or forbidden, a publish that failed, a conflict); 2 usage or configuration."
    };
}

/// What every command's `--help` ends with.
pub const EXIT_CODES_HELP: &str = exit_codes_help!();

/// `hodometer --version`: the version, the git commit and the build's features.
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let commit =
        option_env!("HODOMETER_GIT_COMMIT").unwrap_or("unknown (built outside a git checkout)");
    let features: Vec<&str> = [("tools", cfg!(feature = "tools"))]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    let features = if features.is_empty() {
        "none (daemon only)".to_string()
    } else {
        features.join(", ")
    };
    format!(
        "{}\ncommit: {commit}\nfeatures: {features}\ntarget: {}-{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "hodometer",
    version = VERSION.as_str(),
    about = "Anonymous usage metrics for Seldon Core v2: see exactly what would leave the cluster, then share it",
    after_help = concat!(
        "With no command on a terminal, hodometer runs `inspect`.\n\n",
        exit_codes_help!()
    ),
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The command line as `main` parses it: [`Cli`] with the exit codes at the end of every
/// command's help (where a command has its own closing words, after them).
pub fn command() -> clap::Command {
    fn with_exit_codes(command: clap::Command) -> clap::Command {
        let help = match command.get_after_help() {
            Some(own) if own.to_string().contains(EXIT_CODES_HELP) => return command,
            Some(own) => format!("{own}\n\n{EXIT_CODES_HELP}"),
            None => EXIT_CODES_HELP.to_string(),
        };
        command.after_help(help).mut_subcommands(with_exit_codes)
    }
    use clap::CommandFactory;
    Cli::command().mut_subcommands(with_exit_codes)
}

impl Cli {
    /// Parses the process's arguments with [`command`]; exits on a usage error, as clap does.
    pub fn parse_args() -> Cli {
        use clap::FromArgMatches;
        Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit())
    }
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
    /// Print a shell completion script: bash, zsh or fish.
    #[cfg(feature = "tools")]
    #[command(
        after_help = "Load it now with `source <(hodometer completion bash)`, or save it where your shell looks for completions (e.g. `hodometer completion bash > ~/.local/share/bash-completion/completions/hodometer`)."
    )]
    Completion(shell::CompletionArgs),
    /// Print the manual page (roff): `hodometer man | man -l -`.
    #[cfg(feature = "tools")]
    Man,
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
            Command::Completion(args) => shell::completion(args),
            #[cfg(feature = "tools")]
            Command::Man => shell::man(),
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
            if let Some(usage) = error.downcast_ref::<UsageError>() {
                eprintln!("hodometer: {usage}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("hodometer: {}", crate::sanitize::lines(&error_text(&error)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: a cause whose text the message already holds (an
/// error that quotes its source) is not repeated.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A command used in a way it cannot run (e.g. a confirmation asked for with no terminal):
/// exits [`EXIT_CONFIG`], as a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let error = anyhow::Error::new(Quoting { source: io });
        assert_eq!(
            error_text(&error),
            "cannot listen on 127.0.0.1:1: Address already in use"
        );
        let wrapped = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_text(&wrapped), "outer: inner cause");
    }

    #[test]
    fn every_command_documents_the_exit_codes() {
        let command = command();
        assert!(
            command
                .get_after_help()
                .is_some_and(|h| h.to_string().contains(EXIT_CODES_HELP))
        );
        for sub in command.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(help.contains(EXIT_CODES_HELP), "{}: {help}", sub.get_name());
        }
    }
}
