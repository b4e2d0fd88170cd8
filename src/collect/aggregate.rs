//! Pure, streaming aggregation of scheduler status items into the scheduler's metrics: the
//! model, pipeline and experiment counts and the server figures.
//!
//! Each tally folds one item at a time and keeps only counters, so memory stays flat however
//! many models or servers a scheduler streams. No I/O here: the rules are unit-tested directly.

use crate::proto::pipeline_version_state::PipelineStatus;
use crate::proto::{
    ExperimentStatusResponse, ModelStatusResponse, PipelineStatusResponse, ServerStatusResponse,
};

/// Folds the items of one status stream.
pub trait Tally: Default {
    type Item;
    fn add(&mut self, item: &Self::Item);
}

/// `model_count`: models not marked deleted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelTally {
    pub models: u64,
}

impl Tally for ModelTally {
    type Item = ModelStatusResponse;
    fn add(&mut self, model: &ModelStatusResponse) {
        if !model.deleted {
            self.models += 1;
        }
    }
}

/// `pipeline_count`: pipelines with any version being created or ready.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineTally {
    pub pipelines: u64,
}

impl Tally for PipelineTally {
    type Item = PipelineStatusResponse;
    fn add(&mut self, pipeline: &PipelineStatusResponse) {
        let live = pipeline.versions.iter().any(|version| {
            let status = version.state.as_ref().map(|state| state.status());
            matches!(
                status,
                Some(
                    PipelineStatus::PipelineCreate
                        | PipelineStatus::PipelineCreating
                        | PipelineStatus::PipelineReady
                )
            )
        });
        if live {
            self.pipelines += 1;
        }
    }
}

/// `experiment_count`: active experiments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExperimentTally {
    pub experiments: u64,
}

impl Tally for ExperimentTally {
    type Item = ExperimentStatusResponse;
    fn add(&mut self, experiment: &ExperimentStatusResponse) {
        if experiment.active {
            self.experiments += 1;
        }
    }
}

/// The server metrics. Only "counted servers" (expected or available replicas above zero)
/// contribute; multi-model and overcommit are counted once per server, however many of its
/// replicas qualify.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerTally {
    pub servers: u64,
    pub replicas: u64,
    pub multimodel_servers: u64,
    pub overcommit_servers: u64,
    /// Σ totalMemoryBytes over counted servers' replicas; u128 cannot overflow on any real fleet.
    pub memory_bytes: u128,
}

impl ServerTally {
    /// Total replica memory in decimal gigabytes, the unit of the original's data series.
    pub fn memory_gb(&self) -> f64 {
        self.memory_bytes as f64 / 1e9
    }
}

impl Tally for ServerTally {
    type Item = ServerStatusResponse;
    fn add(&mut self, server: &ServerStatusResponse) {
        let expected = server.expected_replicas.max(0) as u64;
        let available = server.available_replicas.max(0) as u64;
        if expected == 0 && available == 0 {
            return;
        }
        self.servers += 1;
        self.replicas += if expected > 0 { expected } else { available };

        let overcommits = server
            .resources
            .iter()
            .any(|r| r.over_commit_percentage > 0);
        let multimodel = overcommits || server.resources.iter().any(|r| r.num_loaded_models > 1);
        self.overcommit_servers += u64::from(overcommits);
        self.multimodel_servers += u64::from(multimodel);
        self.memory_bytes += server
            .resources
            .iter()
            .map(|r| u128::from(r.total_memory_bytes))
            .sum::<u128>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PipelineVersionState, PipelineWithState, ServerReplicaResources};

    fn fold<T: Tally>(items: &[T::Item]) -> T {
        let mut tally = T::default();
        for item in items {
            tally.add(item);
        }
        tally
    }

    fn replica(memory: u64, loaded: i32, overcommit: u32) -> ServerReplicaResources {
        ServerReplicaResources {
            total_memory_bytes: memory,
            num_loaded_models: loaded,
            over_commit_percentage: overcommit,
            ..Default::default()
        }
    }

    fn server(
        expected: i32,
        available: i32,
        resources: Vec<ServerReplicaResources>,
    ) -> ServerStatusResponse {
        ServerStatusResponse {
            server_name: "a-server".into(),
            expected_replicas: expected,
            available_replicas: available,
            resources,
            ..Default::default()
        }
    }

