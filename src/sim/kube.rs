//! A minimal, read-only Kubernetes API stand-in: the reads hodometer makes, answered
//! over plain HTTP (or HTTPS, see [`TlsListener`]) with real Kubernetes JSON shapes (lists with
//! `continue` paging, metadata-only lists, `Status` objects for 401/403/404), generated from the
//! same population as the simulated scheduler so every metric has something to show. Secrets
//! come from a directory, re-read on every request, so a test can rotate one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::population::{KubeSpec, Scenario, ServerSpec, Workload};
use super::service::SIM_NAMESPACE;

// Seldon's own names for its control-plane workloads, spelt out here rather than imported from the
// collector: a fake that borrows the names it is testing cannot catch them being wrong.
const OPERATOR_DEPLOYMENT: &str = "seldon-v2-controller-manager";
const SCHEDULER_STATEFULSET: &str = "seldon-scheduler";
const SCHEDULER_CONTAINER: &str = "scheduler";

/// The bearer token the generated kubeconfig carries; anything else gets 401, as a real API would.
pub const SIM_TOKEN: &str = "hodometer-sim-token";
const MAX_PAGE: usize = 500;

struct World {
    kube: KubeSpec,
    servers: Vec<ServerSpec>,
    /// When set, only these grants are allowed, as RBAC would.
    grants: Option<Vec<Grant>>,
    /// Each subdirectory is a Secret in the Seldon namespace, each file in it a data key.
    secrets_dir: Option<PathBuf>,
}

/// One allowed (API group, resource, verb), from a Role (namespaced only) or a ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub cluster_scope: bool,
    /// `resourceNames`: when not empty, only requests for these objects (by name) are allowed.
    pub resource_names: Vec<String>,
}

#[derive(serde::Deserialize)]
struct RbacDocument {
    kind: String,
    #[serde(default)]
    rules: Vec<RbacRule>,
}

#[derive(serde::Deserialize)]
struct RbacRule {
    #[serde(rename = "apiGroups", default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(rename = "resourceNames", default)]
    resource_names: Vec<String>,
}

/// Reads the grants of a Role or ClusterRole manifest (such as `assets/k8s/role.yaml`).
pub fn load_grants(path: &std::path::Path) -> Result<Vec<Grant>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc: RbacDocument = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let cluster_scope = match doc.kind.as_str() {
        "Role" => false,
        "ClusterRole" => true,
        other => return Err(format!("expected a Role or ClusterRole, found {other:?}")),
    };
    let mut grants = Vec::new();
    for rule in doc.rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    grants.push(Grant {
                        group: group.clone(),
                        resource: resource.clone(),
                        verb: verb.clone(),
                        cluster_scope,
                        resource_names: rule.resource_names.clone(),
                    });
                }
            }
        }
    }
    Ok(grants)
}

/// The stand-in's routes over a scenario. `forbid` adds to the scenario's own forbidden
/// resources; `grants`, when given, allow nothing else; `secrets_dir` holds the Secrets.
pub fn router(
    scenario: &Scenario,
    forbid: &[String],
    grants: Option<Vec<Grant>>,
    secrets_dir: Option<PathBuf>,
) -> Router {
    let mut kube = scenario.kubernetes.clone();
    kube.forbid.extend(forbid.iter().cloned());
    let world = Arc::new(World {
        kube,
        servers: scenario.servers.clone(),
        grants,
        secrets_dir,
    });
    Router::new()
        .route("/version", get(version))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(secret))
        .route(
            "/apis/mlops.seldon.io/v1alpha1/namespaces/{ns}/servers",
            get(servers),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/statefulsets",
            get(statefulsets),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
            get(statefulset),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(deployments),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(deployment),
        )
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .with_state(world)
}

