//! Sources → snapshot. The I/O lives in one module per source; [`assemble`] is the pure step
//! that turns what the sources said into a [`Snapshot`].

pub mod aggregate;
pub mod kube;
pub mod scheduler;
pub mod workload;

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::metrics::{Extension, MetricId, Reading, Snapshot, Value};
use kube::{KubeClient, KubeConnection, KubeFacts, KubeTarget, ReadError};
use scheduler::{CallError, SchedulerFacts, SchedulerTarget};

/// The version the scheduler reports whatever release it is: it says nothing about Seldon Core.
pub const SCHEDULER_PLACEHOLDER_VERSION: &str = "0.0.1";

/// Why `is_kubernetes` and the Kubernetes metrics are unknown with `--no-kube`.
pub const KUBE_NOT_READ: &str = "not read: Kubernetes is turned off (--no-kube)";

/// What one collection needs to know.
#[derive(Clone, Debug)]
pub struct CollectPlan {
    pub cluster_id: Uuid,
    pub scheduler: SchedulerTarget,
    /// `None` with `--no-kube`.
    pub kube: Option<KubeTarget>,
    /// The operator's extensions, validated; each snapshot carries them with the privacy guard's
    /// warnings.
    pub extensions: Vec<Extension>,
}

/// Reads every source concurrently and returns the snapshot. Never fails: what could not be
/// read is unknown, with the reason.
pub async fn collect(plan: &CollectPlan) -> Snapshot {
    let kube_read = async {
        match &plan.kube {
            Some(target) => kube::collect(target).await,
            None => KubeFacts::Disabled,
        }
    };
    let (scheduler, kube) = tokio::join!(scheduler::collect(&plan.scheduler), kube_read);
    assemble(plan, &scheduler, &kube, SystemTime::now())
}

/// Collections again and again over the same connections: one scheduler channel (it reconnects
/// by itself) and one Kubernetes client, built once instead of at every refresh.
pub struct Sources {
    plan: CollectPlan,
    scheduler: Option<scheduler::Client>,
    kube: Option<KubeClient>,
    fast_fail: Option<Duration>,
}

/// The pause before the one quick retry of a fast-fail connection check.
const QUICK_RETRY: Duration = Duration::from_millis(250);

impl Sources {
    pub fn new(plan: CollectPlan) -> Sources {
        Sources {
            plan,
            scheduler: None,
            kube: None,
            fast_fail: None,
        }
    }

    /// For someone watching (the inspector): before the calls, a connection check of the
    /// scheduler within `connect_timeout` and one quick retry, and Kubernetes connections bounded
    /// by the same, so a source that is down is reported in about two seconds rather than at the
    /// end of the patient policy's deadline.
    pub fn fast_fail(mut self, connect_timeout: Duration) -> Sources {
        self.fast_fail = Some(connect_timeout);
        // The calls too: a scheduler that dies after the connection check is reported within
        // seconds, not after the patient policy's retries up to the RPC timeout.
        self.plan.scheduler.policy = scheduler::CallPolicy::fast_fail();
        self
    }

    /// For a person's one-shot command (`collect`): the inspector's quick connection check, so a
    /// scheduler nobody listens for is reported in seconds, and calls that retry a few times
    /// within the request timeout, so a scheduler that answers but stumbles (a refused first
    /// connection, a brief `Unavailable`) is still read.
    pub fn for_person(mut self, connect_timeout: Duration) -> Sources {
        self.fast_fail = Some(connect_timeout);
        self.plan.scheduler.policy = scheduler::CallPolicy::brief();
        self
    }

    pub fn plan(&self) -> &CollectPlan {
        &self.plan
    }

    /// The kept Kubernetes client, once built: the session's one client for this context.
    pub fn kube(&self) -> Option<&KubeClient> {
        self.kube.as_ref()
    }

    /// The Kubernetes API server's URL, once a client was built.
    pub fn kube_server(&self) -> Option<&str> {
        self.kube.as_ref().map(|k| k.server.as_str())
    }

    /// Like [`Sources::collect`], with what went wrong with each source as a whole: a source
    /// that could not be reached at all, and reads the API server refused.
    pub async fn collect_with_problems(&mut self) -> (Snapshot, Vec<SourceProblem>) {
        let (scheduler, kube) = self.read_sources().await;
        let snapshot = assemble(&self.plan, &scheduler, &kube, SystemTime::now());
        let problems = source_problems(
            &self.plan.scheduler.address(),
            self.kube_server(),
            &scheduler,
            &kube,
        );
        (snapshot, problems)
    }

