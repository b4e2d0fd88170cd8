//! The simulated scheduler's gRPC service: the status RPCs with a real scheduler's stream
//! semantics (one message per item, then the end), items built lazily as they are sent.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::faults::{CallPlan, Faults, Rpc};
use super::population::{self, ExperimentSpec, PipelineSpec, Scenario, ServerSpec};
use super::wire::model_replica_status::ModelReplicaState;
use super::wire::model_status::ModelState;
use super::wire::pipeline_version_state::PipelineStatus;
use super::wire::scheduler_server::Scheduler;
use super::wire::storage_config::Config as StorageKind;
use super::wire::*;

/// The namespace the simulated resources claim to live in.
pub const SIM_NAMESPACE: &str = "seldon-mesh";

/// A credential-looking string inside every simulated model definition, so tests can prove that
/// nothing from a model definition ever reaches a payload or a log.
pub const FAKE_STORAGE_SECRET: &str = "hodometer-sim-FAKE-secret-7d3c91b2";

/// A long, credential-shaped filler (temporary cloud credentials run to hundreds of characters).
const FAKE_SESSION_TOKEN: &str = concat!(
    "FwoGZXIvYXdzEHodometerSimFakeSessionToken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
    "QRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij",
    "klmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
    "OPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefgh",
    "ijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL",
);

/// At most this many per-replica states in one model status.
const MAX_REPLICA_STATES: u32 = 64;

type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct SimScheduler {
    pub population: Arc<Population>,
    pub faults: Arc<Faults>,
}

/// The scenario being served; `--live` swaps in a changed one from time to time. Each call
/// streams from the one that was current when it began.
#[derive(Debug)]
pub struct Population(std::sync::RwLock<Arc<Scenario>>);

impl Population {
    pub fn new(scenario: Scenario) -> Population {
        Population(std::sync::RwLock::new(Arc::new(scenario)))
    }

    pub fn current(&self) -> Arc<Scenario> {
        let guard = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    pub fn replace(&self, scenario: Scenario) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(scenario);
    }
}

impl SimScheduler {
    /// Applies the call's faults that happen before any answer.
    async fn begin(&self, rpc: Rpc) -> Result<CallPlan, Status> {
        let plan = self.faults.on_call(rpc);
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        if plan.unavailable {
            return Err(Status::unavailable(
                "simulated scheduler: unavailable (fault injection)",
            ));
        }
        Ok(plan)
    }

