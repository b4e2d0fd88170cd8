//! The deployment manifests in assets/k8s/ keep their promises: read-only RBAC and a locked-down,
//! small daemon configured by the original's environment variables.

use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/assets/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Whether a rule is limited to exactly these object names.
fn only_names(rule: &Value, names: &[&str]) -> bool {
    rule["resourceNames"] == serde_json::json!(names)
}

#[test]
fn rbac_only_reads_except_the_status_it_writes() {
    for name in ["role.yaml", "clusterrole.yaml"] {
        let doc = load(name);
        for rule in doc["rules"].as_array().expect("rules") {
            for verb in rule["verbs"].as_array().expect("verbs") {
                let verb = verb.as_str().expect("verb");
                let reads = ["get", "list", "watch"].contains(&verb);
                // The one write: patching the status ConfigMap the manifests create.
                let writes_status = ["update", "patch"].contains(&verb)
                    && rule["resources"] == serde_json::json!(["configmaps"])
                    && only_names(rule, &["hodometer-status"]);
                assert!(reads || writes_status, "{name} grants {verb} in {rule}");
                assert_ne!(verb, "create", "{name}: create cannot be limited by name");
            }
            if rule["resources"] == serde_json::json!(["configmaps"]) {
                assert!(
                    only_names(rule, &["hodometer-status"])
                        || only_names(rule, &["hodometer-consent"]),
                    "{name}: ConfigMap access must name its objects: {rule}"
                );
            }
        }
    }
    let cluster = load("clusterrole.yaml");
    let rules = cluster["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"], serde_json::json!(["nodes"]));
    assert_eq!(rules[0]["verbs"], serde_json::json!(["list"]));
}

#[test]
fn the_consent_editor_role_only_edits_the_consent() {
    let role = load("consent-editor-role.yaml");
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["name"], "hodometer-consent-editor");
    let rules = role["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["resources"], serde_json::json!(["configmaps"]));
    assert!(only_names(&rules[0], &["hodometer-consent"]));
    assert_eq!(
        rules[0]["verbs"],
        serde_json::json!(["get", "update", "patch"])
    );
}

#[test]
fn consent_and_status_configmaps_ship_empty() {
    let path = format!(
        "{}/assets/k8s/consent-configmaps.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("consent-configmaps.yaml");
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).expect("YAML documents");
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["hodometer-consent", "hodometer-status"]);
    for doc in &docs {
        assert_eq!(doc["kind"], "ConfigMap");
        // No `level`: METRICS_LEVEL rules until someone approves, as the original.
        assert!(doc["data"].is_null(), "{doc}");
    }
}

#[test]
fn the_daemon_runs_locked_down_and_small() {
    let deployment = load("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "hodometer");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["daemon"]));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["resources"]["limits"]["memory"], "32Mi");

    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in [
        "METRICS_LEVEL",
        "SCHEDULER_HOST",
        "SCHEDULER_PLAINTXT_PORT",
        "SCHEDULER_TLS_PORT",
        "CONTROL_PLANE_SECURITY_PROTOCOL",
        "PUBLISH_URL",
        "EXTRA_PUBLISH_URLS",
        "LOG_LEVEL",
        "POD_NAMESPACE",
    ] {
        assert!(env.contains(&name), "{name} missing from the Deployment");
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = load("kustomization.yaml");
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dir = format!("{}/assets/k8s", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).expect("assets/k8s") {
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
}
