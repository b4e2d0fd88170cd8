//! The deployment manifests in assets/k8s/ keep their promises: read-only RBAC, the original's
//! pod values (no args, uid 1000, 32Mi, 5 s grace period), and every environment variable the
//! original's podSpec sets is one the real daemon accepts.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{
    ReceiverProcess, SimProcess, dead_port, example_scenario, hodometer, http_get, row, stdout_of,
};
use serde_json::{Value, json};

/// Every variable Seldon's operator sets on the original hodometer container (SeldonConfig
/// component `hodometer`, SeldonIO/seldon-core branch v2).
const ORIGINAL_ENV: [&str; 15] = [
    "METRICS_LEVEL",
    "LOG_LEVEL",
    "EXTRA_PUBLISH_URLS",
    "CONTROL_PLANE_SECURITY_PROTOCOL",
    "CONTROL_PLANE_CLIENT_TLS_SECRET_NAME",
    "CONTROL_PLANE_SERVER_TLS_SECRET_NAME",
    "CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION",
    "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
    "CONTROL_PLANE_CLIENT_TLS_CA_LOCATION",
    "CONTROL_PLANE_SERVER_TLS_CA_LOCATION",
    "PUBLISH_URL",
    "SCHEDULER_HOST",
    "SCHEDULER_PLAINTXT_PORT",
    "SCHEDULER_TLS_PORT",
    "POD_NAMESPACE",
];

fn asset(name: &str) -> String {
    let path = format!("{}/assets/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> Value {
    let text = asset(&format!("k8s/{name}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The Deployment's environment as name → value; `valueFrom` (the pod's namespace) reads as the
/// namespace Seldon installs into.
fn deployment_env(deployment: &Value) -> Vec<(String, String)> {
    container(deployment)["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            let value = match &e["value"] {
                Value::String(v) => v.clone(),
                _ if e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" => {
                    "seldon-mesh".to_string()
                }
                other => panic!("{name}: unexpected value {other}"),
            };
            (name, value)
        })
        .collect()
}

/// Whether a rule is limited to exactly these object names.
fn only_names(rule: &Value, names: &[&str]) -> bool {
    rule["resourceNames"] == json!(names)
}

#[test]
fn rbac_only_reads_except_the_status_and_ledger_it_writes_and_secrets_only_by_name() {
    for name in ["role.yaml", "clusterrole.yaml"] {
        let doc = load(name);
        for rule in doc["rules"].as_array().expect("rules") {
            for verb in rule["verbs"].as_array().expect("verbs") {
                let verb = verb.as_str().expect("verb");
                let reads = ["get", "list", "watch"].contains(&verb);
                // The only writes: patching the status and the ledger ConfigMaps the manifests
                // create, each by name.
                let writes_status = ["update", "patch"].contains(&verb)
                    && rule["resources"] == json!(["configmaps"])
                    && (only_names(rule, &["hodometer-status"])
                        || only_names(rule, &["hodometer-ledger"]));
                assert!(reads || writes_status, "{name} grants {verb} in {rule}");
                assert_ne!(verb, "create", "{name}: create cannot be limited by name");
            }
            if rule["resources"] == json!(["configmaps"]) {
                assert!(
                    only_names(rule, &["hodometer-status"])
                        || only_names(rule, &["hodometer-ledger"])
                        || only_names(rule, &["hodometer-consent"]),
                    "{name}: ConfigMap access must name its objects: {rule}"
                );
            }
            let resources = rule["resources"].as_array().expect("resources");
            if resources.iter().any(|r| r == "secrets") {
                assert_eq!(resources.len(), 1, "{name}: secrets share a rule");
                assert_eq!(rule["verbs"], json!(["get"]), "{name}: secrets beyond get");
                let names = rule["resourceNames"].as_array();
                assert!(
                    names.is_some_and(|n| !n.is_empty()),
                    "{name}: secrets not restricted by resourceNames"
                );
            }
        }
    }
    let cluster = load("clusterrole.yaml");
    let rules = cluster["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"], json!(["nodes"]));
    assert_eq!(rules[0]["verbs"], json!(["list"]));
}

#[test]
fn the_consent_editor_role_only_edits_the_consent() {
    let role = load("consent-editor-role.yaml");
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["name"], "hodometer-consent-editor");
    let rules = role["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"], json!(["configmaps"]));
    assert!(only_names(&rules[0], &["hodometer-consent"]));
    assert_eq!(rules[0]["verbs"], json!(["get", "update", "patch"]));
}

