//! `hodometer demo`: the simulated scheduler with its Kubernetes stand-in and a receiver, all
//! in this process on free loopback ports, and the inspector on them, publishing only to that
//! receiver. The "try it with no cluster" command.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use uuid::Uuid;

use crate::collect::CollectPlan;
use crate::collect::kube::KubeTarget;
use crate::collect::scheduler::SchedulerTarget;
use crate::config::{
    Checker, ConfigErrors, LogSettings, PublishSettings, Settings, parse_duration,
};
use crate::metrics::Level;
use crate::payload::DEFAULT_TOKEN;
use crate::publish::{PublishPolicy, parse_endpoint};
use crate::receive::{ReceiveConfig, Receiver, Record};
use crate::sim::population::Scenario;
use crate::sim::{DEFAULT_COUNTS, LIVE_EVERY, Sim, SimConfig};
use crate::tui::{self, InspectConfig};

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

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut checker = Checker::default();
    let refresh = checker.check("--refresh", &args.refresh, parse_duration);
    checker.finish()?;
    let refresh = refresh.ok_or_else(ConfigErrors::default)?;
    let dir = std::env::temp_dir().join(format!("hodometer-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    let log_file = dir.join("inspect.log");
    crate::logging::init_to_file(
        &LogSettings {
            level: tracing::Level::INFO,
            format: None,
        },
        &log_file,
    )?;

    let sim = Sim::bind(SimConfig {
        listen: LOOPBACK_ANY_PORT,
        scenario: Scenario::generate(DEFAULT_COUNTS, args.seed),
        faults: Vec::new(),
        kube_listen: Some(LOOPBACK_ANY_PORT),
        kubeconfig_out: Some(kubeconfig.clone()),
        kube_forbid: Vec::new(),
        kube_grants: None,
        tls: None,
        kube_tls: None,
        kube_secrets_dir: None,
        live: Some(LIVE_EVERY),
    })
    .await?;
    let scheduler = sim.local_addr()?;
    let receiver = Receiver::bind(ReceiveConfig {
        listen: LOOPBACK_ANY_PORT,
        record: Record::All,
        store: None,
    })
    .await?;
    let receiver_url = format!("http://{}", receiver.local_addr()?);

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let sim_task = tokio::spawn(sim.serve(until_stopped(stopped.clone())));
    let receiver_task = tokio::spawn(receiver.serve(until_stopped(stopped)));

    let config = InspectConfig {
        settings: Settings {
            plan: CollectPlan {
                cluster_id: Uuid::new_v4(),
                scheduler: SchedulerTarget {
                    host: scheduler.ip().to_string(),
                    port: scheduler.port(),
                    rpc_timeout: Duration::from_secs(5),
                    tls: None,
                },
                kube: Some(KubeTarget {
                    kubeconfig: Some(kubeconfig),
                    context: None,
                    namespace: None,
                    timeout: Duration::from_secs(5),
                }),
            },
            level: Level::Cluster,
            do_not_track: false,
            token: DEFAULT_TOKEN.into(),
            log: LogSettings {
                level: tracing::Level::INFO,
                format: None,
            },
            scheduler_port_from: "the demo's simulator",
        },
        publish: PublishSettings {
            endpoints: vec![parse_endpoint(&receiver_url).map_err(anyhow::Error::msg)?],
            policy: PublishPolicy {
                env_proxy: false,
                ..PublishPolicy::default()
            },
        },
        refresh,
        log_file: log_file.clone(),
    };
    let result = tui::run(config).await;
    let _ = stop.send(true);
    let _ = tokio::join!(sim_task, receiver_task);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