    /// Like [`collect`], reusing the connections.
    pub async fn collect(&mut self) -> Snapshot {
        let (scheduler, kube) = self.read_sources().await;
        assemble(&self.plan, &scheduler, &kube, SystemTime::now())
    }

    async fn read_sources(&mut self) -> (SchedulerFacts, KubeFacts) {
        let kube = self.kube_client().await;
        let kube_timeout = self.plan.kube.as_ref().map(|t| t.timeout);
        let kube_read = async {
            match (kube, kube_timeout) {
                (Ok(ready), Some(timeout)) => kube::collect_over(&ready, timeout).await,
                (Err(facts), _) => facts,
                (Ok(_), None) => KubeFacts::Disabled,
            }
        };
        tokio::join!(self.read_scheduler(), kube_read)
    }

    async fn read_scheduler(&self) -> SchedulerFacts {
        let target = &self.plan.scheduler;
        let client = match &self.scheduler {
            Some(client) => client.clone(),
            None => match scheduler::client_for(target).await {
                Ok(client) => client,
                Err(error) => return SchedulerFacts::all_failed(error),
            },
        };
        // Over a port-forward, the forward's own opening is the connection check.
        if let Some(timeout) = self.fast_fail
            && target.forward().is_none()
            && let Err(detail) = reachable(&target.address(), timeout).await
        {
            return SchedulerFacts::all_failed(CallError::Failed {
                rpc: "connect",
                detail,
            });
        }
        scheduler::collect_over(target, client).await
    }

    /// The kept clients, built first when missing. A configuration that is missing or unusable
    /// is looked at again next time: the operator may be fixing it.
    async fn kube_client(&mut self) -> Result<KubeClient, KubeFacts> {
        if self.scheduler.is_none() {
            self.scheduler = scheduler::client_for(&self.plan.scheduler).await.ok();
        }
        let Some(target) = &self.plan.kube else {
            return Err(KubeFacts::Disabled);
        };
        if let Some(ready) = &self.kube {
            return Ok(ready.clone());
        }
        match kube::connect(target, self.fast_fail).await {
            KubeConnection::Ready(ready) => {
                self.kube = Some(ready.clone());
                Ok(ready)
            }
            KubeConnection::NotConfigured => Err(KubeFacts::NotConfigured),
            KubeConnection::Unusable(reason) => Err(KubeFacts::Unusable(reason)),
        }
    }
}

/// A source that could not be read as a whole, or a read refused by RBAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProblem {
    /// `scheduler` or `Kubernetes`.
    pub source: &'static str,
    /// True when nothing could be read from the source: a runtime failure. False for a read the
    /// API server refused (RBAC): a permission the operator may withhold by design.
    pub unreachable: bool,
    pub reason: String,
    /// What to do about it, when there is something to say.
    pub fix: Option<String>,
}

