//! Kubernetes collection through real HTTP: the real binary's `collect`, kube-rs, and the
//! simulator's Kubernetes stand-in.

mod common;

use std::path::Path;

use common::{SimProcess, event, example_scenario, hodometer, row};
use hodometer::collect::workload::parse_quantity;
use hodometer::sim::population::{Counts, Scenario, Workload};
use serde_json::{Map, Value};

/// `collect` at level feature with the sim's kubeconfig as the only Kubernetes configuration.
fn collect_with_kube(sim: &SimProcess, args: &[&str]) -> std::process::Output {
    let kubeconfig = sim.kubeconfig.as_ref().expect("sim started with kube");
    let port = sim.port_arg();
    let mut all = vec![
        "collect",
        "--scheduler-port",
        &port,
        "--level",
        "feature",
        "--rpc-timeout",
        "5s",
    ];
    all.extend_from_slice(args);
    hodometer(&all)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run collect")
}

fn props(output: &std::process::Output) -> Map<String, Value> {
    event(output)["properties"]
        .as_object()
        .expect("properties")
        .clone()
}

fn table(sim: &SimProcess, args: &[&str]) -> String {
    let mut all = vec!["--output", "table"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&collect_with_kube(sim, &all).stdout).into_owned()
}

fn scenario_file(dir: &Path, edit: impl FnOnce(&mut Value)) -> String {
    let mut scenario: Value =
        serde_json::from_str(&std::fs::read_to_string(example_scenario()).expect("example"))
            .expect("json");
    edit(&mut scenario);
    let path = dir.join("scenario.json");
    std::fs::write(&path, scenario.to_string()).expect("write scenario");
    path.to_str().expect("utf-8").to_string()
}

fn example_sim(extra: &[&str]) -> SimProcess {
    let scenario = example_scenario();
    let mut args = vec!["--scenario", scenario.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    SimProcess::start_with_kube(&args)
}

const KUBE_METRICS: [&str; 7] = [
    "kubernetes_version",
    "kubernetes_platform",
    "node_count",
    "is_global_installation",
    "server_cpu_cores_sum",
    "gpu_enabled_count",
    "inference_server_name",
];

#[test]
fn every_kubernetes_metric_is_read_from_the_api() {
    let sim = example_sim(&[]);
    let p = props(&collect_with_kube(&sim, &[]));
    assert_eq!(p["is_kubernetes"], true);
    assert_eq!(p["kubernetes_version"], "v1.31.2");
    assert_eq!(p["kubernetes_platform"], "linux/amd64");
    assert_eq!(p["node_count"], 3);
    assert_eq!(
        p["is_global_installation"], false,
        "operator present with CLUSTERWIDE=false"
    );
    assert_eq!(
        p["seldon_core_version"], "2.9.1",
        "placeholder replaced by the scheduler image tag"
    );
    // mlserver 2 × 1 + triton 1 × 2 + huggingface (a Deployment, expected -1, available 2) 2 × 0.5
    assert_eq!(p["server_cpu_cores_sum"], 5.0);
    assert_eq!(p["gpu_enabled_count"], 1);
    assert_eq!(p["inference_server_name"], "huggingface,mlserver,triton");
}

#[test]
fn lists_are_paged_and_match_the_generated_population() {
    let counts = Counts {
        models: 10,
        servers: 600,
        pipelines: 2,
        experiments: 1,
    };
    let (sim, scenario) = SimProcess::generated(counts, 11, true);
    let p = props(&collect_with_kube(&sim, &[]));

    assert_eq!(p["node_count"], scenario.kubernetes.nodes);
    assert!(scenario.kubernetes.nodes > 0);
    let expected_cpu: f64 = scenario
        .servers
        .iter()
        .filter(|s| s.workload != Workload::None)
        .map(|s| {
            let replicas = if s.expected_replicas >= 0 {
                s.expected_replicas
            } else {
                s.available_replicas
            };
            parse_quantity(&s.cpu).expect("quantity") * f64::from(replicas)
        })
        .sum();
    let cpu = p["server_cpu_cores_sum"].as_f64().expect("cpu is a number");
    assert!((cpu - expected_cpu).abs() < 1e-6, "{cpu} != {expected_cpu}");
    let gpus = scenario.servers.iter().filter(|s| s.gpus > 0).count();
    assert_eq!(p["gpu_enabled_count"], gpus);
    assert!(
        scenario
            .servers
            .iter()
            .any(|s| s.workload == Workload::Deployment)
    );
    assert_eq!(p["inference_server_name"], "mlserver,triton");
}

#[test]
fn many_nodes_are_counted_across_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario_file(dir.path(), |s| s["kubernetes"]["nodes"] = 1234.into());
    let sim = SimProcess::start_with_kube(&["--scenario", &scenario]);
    assert_eq!(props(&collect_with_kube(&sim, &[]))["node_count"], 1234);
}

