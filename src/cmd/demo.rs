//! `hodometer demo`: the simulated scheduler with its Kubernetes stand-in and a receiver, all
//! in this process on free loopback ports, an in-cluster reporter (the daemon, governed by the
//! stand-in's consent ConfigMap) publishing to that receiver every few seconds, and the
//! inspector on all of them. The "try it with no cluster" command: approve a level in the
//! inspector and watch the reporter acknowledge it and send at that level.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use tokio::sync::watch;
use uuid::Uuid;

use crate::collect::CollectPlan;
use crate::collect::scheduler::{CallPolicy, Route, SchedulerTarget};
use crate::config::{PublishSettings, Settings};
use crate::consent::DEFAULT_CONSENT_CONFIGMAP;
use crate::daemon::{self, DaemonConfig};
use crate::k8s::{InlineKubeconfig, KubeTarget, connect_client};
use crate::logging::LogSettings;
use crate::metrics::Level;
use crate::payload::DEFAULT_TOKEN;
use crate::publish::{PublishPolicy, parse_endpoint};
use crate::receive::{ReceiveConfig, Receiver, Record};
use crate::sim::population::Scenario;
use crate::sim::{DEFAULT_COUNTS, LIVE_EVERY, Sim, SimConfig};
use crate::tui::{self, InspectConfig};
use crate::validate::{Checker, parse_duration};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed for the simulated installation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time between background refreshes.
    #[arg(long, default_value = "3s")]
    pub refresh: String,
}

const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut checker = Checker::default();
    let refresh = checker.check("--refresh", &args.refresh, parse_duration);
    let refresh = checker.finish_with(|| refresh)?;
    if let Some(code) = super::require_terminal() {
        return Ok(code);
    }
    let log_file = crate::logging::init_to_file(&LogSettings::INFO, None)?;

    let sim = Sim::bind(SimConfig {
        listen: LOOPBACK_ANY_PORT,
        scenario: Scenario::generate(DEFAULT_COUNTS, args.seed),
        faults: Vec::new(),
        kube_listen: Some(LOOPBACK_ANY_PORT),
        // The client configuration is built in memory: nothing on disk another user could swap.
        kubeconfig_out: None,
        kube_forbid: Vec::new(),
        kube_grants: None,
        tls: None,
        kube_tls: None,
        kube_secrets_dir: None,
        live: Some(LIVE_EVERY),
    })
    .await?;
    let scheduler = sim.local_addr()?;
    let kube_addr = sim
        .kube_addr()
        .ok_or_else(|| anyhow::anyhow!("the Kubernetes stand-in did not start"))?;
    let kubeconfig =
        Kubeconfig::from_yaml(&crate::sim::kube::kubeconfig(kube_addr, sim.kube_tokens()))?;
    let receiver = Receiver::bind(ReceiveConfig {
        listen: LOOPBACK_ANY_PORT,
        record: Record::All,
        store: None,
        limits: Default::default(),
    })
    .await?;
    let receiver_url = format!("http://{}", receiver.local_addr()?);

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let sim_task = tokio::spawn(sim.serve(until_stopped(stopped.clone())));
    let receiver_task = tokio::spawn(receiver.serve(until_stopped(stopped.clone())));

    let settings = Settings {
        plan: CollectPlan {
            cluster_id: Uuid::new_v4(),
            scheduler: SchedulerTarget {
                route: Default::default(),
                host: scheduler.ip().to_string(),
                port: scheduler.port(),
                rpc_timeout: Duration::from_secs(5),
                tls: None,
                policy: CallPolicy::patient(),
            },
            kube: Some(KubeTarget {
                kubeconfig: None,
                context: None,
                namespace: None,
                timeout: Duration::from_secs(5),
                inline: Some(InlineKubeconfig(Arc::new(kubeconfig))),
            }),
            extensions: Vec::new(),
        },
        level: Level::Cluster,
        do_not_track: false,
        consent_configmap: DEFAULT_CONSENT_CONFIGMAP.into(),
        token: DEFAULT_TOKEN.into(),
        log: LogSettings::INFO,
        scheduler_port_from: "the demo's simulator",
    };
    let publish = PublishSettings {
        endpoints: vec![parse_endpoint(&receiver_url).map_err(anyhow::Error::msg)?],
        policy: PublishPolicy {
            env_proxy: false,
            ..PublishPolicy::default()
        },
    };
    if let Some(target) = &settings.plan.kube {
        apply_shipped_configmaps(target).await?;
    }
    let reporter = DaemonConfig {
        settings: settings.clone(),
        publish: publish.clone(),
        interval: REPORTER_INTERVAL,
        once: false,
        listen: None,
        consent: Some(settings.consent_configmap.clone()),
        ledger_budget: crate::ledger::DEFAULT_BUDGET,
        own_process: false,
    };
    let reporter_task = tokio::spawn(daemon::run(reporter, until_stopped(stopped)));

    // The reporter runs "in the cluster" and uses the Service address; the inspector, like a
    // person's laptop, reaches the scheduler through a port-forward opened via the stand-in.
    let mut settings = settings;
    if let Some(kube) = &settings.plan.kube {
        settings.plan.scheduler.route =
            Route::Forward(crate::k8s::forward::ForwardSpec::new(kube.clone(), false));
        settings.scheduler_port_from = "the demo's port-forward";
    }
    let config = InspectConfig {
        settings,
        publish,
        refresh,
        log_file: None,
    };
    let result = tui::run(config, &log_file).await;
    let _ = stop.send(true);
    let _ = tokio::join!(sim_task, receiver_task, reporter_task);
    result.map(|()| ExitCode::SUCCESS)
}

/// How often the demo's in-cluster reporter sends: short, so an approval shows at once.
const REPORTER_INTERVAL: Duration = Duration::from_secs(5);

/// Creates the empty consent, status and ledger ConfigMaps in the stand-in, as applying the shipped
/// manifests (`assets/k8s/`) does in a cluster.
async fn apply_shipped_configmaps(target: &KubeTarget) -> anyhow::Result<()> {
    let (client, namespace) = connect_client(target)
        .await
        .map_err(|reason| anyhow::anyhow!("the Kubernetes stand-in: {reason}"))?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    for manifest in [
        include_str!("../../assets/k8s/consent-configmap.yaml"),
        include_str!("../../assets/k8s/status-configmap.yaml"),
        include_str!("../../assets/k8s/ledger-configmap.yaml"),
    ] {
        let mut object: ConfigMap = serde_saphyr::from_str(manifest)?;
        object.metadata.namespace = Some(namespace.clone());
        configmaps.create(&PostParams::default(), &object).await?;
    }
    Ok(())
}
