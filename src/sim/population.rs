//! What the simulated scheduler knows about: a scenario file, or a population generated from a
//! seed. Items are small specs; the full status messages (model definitions included) are built
//! one at a time as they are streamed, so even 10^5 models never sit in one huge message.

use std::path::Path;

use serde::Deserialize;

use super::wire::pipeline_version_state::PipelineStatus;

/// What a real scheduler's `SchedulerStatus` answers (a placeholder, not its version). Spelt out
/// here rather than imported from the collector: a fake that borrows the values it is testing
/// cannot catch them being wrong.
const SCHEDULER_PLACEHOLDER_VERSION: &str = "0.0.1";

/// The scenario file format (JSON). Every list may be omitted.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What `SchedulerStatus` answers; a real scheduler always says "0.0.1".
    #[serde(default = "placeholder_version")]
    pub version: String,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
    #[serde(default)]
    pub pipelines: Vec<PipelineSpec>,
    #[serde(default)]
    pub experiments: Vec<ExperimentSpec>,
    #[serde(default)]
    pub kubernetes: KubeSpec,
}

fn placeholder_version() -> String {
    SCHEDULER_PLACEHOLDER_VERSION.into()
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub deleted: bool,
    /// The server it is scheduled on.
    #[serde(default)]
    pub server: String,
    #[serde(default = "one")]
    pub replicas: u32,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    #[serde(default)]
    pub expected_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    /// One entry per running replica, as the scheduler reports its resources.
    #[serde(default)]
    pub replicas: Vec<ReplicaSpec>,
    /// Kubernetes: the server kind (`spec.serverConfig`, the agent's `SELDON_SERVER_TYPE` and the
    /// inference container's name).
    #[serde(default = "mlserver")]
    pub kind: String,
    /// Kubernetes: the inference container's CPU request, as a quantity.
    #[serde(default = "one_cpu")]
    pub cpu: String,
    /// Kubernetes: `nvidia.com/gpu` limit of the inference container.
    #[serde(default)]
    pub gpus: u32,
    /// Kubernetes: the workload the operator made for it.
    #[serde(default)]
    pub workload: Workload,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum Workload {
    #[default]
    StatefulSet,
    Deployment,
    /// The Server resource exists but its workload does not (yet).
    None,
}

/// What the Kubernetes stand-in shows besides the Servers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeSpec {
    pub git_version: String,
    pub platform: String,
    pub nodes: u64,
    /// The tag of the `seldon-scheduler` image.
    pub seldon_version: String,
    /// The operator Deployment in the namespace; `null` when it runs elsewhere.
    pub operator: Option<OperatorSpec>,
    /// Resources the service account may not read: `nodes`, `servers`, `statefulsets`,
    /// `deployments` or `version`.
    pub forbid: Vec<String>,
}

impl Default for KubeSpec {
    fn default() -> Self {
        KubeSpec {
            git_version: "v1.31.2".into(),
            platform: "linux/amd64".into(),
            nodes: 3,
            seldon_version: "2.9.1".into(),
            operator: Some(OperatorSpec::default()),
            forbid: Vec::new(),
        }
    }
}

/// The operator's manager container settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorSpec {
    /// The `CLUSTERWIDE` env value, if set.
    pub clusterwide_env: Option<String>,
    pub args: Vec<String>,
}

