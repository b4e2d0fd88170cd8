//! `hodometer sim`: the simulated scheduler (and Kubernetes stand-in) for demos, tests and
//! benchmarks.

use std::process::ExitCode;

use crate::logging::{self, LogSettings};
use crate::sim::Sim;
pub use crate::sim::SimArgs;

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&LogSettings::INFO);
    let counts = (
        config.scenario.models.len(),
        config.scenario.servers.len(),
        config.scenario.pipelines.len(),
        config.scenario.experiments.len(),
    );
    let sim = Sim::bind(config).await?;
    // The scheduler first, then the TLS, then the Kubernetes address.
    super::announce(format_args!(
        "hodometer sim: scheduler listening on {}",
        sim.local_addr()?
    ))?;
    if let Some(tls) = sim.tls_addr() {
        super::announce(format_args!(
            "hodometer sim: scheduler (mutual TLS) listening on {tls}"
        ))?;
    }
    if let Some(kube) = sim.kube_addr() {
        super::announce(format_args!(
            "hodometer sim: kubernetes listening on {kube}"
        ))?;
    }
    tracing::info!(
        models = counts.0,
        servers = counts.1,
        pipelines = counts.2,
        experiments = counts.3,
        "simulated scheduler ready"
    );
    sim.serve(super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
