//! Wire compatibility between what a real scheduler sends and what hodometer's client reads.
//!
//! Messages are built with the simulator's types (`hodometer::sim::wire`, generated from
//! `proto/sim/scheduler.proto`: the real, current Seldon Core v2 layout, including what hodometer
//! does not read) and decoded with the client's types (`hodometer::proto`, generated from
//! `proto/scheduler.proto`), exactly as prost does for each message of a gRPC stream.
//!
//! Until the two were separated, client and simulator shared one proto that declared
//! `ExperimentStatusResponse.statusDescription = 3` (a string) where the real scheduler sends
//! `candidatesReady = 3` (a bool). Against a real scheduler prost rejected every experiment
//! ("invalid wire type: Varint (expected LengthDelimited)"), so the whole stream failed and
//! `experiment_count` was always unknown, yet every test passed because the simulator encoded the
//! same wrong layout. `a_client_that_declares_an_outdated_field_fails_on_the_real_layout` keeps
//! that failure visible with a hand-written copy of the old declaration.

use hodometer::collect::aggregate::{
    ExperimentTally, ModelTally, PipelineTally, ServerTally, Tally,
};
use hodometer::proto as client;
use hodometer::sim::wire as real;
use prost::Message;

const SECRET: &str = "wire-test-FAKE-secret";

fn decode<M: Message + Default>(bytes: &[u8]) -> M {
    M::decode(bytes).expect("the client decodes the real layout")
}

fn kube_meta() -> Option<real::KubernetesMeta> {
    Some(real::KubernetesMeta {
        namespace: "seldon-mesh".into(),
        generation: 3,
    })
}

fn timestamp() -> Option<real::Timestamp> {
    Some(real::Timestamp {
        seconds: 1_717_200_000,
        nanos: 5,
    })
}

fn experiment(active: bool) -> real::ExperimentStatusResponse {
    real::ExperimentStatusResponse {
        experiment_name: "exp".into(),
        active,
        candidates_ready: true,
        mirror_ready: true,
        status_description: "experiment active".into(),
        kubernetes_meta: kube_meta(),
    }
}

fn model(deleted: bool) -> real::ModelStatusResponse {
    let definition = real::Model {
        meta: Some(real::MetaData {
            name: "iris".into(),
            kind: Some("Model".into()),
            version: Some("1".into()),
            kubernetes_meta: kube_meta(),
        }),
        model_spec: Some(real::ModelSpec {
            uri: "s3://models/iris".into(),
            artifact_version: Some(2),
            storage_config: Some(real::StorageConfig {
                config: Some(real::storage_config::Config::StorageRcloneConfig(format!(
                    r#"{{"type":"s3","parameters":{{"secret_access_key":"{SECRET}"}}}}"#
                ))),
            }),
            requirements: vec!["sklearn".into()],
            memory_bytes: Some(1 << 20),
            server: Some("mlserver".into()),
            parameters: vec![real::ParameterSpec {
                name: "p".into(),
                value: "v".into(),
            }],
        }),
        deployment_spec: Some(real::DeploymentSpec {
            replicas: 2,
            min_replicas: 1,
            max_replicas: 4,
            log_payloads: true,
        }),
        stream_spec: Some(real::StreamSpec {
            input_topic: "in".into(),
            output_topic: "out".into(),
        }),
    };
    let replica = real::ModelReplicaStatus {
        state: real::model_replica_status::ModelReplicaState::Available as i32,
        reason: "loaded".into(),
        last_change_timestamp: timestamp(),
    };
    real::ModelStatusResponse {
        model_name: "iris".into(),
        versions: vec![real::ModelVersionStatus {
            version: 7,
            server_name: "mlserver".into(),
            kubernetes_meta: kube_meta(),
            model_replica_state: [(0, replica.clone()), (1, replica)].into(),
            state: Some(real::ModelStatus {
                state: real::model_status::ModelState::ModelAvailable as i32,
                reason: "ready".into(),
                available_replicas: 2,
                unavailable_replicas: 0,
                last_change_timestamp: timestamp(),
            }),
            model_defn: Some(definition),
        }],
        deleted,
    }
}