#[test]
fn forbidden_nodes_leave_only_node_count_unknown_with_the_missing_permission() {
    let sim = example_sim(&["--kube-forbid", "nodes"]);
    let p = props(&collect_with_kube(&sim, &[]));
    assert!(!p.contains_key("node_count"));
    assert_eq!(p["is_kubernetes"], true);
    assert_eq!(p["kubernetes_version"], "v1.31.2");
    assert_eq!(p["server_cpu_cores_sum"], 5.0);
    let t = table(&sim, &[]);
    let node_row = row(&t, "node_count");
    assert!(
        node_row.contains("forbidden") && node_row.contains("ClusterRole"),
        "{node_row}"
    );
}

#[test]
fn forbidden_servers_leave_the_server_metrics_unknown() {
    let sim = example_sim(&["--kube-forbid", "servers"]);
    let p = props(&collect_with_kube(&sim, &[]));
    for metric in [
        "server_cpu_cores_sum",
        "gpu_enabled_count",
        "inference_server_name",
    ] {
        assert!(!p.contains_key(metric), "{metric} reported while forbidden");
    }
    assert_eq!(p["node_count"], 3);
    let t = table(&sim, &[]);
    assert!(row(&t, "gpu_enabled_count").contains("role.yaml"), "{t}");
}

#[test]
fn forbidden_statefulsets_leave_the_image_tag_and_workloads_unknown() {
    let sim = example_sim(&["--kube-forbid", "statefulsets"]);
    let p = props(&collect_with_kube(&sim, &[]));
    assert!(!p.contains_key("seldon_core_version"));
    assert!(!p.contains_key("server_cpu_cores_sum"));
    assert_eq!(p["is_global_installation"], false);
}

#[test]
fn operator_scope_follows_its_deployment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(Value, bool); 4] = [
        (Value::Null, true),
        (serde_json::json!({"clusterwide_env": "true"}), true),
        (
            serde_json::json!({"clusterwide_env": null, "args": ["--clusterwide=false"]}),
            false,
        ),
        (
            serde_json::json!({"clusterwide_env": null, "args": ["--clusterwide"]}),
            true,
        ),
    ];
    for (operator, expected) in cases {
        let scenario = scenario_file(dir.path(), |s| {
            s["kubernetes"]["operator"] = operator.clone()
        });
        let sim = SimProcess::start_with_kube(&["--scenario", &scenario]);
        let p = props(&collect_with_kube(&sim, &[]));
        assert_eq!(p["is_global_installation"], expected, "operator {operator}");
    }
}

