//! The one table of metrics. README's metrics table, `collect --output table`, the inspector and
//! the payload are all derived from it; `tests/readme.rs` keeps README in step.

use super::Level;

/// What kind of JSON value a metric carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Uuid,
    Text,
    Bool,
    Integer,
    Float,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Uuid => "UUID string",
            ValueType::Text => "string",
            ValueType::Bool => "bool",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
        }
    }
}

/// Where a metric's value comes from; it is also what makes it unknown when that source fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This program's configuration and the level being shared.
    Config,
    /// Facts fixed when this binary was built.
    Build,
    /// The Seldon scheduler's gRPC API.
    Scheduler,
    /// The Kubernetes API.
    Kubernetes,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "configuration",
            Source::Build => "build",
            Source::Scheduler => "scheduler",
            Source::Kubernetes => "Kubernetes",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub id: MetricId,
    /// The property name in the published event.
    pub name: &'static str,
    /// The lowest level at which it is shared.
    pub level: Level,
    pub value_type: ValueType,
    pub source: Source,
    pub description: &'static str,
}

macro_rules! metric_table {
    ($($id:ident => $name:literal, $level:ident, $ty:ident, $source:ident, $description:literal;)*) => {
        /// Identifies a metric; its discriminant is its row in [`METRICS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MetricId { $($id),* }

        /// Every metric, in the order events and screens list them.
        pub const METRICS: &[MetricDef] = &[$(MetricDef {
            id: MetricId::$id,
            name: $name,
            level: Level::$level,
            value_type: ValueType::$ty,
            source: Source::$source,
            description: $description,
        }),*];
    };
}

metric_table! {
    ClusterId => "cluster_id", Cluster, Uuid, Config,
        "`--cluster-id` / `CLUSTER_ID`, else a random UUID for each start of the process";
    CollectorVersion => "collector_version", Cluster, Text, Build,
        "the version of hodometer that produced the event";
    CollectorGitCommit => "collector_git_commit", Cluster, Text, Build,
        "the git commit hodometer was built from, when the build knew it";
    MetricsLevel => "metrics_level", Cluster, Text, Config,
        "the level this event was produced at";
    SeldonCoreVersion => "seldon_core_version", Cluster, Text, Scheduler,
        "the scheduler's `applicationVersion`; the scheduler's fixed placeholder `0.0.1` is replaced by the image tag of StatefulSet `seldon-scheduler` (container `scheduler`), else unknown";
    IsKubernetes => "is_kubernetes", Cluster, Bool, Kubernetes,
        "true when a Kubernetes API answered, false when there is no Kubernetes configuration at all, unknown when configured but unreachable and with `--no-kube` (not read)";
    KubernetesVersion => "kubernetes_version", Cluster, Text, Kubernetes,
        "`gitVersion` from the API server's `/version`";
    KubernetesPlatform => "kubernetes_platform", Cluster, Text, Kubernetes,
        "`platform` from the API server's `/version`, e.g. `linux/amd64`";
    NodeCount => "node_count", Cluster, Integer, Kubernetes,
        "number of Nodes, from a paged metadata-only list (needs cluster-scope `list nodes`)";
    IsGlobalInstallation => "is_global_installation", Cluster, Bool, Kubernetes,
        "true when Deployment `seldon-v2-controller-manager` is absent from the namespace (the operator is cluster-wide elsewhere), else its `CLUSTERWIDE` env or `--clusterwide` argument";
    ModelCount => "model_count", Resource, Integer, Scheduler,
        "models the scheduler reports that are not deleted";
    PipelineCount => "pipeline_count", Resource, Integer, Scheduler,
        "pipelines with any version in `PipelineCreate`, `PipelineCreating` or `PipelineReady`";
    ExperimentCount => "experiment_count", Resource, Integer, Scheduler,
        "experiments that are active";
    ServerCount => "server_count", Resource, Integer, Scheduler,
        "servers with expected or available replicas above zero (\"counted servers\")";
    ServerReplicaCount => "server_replica_count", Resource, Integer, Scheduler,
        "over counted servers: expected replicas when above zero, else available replicas";
    MultimodelEnabledCount => "multimodel_enabled_count", Feature, Integer, Scheduler,
        "counted servers with any replica that overcommits or has more than one model loaded (counted per server)";
    OvercommitEnabledCount => "overcommit_enabled_count", Feature, Integer, Scheduler,
        "counted servers with any replica whose overcommit percentage is above zero";
    ServerMemoryGbSum => "server_memory_gb_sum", Feature, Float, Scheduler,
        "total memory of counted servers' replicas, in decimal gigabytes (10^9 bytes)";
    ServerCpuCoresSum => "server_cpu_cores_sum", Feature, Float, Kubernetes,
        "over each Server's StatefulSet or Deployment: the inference container's CPU request (else limit) times replicas, in cores";
    GpuEnabledCount => "gpu_enabled_count", Feature, Integer, Kubernetes,
        "Servers whose inference container requests or limits any `*/gpu` resource above zero";
    InferenceServerName => "inference_server_name", Feature, Text, Kubernetes,
        "distinct server kinds, lower-case, sorted, comma-joined (e.g. `mlserver,triton`)";
}

pub const METRIC_COUNT: usize = METRICS.len();

impl MetricId {
    pub fn def(self) -> &'static MetricDef {
        &METRICS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }
}

/// The row README's table gives extensions: they are not metrics, but they leave the cluster
/// alongside them and are gated the same way.
const EXTENSIONS_ROW: &str = "| `ext.<key>` | cluster, or the one chosen with `key@level` | string | operator | static facts the operator supplies (`--extensions-dir`, `HODOMETER_EXTENSIONS`, `--extension`), one property per key; see [Extensions](#extensions) |\n";

/// The metrics table as Markdown, the form README.md carries, with the extensions' row last.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| name | level | type | source | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for m in METRICS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            m.name,
            m.level,
            m.value_type.as_str(),
            m.source.as_str(),
            m.description
        ));
    }
    out.push_str(EXTENSIONS_ROW);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_index_their_own_rows() {
        for (row, m) in METRICS.iter().enumerate() {
            assert_eq!(m.id as usize, row, "{} is out of place", m.name);
            assert_eq!(m.id.def().name, m.name);
        }
    }

    #[test]
    fn names_are_unique_snake_case_and_no_metric_is_off() {
        let mut seen = HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "duplicate metric {}", m.name);
            assert!(m.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_ne!(m.level, Level::Off, "{} would never be shared", m.name);
        }
        assert_eq!(METRIC_COUNT, 21);
    }

    #[test]
    fn table_is_grouped_by_level() {
        let levels: Vec<Level> = METRICS.iter().map(|m| m.level).collect();
        let mut sorted = levels.clone();
        sorted.sort();
        assert_eq!(levels, sorted);
    }
}
