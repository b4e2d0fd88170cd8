//! Command-line interface. Options that the original Hodometer reads from the environment keep
//! its variable names. Values arrive as text and are validated together by `config`.

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::config::{CommonArgs, PublishArgs};

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
    Inspect(crate::tui::InspectArgs),
    /// Try it with no cluster: a simulated installation and receiver, and the inspector on them.
    Demo(crate::demo::DemoArgs),
    /// Collect once and print the event that would be sent at --level.
    Collect(CollectArgs),
    /// Collect and publish at start and every --interval: the headless, in-cluster mode.
    Daemon(crate::daemon::DaemonArgs),
    /// Run a simulated Seldon scheduler for demos, tests and benchmarks.
    Sim(crate::sim::SimArgs),
    /// Receive published events: validate, deduplicate, record, and serve /events and /metrics.
    Receive(crate::receive::ReceiveArgs),
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// json: exactly the event that would be sent; table: every metric, shared or withheld, with
    /// unknown reasons.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// Also send the printed event to every endpoint and report each one's outcome on stderr
    /// (exit status 1 if any did not accept it).
    #[arg(long)]
    pub publish: bool,
    #[command(flatten)]
    pub publish_to: PublishArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}