/// A kubeconfig pointing at the stand-in, with the Seldon namespace as the context's.
pub fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hodometer-sim\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: hodometer-sim\n  context:\n    cluster: hodometer-sim\n    user: hodometer-sim\n    namespace: {SIM_NAMESPACE}\ncurrent-context: hodometer-sim\nusers:\n- name: hodometer-sim\n  user:\n    token: {SIM_TOKEN}\n"
    )
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Authentication and RBAC, in the order a real API server applies them: the refusal, if any.
fn denial(
    world: &World,
    headers: &HeaderMap,
    group_resource: (&str, &str),
    verb: &str,
    cluster_scope: bool,
) -> Option<Response> {
    denial_of(world, headers, group_resource, verb, cluster_scope, None)
}

/// As [`denial`], for a request naming one object, which `resourceNames` may restrict.
fn denial_of(
    world: &World,
    headers: &HeaderMap,
    (group, resource): (&str, &str),
    verb: &str,
    cluster_scope: bool,
    name: Option<&str>,
) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(SIM_TOKEN) {
        return Some(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    // Every authenticated identity may read /version (system:public-info-viewer).
    let granted = resource == "version"
        || world.grants.as_ref().is_none_or(|grants| {
            grants.iter().any(|g| {
                g.group == group
                    && g.resource == resource
                    && g.verb == verb
                    && (g.cluster_scope || !cluster_scope)
                    && (g.resource_names.is_empty()
                        || name.is_some_and(|n| g.resource_names.iter().any(|r| r == n)))
            })
        });
    if !granted || world.kube.forbid.iter().any(|f| f == resource) {
        let scope = if cluster_scope {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{SIM_NAMESPACE}\"")
        };
        let message = format!(
            "{resource} is forbidden: User \"system:serviceaccount:{SIM_NAMESPACE}:hodometer\" cannot {verb} resource \"{resource}\" {scope}"
        );
        return Some(status(StatusCode::FORBIDDEN, "Forbidden", &message));
    }
    None
}

fn ok(body: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One page of `items` as a `kind` list, honouring `limit` and `continue` (an opaque offset).
fn page(
    params: &HashMap<String, String>,
    api_version: &str,
    kind: &str,
    items: Vec<Value>,
) -> Response {
    let start: usize = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match token.strip_prefix("sim-").and_then(|n| n.parse().ok()) {
            Some(offset) => offset,
            None => {
                return status(
                    StatusCode::GONE,
                    "Expired",
                    "the provided continue parameter is too old",
                );
            }
        },
        None => 0,
    };
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(MAX_PAGE)
        .min(MAX_PAGE);
    let end = (start + limit).min(items.len());
    let mut metadata = json!({"resourceVersion": "1"});
    if end < items.len() {
        metadata["continue"] = json!(format!("sim-{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    let items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    ok(json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}))
}

async fn version(State(world): State<Arc<World>>, headers: HeaderMap) -> Response {
    if let Some(denied) = denial(&world, &headers, ("", "version"), "get", true) {
        return denied;
    }
    let (major, minor) = world
        .kube
        .git_version
        .trim_start_matches('v')
        .split_once('.')
        .map(|(major, rest)| {
            (
                major.to_string(),
                rest.split('.').next().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default();
    ok(json!({
        "major": major, "minor": minor, "gitVersion": world.kube.git_version,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
        "platform": world.kube.platform,
    }))
}

async fn nodes(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = denial(&world, &headers, ("", "nodes"), "list", true) {
        return denied;
    }
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadataList"));
    let names = (0..world.kube.nodes).map(|i| format!("sim-node-{i}"));
    if metadata_only {
        let items = names
            .map(|name| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}}}))
            .collect();
        page(
            &params,
            "meta.k8s.io/v1",
            "PartialObjectMetadataList",
            items,
        )
    } else {
        let items = names
            .map(|name| json!({"metadata": {"name": name}, "spec": {}, "status": {"nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"}}}))
            .collect();
        page(&params, "v1", "NodeList", items)
    }
}

async fn servers(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = denial(
        &world,
        &headers,
        ("mlops.seldon.io", "servers"),
        "list",
        false,
    ) {
        return denied;
    }
    let items = in_namespace(&ns, &world.servers)
        .map(|s| {
            json!({
                "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server",
                "metadata": {"name": s.name, "namespace": SIM_NAMESPACE},
                "spec": {"serverConfig": s.kind, "replicas": workload_replicas(s)},
            })
        })
        .collect();
    page(&params, "mlops.seldon.io/v1alpha1", "ServerList", items)
}

fn in_namespace<'a>(ns: &str, servers: &'a [ServerSpec]) -> impl Iterator<Item = &'a ServerSpec> {
    servers.iter().filter(move |_| ns == SIM_NAMESPACE)
}

