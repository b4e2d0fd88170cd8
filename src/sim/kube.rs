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

pub mod forward;
use super::service::SIM_NAMESPACE;
pub use forward::SchedulerPods;

// Seldon's own names for its control-plane workloads, spelt out here rather than imported from the
// collector: a fake that borrows the names it is testing cannot catch them being wrong.
const OPERATOR_DEPLOYMENT: &str = "seldon-v2-controller-manager";
const SCHEDULER_STATEFULSET: &str = "seldon-scheduler";
const SCHEDULER_CONTAINER: &str = "scheduler";

/// Who the API server takes the service account's token for.
pub const SIM_USER: &str = "system:serviceaccount:seldon-mesh:hodometer";
/// A second identity, the cluster administrator who applies manifests: RBAC does not bind it.
pub const SIM_ADMIN_USER: &str = "sim-admin";
/// A third identity, a person (an operator at a terminal, kubectl, the inspector): bound to what
/// [`Rbac::person`] grants, as a real cluster binds people to Roles.
pub const SIM_PERSON_USER: &str = "demo-operator@example.com";

/// The bearer tokens of one run of the stand-in, random, so no other local user can guess them:
/// they are written only into its 0600 kubeconfig (or kept in memory by the demo). Anything
/// else gets 401, as a real API would.
#[derive(Clone, PartialEq, Eq)]
pub struct SimTokens {
    /// The kubeconfig's current context: the service account ([`SIM_USER`]).
    pub service_account: String,
    /// Context `hodometer-sim-admin`: the administrator ([`SIM_ADMIN_USER`]).
    pub admin: String,
    /// The person ([`SIM_PERSON_USER`]): only in the kubeconfig [`person_kubeconfig`] writes.
    pub person: String,
}

impl SimTokens {
    pub fn random() -> SimTokens {
        let token = || {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        };
        SimTokens {
            service_account: token(),
            admin: token(),
            person: token(),
        }
    }
}

impl std::fmt::Debug for SimTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimTokens(..)")
    }
}
const MAX_PAGE: usize = 500;

struct World {
    tokens: SimTokens,
    kube: KubeSpec,
    servers: Vec<ServerSpec>,
    /// What each identity may do, as RBAC would.
    rbac: Rbac,
    /// The namespace's ConfigMaps (consent and status), written through the API.
    configmaps: ConfigMapStore,
    /// Each subdirectory is a Secret in the Seldon namespace, each file in it a data key.
    secrets_dir: Option<PathBuf>,
    /// The scheduler pod behind Service `seldon-scheduler`, reached by port-forward.
    pods: Arc<SchedulerPods>,
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

/// Who may do what: `None` allows everything (a stand-in without RBAC). The administrator
/// ([`SIM_ADMIN_TOKEN`]) is never restricted.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    /// The service account ([`SIM_TOKEN`]): the reporter.
    pub service_account: Option<Vec<Grant>>,
    /// The person ([`SIM_PERSON_TOKEN`]).
    pub person: Option<Vec<Grant>>,
}

/// Reads the grants of a Role or ClusterRole manifest (such as `assets/k8s/role.yaml`).
pub fn load_grants(path: &std::path::Path) -> Result<Vec<Grant>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_grants(&text)
}

