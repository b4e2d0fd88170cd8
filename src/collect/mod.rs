//! Sources → snapshot. The I/O lives in one module per source; [`assemble`] is the pure step
//! that turns what the sources said into a [`Snapshot`].

pub mod aggregate;
pub mod scheduler;

use std::time::SystemTime;

use uuid::Uuid;

use crate::metrics::{MetricId, Reading, Snapshot, Value};
use scheduler::{CallError, SchedulerFacts, SchedulerTarget};

/// The version the scheduler reports whatever release it is: it says nothing about Seldon Core.
pub const SCHEDULER_PLACEHOLDER_VERSION: &str = "0.0.1";

/// How (and whether) to read the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeMode {
    /// `--no-kube`: not a Kubernetes installation as far as hodometer is concerned.
    Disabled,
    /// Kubernetes was not turned off, but this build cannot read it yet.
    NotAvailable,
}

/// What one collection needs to know.
#[derive(Clone, Debug)]
pub struct CollectPlan {
    pub cluster_id: Uuid,
    pub scheduler: SchedulerTarget,
    pub kube: KubeMode,
}

/// Reads every source and returns the snapshot. Never fails: what could not be read is unknown.
pub async fn collect(plan: &CollectPlan) -> Snapshot {
    let scheduler = scheduler::collect(&plan.scheduler).await;
    assemble(plan, &scheduler, SystemTime::now())
}

/// The pure step: facts from the sources → one reading per metric.
pub fn assemble(
    plan: &CollectPlan,
    scheduler: &SchedulerFacts,
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

    s.set(
        MetricId::SeldonCoreVersion,
        match &scheduler.version {
            Ok(version) if version == SCHEDULER_PLACEHOLDER_VERSION || version.trim().is_empty() => {
                Reading::unknown(format!(
                    "the scheduler reports only its placeholder version {version:?}; the real one is the seldon-scheduler image tag, read from Kubernetes"
                ))
            }
            Ok(version) => text(version.clone()),
            Err(error) => from_error(error),
        },
    );

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

    let kube_reason = match plan.kube {
        KubeMode::Disabled => "Kubernetes is turned off (--no-kube)",
        KubeMode::NotAvailable => "this build of hodometer does not read the Kubernetes API yet",
    };
    for id in [
        MetricId::KubernetesVersion,
        MetricId::KubernetesPlatform,
        MetricId::NodeCount,
        MetricId::IsGlobalInstallation,
        MetricId::ServerCpuCoresSum,
        MetricId::GpuEnabledCount,
        MetricId::InferenceServerName,
    ] {
        s.set(id, Reading::unknown(kube_reason));
    }
    s.set(
        MetricId::IsKubernetes,
        match plan.kube {
            KubeMode::Disabled => Reading::Known(Value::Bool(false)),
            KubeMode::NotAvailable => Reading::unknown(kube_reason),
        },
    );
    s
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
    use super::*;
    use std::time::Duration;

    fn plan(kube: KubeMode) -> CollectPlan {
        CollectPlan {
            cluster_id: Uuid::nil(),
            scheduler: SchedulerTarget {
                host: "localhost".into(),
                port: 9004,
                rpc_timeout: Duration::from_secs(1),
            },
            kube,
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

    #[test]
    fn scheduler_tallies_become_readings() {
        let s = assemble(
            &plan(KubeMode::Disabled),
            &facts("2.9.1"),
            SystemTime::now(),
        );
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
        assert_eq!(
            s.get(MetricId::SeldonCoreVersion),
            &Reading::Known(Value::Text("2.9.1".into()))
        );
        assert_eq!(
            s.get(MetricId::IsKubernetes),
            &Reading::Known(Value::Bool(false))
        );
        assert_eq!(
            s.get(MetricId::ClusterId),
            &Reading::Known(Value::Text(Uuid::nil().to_string()))
        );
    }

    #[test]
    fn placeholder_version_is_unknown_not_reported() {
        let s = assemble(
            &plan(KubeMode::Disabled),
            &facts("0.0.1"),
            SystemTime::now(),
        );
        match s.get(MetricId::SeldonCoreVersion) {
            Reading::Unknown(reason) => assert!(reason.contains("placeholder"), "{reason}"),
            other => panic!("placeholder reported as {other:?}"),
        }
    }

    #[test]
    fn a_failed_stream_makes_only_its_metrics_unknown() {
        let mut f = facts("2.9.1");
        f.servers = Err(CallError::Failed {
            rpc: "ServerStatus",
            detail: "stream broke after 3 items: unavailable".into(),
        });
        let s = assemble(&plan(KubeMode::Disabled), &f, SystemTime::now());
        for id in [
            MetricId::ServerCount,
            MetricId::ServerReplicaCount,
            MetricId::MultimodelEnabledCount,
            MetricId::OvercommitEnabledCount,
            MetricId::ServerMemoryGbSum,
        ] {
            match s.get(id) {
                Reading::Unknown(reason) => assert!(reason.contains("ServerStatus"), "{reason}"),
                other => panic!("{id:?} is {other:?}"),
            }
        }
        assert_eq!(
            s.get(MetricId::ModelCount),
            &Reading::Known(Value::Integer(4))
        );
    }

    #[test]
    fn kubernetes_not_turned_off_is_unknown_rather_than_false() {
        let s = assemble(
            &plan(KubeMode::NotAvailable),
            &facts("2.9.1"),
            SystemTime::now(),
        );
        assert!(matches!(s.get(MetricId::IsKubernetes), Reading::Unknown(_)));
    }
}