fn workload_replicas(server: &ServerSpec) -> i32 {
    if server.expected_replicas >= 0 {
        server.expected_replicas
    } else {
        server.available_replicas.max(0)
    }
}

/// The pod template the Seldon operator makes for a Server: rclone, agent and the inference
/// container named after the server kind.
fn server_pod(server: &ServerSpec) -> Value {
    let image = match server.kind.as_str() {
        "mlserver" => "docker.io/seldonio/mlserver:1.6.1".to_string(),
        "triton" => "nvcr.io/nvidia/tritonserver:23.05-py3".to_string(),
        other => format!("registry.example/{other}:latest"),
    };
    let mut inference = json!({
        "name": server.kind, "image": image,
        "resources": {"requests": {"cpu": server.cpu, "memory": "1G"}},
    });
    if server.gpus > 0 {
        inference["resources"]["limits"] = json!({"nvidia.com/gpu": server.gpus.to_string()});
    }
    json!({
        "metadata": {"labels": {"seldon-server-name": server.name}},
        "spec": {"containers": [
            {"name": "rclone", "image": "docker.io/seldonio/seldon-rclone:2.9.1",
             "resources": {"requests": {"cpu": "200m", "memory": "100M"}}},
            {"name": "agent", "image": "docker.io/seldonio/seldon-agent:2.9.1",
             "env": [{"name": "SELDON_SERVER_TYPE", "value": server.kind}],
             "resources": {"requests": {"cpu": "200m", "memory": "1G"}}},
            inference,
        ]},
    })
}

fn workload(kind: &str, name: &str, replicas: i32, template: Value) -> Value {
    let mut spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": template,
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": SIM_NAMESPACE},
        "spec": spec,
    })
}

fn scheduler_statefulset(world: &World) -> Value {
    let template = json!({"spec": {"containers": [{
        "name": SCHEDULER_CONTAINER,
        "image": format!("docker.io/seldonio/seldon-scheduler:{}", world.kube.seldon_version),
    }]}});
    workload("StatefulSet", SCHEDULER_STATEFULSET, 1, template)
}

fn operator_deployment(world: &World) -> Option<Value> {
    let operator = world.kube.operator.as_ref()?;
    let mut manager = json!({"name": "manager", "image": "docker.io/seldonio/seldonv2-controller:2.9.1", "args": operator.args});
    if let Some(value) = &operator.clusterwide_env {
        manager["env"] = json!([{"name": "CLUSTERWIDE", "value": value}]);
    }
    Some(workload(
        "Deployment",
        OPERATOR_DEPLOYMENT,
        1,
        json!({"spec": {"containers": [manager]}}),
    ))
}

/// Every object of one workload kind in the namespace, the Seldon control plane's included.
fn workloads(world: &World, ns: &str, kind: &str) -> Vec<Value> {
    let wanted = if kind == "StatefulSet" {
        Workload::StatefulSet
    } else {
        Workload::Deployment
    };
    let mut items: Vec<Value> = in_namespace(ns, &world.servers)
        .filter(|s| s.workload == wanted)
        .map(|s| workload(kind, &s.name, workload_replicas(s), server_pod(s)))
        .collect();
    if ns == SIM_NAMESPACE {
        let control_plane = if kind == "StatefulSet" {
            Some(scheduler_statefulset(world))
        } else {
            operator_deployment(world)
        };
        items.extend(control_plane);
    }
    items
}