/// The grants of a Role or ClusterRole manifest's text.
pub fn parse_grants(text: &str) -> Result<Vec<Grant>, String> {
    let doc: RbacDocument = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
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
/// resources; `rbac` says what each identity may do; `secrets_dir` holds the Secrets.
pub fn router(
    tokens: SimTokens,
    scenario: &Scenario,
    forbid: &[String],
    rbac: Rbac,
    secrets_dir: Option<PathBuf>,
) -> Router {
    router_with_pods(
        tokens,
        scenario,
        forbid,
        rbac,
        secrets_dir,
        Arc::new(SchedulerPods::new(None, None)),
    )
}

/// As [`router`], with the scheduler pod whose port-forwards reach the simulator's listeners.
pub fn router_with_pods(
    tokens: SimTokens,
    scenario: &Scenario,
    forbid: &[String],
    rbac: Rbac,
    secrets_dir: Option<PathBuf>,
    pods: Arc<SchedulerPods>,
) -> Router {
    let mut kube = scenario.kubernetes.clone();
    kube.forbid.extend(forbid.iter().cloned());
    let world = Arc::new(World {
        tokens,
        kube,
        servers: scenario.servers.clone(),
        rbac,
        secrets_dir,
        configmaps: ConfigMapStore::default(),
        pods,
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
        .merge(consent_routes())
        .merge(forward::routes())
        .merge(super::discovery::routes())
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .with_state(world)
}

/// A kubeconfig pointing at the stand-in, with the Seldon namespace as the context's: the
/// service account in the current context, the administrator in `hodometer-sim-admin`.
pub fn kubeconfig(addr: SocketAddr, tokens: &SimTokens) -> String {
    let SimTokens {
        service_account,
        admin,
        ..
    } = tokens;
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hodometer-sim\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: hodometer-sim\n  context:\n    cluster: hodometer-sim\n    user: hodometer-sim\n    namespace: {SIM_NAMESPACE}\n- name: hodometer-sim-admin\n  context:\n    cluster: hodometer-sim\n    user: hodometer-sim-admin\n    namespace: {SIM_NAMESPACE}\ncurrent-context: hodometer-sim\nusers:\n- name: hodometer-sim\n  user:\n    token: {service_account}\n- name: hodometer-sim-admin\n  user:\n    token: {admin}\n"
    )
}

/// A kubeconfig for the person ([`SimTokens::person`]) over HTTPS (kubectl sends a token only
/// over TLS), trusting `ca`: what the demo gives you for kubectl and `hodometer consent`.
pub fn person_kubeconfig(https: SocketAddr, ca: &FsPath, tokens: &SimTokens) -> String {
    let ca = Value::from(ca.display().to_string());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hodometer-demo\n  cluster:\n    certificate-authority: {ca}\n    server: https://{https}\ncontexts:\n- name: hodometer-demo\n  context:\n    cluster: hodometer-demo\n    user: {SIM_PERSON_USER}\n    namespace: {SIM_NAMESPACE}\ncurrent-context: hodometer-demo\nusers:\n- name: {SIM_PERSON_USER}\n  user:\n    token: {}\n",
        tokens.person
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
    authorize(world, headers, (group, resource), verb, cluster_scope, name)
        .err()
        .map(|refusal| *refusal)
}

/// Who a request's bearer token is, as the API server sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The kubeconfig's service account: subject to `--kube-rbac`.
    ServiceAccount,
    /// The cluster administrator who applies manifests: allowed everything.
    Admin,
    /// A person: subject to [`Rbac::person`].
    Person,
}

impl Caller {
    fn username(self) -> String {
        match self {
            Caller::ServiceAccount => SIM_USER.to_string(),
            Caller::Admin => SIM_ADMIN_USER.to_string(),
            Caller::Person => SIM_PERSON_USER.to_string(),
        }
    }
}

/// A refusal, boxed: a `Response` is large and refusals are the rare path.
type Refusal = Box<Response>;

fn authenticate(world: &World, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) if token == world.tokens.service_account => Ok(Caller::ServiceAccount),
        Some(token) if token == world.tokens.admin => Ok(Caller::Admin),
        Some(token) if token == world.tokens.person => Ok(Caller::Person),
        _ => Err(Box::new(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ))),
    }
}