/// The problems with each source as a whole: every scheduler call failed; the Kubernetes
/// configuration was unusable or the API server never answered; reads refused with 403.
pub fn source_problems(
    scheduler_address: &str,
    kube_server: Option<&str>,
    scheduler: &SchedulerFacts,
    kube: &KubeFacts,
) -> Vec<SourceProblem> {
    let mut problems = Vec::new();
    let calls = [
        scheduler.version.as_ref().err(),
        scheduler.models.as_ref().err(),
        scheduler.servers.as_ref().err(),
        scheduler.pipelines.as_ref().err(),
        scheduler.experiments.as_ref().err(),
    ];
    if let [Some(first), ..] = calls
        && calls.iter().all(Option::is_some)
    {
        let reason = first.to_string();
        let refused = reason.to_ascii_lowercase().contains("connection refused");
        let fix = match (first, scheduler::port_forward_hint(scheduler_address)) {
            (CallError::Tls(_), _) => {
                "the mutual-TLS material named above (files or Secrets; CONTROL_PLANE_SECURITY_PROTOCOL=PLAINTEXT turns TLS off)".to_string()
            }
            (_, Some(hint)) if refused => hint,
            _ => "check --scheduler-host and --scheduler-port (SCHEDULER_HOST, SCHEDULER_PLAINTXT_PORT)"
                .to_string(),
        };
        problems.push(SourceProblem {
            source: "scheduler",
            unreachable: true,
            reason: format!("the scheduler at {scheduler_address} could not be reached: {reason}"),
            fix: Some(fix),
        });
    }
    let no_kube_fix = Some("fix the configuration, or skip Kubernetes with --no-kube".to_string());
    match kube {
        KubeFacts::Disabled | KubeFacts::NotConfigured => {}
        KubeFacts::Unusable(reason) => problems.push(SourceProblem {
            source: "Kubernetes",
            unreachable: true,
            reason: reason.clone(),
            fix: no_kube_fix,
        }),
        KubeFacts::Read(readings) if !readings.answered() => {
            let why = readings
                .version
                .as_ref()
                .err()
                .map(|e| e.reason.clone())
                .unwrap_or_default();
            let server = kube_server
                .map(|s| crate::redact::url_text(s.trim_end_matches('/')))
                .unwrap_or_else(|| "(unknown)".into());
            problems.push(SourceProblem {
                source: "Kubernetes",
                unreachable: true,
                reason: format!(
                    "the Kubernetes API server at {server} could not be reached: {}",
                    why.strip_prefix("Kubernetes API unreachable ").unwrap_or(&why)
                ),
                fix: Some(
                    "check the kubeconfig's cluster and --context (kubectl cluster-info), or skip Kubernetes with --no-kube"
                        .into(),
                ),
            });
        }
        KubeFacts::Read(readings) => {
            let reads = [
                readings.version.as_ref().err(),
                readings.nodes.as_ref().err(),
                readings.global_installation.as_ref().err(),
                readings.scheduler_image_tag.as_ref().err(),
                readings.servers.as_ref().err(),
            ];
            for refused in reads
                .into_iter()
                .flatten()
                .filter(|e| e.status == Some(403))
            {
                problems.push(SourceProblem {
                    source: "Kubernetes",
                    unreachable: false,
                    reason: refused.reason.clone(),
                    fix: None,
                });
            }
        }
    }
    problems
}

/// A TCP connection to `address` within `timeout`, with one quick retry.
async fn reachable(address: &str, timeout: Duration) -> Result<(), String> {
    let mut last_error = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(QUICK_RETRY).await;
        }
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                last_error = "connection refused".into();
            }
            Ok(Err(error)) => last_error = error.to_string(),
            Err(_) => last_error = format!("no connection within {timeout:?}"),
        }
    }
    Err(last_error)
}

/// The pure step: facts from the sources → one reading per metric.
pub fn assemble(
    plan: &CollectPlan,
    scheduler: &SchedulerFacts,
    kube: &KubeFacts,
    collected_at: SystemTime,
) -> Snapshot {
    let mut s = Snapshot::unknown("not collected");
    s.collected_at = collected_at;
    s.set(MetricId::ClusterId, text(plan.cluster_id.to_string()));
    s.set(MetricId::CollectorVersion, text(env!("CARGO_PKG_VERSION")));
    s.set(
        MetricId::CollectorGitCommit,
        match option_env!("HODOMETER_GIT_COMMIT") {
            Some(commit) => text(commit),
            None => Reading::unknown("this binary was built outside a git checkout"),
        },
    );
    // metrics_level is filled in by each view of the snapshot: it is the level being shared.

    s.set(MetricId::SeldonCoreVersion, seldon_version(scheduler, kube));

    let count = |result: Result<u64, &CallError>| match result {
        Ok(n) => Reading::Known(Value::Integer(n)),
        Err(error) => from_error(error),
    };
    s.set(
        MetricId::ModelCount,
        count(scheduler.models.as_ref().map(|t| t.models)),
    );
    s.set(
        MetricId::PipelineCount,
        count(scheduler.pipelines.as_ref().map(|t| t.pipelines)),
    );
    s.set(
        MetricId::ExperimentCount,
        count(scheduler.experiments.as_ref().map(|t| t.experiments)),
    );
    let servers = scheduler.servers.as_ref();
    s.set(MetricId::ServerCount, count(servers.map(|t| t.servers)));
    s.set(
        MetricId::ServerReplicaCount,
        count(servers.map(|t| t.replicas)),
    );
    s.set(
        MetricId::MultimodelEnabledCount,
        count(servers.map(|t| t.multimodel_servers)),
    );
    s.set(
        MetricId::OvercommitEnabledCount,
        count(servers.map(|t| t.overcommit_servers)),
    );
    s.set(
        MetricId::ServerMemoryGbSum,
        match servers {
            Ok(t) => Reading::Known(Value::Float(t.memory_gb())),
            Err(error) => from_error(error),
        },
    );
    set_kube_metrics(&mut s, kube);
    s.extensions = crate::extensions::guarded(&plan.extensions, &namespace(plan, kube));
    s
}

