//! `hodometer daemon`: the headless, in-cluster mode, configured by the original's environment
//! variables alone.

use std::process::ExitCode;

use clap::Args;

use crate::config::{CommonArgs, PublishArgs};
use crate::daemon::{DaemonConfig, DaemonExit};
use crate::validate::{Checker, ConfigErrors, parse_duration, parse_socket_addr};
use crate::{daemon, logging};

/// The scheduler's Service name in a Seldon installation, the daemon's default host.
pub const IN_CLUSTER_SCHEDULER_HOST: &str = "seldon-scheduler";

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Time between collections (e.g. 30m, 8h); a little random jitter is added.
    #[arg(long, env = "HODOMETER_INTERVAL", default_value = "8h")]
    pub interval: String,
    /// Collect and publish once, then exit: 0 if every endpoint accepted the event, else 1.
    #[arg(long)]
    pub once: bool,
    /// Serve /healthz, /readyz and /metrics (Prometheus text) on this address, e.g. 0.0.0.0:8080.
    #[arg(long, env = "HODOMETER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Byte budget of the history ConfigMap hodometer-ledger (KiB or MiB suffix): beyond it the
    /// oldest entries are dropped, and a checkpoint keeps how many and where the chain resumes.
    #[arg(
        long,
        env = "HODOMETER_LEDGER_BUDGET",
        default_value = "256KiB",
        value_name = "BYTES"
    )]
    pub ledger_budget: String,
}

impl DaemonArgs {
    pub fn validate(&self) -> Result<DaemonConfig, ConfigErrors> {
        let mut c = Checker::default();
        let settings = self.common.check(&mut c, IN_CLUSTER_SCHEDULER_HOST);
        let publish = self.publish.check(&mut c);
        let interval = c.check(
            "--interval (HODOMETER_INTERVAL)",
            &self.interval,
            parse_duration,
        );
        let listen = c.check_opt(
            "--listen (HODOMETER_LISTEN)",
            self.listen.as_deref(),
            parse_socket_addr,
        );
        let ledger_budget = c.check(
            "--ledger-budget (HODOMETER_LEDGER_BUDGET)",
            &self.ledger_budget,
            crate::ledger::parse_budget,
        );
        c.finish_with(|| {
            let settings = settings?;
            Some(DaemonConfig {
                consent: settings
                    .plan
                    .kube
                    .is_some()
                    .then(|| settings.consent_configmap.clone()),
                settings,
                publish: publish?,
                interval: interval?,
                once: self.once,
                listen: listen?,
                ledger_budget: ledger_budget?,
                own_process: true,
            })
        })
    }
}

pub async fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&config.settings.log);
    tracing::info!(
        metrics_level = %config.settings.level,
        scheduler = %config.settings.scheduler_description(),
        endpoints = config.publish.endpoints.len(),
        interval = ?config.interval,
        "hodometer daemon starting"
    );
    Ok(match daemon::run(config, super::shutdown_signal()).await? {
        DaemonExit::Clean => ExitCode::SUCCESS,
        DaemonExit::PublishFailed => ExitCode::FAILURE,
    })
}