    /// Streams the `count(scenario)` items built by `build(scenario, index)`, skipping those `keep`
    /// rejects, all from the scenario current when the call began.
    fn stream<T, B, K>(
        &self,
        plan: CallPlan,
        count: fn(&Scenario) -> usize,
        keep: K,
        build: B,
    ) -> ItemStream<T>
    where
        T: Send + 'static,
        K: Fn(&Scenario, usize) -> bool + Send + 'static,
        B: Fn(&Scenario, usize) -> T + Send + 'static,
    {
        let scenario = self.population.current();
        let count = count(&scenario);
        // A small buffer: the producer runs only as fast as the client reads.
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut sent = 0u64;
            for index in 0..count {
                if !keep(&scenario, index) {
                    continue;
                }
                if plan.cut_after == Some(sent) {
                    let cut = Status::unavailable(format!(
                        "simulated scheduler: stream cut after {sent} items (fault injection)"
                    ));
                    let _ = tx.send(Err(cut)).await;
                    return;
                }
                if tx.send(Ok(build(&scenario, index))).await.is_err() {
                    return; // the client went away
                }
                sent += 1;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

fn matches_name(wanted: &Option<String>, name: &str) -> bool {
    wanted.as_deref().is_none_or(|w| w.is_empty() || w == name)
}

#[tonic::async_trait]
impl Scheduler for SimScheduler {
    async fn scheduler_status(
        &self,
        _request: Request<SchedulerStatusRequest>,
    ) -> Result<Response<SchedulerStatusResponse>, Status> {
        self.begin(Rpc::Status).await?;
        Ok(Response::new(SchedulerStatusResponse {
            application_version: self.population.current().version.clone(),
        }))
    }

    type ModelStatusStream = ItemStream<ModelStatusResponse>;
    async fn model_status(
        &self,
        request: Request<ModelStatusRequest>,
    ) -> Result<Response<Self::ModelStatusStream>, Status> {
        let plan = self.begin(Rpc::Models).await?;
        let wanted = request.into_inner().model.map(|m| m.name);
        Ok(Response::new(self.stream(
            plan,
            |s| s.models.len(),
            move |s, i| matches_name(&wanted, &s.models[i].name),
            |s, i| model_status(&s.models[i]),
        )))
    }

    type ServerStatusStream = ItemStream<ServerStatusResponse>;
    async fn server_status(
        &self,
        request: Request<ServerStatusRequest>,
    ) -> Result<Response<Self::ServerStatusStream>, Status> {
        let plan = self.begin(Rpc::Servers).await?;
        let wanted = request.into_inner().name;
        Ok(Response::new(self.stream(
            plan,
            |s| s.servers.len(),
            move |s, i| matches_name(&wanted, &s.servers[i].name),
            |s, i| server_status(&s.servers[i]),
        )))
    }

    type PipelineStatusStream = ItemStream<PipelineStatusResponse>;
    async fn pipeline_status(
        &self,
        request: Request<PipelineStatusRequest>,
    ) -> Result<Response<Self::PipelineStatusStream>, Status> {
        let plan = self.begin(Rpc::Pipelines).await?;
        let wanted = request.into_inner().name;
        Ok(Response::new(self.stream(
            plan,
            |s| s.pipelines.len(),
            move |s, i| matches_name(&wanted, &s.pipelines[i].name),
            |s, i| pipeline_status(&s.pipelines[i]),
        )))
    }

    type ExperimentStatusStream = ItemStream<ExperimentStatusResponse>;
    async fn experiment_status(
        &self,
        request: Request<ExperimentStatusRequest>,
    ) -> Result<Response<Self::ExperimentStatusStream>, Status> {
        let plan = self.begin(Rpc::Experiments).await?;
        let wanted = request.into_inner().name;
        Ok(Response::new(self.stream(
            plan,
            |s| s.experiments.len(),
            move |s, i| matches_name(&wanted, &s.experiments[i].name),
            |s, i| experiment_status(&s.experiments[i]),
        )))
    }
}

fn kube_meta() -> KubernetesMeta {
    KubernetesMeta {
        namespace: SIM_NAMESPACE.into(),
        generation: 1,
    }
}

/// A fixed "last changed" time (2024-06-01T00:00:00Z): statuses carry one, its value is irrelevant.
fn changed_at() -> Timestamp {
    Timestamp {
        seconds: 1_717_200_000,
        nanos: 0,
    }
}

/// An experiment status as a real scheduler sends it. Its readiness flags (fields 3 and 4) sit
/// where older layouts had a string: an active experiment has its candidates (and mirror) ready.
fn experiment_status(experiment: &ExperimentSpec) -> ExperimentStatusResponse {
    ExperimentStatusResponse {
        experiment_name: experiment.name.clone(),
        active: experiment.active,
        candidates_ready: experiment.active,
        mirror_ready: experiment.active,
        status_description: if experiment.active {
            "experiment active"
        } else {
            "experiment stopped"
        }
        .into(),
        kubernetes_meta: Some(kube_meta()),
    }
}

/// A model status as a real scheduler sends it: the latest version with its whole definition,
/// storage credentials included (about a kilobyte each).
fn model_status(model: &population::ModelSpec) -> ModelStatusResponse {
    // Shaped like a real rclone S3 secret; temporary credentials make them most of a kilobyte.
    let rclone = format!(
        r#"{{"name":"{name}-storage","type":"s3","parameters":{{"provider":"AWS","env_auth":"false","access_key_id":"hodometer-sim-access-key","secret_access_key":"{FAKE_STORAGE_SECRET}","session_token":"{token}","region":"eu-west-1","endpoint":"http://minio.minio-system.svc.cluster.local:9000","acl":"private","server_side_encryption":"aws:kms","no_check_bucket":"true"}}}}"#,
        name = model.name,
        token = FAKE_SESSION_TOKEN,
    );
    let definition = Model {
        meta: Some(MetaData {
            name: model.name.clone(),
            kind: Some("Model".into()),
            version: None,
            kubernetes_meta: Some(kube_meta()),
        }),
        model_spec: Some(ModelSpec {
            uri: format!(
                "gs://seldon-models/scv2/samples/mlserver_1.6.0/{}",
                model.name
            ),
            artifact_version: None,
            storage_config: Some(StorageConfig {
                config: Some(StorageKind::StorageRcloneConfig(rclone)),
            }),
            requirements: vec!["sklearn".into(), "mlserver".into(), "python".into()],
            memory_bytes: Some(50 * 1024 * 1024),
            server: (!model.server.is_empty()).then(|| model.server.clone()),
            parameters: vec![ParameterSpec {
                name: "inference_pool_gid".into(),
                value: format!("{}-pool", model.name),
            }],
        }),
        deployment_spec: Some(DeploymentSpec {
            replicas: model.replicas,
            min_replicas: 0,
            max_replicas: 0,
            log_payloads: false,
        }),
        stream_spec: Some(StreamSpec {
            input_topic: format!("seldon.{SIM_NAMESPACE}.model.{}.inputs", model.name),
            output_topic: format!("seldon.{SIM_NAMESPACE}.model.{}.outputs", model.name),
        }),
    };
    let (state, replica_state, available) = if model.deleted {
        (ModelState::ModelTerminated, ModelReplicaState::Unloaded, 0)
    } else {
        (
            ModelState::ModelAvailable,
            ModelReplicaState::Available,
            model.replicas,
        )
    };
    // One entry per replica, as the scheduler tracks them (bounded: a scenario may ask for many).
    let replica_states = (0..model.replicas.min(MAX_REPLICA_STATES))
        .map(|idx| {
            let replica = ModelReplicaStatus {
                state: replica_state as i32,
                reason: String::new(),
                last_change_timestamp: Some(changed_at()),
            };
            (idx as i32, replica)
        })
        .collect();
    ModelStatusResponse {
        model_name: model.name.clone(),
        versions: vec![ModelVersionStatus {
            version: 1,
            server_name: model.server.clone(),
            kubernetes_meta: Some(kube_meta()),
            model_replica_state: replica_states,
            state: Some(super::wire::ModelStatus {
                state: state as i32,
                reason: String::new(),
                available_replicas: available,
                unavailable_replicas: 0,
                last_change_timestamp: Some(changed_at()),
            }),
            model_defn: Some(definition),
        }],
        deleted: model.deleted,
    }
}

fn server_status(server: &ServerSpec) -> ServerStatusResponse {
    let resources: Vec<ServerReplicaResources> = server
        .replicas
        .iter()
        .enumerate()
        .map(|(idx, r)| ServerReplicaResources {
            replica_idx: idx as u32,
            total_memory_bytes: r.memory_bytes,
            available_memory_bytes: r.memory_bytes / 2,
            num_loaded_models: r.loaded_models,
            over_commit_percentage: r.overcommit_percentage,
        })
        .collect();
    ServerStatusResponse {
        server_name: server.name.clone(),
        num_loaded_model_replicas: resources.iter().map(|r| r.num_loaded_models).sum(),
        resources,
        expected_replicas: server.expected_replicas,
        available_replicas: server.available_replicas,
        kubernetes_meta: Some(kube_meta()),
    }
}

fn pipeline_status(pipeline: &PipelineSpec) -> PipelineStatusResponse {
    PipelineStatusResponse {
        pipeline_name: pipeline.name.clone(),
        versions: pipeline
            .versions
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let version = i as u32 + 1;
                // Statuses were checked when the scenario was loaded or generated.
                let status = PipelineStatus::from_str_name(status).unwrap_or_default();
                let step = format!("{}-step", pipeline.name);
                PipelineWithState {
                    pipeline: Some(Pipeline {
                        name: pipeline.name.clone(),
                        uid: format!("{}-uid-{version}", pipeline.name),
                        version,
                        steps: vec![PipelineStep {
                            name: step.clone(),
                            inputs: vec![format!("{}.inputs", pipeline.name)],
                        }],
                        output: Some(PipelineOutput { steps: vec![step] }),
                        kubernetes_meta: Some(kube_meta()),
                    }),
                    state: Some(PipelineVersionState {
                        pipeline_version: version,
                        status: status as i32,
                        reason: pipeline_reason(status).into(),
                        last_change_timestamp: Some(changed_at()),
                        models_ready: status == PipelineStatus::PipelineReady,
                    }),
                }
            })
            .collect(),
    }
}

/// The free-text reason a real scheduler gives with a pipeline status.
fn pipeline_reason(status: PipelineStatus) -> &'static str {
    match status {
        PipelineStatus::PipelineReady => "created pipeline",
        PipelineStatus::PipelineFailed => "failed to create pipeline: models not available",
        PipelineStatus::PipelineTerminated => "pipeline terminated",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn model_statuses_carry_a_definition_of_about_a_kilobyte_with_the_fake_secret() {
        let spec = population::ModelSpec {
            name: "model-000001".into(),
            deleted: false,
            server: "mlserver-00001".into(),
            replicas: 1,
        };
        let status = model_status(&spec);
        let bytes = status.encode_to_vec();
        assert!(bytes.len() >= 1024, "only {} bytes", bytes.len());
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(FAKE_STORAGE_SECRET));
        assert!(text.contains(SIM_NAMESPACE));
    }