/// Authentication, then RBAC (with `resourceNames` when the request names one object).
fn authorize(
    world: &World,
    headers: &HeaderMap,
    (group, resource): (&str, &str),
    verb: &str,
    cluster_scope: bool,
    name: Option<&str>,
) -> Result<Caller, Refusal> {
    let caller = authenticate(world, headers)?;
    // Every authenticated identity may read /version (system:public-info-viewer).
    let grants = match caller {
        Caller::Admin => None,
        Caller::ServiceAccount => world.rbac.service_account.as_ref(),
        Caller::Person => world.rbac.person.as_ref(),
    };
    let granted = caller == Caller::Admin
        || resource == "version"
        || grants.is_none_or(|grants| {
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
        let group_text = if group.is_empty() {
            String::new()
        } else {
            format!(" in API group \"{group}\"")
        };
        let subject = match name {
            Some(name) => format!("{resource} \"{name}\""),
            None => resource.to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\"{group_text} {scope}",
            caller.username()
        );
        return Err(Box::new(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &message,
        )));
    }
    Ok(caller)
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

// ---------------------------------------------------------------------------------------------
// ConfigMaps (consent and status) and SelfSubjectReview: the writes hodometer makes.
// ---------------------------------------------------------------------------------------------

/// The namespace's ConfigMaps, with a cluster-wide `resourceVersion` counter and a feed of
/// changes for watchers.
struct ConfigMapStore {
    state: std::sync::Mutex<ConfigMapState>,
    changes: tokio::sync::broadcast::Sender<WatchChange>,
}

#[derive(Default)]
struct ConfigMapState {
    items: std::collections::BTreeMap<String, Value>,
    version: u64,
}

#[derive(Clone)]
struct WatchChange {
    kind: &'static str,
    version: u64,
    object: Value,
}

impl Default for ConfigMapStore {
    fn default() -> Self {
        ConfigMapStore {
            state: std::sync::Mutex::default(),
            changes: tokio::sync::broadcast::channel(64).0,
        }
    }
}

impl ConfigMapStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConfigMapState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `object` under a new `resourceVersion` and tells the watchers.
    fn commit(&self, state: &mut ConfigMapState, kind: &'static str, mut object: Value) -> Value {
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        if let Some(name) = object["metadata"]["name"].as_str() {
            state.items.insert(name.to_string(), object.clone());
        }
        // No watcher is not an error.
        let _ = self.changes.send(WatchChange {
            kind,
            version: state.version,
            object: object.clone(),
        });
        object
    }

    /// Removes `name` (under a new `resourceVersion`, as watchers see it) and tells the watchers.
    fn remove(&self, state: &mut ConfigMapState, name: &str) -> Option<Value> {
        let mut object = state.items.remove(name)?;
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        let _ = self.changes.send(WatchChange {
            kind: "DELETED",
            version: state.version,
            object: object.clone(),
        });
        Some(object)
    }
}

fn consent_routes() -> Router<Arc<World>> {
    use axum::routing::post;
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(list_configmaps).post(create_configmap),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get(get_configmap)
                .put(update_configmap)
                .patch(patch_configmap)
                .delete(delete_configmap),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(self_subject_review),
        )
}

fn created(body: Value) -> Response {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn configmap_not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("configmaps \"{name}\" not found"),
    )
}

fn conflict(name: &str) -> Response {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn namespace_not_found(ns: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("namespaces \"{ns}\" not found"),
    )
}

/// The name a `fieldSelector` pins (`metadata.name=X` or `==X`); other selectors are refused, as
/// ConfigMaps support no other field.
fn selected_name(params: &HashMap<String, String>) -> Result<Option<String>, Refusal> {
    let Some(selector) = params.get("fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))
        .map(|name| Some(name.to_string()))
        .ok_or_else(|| {
            Box::new(bad_request(&format!(
                "unable to parse requested field selector {selector:?}: only metadata.name is supported"
            )))
        })
}

fn parse_body(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(&format!("the request body is not JSON: {e}"))))
}