/// The namespace this collection is about: the one Kubernetes was read in, else the configured
/// one, else Seldon's default.
fn namespace(plan: &CollectPlan, kube: &KubeFacts) -> String {
    match kube {
        KubeFacts::Read(readings) => readings.namespace.clone(),
        _ => plan
            .kube
            .as_ref()
            .and_then(|target| target.namespace.clone())
            .unwrap_or_else(|| crate::k8s::DEFAULT_NAMESPACE.to_string()),
    }
}

const KUBE_METRICS: [MetricId; 7] = [
    MetricId::KubernetesVersion,
    MetricId::KubernetesPlatform,
    MetricId::NodeCount,
    MetricId::IsGlobalInstallation,
    MetricId::ServerCpuCoresSum,
    MetricId::GpuEnabledCount,
    MetricId::InferenceServerName,
];

fn set_kube_metrics(s: &mut Snapshot, kube: &KubeFacts) {
    let readings = match kube {
        KubeFacts::Read(readings) => readings,
        KubeFacts::Disabled | KubeFacts::NotConfigured | KubeFacts::Unusable(_) => {
            let (is_kubernetes, reason) = match kube {
                // Nothing was read, so whether this is Kubernetes is not known.
                KubeFacts::Disabled => (
                    Reading::unknown(KUBE_NOT_READ),
                    KUBE_NOT_READ.to_string(),
                ),
                KubeFacts::Unusable(reason) => (Reading::unknown(reason.clone()), reason.clone()),
                _ => (
                    Reading::Known(Value::Bool(false)),
                    "there is no Kubernetes configuration (no in-cluster service account, no kubeconfig)".to_string(),
                ),
            };
            s.set(MetricId::IsKubernetes, is_kubernetes);
            for id in KUBE_METRICS {
                s.set(id, Reading::unknown(reason.clone()));
            }
            return;
        }
    };
    s.set(
        MetricId::IsKubernetes,
        if readings.answered() {
            Reading::Known(Value::Bool(true))
        } else {
            let reason = readings
                .version
                .as_ref()
                .err()
                .map(|e| e.reason.as_str())
                .unwrap_or("no answer");
            Reading::unknown(format!(
                "Kubernetes is configured but did not answer: {reason}"
            ))
        },
    );
    let reading = |result: Result<Value, &ReadError>| match result {
        Ok(value) => Reading::Known(value),
        Err(error) => Reading::unknown(error.reason.clone()),
    };
    let version = readings.version.as_ref();
    s.set(
        MetricId::KubernetesVersion,
        reading(version.map(|(v, _)| Value::Text(v.clone()))),
    );
    s.set(
        MetricId::KubernetesPlatform,
        reading(version.map(|(_, p)| Value::Text(p.clone()))),
    );
    s.set(
        MetricId::NodeCount,
        reading(readings.nodes.as_ref().map(|n| Value::Integer(*n))),
    );
    s.set(
        MetricId::IsGlobalInstallation,
        reading(
            readings
                .global_installation
                .as_ref()
                .map(|g| Value::Bool(*g)),
        ),
    );
    let servers = readings.servers.as_ref();
    s.set(
        MetricId::ServerCpuCoresSum,
        reading(servers.map(|t| Value::Float(round_millicores(t.cpu_cores)))),
    );
    s.set(
        MetricId::GpuEnabledCount,
        reading(servers.map(|t| Value::Integer(t.gpu_servers))),
    );
    s.set(
        MetricId::InferenceServerName,
        reading(servers.map(|t| Value::Text(t.kinds_joined()))),
    );
}

/// CPU quantities are whole millicores; summing floats must not print 3.3000000000000003.
fn round_millicores(cores: f64) -> f64 {
    (cores * 1000.0).round() / 1000.0
}

/// The scheduler's own version when it reports a real one; its placeholder says nothing, so then
/// (or when the scheduler is down) the `seldon-scheduler` image tag stands in.
fn seldon_version(scheduler: &SchedulerFacts, kube: &KubeFacts) -> Reading {
    let from_scheduler = match &scheduler.version {
        Ok(v) if v != SCHEDULER_PLACEHOLDER_VERSION && !v.trim().is_empty() => {
            return text(v.clone());
        }
        Ok(v) => format!("the scheduler reports only its placeholder version {v:?}"),
        Err(error) => format!("scheduler {error}"),
    };
    let from_kube = match kube {
        KubeFacts::Read(readings) => match &readings.scheduler_image_tag {
            Ok(tag) => return text(tag.clone()),
            Err(error) => error.reason.clone(),
        },
        KubeFacts::Disabled => {
            "Kubernetes is turned off, so the scheduler image tag cannot be read".into()
        }
        KubeFacts::NotConfigured => {
            "there is no Kubernetes to read the scheduler image tag from".into()
        }
        KubeFacts::Unusable(reason) => reason.clone(),
    };
    Reading::unknown(format!("{from_scheduler}; {from_kube}"))
}