async fn list_workloads(
    world: &World,
    headers: &HeaderMap,
    ns: &str,
    params: &HashMap<String, String>,
    kind: &str,
) -> Response {
    let resource = if kind == "StatefulSet" {
        "statefulsets"
    } else {
        "deployments"
    };
    if let Some(denied) = denial(world, headers, ("apps", resource), "list", false) {
        return denied;
    }
    page(
        params,
        "apps/v1",
        &format!("{kind}List"),
        workloads(world, ns, kind),
    )
}

async fn get_workload(
    world: &World,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
    kind: &str,
) -> Response {
    let resource = if kind == "StatefulSet" {
        "statefulsets"
    } else {
        "deployments"
    };
    if let Some(denied) = denial(world, headers, ("apps", resource), "get", false) {
        return denied;
    }
    match workloads(world, ns, kind)
        .into_iter()
        .find(|w| w["metadata"]["name"] == name)
    {
        Some(found) => ok(found),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{resource}.apps \"{name}\" not found"),
        ),
    }
}

async fn statefulsets(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    list_workloads(&world, &headers, &ns, &params, "StatefulSet").await
}

async fn deployments(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    list_workloads(&world, &headers, &ns, &params, "Deployment").await
}

async fn statefulset(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    get_workload(&world, &headers, &ns, &name, "StatefulSet").await
}

async fn deployment(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    get_workload(&world, &headers, &ns, &name, "Deployment").await
}

/// `GET` one Secret: the files of `secrets_dir/NAME`, read now, so rewriting one rotates it.
async fn secret(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = denial_of(&world, &headers, ("", "secrets"), "get", false, Some(&name)) {
        return denied;
    }
    let not_found = || {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
        )
    };
    // A name with a path in it cannot be a Secret; it must not escape the directory either.
    let valid_name = !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.');
    let Some(dir) = world
        .secrets_dir
        .as_ref()
        .filter(|_| ns == SIM_NAMESPACE && valid_name)
    else {
        return not_found();
    };
    match secret_data(&dir.join(&name)) {
        Some(data) => ok(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": SIM_NAMESPACE},
            "data": data,
        })),
        None => not_found(),
    }
}

/// Each regular file of `dir` as a data key with its base64 contents; `None` if `dir` is no directory.
fn secret_data(dir: &FsPath) -> Option<serde_json::Map<String, Value>> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut data = serde_json::Map::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let (Some(key), true) = (
            entry.file_name().to_str().map(str::to_string),
            path.is_file(),
        ) else {
            continue;
        };
        if let Ok(bytes) = std::fs::read(&path) {
            data.insert(key, Value::String(engine.encode(bytes)));
        }
    }
    Some(data)
}

/// How long a client may take over its TLS handshake before the stand-in moves on.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The stand-in over HTTPS: accepts TCP, completes the TLS handshake, hands the stream to axum.
/// Handshakes run one at a time, which is plenty for a test stand-in.
pub struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Serves the certificate and key (PEM) of `files`.
    pub fn new(
        listener: TcpListener,
        files: &super::tls::TlsFiles,
    ) -> Result<TlsListener, super::tls::TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |path: &FsPath, e: &dyn std::fmt::Display| super::tls::TlsError::Read {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        };
        let chain = CertificateDer::pem_file_iter(&files.server_cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| invalid(&files.server_cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(&files.server_key)
            .map_err(|e| invalid(&files.server_key, &e))?;
        crate::tls::install_crypto_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(&files.server_cert, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsListener {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.listener.accept().await else {
                // Out of descriptors or similar: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => tracing::debug!(%addr, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