async fn list_configmaps(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let name = match selected_name(&params) {
        Ok(name) => name,
        Err(refused) => return *refused,
    };
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = if watch { "watch" } else { "list" };
    if let Err(denied) = authorize(
        &world,
        &headers,
        ("", "configmaps"),
        verb,
        false,
        name.as_deref(),
    ) {
        return *denied;
    }
    let matches = move |object: &Value| {
        ns == SIM_NAMESPACE
            && name
                .as_deref()
                .is_none_or(|n| object["metadata"]["name"] == n)
    };
    if watch {
        return watch_configmaps(&world, &params, matches);
    }
    let (items, version) = {
        let state = world.configmaps.lock();
        let items: Vec<Value> = state
            .items
            .values()
            .filter(|o| matches(o))
            .cloned()
            .collect();
        (items, state.version)
    };
    let mut list = page(&params, "v1", "ConfigMapList", items);
    // The list's resourceVersion is where a watch continues from.
    if list.status().is_success() {
        let rewritten = async {
            let bytes = axum::body::to_bytes(list.into_body(), usize::MAX)
                .await
                .ok()?;
            let mut body: Value = serde_json::from_slice(&bytes).ok()?;
            body["metadata"]["resourceVersion"] = json!(version.to_string());
            Some(ok(body))
        };
        list = rewritten.await.unwrap_or_else(|| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "list failed",
            )
        });
    }
    list
}