fn text(value: impl Into<String>) -> Reading {
    Reading::Known(Value::Text(value.into()))
}

fn from_error(error: &CallError) -> Reading {
    Reading::unknown(format!("scheduler {error}"))
}

#[cfg(test)]
mod tests {
    use super::aggregate::{ExperimentTally, ModelTally, PipelineTally, ServerTally};
    use super::kube::KubeReadings;
    use super::workload::ServerSummary;
    use super::*;
    use std::time::Duration;

    fn plan() -> CollectPlan {
        CollectPlan {
            cluster_id: Uuid::nil(),
            scheduler: SchedulerTarget {
                route: Default::default(),
                host: "localhost".into(),
                port: 9004,
                rpc_timeout: Duration::from_secs(1),
                tls: None,
                policy: scheduler::CallPolicy::patient(),
            },
            kube: None,
            extensions: Vec::new(),
        }
    }

    fn facts(version: &str) -> SchedulerFacts {
        SchedulerFacts {
            version: Ok(version.into()),
            models: Ok(ModelTally { models: 4 }),
            servers: Ok(ServerTally {
                servers: 2,
                replicas: 3,
                multimodel_servers: 1,
                overcommit_servers: 0,
                memory_bytes: 1_500_000_000,
            }),
            pipelines: Ok(PipelineTally { pipelines: 5 }),
            experiments: Ok(ExperimentTally { experiments: 6 }),
        }
    }

    fn forbidden(what: &str) -> ReadError {
        ReadError {
            reason: format!("forbidden: {what}"),
            answered: true,
            status: Some(403),
        }
    }

    fn readings() -> KubeReadings {
        KubeReadings {
            namespace: "seldon-mesh".into(),
            version: Ok(("v1.31.2".into(), "linux/amd64".into())),
            nodes: Ok(3),
            global_installation: Ok(true),
            scheduler_image_tag: Ok("2.9.1".into()),
            servers: Ok(ServerSummary {
                cpu_cores: 0.1 + 0.2,
                gpu_servers: 1,
                kinds: ["triton".to_string(), "mlserver".to_string()].into(),
            }),
        }
    }

    fn assembled(scheduler: &SchedulerFacts, kube: KubeFacts) -> Snapshot {
        assemble(&plan(), scheduler, &kube, SystemTime::now())
    }

    fn unknown_reason(s: &Snapshot, id: MetricId) -> String {
        match s.get(id) {
            Reading::Unknown(reason) => reason.clone(),
            other => panic!("{id:?} is {other:?}"),
        }
    }

    #[test]
    fn scheduler_tallies_become_readings() {
        let s = assembled(&facts("2.9.1"), KubeFacts::Disabled);
        assert_eq!(
            s.get(MetricId::ModelCount),
            &Reading::Known(Value::Integer(4))
        );
        assert_eq!(
            s.get(MetricId::ServerReplicaCount),
            &Reading::Known(Value::Integer(3))
        );
        assert_eq!(
            s.get(MetricId::ServerMemoryGbSum),
            &Reading::Known(Value::Float(1.5))
        );
        assert_eq!(s.get(MetricId::SeldonCoreVersion), &text("2.9.1"));
        assert!(
            unknown_reason(&s, MetricId::IsKubernetes).contains("not read"),
            "--no-kube reads nothing, so is_kubernetes is not a fact"
        );
        assert_eq!(s.get(MetricId::ClusterId), &text(Uuid::nil().to_string()));
    }

    #[test]
    fn placeholder_version_without_kubernetes_is_unknown_not_reported() {
        let s = assembled(&facts("0.0.1"), KubeFacts::Disabled);
        assert!(unknown_reason(&s, MetricId::SeldonCoreVersion).contains("placeholder"));
    }