impl Default for OperatorSpec {
    fn default() -> Self {
        OperatorSpec {
            clusterwide_env: Some("false".into()),
            args: vec!["--leader-elect".into()],
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub loaded_models: i32,
    #[serde(default)]
    pub overcommit_percentage: u32,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    /// One status per version, by its proto name, e.g. `["PipelineTerminated", "PipelineReady"]`.
    #[serde(default)]
    pub versions: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    #[serde(default)]
    pub active: bool,
}

fn one() -> u32 {
    1
}

fn mlserver() -> String {
    "mlserver".into()
}

fn one_cpu() -> String {
    "1".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("scenario {path}: pipeline {pipeline:?} has unknown status {status:?}")]
    Status {
        path: String,
        pipeline: String,
        status: String,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let scenario: Scenario =
            serde_json::from_str(&text).map_err(|source| ScenarioError::Parse {
                path: shown.clone(),
                source,
            })?;
        for pipeline in &scenario.pipelines {
            for status in &pipeline.versions {
                if PipelineStatus::from_str_name(status).is_none() {
                    return Err(ScenarioError::Status {
                        path: shown,
                        pipeline: pipeline.name.clone(),
                        status: status.clone(),
                    });
                }
            }
        }
        Ok(scenario)
    }

    /// A deterministic population: the same counts and seed always give the same scenario.
    pub fn generate(counts: Counts, seed: u64) -> Scenario {
        let mut rng = SplitMix64(seed);
        let servers: Vec<ServerSpec> = (0..counts.servers)
            .map(|i| {
                let expected = if rng.chance(10) {
                    0
                } else {
                    1 + rng.below(3) as i32
                };
                let available = if expected > 0 && rng.chance(10) {
                    expected - 1
                } else {
                    expected
                };
                let overcommit = if rng.chance(30) {
                    10 * (1 + rng.below(5) as u32)
                } else {
                    0
                };
                let replicas = (0..available)
                    .map(|_| ReplicaSpec {
                        memory_bytes: (2 + rng.below(15)) * 1_073_741_824,
                        loaded_models: rng.below(4) as i32,
                        overcommit_percentage: overcommit,
                    })
                    .collect();
                let kind = ["mlserver", "triton"][(i % 2) as usize];
                ServerSpec {
                    name: format!("{kind}-{i:05}"),
                    expected_replicas: expected,
                    available_replicas: available,
                    replicas,
                    kind: kind.into(),
                    cpu: ["500m", "1", "2"][rng.below(3) as usize].into(),
                    gpus: u32::from(kind == "triton" && rng.chance(40)),
                    workload: if i % 5 == 4 {
                        Workload::Deployment
                    } else {
                        Workload::StatefulSet
                    },
                }
            })
            .collect();
        let models = (0..counts.models)
            .map(|i| ModelSpec {
                name: format!("model-{i:06}"),
                deleted: rng.chance(5),
                server: servers
                    .get((i % counts.servers.max(1)) as usize)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                replicas: 1 + rng.below(2) as u32,
            })
            .collect();
        let pipelines = (0..counts.pipelines)
            .map(|i| {
                use PipelineStatus::*;
                const MIX: [PipelineStatus; 10] = [
                    PipelineReady,
                    PipelineReady,
                    PipelineReady,
                    PipelineReady,
                    PipelineReady,
                    PipelineCreating,
                    PipelineCreate,
                    PipelineFailed,
                    PipelineTerminated,
                    PipelineRebalancing,
                ];
                let mut versions = Vec::new();
                if rng.chance(20) {
                    versions.push(PipelineTerminated.as_str_name().to_string());
                }
                versions.push(
                    MIX[rng.below(MIX.len() as u64) as usize]
                        .as_str_name()
                        .to_string(),
                );
                PipelineSpec {
                    name: format!("pipeline-{i:05}"),
                    versions,
                }
            })
            .collect();
        let experiments = (0..counts.experiments)
            .map(|i| ExperimentSpec {
                name: format!("experiment-{i:04}"),
                active: !rng.chance(30),
            })
            .collect();
        Scenario {
            version: placeholder_version(),
            kubernetes: KubeSpec {
                nodes: (counts.servers / 8).max(3),
                ..KubeSpec::default()
            },
            models,
            servers,
            pipelines,
            experiments,
        }
    }
}

impl Scenario {
    /// The population `step` changes later, for `--live`: some models deleted or restored, one
    /// experiment started or stopped, one pipeline terminated or ready again. Servers stay as they
    /// are, so the Kubernetes stand-in keeps agreeing with the scheduler. Deterministic per step.
    pub fn evolve(&self, step: u64) -> Scenario {
        let mut next = self.clone();
        let mut rng = SplitMix64(step);
        for model in &mut next.models {
            if rng.chance(5) {
                model.deleted = !model.deleted;
            }
        }
        if !next.experiments.is_empty() {
            let i = (step % next.experiments.len() as u64) as usize;
            next.experiments[i].active = !next.experiments[i].active;
        }
        if !next.pipelines.is_empty() {
            let i = (step.wrapping_mul(7) % next.pipelines.len() as u64) as usize;
            let status = if step.is_multiple_of(2) {
                PipelineStatus::PipelineTerminated
            } else {
                PipelineStatus::PipelineReady
            };
            next.pipelines[i].versions = vec![status.as_str_name().to_string()];
        }
        next
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub models: u64,
    pub servers: u64,
    pub pipelines: u64,
    pub experiments: u64,
}

/// A tiny, stable PRNG: generated populations must not change when a dependency does.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Counts = Counts {
        models: 500,
        servers: 20,
        pipelines: 50,
        experiments: 10,
    };

    #[test]
    fn live_steps_change_models_experiments_and_pipelines_but_not_servers() {
        let base = Scenario::generate(COUNTS, 3);
        let next = base.evolve(1);
        assert_eq!(next, base.evolve(1), "deterministic per step");
        assert_ne!(
            next.models.iter().filter(|m| m.deleted).count(),
            base.models.iter().filter(|m| m.deleted).count()
        );
        assert_ne!(next.experiments, base.experiments);
        assert_eq!(next.servers, base.servers);
        assert_eq!(next.models.len(), base.models.len());
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        assert_eq!(Scenario::generate(COUNTS, 7), Scenario::generate(COUNTS, 7));
        assert_ne!(Scenario::generate(COUNTS, 7), Scenario::generate(COUNTS, 8));
    }

    #[test]
    fn generated_population_has_the_asked_sizes_and_a_mix_of_states() {
        let s = Scenario::generate(COUNTS, 1);
        assert_eq!(s.models.len(), 500);
        assert_eq!(s.servers.len(), 20);
        assert_eq!(s.pipelines.len(), 50);
        assert_eq!(s.experiments.len(), 10);
        assert!(s.models.iter().any(|m| m.deleted) && s.models.iter().any(|m| !m.deleted));
        assert!(
            s.servers
                .iter()
                .any(|m| m.replicas.iter().any(|r| r.overcommit_percentage > 0))
        );
        assert_eq!(s.version, "0.0.1");
    }

    #[test]
    fn scenario_file_parses_and_rejects_unknown_statuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"version": "2.9.0", "pipelines": [{"name": "p", "versions": ["PipelineReady"]}],
                "servers": [{"name": "s", "expected_replicas": 1, "replicas": [{"memory_bytes": 5}]}]}"#,
        )
        .expect("write");
        let s = Scenario::load(&good).expect("valid scenario");
        assert_eq!(s.version, "2.9.0");
        assert_eq!(s.servers[0].replicas[0].memory_bytes, 5);

        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"pipelines": [{"name": "p", "versions": ["Ready"]}]}"#,
        )
        .expect("write");
        let error = Scenario::load(&bad)
            .expect_err("unknown status")
            .to_string();
        assert!(error.contains("\"Ready\""), "{error}");

        let typo = dir.path().join("typo.json");
        std::fs::write(&typo, r#"{"modles": []}"#).expect("write");
        assert!(
            Scenario::load(&typo).is_err(),
            "unknown fields are rejected"
        );
    }
}