/// A watch: the current objects as ADDED (unless a `resourceVersion` to continue from is
/// given), then every change, one JSON event per line, until `timeoutSeconds`.
fn watch_configmaps(
    world: &World,
    params: &HashMap<String, String>,
    matches: impl Fn(&Value) -> bool + Send + Sync + 'static,
) -> Response {
    let changes = world.configmaps.changes.subscribe();
    let since: Option<u64> = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let initial: Vec<String> = match since {
        Some(_) => Vec::new(),
        None => world
            .configmaps
            .lock()
            .items
            .values()
            .filter(|o| matches(o))
            .map(|o| format!("{}\n", json!({"type": "ADDED", "object": o})))
            .collect(),
    };
    let since = since.unwrap_or(0);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let live = futures::stream::unfold(
        (changes, matches),
        move |(mut changes, matches)| async move {
            let next = async {
                loop {
                    match changes.recv().await {
                        Ok(change) if change.version > since && matches(&change.object) => {
                            let line = json!({"type": change.kind, "object": change.object});
                            return Some(format!("{line}\n"));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            };
            let line = tokio::time::timeout_at(deadline, next)
                .await
                .ok()
                .flatten()?;
            Some((line, (changes, matches)))
        },
    );
    let stream = futures::StreamExt::map(
        futures::StreamExt::chain(futures::stream::iter(initial), live),
        Ok::<_, std::convert::Infallible>,
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn get_configmap(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(denied) = authorize(
        &world,
        &headers,
        ("", "configmaps"),
        "get",
        false,
        Some(&name),
    ) {
        return *denied;
    }
    let found = (ns == SIM_NAMESPACE)
        .then(|| world.configmaps.lock().items.get(&name).cloned())
        .flatten();
    match found {
        Some(object) => ok(object),
        None => configmap_not_found(&name),
    }
}

async fn create_configmap(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // RBAC cannot restrict `create` by name: no name is passed to the check.
    if let Err(denied) = authorize(&world, &headers, ("", "configmaps"), "create", false, None) {
        return *denied;
    }
    if ns != SIM_NAMESPACE {
        return namespace_not_found(&ns);
    }
    let mut object = match parse_body(&body) {
        Ok(object) => object,
        Err(refused) => return *refused,
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "ConfigMap \"\" is invalid: metadata.name: Required value: name is required",
        );
    };
    let store = &world.configmaps;
    let mut state = store.lock();
    if state.items.contains_key(&name) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("configmaps \"{name}\" already exists"),
        );
    }
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("ConfigMap");
    object["metadata"]["namespace"] = json!(SIM_NAMESPACE);
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] =
        json!(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    created(store.commit(&mut state, "ADDED", object))
}

/// DELETE: removes the object and answers with it, as the API server does for ConfigMaps.
async fn delete_configmap(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(denied) = authorize(
        &world,
        &headers,
        ("", "configmaps"),
        "delete",
        false,
        Some(&name),
    ) {
        return *denied;
    }
    if ns != SIM_NAMESPACE {
        return namespace_not_found(&ns);
    }
    let store = &world.configmaps;
    let mut state = store.lock();
    match store.remove(&mut state, &name) {
        Some(object) => ok(object),
        None => configmap_not_found(&name),
    }
}

/// PUT: replaces the object; a `resourceVersion` other than the stored one is a conflict.
async fn update_configmap(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let verb = "update";
    if let Err(denied) = authorize(
        &world,
        &headers,
        ("", "configmaps"),
        verb,
        false,
        Some(&name),
    ) {
        return *denied;
    }
    let object = match parse_body(&body) {
        Ok(object) => object,
        Err(refused) => return *refused,
    };
    if object["metadata"]["name"] != name.as_str() {
        return bad_request("the name of the object does not match the name on the URL");
    }
    write_configmap(&world, &ns, &name, &object, |_, new| new.clone())
}

/// PATCH: a JSON merge patch (also accepted as a strategic merge patch: for a ConfigMap's
/// string maps the two agree).
async fn patch_configmap(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorize(
        &world,
        &headers,
        ("", "configmaps"),
        "patch",
        false,
        Some(&name),
    ) {
        return *denied;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/merge-patch+json")
        && !content_type.starts_with("application/strategic-merge-patch+json")
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        );
    }
    let patch = match parse_body(&body) {
        Ok(patch) => patch,
        Err(refused) => return *refused,
    };
    write_configmap(&world, &ns, &name, &patch, |old, patch| {
        let mut merged = old.clone();
        merge_patch(&mut merged, patch);
        merged
    })
}

/// Stores `build(stored, request)` when the request's `resourceVersion`, if any, is current.
fn write_configmap(
    world: &World,
    ns: &str,
    name: &str,
    request: &Value,
    build: impl FnOnce(&Value, &Value) -> Value,
) -> Response {
    if ns != SIM_NAMESPACE {
        return namespace_not_found(ns);
    }
    let store = &world.configmaps;
    let mut state = store.lock();
    let Some(stored) = state.items.get(name) else {
        return configmap_not_found(name);
    };
    let current = &stored["metadata"]["resourceVersion"];
    let wanted = &request["metadata"]["resourceVersion"];
    if !wanted.is_null() && wanted != current {
        return conflict(name);
    }
    let mut object = build(stored, request);
    // What the server owns stays the server's.
    for key in ["uid", "creationTimestamp", "namespace", "name"] {
        object["metadata"][key] = stored["metadata"][key].clone();
    }
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("ConfigMap");
    ok(store.commit(&mut state, "MODIFIED", object))
}

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

/// `SelfSubjectReview`: every authenticated identity may ask who it is.
async fn self_subject_review(State(world): State<Arc<World>>, headers: HeaderMap) -> Response {
    match authenticate(&world, &headers) {
        Ok(caller) => {
            let groups = match caller {
                Caller::ServiceAccount => json!([
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{SIM_NAMESPACE}"),
                    "system:authenticated"
                ]),
                Caller::Admin => json!(["system:masters", "system:authenticated"]),
                Caller::Person => json!(["demo-operators", "system:authenticated"]),
            };
            created(json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {"username": caller.username(), "groups": groups}},
            }))
        }
        Err(refused) => *refused,
    }
}

#[cfg(test)]
mod consent_tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "h": "i"}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "h": "i"}));
    }

    #[test]
    fn role_rules_with_resource_names_are_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("role.yaml");
        std::fs::write(
            &path,
            "kind: Role\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  resourceNames: [hodometer-consent]\n  verbs: [get, watch]\n",
        )
        .expect("write");
        let grants = load_grants(&path).expect("grants");
        assert_eq!(grants.len(), 2);
        assert!(
            grants
                .iter()
                .all(|g| g.resource_names == ["hodometer-consent"])
        );
    }
}
