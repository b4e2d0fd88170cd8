//! Test fixtures shared by the inspector's state and drawing tests.

use std::time::{Duration, SystemTime};

use super::app::Info;
use crate::consent::{ConsentReading, ConsentSeen, Observed, ReporterStatus};
use crate::metrics::{METRICS, MetricId, Reading, Snapshot, Source, Value};

pub fn info() -> Info {
    Info {
        cluster_id: "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11".into(),
        scheduler: "localhost:9004".into(),
        scheduler_port_from: None,
        kube: "context kind-seldon".into(),
        kubeconfig: None,
        endpoints: vec![
            "http://hodometer.seldon.io/".into(),
            "http://127.0.0.1:8001/".into(),
        ],
        log_file: "/tmp/hodometer-inspect.log".into(),
        refresh_every: Duration::from_secs(5),
        do_not_track: false,
        scheduler_fixed_by: None,
    }
}

pub fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + secs)
}

/// A complete snapshot, as a healthy installation gives.
pub fn healthy(collected: SystemTime) -> Snapshot {
    let mut s = Snapshot::unknown("unused");
    s.collected_at = collected;
    for m in METRICS {
        let value = match m.id {
            MetricId::ClusterId => Value::Text(info().cluster_id),
            MetricId::CollectorVersion => Value::Text("0.1.0".into()),
            MetricId::CollectorGitCommit => Value::Text("504e326a1b2c".into()),
            MetricId::SeldonCoreVersion => Value::Text("2.9.1".into()),
            MetricId::IsKubernetes => Value::Bool(true),
            MetricId::KubernetesVersion => Value::Text("v1.31.2".into()),
            MetricId::KubernetesPlatform => Value::Text("linux/amd64".into()),
            MetricId::IsGlobalInstallation => Value::Bool(false),
            MetricId::ServerMemoryGbSum => Value::Float(18.0),
            MetricId::ServerCpuCoresSum => Value::Float(5.0),
            MetricId::InferenceServerName => Value::Text("mlserver,triton".into()),
            _ => Value::Integer(3),
        };
        s.set(m.id, Reading::Known(value));
    }
    s
}

/// The scheduler went away: its metrics unknown, Kubernetes still answering.
pub fn scheduler_down(collected: SystemTime) -> Snapshot {
    let mut s = healthy(collected);
    for m in METRICS.iter().filter(|m| m.source == Source::Scheduler) {
        s.set(
            m.id,
            Reading::unknown("scheduler ModelStatus: no complete answer within 30s"),
        );
    }
    s
}

/// The in-cluster reporter at `level` under consent `version` (the consent ConfigMap is at
/// that version too), sharing `shared` and holding `pending` back.
pub fn reporter(level: &str, version: &str, shared: &[&str], pending: &[&str]) -> Observed {
    let status = ReporterStatus {
        schema: Some(crate::consent::status::SCHEMA),
        level: crate::metrics::Level::parse(level),
        source: Some(crate::policy::Source::Consent),
        consent_state: Some("valid".into()),
        consent_version: Some(version.to_string()),
        shared: shared.iter().map(|f| f.to_string()).collect(),
        pending: pending.iter().map(|f| f.to_string()).collect(),
        endpoints: vec!["http://hodometer.seldon.io/".to_string()],
        interval: Some("1h".to_string()),
        last_event: Some(
            r#"{"event":"collect metrics","properties":{"node_count":3}}"#.to_string(),
        ),
        ..ReporterStatus::default()
    };
    Observed {
        line: format!("level {level} (consent)"),
        status: Some(status),
        consent: ConsentSeen::Found {
            resource_version: version.to_string(),
            reading: ConsentReading::Unset,
        },
        consent_configmap: "hodometer-consent in seldon-mesh".into(),
    }
}