fn pipeline(status: real::pipeline_version_state::PipelineStatus) -> real::PipelineStatusResponse {
    real::PipelineStatusResponse {
        pipeline_name: "pipe".into(),
        versions: vec![real::PipelineWithState {
            pipeline: Some(real::Pipeline {
                name: "pipe".into(),
                uid: "c0ffee".into(),
                version: 4,
                steps: vec![real::PipelineStep {
                    name: "iris".into(),
                    inputs: vec!["pipe.inputs".into()],
                }],
                output: Some(real::PipelineOutput {
                    steps: vec!["iris".into()],
                }),
                kubernetes_meta: kube_meta(),
            }),
            state: Some(real::PipelineVersionState {
                pipeline_version: 4,
                status: status as i32,
                reason: "created pipeline".into(),
                last_change_timestamp: timestamp(),
                models_ready: true,
            }),
        }],
    }
}

fn server() -> real::ServerStatusResponse {
    let replica = |idx, loaded, overcommit| real::ServerReplicaResources {
        replica_idx: idx,
        total_memory_bytes: 2_000_000_000,
        available_memory_bytes: 500_000_000,
        num_loaded_models: loaded,
        over_commit_percentage: overcommit,
    };
    real::ServerStatusResponse {
        server_name: "mlserver".into(),
        resources: vec![replica(0, 3, 0), replica(1, 1, 10)],
        expected_replicas: 2,
        available_replicas: 1,
        num_loaded_model_replicas: 4,
        kubernetes_meta: kube_meta(),
    }
}

fn tally<T: Tally>(items: &[T::Item]) -> T {
    let mut tally = T::default();
    for item in items {
        tally.add(item);
    }
    tally
}

#[test]
fn experiments_with_ready_candidates_decode_and_count() {
    let items: Vec<client::ExperimentStatusResponse> = [experiment(true), experiment(false)]
        .iter()
        .map(|e| decode(&e.encode_to_vec()))
        .collect();
    assert_eq!(items[0].experiment_name, "exp");
    assert!(items[0].active);
    assert!(!items[1].active);
    assert_eq!(tally::<ExperimentTally>(&items).experiments, 1);
}

#[test]
fn models_with_full_definitions_decode_and_count_without_keeping_the_definition() {
    let bytes = model(false).encode_to_vec();
    assert!(String::from_utf8_lossy(&bytes).contains(SECRET));
    let live: client::ModelStatusResponse = decode(&bytes);
    let deleted: client::ModelStatusResponse = decode(&model(true).encode_to_vec());
    assert_eq!(live.model_name, "iris");
    assert!(!live.deleted);
    assert!(deleted.deleted);
    assert_eq!(tally::<ModelTally>(&[live.clone(), deleted]).models, 1);
    // The client declares no versions: the definition and its secret are skipped, not decoded.
    assert!(!format!("{live:?}").contains(SECRET));
    assert_eq!(
        live.encoded_len(),
        client::ModelStatusResponse {
            model_name: "iris".into(),
            deleted: false,
        }
        .encoded_len()
    );
}

#[test]
fn pipelines_with_definitions_and_reasons_decode_and_count() {
    use client::pipeline_version_state::PipelineStatus as Client;
    use real::pipeline_version_state::PipelineStatus as Real;
    for (sent, read, live) in [
        (Real::PipelineReady, Client::PipelineReady, 1),
        (Real::PipelineCreating, Client::PipelineCreating, 1),
        (Real::PipelineRebalancing, Client::PipelineRebalancing, 0),
        (
            Real::PipelineFailedTerminating,
            Client::PipelineFailedTerminating,
            0,
        ),
    ] {
        let item: client::PipelineStatusResponse = decode(&pipeline(sent).encode_to_vec());
        assert_eq!(item.pipeline_name, "pipe");
        let state = item.versions[0].state.as_ref().expect("state");
        assert_eq!(state.pipeline_version, 4);
        assert_eq!(state.status(), read);
        assert_eq!(tally::<PipelineTally>(&[item]).pipelines, live, "{sent:?}");
    }
}