#[test]
fn the_inspector_role_forwards_to_the_scheduler_and_reads_but_writes_nothing() {
    let role = load("inspector-role.yaml");
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["name"], "hodometer-inspector");
    let rules = role["rules"].as_array().expect("rules");
    let mut forwards = false;
    for rule in rules {
        let resources = rule["resources"].as_array().expect("resources");
        for verb in rule["verbs"].as_array().expect("verbs") {
            let verb = verb.as_str().expect("verb");
            // The one `create`: a port-forward, which is how the API server names opening one.
            let forward = resources == &[json!("pods/portforward")];
            assert!(
                ["get", "list", "watch"].contains(&verb) || (forward && verb == "create"),
                "inspector-role.yaml grants {verb} in {rule}"
            );
        }
        if resources.iter().any(|r| r == "pods/portforward") {
            forwards = true;
            assert_eq!(resources.len(), 1, "pods/portforward shares a rule");
            assert!(only_names(rule, &["seldon-scheduler-0"]), "{rule}");
            assert_eq!(rule["verbs"], json!(["get", "create"]));
        }
        assert!(
            !resources.iter().any(|r| r == "pods" || r == "secrets"),
            "the inspector reads no pod specs and no Secrets: {rule}"
        );
        if resources.iter().any(|r| r == "configmaps") {
            assert!(
                only_names(
                    rule,
                    &["hodometer-consent", "hodometer-status", "hodometer-ledger"]
                ),
                "{rule}"
            );
        }
    }
    assert!(forwards, "no pods/portforward rule");
    let reads = |resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|x| x == resource))
                && r["verbs"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v == verb))
        })
    };
    assert!(reads("services", "get") && reads("endpointslices", "list"));
}

#[test]
fn consent_status_and_ledger_configmaps_ship_empty() {
    for (file, name) in [
        ("consent-configmap.yaml", "hodometer-consent"),
        ("status-configmap.yaml", "hodometer-status"),
        ("ledger-configmap.yaml", "hodometer-ledger"),
    ] {
        let doc = load(file);
        assert_eq!(doc["kind"], "ConfigMap");
        assert_eq!(doc["metadata"]["name"], name);
        // No `level`: METRICS_LEVEL rules until someone approves, as the original.
        assert!(doc["data"].is_null(), "{doc}");
    }
}

#[test]
fn the_role_grants_exactly_the_secrets_the_deployment_names() {
    let env = deployment_env(&load("deployment.yaml"));
    let named: BTreeSet<String> = env
        .iter()
        .filter(|(name, _)| name.ends_with("_TLS_SECRET_NAME"))
        .map(|(_, value)| value.clone())
        .collect();
    let role = load("role.yaml");
    let granted: BTreeSet<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["resources"] == json!(["secrets"]))
        .flat_map(|r| r["resourceNames"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    assert_eq!(named.len(), 2, "{env:?}");
    assert_eq!(granted, named);
}

#[test]
fn the_daemon_runs_as_the_original_pod_locked_down() {
    let deployment = load("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "hodometer");
    assert_eq!(pod["terminationGracePeriodSeconds"], 5);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["runAsGroup"], 1000);
    assert!(pod["volumes"].is_null(), "the original mounts no volume");
    let container = container(&deployment);
    // No args and no command: the image's entrypoint (`hodometer daemon`) runs, as the original's.
    assert!(container["args"].is_null(), "{}", container["args"]);
    assert!(container["command"].is_null(), "{}", container["command"]);
    assert!(container["volumeMounts"].is_null());
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    let resources = &container["resources"];
    assert_eq!(resources["requests"]["cpu"], "1m");
    assert_eq!(resources["requests"]["memory"], "32Mi");
    assert_eq!(resources["limits"]["memory"], "32Mi");

    let names: Vec<String> = deployment_env(&deployment)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in ORIGINAL_ENV {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from the Deployment"
        );
    }
}

#[test]
fn every_variable_of_the_original_pod_is_accepted_and_the_daemon_publishes() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    // Exactly the manifest's variables and values, pointed at loopback; no flags, as in the pod.
    let mut daemon = hodometer(&["daemon", "--once"]);
    for (name, value) in deployment_env(&load("deployment.yaml")) {
        let value = match name.as_str() {
            "SCHEDULER_HOST" => "127.0.0.1".to_string(),
            "SCHEDULER_PLAINTXT_PORT" => sim.port_arg(),
            "PUBLISH_URL" => format!("http://127.0.0.1:{}", receiver.port),
            _ => value,
        };
        daemon.env(name, value);
    }
    let out = daemon.output().expect("run daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "configuration refused: {stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    let (status, body) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    assert_eq!(status, 200);
    let events: Vec<Value> = serde_json::from_str(&body).expect("events JSON");
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["properties"]["model_count"], 3, "{body}");
    assert_eq!(events[0]["properties"]["metrics_level"], "feature");
}