#[test]
fn an_unreachable_api_leaves_kubernetes_unknown_and_collect_names_it_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let dead = common::dead_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{dead}").parse().expect("addr");
    let tokens = hodometer::sim::kube::SimTokens::random();
    std::fs::write(&kubeconfig, hodometer::sim::kube::kubeconfig(addr, &tokens))
        .expect("write kubeconfig");
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let out = hodometer(&[
        "collect",
        "--scheduler-port",
        &sim.port_arg(),
        "--level",
        "feature",
        "--rpc-timeout",
        "2s",
    ])
    .env("KUBECONFIG", &kubeconfig)
    .output()
    .expect("run collect");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Like kubectl: the API server's URL and the cause, once.
    assert!(
        err.contains(&format!(
            "hodometer: Kubernetes: the Kubernetes API server at http://127.0.0.1:{dead} could not be reached"
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert_eq!(err.matches("could not be reached").count(), 1, "{err}");
    assert!(
        !err.contains("ServiceError"),
        "the cause, not its wrappers: {err}"
    );
    let event: Value = serde_json::from_slice(&out.stdout).expect("the event is printed");
    let p = event["properties"].as_object().expect("properties").clone();
    assert!(
        !p.contains_key("is_kubernetes"),
        "unreachable is unknown, not false"
    );
    for metric in KUBE_METRICS {
        assert!(
            !p.contains_key(metric),
            "{metric} reported with the API down"
        );
    }
    assert_eq!(p["model_count"], 3, "the scheduler is still read");
}

#[test]
fn no_configuration_at_all_is_not_kubernetes() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let home = tempfile::tempdir().expect("empty home");
    let out = hodometer(&[
        "collect",
        "--scheduler-port",
        &sim.port_arg(),
        "--level",
        "feature",
    ])
    .env("HOME", home.path())
    .output()
    .expect("run collect");
    let p = props(&out);
    assert_eq!(p["is_kubernetes"], false);
    for metric in KUBE_METRICS {
        assert!(!p.contains_key(metric));
    }
}

#[test]
fn no_kube_turns_kubernetes_off_even_when_configured() {
    let sim = example_sim(&[]);
    let p = props(&collect_with_kube(&sim, &["--no-kube"]));
    assert!(!p.contains_key("is_kubernetes"), "not read, so not sent");
    assert!(!p.contains_key("node_count"));
}

#[test]
fn another_namespace_has_no_servers_and_no_operator() {
    let sim = example_sim(&[]);
    let p = props(&collect_with_kube(&sim, &["--namespace", "elsewhere"]));
    assert_eq!(
        p["is_global_installation"], true,
        "no operator Deployment in that namespace"
    );
    assert_eq!(p["server_cpu_cores_sum"], 0.0);
    assert_eq!(p["gpu_enabled_count"], 0);
    assert!(
        !p.contains_key("seldon_core_version"),
        "no scheduler StatefulSet there"
    );
    let from_env = hodometer(&[
        "collect",
        "--scheduler-port",
        &sim.port_arg(),
        "--level",
        "feature",
    ])
    .env("KUBECONFIG", sim.kubeconfig.as_ref().expect("kubeconfig"))
    .env("POD_NAMESPACE", "elsewhere")
    .output()
    .expect("run collect");
    assert_eq!(
        props(&from_env)["gpu_enabled_count"],
        0,
        "POD_NAMESPACE selects the namespace"
    );
}

#[test]
fn the_payload_names_no_server_node_or_namespace() {
    let sim = example_sim(&[]);
    let out = collect_with_kube(&sim, &["--log-level", "trace"]);
    let payload = String::from_utf8_lossy(&out.stdout);
    let scenario = Scenario::load(&example_scenario()).expect("scenario");
    for server in &scenario.servers {
        assert!(
            !payload.contains(&server.name),
            "{} in {payload}",
            server.name
        );
    }
    for forbidden in [
        "sim-node-",
        "seldon-mesh",
        "127.0.0.1",
        "hodometer-sim-token",
        "seldon-scheduler",
    ] {
        assert!(!payload.contains(forbidden), "{forbidden} in {payload}");
    }
    // Trace-level logs stay on the machine, so they may name the namespace; they still never
    // name a Server or a node, nor carry the API token.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("collected"), "no logs on stderr: {logs}");
    for server in &scenario.servers {
        assert!(
            !logs.contains(&server.name),
            "{} in logs:\n{logs}",
            server.name
        );
    }
    for forbidden in ["sim-node-", "hodometer-sim-token"] {
        assert!(!logs.contains(forbidden), "{forbidden} in logs:\n{logs}");
    }
}

fn manifest(name: &str) -> String {
    format!("{}/assets/k8s/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_rbac_is_enough_for_every_kubernetes_metric() {
    let (role, cluster_role) = (manifest("role.yaml"), manifest("clusterrole.yaml"));
    let sim = example_sim(&["--kube-rbac", &role, "--kube-rbac", &cluster_role]);
    let p = props(&collect_with_kube(&sim, &[]));
    for metric in KUBE_METRICS {
        assert!(
            p.contains_key(metric),
            "{metric} unknown under the shipped RBAC: {p:?}"
        );
    }
    assert_eq!(p["seldon_core_version"], "2.9.1");
}

#[test]
fn without_the_cluster_role_only_node_count_is_lost() {
    let sim = example_sim(&["--kube-rbac", &manifest("role.yaml")]);
    let p = props(&collect_with_kube(&sim, &[]));
    assert!(!p.contains_key("node_count"));
    for metric in KUBE_METRICS.iter().filter(|m| **m != "node_count") {
        assert!(
            p.contains_key(*metric),
            "{metric} lost without the ClusterRole"
        );
    }
}

#[test]
fn an_unreadable_cpu_quantity_leaves_the_server_sums_unknown_not_smaller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario_file(dir.path(), |s| s["servers"][0]["cpu"] = "lots".into());
    let sim = SimProcess::start_with_kube(&["--scenario", &scenario]);
    let p = props(&collect_with_kube(&sim, &[]));
    assert!(!p.contains_key("server_cpu_cores_sum"), "{p:?}");
    assert_eq!(p["node_count"], 3);
    let t = table(&sim, &[]);
    assert!(row(&t, "server_cpu_cores_sum").contains("\"lots\""), "{t}");
}
