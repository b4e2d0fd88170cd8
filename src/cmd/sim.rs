//! `hodometer sim`: the simulated scheduler (and Kubernetes stand-in) for demos, tests and
//! benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::logging::{self, LogSettings};
use crate::sim::faults::Fault;
use crate::sim::population::{Counts, Scenario};
use crate::sim::{DEFAULT_COUNTS, LIVE_EVERY, Sim, SimConfig, kube};
use crate::validate::{Checker, ConfigErrors, parse_socket_addr};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address for the scheduler's gRPC API (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9004")]
    pub listen: String,
    /// Scenario file (JSON) describing models, servers, pipelines and experiments.
    #[arg(long, conflicts_with_all = ["models", "servers", "pipelines", "experiments"])]
    pub scenario: Option<PathBuf>,
    /// Number of generated models.
    #[arg(long)]
    pub models: Option<u64>,
    /// Number of generated servers.
    #[arg(long)]
    pub servers: Option<u64>,
    /// Number of generated pipelines.
    #[arg(long)]
    pub pipelines: Option<u64>,
    /// Number of generated experiments.
    #[arg(long)]
    pub experiments: Option<u64>,
    /// Seed for the generated population: the same seed gives the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Inject a fault (repeatable): delay:RPC:MS, cut:RPC:N[:TIMES], unavailable:RPC[:TIMES],
    /// refuse:N. RPC is status, models, servers, pipelines, experiments or all.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// Also serve a read-only Kubernetes API stand-in (plain HTTP) on this address.
    #[arg(long)]
    pub kube_listen: Option<String>,
    /// Write a kubeconfig pointing at the Kubernetes stand-in to this file.
    #[arg(long, requires = "kube_listen")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Make the Kubernetes stand-in answer 403 for a resource (repeatable): nodes, servers,
    /// statefulsets, deployments, version, services, endpointslices or pods/portforward.
    #[arg(long, value_name = "RESOURCE", requires = "kube_listen")]
    pub kube_forbid: Vec<String>,
    /// Enforce RBAC on the Kubernetes stand-in: allow only what these Role/ClusterRole manifests
    /// grant (repeatable), e.g. assets/k8s/role.yaml and assets/k8s/clusterrole.yaml.
    #[arg(long, value_name = "FILE", requires = "kube_listen")]
    pub kube_rbac: Vec<PathBuf>,
    /// Also serve the Kubernetes stand-in over HTTPS on this address (needs --kube-tls-dir), as
    /// a pod reaches its API server.
    #[arg(long, value_name = "ADDR", requires = "kube_tls_dir")]
    pub kube_tls_listen: Option<String>,
    /// Generate a CA and a server certificate for localhost/127.0.0.1 into this directory for
    /// --kube-tls-listen; its ca.crt is what a pod finds at
    /// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt.
    #[arg(long, value_name = "DIR", requires = "kube_tls_listen")]
    pub kube_tls_dir: Option<PathBuf>,
    /// Serve Secrets in the Seldon namespace from this directory: each subdirectory is a Secret,
    /// each file in it a data key. Read on every request, so rewriting a file rotates it.
    #[arg(long, value_name = "DIR")]
    pub kube_secrets_dir: Option<PathBuf>,
    /// Change the population every few seconds (models deleted and restored, experiments
    /// started and stopped), so the inspector has something to show.
    #[arg(long)]
    pub live: bool,
    /// Also serve the scheduler over mutual TLS on this address (needs --tls-dir).
    #[arg(long, requires = "tls_dir")]
    pub tls_listen: Option<String>,
    /// Generate a CA, a server and a client certificate into this directory for --tls-listen.
    #[arg(long, requires = "tls_listen")]
    pub tls_dir: Option<PathBuf>,
}

const FORBIDDABLE: [&str; 8] = [
    "nodes",
    "servers",
    "statefulsets",
    "deployments",
    "version",
    "services",
    "endpointslices",
    "pods/portforward",
];

impl SimArgs {
    pub fn validate(&self) -> Result<SimConfig, ConfigErrors> {
        let mut c = Checker::default();
        let listen = c.check("--listen", &self.listen, parse_socket_addr);
        let kube_listen = match &self.kube_listen {
            Some(text) => c.check("--kube-listen", text, parse_socket_addr).map(Some),
            None => Some(None),
        };
        let tls_listen = match &self.tls_listen {
            Some(text) => c.check("--tls-listen", text, parse_socket_addr),
            None => None,
        };
        let kube_tls_listen = match &self.kube_tls_listen {
            Some(text) => c.check("--kube-tls-listen", text, parse_socket_addr),
            None => None,
        };
        for resource in &self.kube_forbid {
            c.check("--kube-forbid", resource, |r| {
                if FORBIDDABLE.contains(&r) {
                    Ok(())
                } else {
                    Err(format!("expected one of {}", FORBIDDABLE.join(", ")))
                }
            });
        }
        let mut grants = Vec::new();
        for path in &self.kube_rbac {
            if let Some(more) = c.check("--kube-rbac", &path.display().to_string(), |_| {
                kube::load_grants(path)
            }) {
                grants.extend(more);
            }
        }
        let faults: Vec<Fault> = self
            .faults
            .iter()
            .filter_map(|spec| c.check("--fault", spec, Fault::parse))
            .collect();
        let scenario = match &self.scenario {
            Some(path) => c.check("--scenario", &path.display().to_string(), |_| {
                Scenario::load(path).map_err(|e| e.to_string())
            }),
            None => {
                let counts = Counts {
                    models: self.models.unwrap_or(DEFAULT_COUNTS.models),
                    servers: self.servers.unwrap_or(DEFAULT_COUNTS.servers),
                    pipelines: self.pipelines.unwrap_or(DEFAULT_COUNTS.pipelines),
                    experiments: self.experiments.unwrap_or(DEFAULT_COUNTS.experiments),
                };
                Some(Scenario::generate(counts, self.seed))
            }
        };
        c.finish_with(|| {
            Some(SimConfig {
                listen: listen?,
                scenario: scenario?,
                faults,
                kube_listen: kube_listen?,
                kubeconfig_out: self.kubeconfig_out.clone(),
                kube_forbid: self.kube_forbid.clone(),
                kube_grants: (!self.kube_rbac.is_empty()).then_some(grants),
                kube_person_grants: None,
                tls: tls_listen.zip(self.tls_dir.clone()),
                kube_tls: kube_tls_listen.zip(self.kube_tls_dir.clone()),
                kube_secrets_dir: self.kube_secrets_dir.clone(),
                live: self.live.then_some(LIVE_EVERY),
            })
        })
    }
}

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
    let shutdown = super::shutdown_signal();
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
    if let Some(kube) = sim.kube_tls_addr() {
        super::announce(format_args!(
            "hodometer sim: kubernetes (HTTPS) listening on {kube}"
        ))?;
    }
    tracing::info!(
        models = counts.0,
        servers = counts.1,
        pipelines = counts.2,
        experiments = counts.3,
        "simulated scheduler ready"
    );
    replace_pod_on_sigusr1(&sim)?;
    sim.serve(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGUSR1 replaces the stand-in's scheduler pod (another name and target port, Ready a moment
/// later, forwards to the old one cut): a pod restart on demand, for tests and demos.
fn replace_pod_on_sigusr1(sim: &Sim) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let pods = sim.scheduler_pods();
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let pod = pods.replace();
            tracing::info!(pod = %pod.name, port = pod.plain_port, "scheduler pod replaced");
        }
    });
    Ok(())
}