fn collect_table(env: &[(&str, &str)]) -> String {
    let mut command = hodometer(&["collect", "--no-kube", "--output", "table"]);
    command.env("SCHEDULER_HOST", "127.0.0.1");
    command.env("METRICS_LEVEL", "resource");
    command.envs(env.iter().copied());
    stdout_of(&mut command)
}

#[test]
fn scheduler_port_is_an_alias_and_the_codes_name_wins() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let port = sim.port_arg();
    let alias = collect_table(&[("SCHEDULER_PORT", &port)]);
    assert!(
        alias.contains(&format!("127.0.0.1:{port} (port from SCHEDULER_PORT)")),
        "{alias}"
    );
    assert!(row(&alias, "model_count").contains(" 3"), "{alias}");

    let dead = dead_port();
    let both = collect_table(&[
        ("SCHEDULER_PORT", &dead),
        ("SCHEDULER_PLAINTXT_PORT", &port),
    ]);
    assert!(
        both.contains(&format!(
            "127.0.0.1:{port} (port from --scheduler-port (SCHEDULER_PLAINTXT_PORT))"
        )),
        "{both}"
    );
    assert!(row(&both, "model_count").contains(" 3"), "{both}");
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn kustomization_lists_every_manifest_and_renders() {
    let kustomization = load("kustomization.yaml");
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dir = format!("{}/assets/k8s", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(&dir).expect("assets/k8s") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name.as_str()),
                "{name} not in kustomization.yaml"
            );
        }
    }
    let docs: Vec<Value> = listed.iter().map(|name| load(name)).collect();
    let expected: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    assert_eq!(kinds(&docs), expected);

    // kubectl's own kustomize, where it is installed (Debian: kubernetes-client).
    let rendered = match Command::new("kubectl").args(["kustomize", &dir]).output() {
        Ok(out) => out,
        Err(_) => {
            println!("SKIPPED kubectl kustomize: kubectl is not installed");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&stdout).expect("rendered YAML");
    assert_eq!(kinds(&rendered), expected);
    let deployment = rendered
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    assert_eq!(
        container(deployment)["image"],
        container(&load("deployment.yaml"))["image"]
    );
}

#[test]
fn seldon_runtime_override_swaps_only_the_image() {
    let doc: Value = serde_saphyr::from_str(&asset("seldon/seldonruntime-override.yaml"))
        .expect("override is YAML");
    assert_eq!(doc["apiVersion"], "mlops.seldon.io/v1alpha1");
    assert_eq!(doc["kind"], "SeldonRuntime");
    let overrides = doc["spec"]["overrides"].as_array().expect("overrides");
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0]["name"], "hodometer");
    let containers = overrides[0]["podSpec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "hodometer");
    let keys: BTreeSet<&str> = containers[0]
        .as_object()
        .expect("container")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["image", "name"]));
}

/// The optional admission policy: rendered by kubectl's kustomize, it binds a policy that denies
/// every change to hodometer-status's data except by the reporter's own service account.
#[test]
fn the_optional_status_guard_lets_only_the_reporter_write_the_status() {
    let dir = format!("{}/assets/k8s/status-guard", env!("CARGO_MANIFEST_DIR"));
    let rendered = Command::new("kubectl")
        .args(["kustomize", &dir])
        .output()
        .expect("kubectl is installed (Debian: kubernetes-client; .ci/run installs it)");
    assert!(
        rendered.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&rendered.stdout)).expect("YAML");
    let expected: BTreeSet<String> = [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    assert_eq!(kinds(&docs), expected);
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("policy");
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .expect("binding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    // It applies to the status ConfigMap only, on create and update.
    let condition = policy["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .expect("matchCondition");
    assert_eq!(condition, "request.name == 'hodometer-status'");
    let rules = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rules["resources"], serde_json::json!(["configmaps"]));
    assert_eq!(rules["operations"], serde_json::json!(["CREATE", "UPDATE"]));
    // The one writer it lets change the data is the reporter's shipped service account, in the
    // namespace the binding selects.
    let account = load("serviceaccount.yaml");
    let namespace = account["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    let user = format!(
        "system:serviceaccount:{namespace}:{}",
        account["metadata"]["name"].as_str().expect("name")
    );
    let validation = policy["spec"]["validations"][0]["expression"]
        .as_str()
        .expect("validation");
    assert!(
        validation.starts_with(&format!("request.userInfo.username == '{user}' ||")),
        "{validation}"
    );
    assert!(validation.contains("object.data") && validation.contains("oldObject.data"));
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        namespace
    );
    // Not part of the base: applying assets/k8s/ alone never installs it.
    let base = load("kustomization.yaml");
    assert!(!base.to_string().contains("status-guard"));
}
