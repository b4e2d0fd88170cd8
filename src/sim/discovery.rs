//! API discovery for the Kubernetes stand-in: what kubectl reads before anything else (`/api`,
//! `/apis`, then each group version's resource list) to learn which resources exist, whether they
//! are namespaced and which verbs they take. Only the resources the stand-in serves are listed,
//! so kubectl's own checks ("the server doesn't have a resource type …") say the truth.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One resource of a group version, as discovery describes it.
struct Resource {
    name: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
}

const READ: &[&str] = &["get", "list"];
const CONFIGMAP_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// (group, version, resources): the group versions the stand-in serves.
const GROUP_VERSIONS: &[(&str, &str, &[Resource])] = &[
    (
        "",
        "v1",
        &[
            Resource {
                name: "configmaps",
                kind: "ConfigMap",
                namespaced: true,
                verbs: CONFIGMAP_VERBS,
                short_names: &["cm"],
            },
            Resource {
                name: "namespaces",
                kind: "Namespace",
                namespaced: false,
                verbs: &["get"],
                short_names: &["ns"],
            },
            Resource {
                name: "nodes",
                kind: "Node",
                namespaced: false,
                verbs: READ,
                short_names: &["no"],
            },
            Resource {
                name: "secrets",
                kind: "Secret",
                namespaced: true,
                verbs: &["get"],
                short_names: &[],
            },
        ],
    ),
    (
        "apps",
        "v1",
        &[
            Resource {
                name: "deployments",
                kind: "Deployment",
                namespaced: true,
                verbs: READ,
                short_names: &["deploy"],
            },
            Resource {
                name: "statefulsets",
                kind: "StatefulSet",
                namespaced: true,
                verbs: READ,
                short_names: &["sts"],
            },
        ],
    ),
    (
        "authentication.k8s.io",
        "v1",
        &[Resource {
            name: "selfsubjectreviews",
            kind: "SelfSubjectReview",
            namespaced: false,
            verbs: &["create"],
            short_names: &[],
        }],
    ),
    (
        "mlops.seldon.io",
        "v1alpha1",
        &[Resource {
            name: "servers",
            kind: "Server",
            namespaced: true,
            verbs: READ,
            short_names: &[],
        }],
    ),
];

/// The discovery routes; they need no state, so they merge into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api", get(|| async { json_response(core_versions()) }))
        .route("/apis", get(|| async { json_response(group_list()) }))
        .route(
            "/openapi/v3",
            get(|| async { json_response(openapi_index()) }),
        )
        .route(
            "/openapi/v3/api/v1",
            get(|| async { json_response(openapi_core_v1()) }),
        )
        .route(
            "/api/v1/namespaces/{name}",
            get(|Path(name): Path<String>| async move { namespace(&name) }),
        )
        .route(
            "/api/{version}",
            get(|Path(version): Path<String>| async move { resources_of("", &version) }),
        )
        .route(
            "/apis/{group}/{version}",
            get(
                |Path((group, version)): Path<(String, String)>| async move {
                    resources_of(&group, &version)
                },
            ),
        )
}

fn json_response(body: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The Seldon namespace exists (kubectl looks before it creates into it); no other does.
fn namespace(name: &str) -> Response {
    if name != super::service::SIM_NAMESPACE {
        return not_found(&format!("namespaces \"{name}\" not found"));
    }
    json_response(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }))
}

fn not_found(message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "NotFound", "code": 404,
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The OpenAPI v3 index: only the core group, where the ConfigMaps are.
fn openapi_index() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=hodometer-sim"}}})
}

/// Enough of the core group's OpenAPI v3 document for kubectl to see that the stand-in takes
/// `fieldValidation` on ConfigMap writes, so `kubectl apply` and `kubectl edit` validate on the
/// server instead of asking for a schema (the stand-in accepts any well-formed ConfigMap).
fn openapi_core_v1() -> Value {
    let field_validation = json!({
        "name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true},
    });
    let write = |action: &str| {
        json!({
            "parameters": [field_validation.clone()],
            "responses": {},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        })
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.2"},
        "paths": {
            "/api/v1/namespaces/{namespace}/configmaps": {"post": write("post")},
            "/api/v1/namespaces/{namespace}/configmaps/{name}": {
                "put": write("put"),
                "patch": write("patch"),
            },
        },
        "components": {"schemas": {}},
    })
}

fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

fn group_list() -> Value {
    let groups: Vec<Value> = GROUP_VERSIONS
        .iter()
        .filter(|(group, _, _)| !group.is_empty())
        .map(|(group, version, _)| {
            let group_version =
                json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({
                "name": group,
                "versions": [group_version.clone()],
                "preferredVersion": group_version,
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resources_of(group: &str, version: &str) -> Response {
    let Some((_, _, resources)) = GROUP_VERSIONS
        .iter()
        .find(|(g, v, _)| *g == group && *v == version)
    else {
        return not_found("the server could not find the requested resource");
    };
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = resources
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "singularName": r.kind.to_ascii_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
                "shortNames": r.short_names,
            })
        })
        .collect();
    json_response(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_in_the_list_has_its_resources() {
        let list = group_list();
        for group in list["groups"].as_array().expect("groups") {
            let name = group["name"].as_str().expect("name");
            let version = group["preferredVersion"]["version"]
                .as_str()
                .expect("version");
            assert!(
                resources_of(name, version).status().is_success(),
                "{name}/{version}"
            );
        }
        assert_eq!(resources_of("", "v1").status(), StatusCode::OK);
        assert_eq!(resources_of("nope", "v1").status(), StatusCode::NOT_FOUND);
    }
}
