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
use crate::sim::kube::{Grant, parse_grants};
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
    // The sandbox: a private directory with a random name (0700), removed when the demo ends,
    // holding the stand-in's certificates and the person's kubeconfig (0600).
    let sandbox = tempfile::Builder::new()
        .prefix("hodometer-demo-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| anyhow::anyhow!("cannot create the demo's private directory: {e}"))?;
    let (reporter_grants, person_grants) = demo_rbac()?;

    let sim = Sim::bind(SimConfig {
        listen: LOOPBACK_ANY_PORT,
        scenario: Scenario::generate(DEFAULT_COUNTS, args.seed),
        faults: Vec::new(),
        kube_listen: Some(LOOPBACK_ANY_PORT),
        // The reporter's configuration is built in memory; the person's is written below.
        kubeconfig_out: None,
        kube_forbid: Vec::new(),
        kube_grants: Some(reporter_grants),
        kube_person_grants: Some(person_grants),
        tls: None,
        // kubectl sends a token only over HTTPS: the person's API server is the HTTPS one.
        kube_tls: Some((LOOPBACK_ANY_PORT, sandbox.path().join("tls"))),
        kube_secrets_dir: None,
        live: Some(LIVE_EVERY),
    })
    .await?;
    let scheduler = sim.local_addr()?;
    let (Some(kube_addr), Some(kube_https)) = (sim.kube_addr(), sim.kube_tls_addr()) else {
        anyhow::bail!("the Kubernetes stand-in did not start");
    };
    let kubeconfig = Arc::new(Kubeconfig::from_yaml(&crate::sim::kube::kubeconfig(
        kube_addr,
        sim.kube_tokens(),
    ))?);
    let person_kubeconfig = sandbox.path().join("kubeconfig");
    let ca = crate::sim::tls::TlsFiles::in_dir(&sandbox.path().join("tls")).ca;
    crate::private_fs::write_private(
        &person_kubeconfig,
        crate::sim::kube::person_kubeconfig(kube_https, &ca, sim.kube_tokens()).as_bytes(),
    )?;
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
                inline: Some(InlineKubeconfig(Arc::clone(&kubeconfig))),
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
    // The administrator applies the shipped ConfigMaps, as in a cluster.
    apply_shipped_configmaps(&KubeTarget {
        inline: Some(InlineKubeconfig(Arc::clone(&kubeconfig))),
        context: Some("hodometer-sim-admin".into()),
        ..demo_target(None)
    })
    .await?;
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

    // The inspector is the person's: their kubeconfig, their identity, their Role.
    let mut person = settings;
    person.plan.kube = Some(demo_target(Some(person_kubeconfig.clone())));
    // Like a person's laptop, the inspector reaches the scheduler through a port-forward opened
    // via the stand-in; the reporter runs "in the cluster" and uses the Service address.
    if let Some(kube) = &person.plan.kube {
        person.plan.scheduler.route =
            Route::Forward(crate::k8s::forward::ForwardSpec::new(kube.clone(), false));
        person.scheduler_port_from = "the demo's port-forward";
    }
    let config = InspectConfig {
        settings: person,
        publish,
        refresh,
        log_file: None,
    };
    let result = tui::run(config, &log_file).await;
    let _ = stop.send(true);
    let _ = tokio::join!(sim_task, receiver_task, reporter_task);
    if result.is_ok() {
        print!("{}", farewell(&person_kubeconfig));
    }
    drop(sandbox);
    result.map(|()| ExitCode::SUCCESS)
}

/// What the demo says when it ends: how to use its stand-in from another terminal next time.
fn farewell(kubeconfig: &std::path::Path) -> String {
    format!(
        "While `hodometer demo` runs, its stand-in cluster answers kubectl and hodometer from another terminal, as {person} (the consent editor Role):\n\n  export KUBECONFIG={path}\n  hodometer consent show\n  hodometer consent set --level resource --dry-run -o yaml | kubectl apply --validate=false -f -\n\n(That kubeconfig was removed with the demo; each demo writes its own and shows its path in the header and on the help screen.)\n",
        person = crate::sim::kube::SIM_PERSON_USER,
        path = kubeconfig.display(),
    )
}

/// A target on the demo's stand-in: its kubeconfig file, or (`None`) one set in memory after.
fn demo_target(kubeconfig: Option<std::path::PathBuf>) -> KubeTarget {
    KubeTarget {
        kubeconfig,
        context: None,
        namespace: None,
        timeout: Duration::from_secs(5),
        inline: None,
    }
}

/// The shipped RBAC, enforced: the reporter's Role and ClusterRole for the reporter; for the
/// person, the consent editor Role and the reads the reporter's Roles allow (but no Secrets), as
/// an admin binds `hodometer-consent-editor` beside the built-in `view` ClusterRole.
fn demo_rbac() -> anyhow::Result<(Vec<Grant>, Vec<Grant>)> {
    let grants = |text: &str| parse_grants(text).map_err(anyhow::Error::msg);
    let mut reporter = grants(include_str!("../../assets/k8s/role.yaml"))?;
    reporter.extend(grants(include_str!("../../assets/k8s/clusterrole.yaml"))?);
    let mut person = grants(include_str!("../../assets/k8s/consent-editor-role.yaml"))?;
    person.extend(
        reporter
            .iter()
            .filter(|g| matches!(g.verb.as_str(), "get" | "list" | "watch"))
            .filter(|g| g.resource != "secrets")
            .cloned(),
    );
    // ...and the inspector Role, which opens the port-forward to the scheduler.
    person.extend(grants(include_str!(
        "../../assets/k8s/inspector-role.yaml"
    ))?);
    Ok((reporter, person))
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