    /// The simulator's messages (real layout) through the client's contract (`crate::proto`),
    /// as `tests/wire.rs` does with hand-built ones.
    #[test]
    fn every_status_sent_decodes_with_the_client_contract() {
        use crate::proto as client;
        let counts = population::Counts {
            models: 12,
            servers: 4,
            pipelines: 12,
            experiments: 6,
        };
        let scenario = Scenario::generate(counts, 3);
        for model in &scenario.models {
            let bytes = model_status(model).encode_to_vec();
            let item = client::ModelStatusResponse::decode(bytes.as_slice()).expect("model");
            assert_eq!(
                (item.model_name.as_str(), item.deleted),
                (model.name.as_str(), model.deleted)
            );
        }
        for server in &scenario.servers {
            let bytes = server_status(server).encode_to_vec();
            let item = client::ServerStatusResponse::decode(bytes.as_slice()).expect("server");
            assert_eq!(item.expected_replicas, server.expected_replicas);
            assert_eq!(item.resources.len(), server.replicas.len());
        }
        for pipeline in &scenario.pipelines {
            let bytes = pipeline_status(pipeline).encode_to_vec();
            let item = client::PipelineStatusResponse::decode(bytes.as_slice()).expect("pipeline");
            let read: Vec<&str> = item
                .versions
                .iter()
                .map(|v| v.state.as_ref().map_or("", |s| s.status().as_str_name()))
                .collect();
            assert_eq!(read, pipeline.versions);
        }
        assert!(scenario.experiments.iter().any(|e| e.active));
        for experiment in &scenario.experiments {
            let sent = experiment_status(experiment);
            // What broke the shared proto: a real scheduler sets field 3 (a bool) when active.
            assert_eq!(sent.candidates_ready, experiment.active);
            let bytes = sent.encode_to_vec();
            let item =
                client::ExperimentStatusResponse::decode(bytes.as_slice()).expect("experiment");
            assert_eq!(item.active, experiment.active);
        }
    }
}