    fn pipeline(statuses: &[PipelineStatus]) -> PipelineStatusResponse {
        PipelineStatusResponse {
            pipeline_name: "a-pipeline".into(),
            versions: statuses
                .iter()
                .map(|status| PipelineWithState {
                    state: Some(PipelineVersionState {
                        status: *status as i32,
                        ..Default::default()
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn deleted_models_are_not_counted() {
        let models = [
            ModelStatusResponse {
                deleted: false,
                ..Default::default()
            },
            ModelStatusResponse {
                deleted: true,
                ..Default::default()
            },
            ModelStatusResponse {
                deleted: false,
                ..Default::default()
            },
        ];
        assert_eq!(fold::<ModelTally>(&models).models, 2);
    }

    #[test]
    fn pipelines_count_when_created_creating_or_ready() {
        use PipelineStatus::*;
        for status in [PipelineCreate, PipelineCreating, PipelineReady] {
            assert_eq!(
                fold::<PipelineTally>(&[pipeline(&[status])]).pipelines,
                1,
                "{status:?}"
            );
        }
        for status in [
            Unknown,
            PipelineFailed,
            PipelineTerminate,
            PipelineTerminating,
            PipelineTerminated,
            PipelineRebalancing,
            PipelineFailedTerminating,
        ] {
            assert_eq!(
                fold::<PipelineTally>(&[pipeline(&[status])]).pipelines,
                0,
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_pipeline_counts_once_when_any_version_is_live() {
        use PipelineStatus::*;
        let p = pipeline(&[PipelineTerminated, PipelineReady, PipelineCreating]);
        assert_eq!(fold::<PipelineTally>(&[p]).pipelines, 1);
        assert_eq!(fold::<PipelineTally>(&[pipeline(&[])]).pipelines, 0);
    }

    #[test]
    fn pipeline_version_without_state_is_not_live() {
        let p = PipelineStatusResponse {
            versions: vec![PipelineWithState { state: None }],
            ..Default::default()
        };
        assert_eq!(fold::<PipelineTally>(&[p]).pipelines, 0);
    }

    #[test]
    fn only_active_experiments_count() {
        let experiments = [
            ExperimentStatusResponse {
                active: true,
                ..Default::default()
            },
            ExperimentStatusResponse {
                active: false,
                ..Default::default()
            },
        ];
        assert_eq!(fold::<ExperimentTally>(&experiments).experiments, 1);
    }

    #[test]
    fn servers_count_with_expected_or_available_replicas() {
        let t: ServerTally = fold(&[
            server(2, 0, vec![]),
            server(0, 3, vec![]),
            server(0, 0, vec![]),
        ]);
        assert_eq!(t.servers, 2);
        assert_eq!(
            t.replicas, 5,
            "expected 2 from the first, available 3 from the second"
        );
    }

    #[test]
    fn expected_minus_one_falls_back_to_available() {
        let t: ServerTally = fold(&[server(-1, 5, vec![])]);
        assert_eq!((t.servers, t.replicas), (1, 5));
    }

    #[test]
    fn expected_replicas_win_over_available() {
        let t: ServerTally = fold(&[server(3, 1, vec![])]);
        assert_eq!(t.replicas, 3);
    }

    #[test]
    fn overcommit_with_and_without_loaded_models() {
        let t: ServerTally = fold(&[
            server(1, 1, vec![replica(0, 0, 10)]),
            server(1, 1, vec![replica(0, 5, 10)]),
        ]);
        assert_eq!(t.overcommit_servers, 2);
        assert_eq!(t.multimodel_servers, 2, "overcommit implies multi-model");
    }

    #[test]
    fn multimodel_without_overcommit() {
        let t: ServerTally = fold(&[
            server(1, 1, vec![replica(0, 2, 0)]),
            server(1, 1, vec![replica(0, 1, 0)]),
        ]);
        assert_eq!(t.multimodel_servers, 1);
        assert_eq!(t.overcommit_servers, 0);
    }

    #[test]
    fn a_three_replica_overcommitted_server_counts_once() {
        let replicas = vec![replica(0, 3, 10), replica(0, 3, 10), replica(0, 3, 10)];
        let t: ServerTally = fold(&[server(3, 3, replicas)]);
        assert_eq!(t.overcommit_servers, 1);
        assert_eq!(t.multimodel_servers, 1);
        assert_eq!(t.replicas, 3);
    }

    #[test]
    fn memory_is_totalled_over_counted_servers_in_decimal_gb() {
        let t: ServerTally = fold(&[
            server(
                2,
                2,
                vec![replica(1_000_000_000, 0, 0), replica(2_500_000_000, 0, 0)],
            ),
            server(1, 0, vec![replica(500_000_000, 0, 0)]),
            // Scaled to zero: not a counted server, so its stale replica memory is ignored.
            server(0, 0, vec![replica(8_000_000_000, 0, 0)]),
        ]);
        assert_eq!(t.memory_bytes, 4_000_000_000);
        assert!((t.memory_gb() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn uncounted_servers_contribute_nothing() {
        let t: ServerTally = fold(&[server(0, 0, vec![replica(1, 5, 50)])]);
        assert_eq!(t, ServerTally::default());
    }
}