    #[test]
    fn placeholder_version_is_replaced_by_the_scheduler_image_tag() {
        let s = assembled(&facts("0.0.1"), KubeFacts::Read(Box::new(readings())));
        assert_eq!(s.get(MetricId::SeldonCoreVersion), &text("2.9.1"));
        let mut forbidden_sts = readings();
        forbidden_sts.scheduler_image_tag = Err(forbidden("get statefulsets"));
        let s = assembled(&facts("0.0.1"), KubeFacts::Read(Box::new(forbidden_sts)));
        let reason = unknown_reason(&s, MetricId::SeldonCoreVersion);
        assert!(
            reason.contains("placeholder") && reason.contains("forbidden"),
            "{reason}"
        );
    }

    #[test]
    fn a_failed_stream_makes_only_its_metrics_unknown() {
        let mut f = facts("2.9.1");
        f.servers = Err(CallError::Failed {
            rpc: "ServerStatus",
            detail: "stream broke after 3 items: unavailable".into(),
        });
        let s = assembled(&f, KubeFacts::Disabled);
        for id in [
            MetricId::ServerCount,
            MetricId::ServerReplicaCount,
            MetricId::MultimodelEnabledCount,
            MetricId::OvercommitEnabledCount,
            MetricId::ServerMemoryGbSum,
        ] {
            assert!(unknown_reason(&s, id).contains("ServerStatus"));
        }
        assert_eq!(
            s.get(MetricId::ModelCount),
            &Reading::Known(Value::Integer(4))
        );
    }

    #[test]
    fn kubernetes_readings_become_metrics() {
        let s = assembled(&facts("2.9.1"), KubeFacts::Read(Box::new(readings())));
        assert_eq!(
            s.get(MetricId::IsKubernetes),
            &Reading::Known(Value::Bool(true))
        );
        assert_eq!(s.get(MetricId::KubernetesVersion), &text("v1.31.2"));
        assert_eq!(s.get(MetricId::KubernetesPlatform), &text("linux/amd64"));
        assert_eq!(
            s.get(MetricId::NodeCount),
            &Reading::Known(Value::Integer(3))
        );
        assert_eq!(
            s.get(MetricId::IsGlobalInstallation),
            &Reading::Known(Value::Bool(true))
        );
        assert_eq!(
            s.get(MetricId::ServerCpuCoresSum),
            &Reading::Known(Value::Float(0.3))
        );
        assert_eq!(
            s.get(MetricId::GpuEnabledCount),
            &Reading::Known(Value::Integer(1))
        );
        assert_eq!(
            s.get(MetricId::InferenceServerName),
            &text("mlserver,triton")
        );
    }

    #[test]
    fn forbidden_nodes_make_only_node_count_unknown_and_kubernetes_still_answered() {
        let mut r = readings();
        r.nodes = Err(forbidden("list nodes needs a ClusterRole"));
        let s = assembled(&facts("2.9.1"), KubeFacts::Read(Box::new(r)));
        assert!(unknown_reason(&s, MetricId::NodeCount).contains("ClusterRole"));
        assert_eq!(
            s.get(MetricId::IsKubernetes),
            &Reading::Known(Value::Bool(true))
        );
        assert_eq!(s.get(MetricId::KubernetesVersion), &text("v1.31.2"));
    }

    #[test]
    fn an_unreachable_api_makes_is_kubernetes_unknown() {
        let down = ReadError {
            reason: "Kubernetes API unreachable: connection refused".into(),
            answered: false,
            status: None,
        };
        let r = KubeReadings {
            namespace: "seldon-mesh".into(),
            version: Err(down.clone()),
            nodes: Err(down.clone()),
            global_installation: Err(down.clone()),
            scheduler_image_tag: Err(down.clone()),
            servers: Err(down),
        };
        let s = assembled(&facts("2.9.1"), KubeFacts::Read(Box::new(r)));
        assert!(unknown_reason(&s, MetricId::IsKubernetes).contains("did not answer"));
        for id in KUBE_METRICS {
            assert!(unknown_reason(&s, id).contains("unreachable"));
        }
    }

    #[test]
    fn no_configuration_means_not_kubernetes() {
        let s = assembled(&facts("2.9.1"), KubeFacts::NotConfigured);
        assert_eq!(
            s.get(MetricId::IsKubernetes),
            &Reading::Known(Value::Bool(false))
        );
        assert!(unknown_reason(&s, MetricId::NodeCount).contains("no Kubernetes configuration"));
        let s = assembled(
            &facts("2.9.1"),
            KubeFacts::Unusable("kubeconfig unusable: bad yaml".into()),
        );
        assert!(unknown_reason(&s, MetricId::IsKubernetes).contains("bad yaml"));
    }
}