#[test]
fn servers_decode_with_replicas_and_resources() {
    let item: client::ServerStatusResponse = decode(&server().encode_to_vec());
    assert_eq!(item.server_name, "mlserver");
    assert_eq!((item.expected_replicas, item.available_replicas), (2, 1));
    assert_eq!(item.num_loaded_model_replicas, 4);
    assert_eq!(item.resources.len(), 2);
    assert_eq!(item.resources[1].replica_idx, 1);
    assert_eq!(item.resources[1].available_memory_bytes, 500_000_000);
    let t = tally::<ServerTally>(&[item]);
    assert_eq!((t.servers, t.replicas), (1, 2));
    assert_eq!((t.multimodel_servers, t.overcommit_servers), (1, 1));
    assert_eq!(t.memory_bytes, 4_000_000_000);
}

#[test]
fn scheduler_status_and_requests_agree_both_ways() {
    let status: client::SchedulerStatusResponse = decode(
        &real::SchedulerStatusResponse {
            application_version: "0.0.1".into(),
        }
        .encode_to_vec(),
    );
    assert_eq!(status.application_version, "0.0.1");

    // What the client asks, as the real scheduler reads it.
    fn ask<R: Message + Default>(request: impl Message) -> R {
        R::decode(request.encode_to_vec().as_slice()).expect("the scheduler decodes the request")
    }
    let read: real::SchedulerStatusRequest = ask(client::SchedulerStatusRequest {
        subscriber_name: "hodometer".into(),
    });
    assert_eq!(read.subscriber_name, "hodometer");
    let read: real::ModelStatusRequest = ask(client::ModelStatusRequest {
        subscriber_name: "hodometer".into(),
        model: Some(client::ModelReference {
            name: "iris".into(),
        }),
        all_versions: true,
    });
    assert_eq!(read.subscriber_name, "hodometer");
    assert_eq!(read.model.map(|m| m.name).as_deref(), Some("iris"));
    assert!(read.all_versions);
    let read: real::PipelineStatusRequest = ask(client::PipelineStatusRequest {
        subscriber_name: "hodometer".into(),
        name: Some("pipe".into()),
        all_versions: true,
    });
    assert_eq!(read.subscriber_name, "hodometer");
    assert_eq!(read.name.as_deref(), Some("pipe"));
    assert!(read.all_versions);
    let read: real::ServerStatusRequest = ask(client::ServerStatusRequest {
        subscriber_name: "hodometer".into(),
        name: Some("mlserver".into()),
    });
    assert_eq!(read.subscriber_name, "hodometer");
    assert_eq!(read.name.as_deref(), Some("mlserver"));
    let read: real::ExperimentStatusRequest = ask(client::ExperimentStatusRequest {
        subscriber_name: "hodometer".into(),
        name: Some("exp".into()),
    });
    assert_eq!(read.subscriber_name, "hodometer");
    assert_eq!(read.name.as_deref(), Some("exp"));
}

/// The experiment layout hodometer's client once declared (field 3 a string, field 4 a message).
#[derive(Clone, PartialEq, prost::Message)]
struct OutdatedExperimentStatusResponse {
    #[prost(string, tag = "1")]
    experiment_name: String,
    #[prost(bool, tag = "2")]
    active: bool,
    #[prost(string, tag = "3")]
    status_description: String,
}

#[test]
fn a_client_that_declares_an_outdated_field_fails_on_the_real_layout() {
    let bytes = experiment(true).encode_to_vec();
    let error = OutdatedExperimentStatusResponse::decode(bytes.as_slice())
        .expect_err("a bool where a string was declared is a wire-type error");
    assert!(error.to_string().contains("wire type"), "{error}");
    // The same bytes through today's client contract.
    let item: client::ExperimentStatusResponse = decode(&bytes);
    assert!(item.active);
}
