//! Command-line interface. Options that the original Hodometer reads from the environment keep
//! its variable names. Values arrive as text and are validated together by `config`.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ConfigErrors, RawCommon, Settings};
use crate::payload::DEFAULT_TOKEN;

#[derive(Debug, Parser)]
#[command(
    name = "hodometer",
    version,
    about = "Anonymous usage metrics for Seldon Core v2: see exactly what would leave the cluster, then share it",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect once and print the event that would be sent at --level.
    Collect(CollectArgs),
    /// Run a simulated Seldon scheduler for demos, tests and benchmarks.
    Sim(crate::sim::SimArgs),
}

/// Where to collect from and what to share; common to every command that collects.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Scheduler host name or address.
    #[arg(long, env = "SCHEDULER_HOST", default_value = "localhost")]
    pub scheduler_host: String,
    /// Scheduler plaintext gRPC port.
    #[arg(long, env = "SCHEDULER_PLAINTXT_PORT", default_value = "9004")]
    pub scheduler_port: String,
    /// Level of metrics to share: off, cluster, resource or feature (DO_NOT_TRACK=1 forces off).
    #[arg(long, env = "METRICS_LEVEL", default_value = "cluster")]
    pub level: String,
    /// Cluster id (a UUID) sent as the event's distinct_id; random for each start when unset.
    #[arg(long, env = "CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Event token.
    #[arg(long, env = "HODOMETER_TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// Do not read the Kubernetes API (Kubernetes metrics unknown, is_kubernetes false).
    #[arg(long)]
    pub no_kube: bool,
    /// Deadline for each scheduler call, retries included (e.g. 30s, 2m).
    #[arg(long, default_value = "30s")]
    pub rpc_timeout: String,
    /// Log level: error, warn, info, debug or trace. Logs go to stderr.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json [default: text on a terminal, json otherwise].
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Set DO_NOT_TRACK=1 to share nothing, whatever the level.
    #[arg(long, env = "DO_NOT_TRACK", hide = true)]
    pub do_not_track: Option<String>,
}

impl CommonArgs {
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        RawCommon {
            scheduler_host: &self.scheduler_host,
            scheduler_port: &self.scheduler_port,
            level: &self.level,
            cluster_id: self.cluster_id.as_deref(),
            token: &self.token,
            no_kube: self.no_kube,
            rpc_timeout: &self.rpc_timeout,
            log_level: &self.log_level,
            log_format: self.log_format.as_deref(),
            do_not_track: self.do_not_track.as_deref(),
        }
        .validate()
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// json: exactly the event that would be sent; table: every metric, shared or withheld, with
    /// unknown reasons.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}
