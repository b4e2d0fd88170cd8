//! Reads the Kubernetes API: the cluster's version and size, the operator's scope, the
//! scheduler's image tag, and the Servers' workloads. Only reads; every request has a timeout;
//! a missing permission makes only the metrics it feeds unknown, with the permission named.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PodSpec};
use kube::api::{ApiResource, DynamicObject, ListParams, ObjectList};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use super::workload::{ServerSummary, image_tag, operator_is_clusterwide, server_facts};
pub use crate::k8s::{KubeClient, KubeConnection, KubeTarget, connect};

pub const OPERATOR_DEPLOYMENT: &str = "seldon-v2-controller-manager";
pub const SCHEDULER_STATEFULSET: &str = "seldon-scheduler";
pub const SCHEDULER_CONTAINER: &str = "scheduler";
/// Items per page when listing: bounds memory whatever the cluster's size.
const PAGE_SIZE: u32 = 250;

/// Why a read produced no value, and whether the API server answered at all.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadError {
    pub reason: String,
    /// True when an HTTP answer came back (e.g. 403): the API is there, the read was refused.
    pub answered: bool,
    /// The HTTP status of the refusal, when the API server refused the read.
    pub status: Option<u16>,
}

/// Everything learnt from Kubernetes in one collection.
#[derive(Clone, Debug, PartialEq)]
pub enum KubeFacts {
    /// `--no-kube`.
    Disabled,
    /// No in-cluster service account and no kubeconfig: not a Kubernetes installation.
    NotConfigured,
    /// A configuration exists but cannot be used (unreadable kubeconfig, unknown context, …).
    Unusable(String),
    Read(Box<KubeReadings>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct KubeReadings {
    pub namespace: String,
    /// `gitVersion` and `platform` from `/version`.
    pub version: Result<(String, String), ReadError>,
    pub nodes: Result<u64, ReadError>,
    pub global_installation: Result<bool, ReadError>,
    pub scheduler_image_tag: Result<String, ReadError>,
    pub servers: Result<ServerSummary, ReadError>,
}

impl KubeReadings {
    /// Whether any read got an answer from the API server.
    pub fn answered(&self) -> bool {
        fn ok_or_answered<T>(r: &Result<T, ReadError>) -> bool {
            r.as_ref().map_or_else(|e| e.answered, |_| true)
        }
        ok_or_answered(&self.version)
            || ok_or_answered(&self.nodes)
            || ok_or_answered(&self.global_installation)
            || ok_or_answered(&self.scheduler_image_tag)
            || ok_or_answered(&self.servers)
    }
}

/// Connects (in-cluster service account, else kubeconfig) and runs every read concurrently.
pub async fn collect(target: &KubeTarget) -> KubeFacts {
    match connect(target, None).await {
        KubeConnection::Ready(ready) => collect_over(&ready, target.timeout).await,
        KubeConnection::NotConfigured => KubeFacts::NotConfigured,
        KubeConnection::Unusable(reason) => KubeFacts::Unusable(reason),
    }
}

/// Every read, over a client from [`connect`], each bounded by `timeout`.
pub async fn collect_over(ready: &KubeClient, timeout: Duration) -> KubeFacts {
    let client = ready.client();
    let namespace = ready.namespace().to_string();
    let t = timeout;
    let (version, nodes, global_installation, scheduler_image_tag, servers) = tokio::join!(
        bounded(t, "read /version", async {
            let info = client
                .apiserver_version()
                .await
                .map_err(|e| describe(&e, "read /version", None))?;
            Ok((info.git_version, info.platform))
        }),
        bounded(t, "list nodes", count_nodes(client.clone())),
        bounded(
            t,
            "get the operator Deployment",
            global_installation(client.clone(), &namespace)
        ),
        bounded(
            t,
            "get the scheduler StatefulSet",
            scheduler_image(client.clone(), &namespace)
        ),
        bounded(
            t,
            "list Servers and their workloads",
            server_summary(client.clone(), &namespace)
        ),
    );
    KubeFacts::Read(Box::new(KubeReadings {
        namespace,
        version,
        nodes,
        global_installation,
        scheduler_image_tag,
        servers,
    }))
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    read: impl Future<Output = Result<T, ReadError>>,
) -> Result<T, ReadError> {
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(ReadError {
                reason: format!("Kubernetes did not answer ({what}) within {timeout:?}"),
                answered: false,
                status: None,
            })
        })
}

/// Turns a kube error into a reason an operator can act on. `permission` names what a 403 lacks.
fn describe(error: &kube::Error, what: &str, permission: Option<&str>) -> ReadError {
    match error {
        kube::Error::Api(status) if status.code == 403 => ReadError {
            reason: match permission {
                Some(permission) => format!("forbidden: {what} needs {permission}"),
                None => format!("forbidden: {what}: {}", status.message),
            },
            answered: true,
            status: Some(status.code),
        },
        kube::Error::Api(status) => ReadError {
            reason: format!(
                "Kubernetes refused to {what}: {} {}: {}",
                status.code, status.reason, status.message
            ),
            answered: true,
            // A JSON `Status` without a code (0) says nothing about the HTTP status.
            status: (status.code != 0).then_some(status.code),
        },
        other => ReadError {
            // The cause itself ("Connection refused"), not the layers that carried it.
            reason: format!(
                "Kubernetes API unreachable ({what}): {}",
                crate::k8s::root_cause(other)
            ),
            answered: false,
            status: None,
        },
    }
}

const NODES_PERMISSION: &str = "a ClusterRole allowing list on nodes (assets/k8s/clusterrole.yaml)";
const ROLE_PERMISSION: &str = "the namespaced Role in assets/k8s/role.yaml";

/// Lists every page of `api`, handing each item to `visit`; memory holds one page at a time.
async fn for_each_page<K, F>(api: &Api<K>, what: &str, mut visit: F) -> Result<(), ReadError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
    F: FnMut(K),
{
    each_page(
        what,
        ROLE_PERMISSION,
        |params| async move { api.list(&params).await },
        |page| page.into_iter().for_each(&mut visit),
    )
    .await
}

/// The paging loop every list shares: `list` one page at a time (following `continue`), handing
/// each page's items to `visit`; a refusal names `permission`.
async fn each_page<T, L, Fut>(
    what: &str,
    permission: &str,
    list: L,
    mut visit: impl FnMut(Vec<T>),
) -> Result<(), ReadError>
where
    T: Clone,
    L: Fn(ListParams) -> Fut,
    Fut: Future<Output = kube::Result<ObjectList<T>>>,
{
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = list(params.clone())
            .await
            .map_err(|e| describe(&e, what, Some(permission)))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        visit(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// `node_count`: a paged metadata-only list, so no node specs or statuses are transferred.
async fn count_nodes(client: Client) -> Result<u64, ReadError> {
    let api: Api<Node> = Api::all(client);
    let api = &api;
    let mut count = 0u64;
    each_page(
        "list nodes",
        NODES_PERMISSION,
        |params| async move { api.list_metadata(&params).await },
        |page| {
            count += page.len() as u64;
        },
    )
    .await?;
    Ok(count)
}

/// `is_global_installation`: no operator Deployment in this namespace means it runs elsewhere,
/// cluster-wide; otherwise its own setting says.
async fn global_installation(client: Client, namespace: &str) -> Result<bool, ReadError> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let what = format!("get Deployment {OPERATOR_DEPLOYMENT} in namespace {namespace}");
    match api.get_opt(OPERATOR_DEPLOYMENT).await {
        Ok(None) => Ok(true),
        Ok(Some(deployment)) => operator_is_clusterwide(&deployment).map_err(|reason| ReadError {
            reason,
            answered: true,
            status: None,
        }),
        Err(error) => Err(describe(&error, &what, Some(ROLE_PERMISSION))),
    }
}

/// The `scheduler` container's image tag of StatefulSet `seldon-scheduler`.
async fn scheduler_image(client: Client, namespace: &str) -> Result<String, ReadError> {
    let api: Api<StatefulSet> = Api::namespaced(client, namespace);
    let what = format!("get StatefulSet {SCHEDULER_STATEFULSET} in namespace {namespace}");
    let answered = |reason: String| ReadError {
        reason,
        answered: true,
        status: None,
    };
    let statefulset = api
        .get_opt(SCHEDULER_STATEFULSET)
        .await
        .map_err(|e| describe(&e, &what, Some(ROLE_PERMISSION)))?
        .ok_or_else(|| {
            answered(format!(
                "StatefulSet {SCHEDULER_STATEFULSET} not found in namespace {namespace}"
            ))
        })?;
    let image = statefulset
        .spec
        .template
        .spec
        .iter()
        .flat_map(|pod| pod.containers.iter())
        .find(|c| c.name == SCHEDULER_CONTAINER)
        .and_then(|c| c.image.clone())
        .ok_or_else(|| {
            answered(format!(
                "StatefulSet {SCHEDULER_STATEFULSET} has no {SCHEDULER_CONTAINER} container image"
            ))
        })?;
    image_tag(&image)
        .map(str::to_string)
        .ok_or_else(|| answered("the scheduler image has no tag".into()))
}

/// The Seldon `Server` custom resource.
pub fn server_resource() -> ApiResource {
    ApiResource {
        group: "mlops.seldon.io".into(),
        version: "v1alpha1".into(),
        api_version: "mlops.seldon.io/v1alpha1".into(),
        kind: "Server".into(),
        plural: "servers".into(),
    }
}

/// A 404 on listing Servers means the Server custom resource is not installed: say so.
fn server_crd_missing(mut e: ReadError) -> ReadError {
    if e.status == Some(404) {
        e.reason = "the Server resource (servers.mlops.seldon.io/v1alpha1) is not installed".into();
    }
    e
}

/// The feature metrics over every Server: each one's workload is its StatefulSet, else its
/// Deployment, of the same name. Workloads are listed (two paged lists) rather than fetched one
/// by one, so a thousand Servers cost a handful of requests.
async fn server_summary(client: Client, namespace: &str) -> Result<ServerSummary, ReadError> {
    let servers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &server_resource());
    // Server name → its spec.serverConfig; small, whatever the workloads weigh.
    let mut pending: HashMap<String, Option<String>> = HashMap::new();
    for_each_page(
        &servers,
        "list servers.mlops.seldon.io",
        |server: DynamicObject| {
            let config = server
                .data
                .pointer("/spec/serverConfig")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if let Some(name) = server.metadata.name {
                pending.insert(name, config);
            }
        },
    )
    .await
    .map_err(server_crd_missing)?;

    let mut summary = ServerSummary::default();
    // The first Server whose quantities do not parse makes the sums unknown, not smaller.
    let mut unreadable: Option<String> = None;
    let mut add = |config: Option<String>, pod: Option<&PodSpec>, replicas: i32| match server_facts(
        config.as_deref(),
        pod,
        replicas,
    ) {
        Ok(facts) => summary.add(facts),
        Err(reason) => {
            unreadable.get_or_insert(reason);
        }
    };
    if !pending.is_empty() {
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        for_each_page(&statefulsets, "list statefulsets", |sts: StatefulSet| {
            if let Some(config) = sts.metadata.name.as_ref().and_then(|n| pending.remove(n)) {
                add(
                    config,
                    sts.spec.template.spec.as_ref(),
                    sts.spec.replicas.unwrap_or(1),
                );
            }
        })
        .await?;
    }
    if !pending.is_empty() {
        let deployments: Api<Deployment> = Api::namespaced(client, namespace);
        for_each_page(&deployments, "list deployments", |d: Deployment| {
            if let Some(config) = d.metadata.name.as_ref().and_then(|n| pending.remove(n)) {
                add(
                    config,
                    d.spec.template.spec.as_ref(),
                    d.spec.replicas.unwrap_or(1),
                );
            }
        })
        .await?;
    }
    // Servers whose workload does not exist (yet) still tell their kind.
    for (_, config) in pending {
        add(config, None, 0);
    }
    match unreadable {
        Some(reason) => Err(ReadError {
            reason,
            answered: true,
            status: None,
        }),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the server could not find the requested resource", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn refusals_carry_their_http_status() {
        let refused = describe(&api_error(404, "NotFound"), "list servers", None);
        assert_eq!(refused.status, Some(404));
        assert!(refused.answered);
        assert!(
            refused.reason.contains("404 NotFound"),
            "{}",
            refused.reason
        );
        let forbidden = describe(&api_error(403, "Forbidden"), "list nodes", Some("a role"));
        assert_eq!(forbidden.status, Some(403));
        assert_eq!(forbidden.reason, "forbidden: list nodes needs a role");
        let no_code = describe(&api_error(0, "Unknown"), "list servers", None);
        assert_eq!(no_code.status, None);
    }

    #[test]
    fn a_missing_server_crd_is_recognised_by_status_not_text() {
        let missing = server_crd_missing(describe(
            &api_error(404, "Failed to parse error data"),
            "list servers.mlops.seldon.io",
            None,
        ));
        assert!(
            missing.reason.contains("is not installed"),
            "{}",
            missing.reason
        );
        // A 404 whose text does not read " 404 " is still a missing resource…
        let bare = server_crd_missing(ReadError {
            reason: "404 page not found".into(),
            answered: true,
            status: Some(404),
        });
        assert!(bare.reason.contains("is not installed"), "{}", bare.reason);
        // …and other refusals that merely mention 404 keep their message.
        let other = ReadError {
            reason: "Kubernetes refused to list servers: 500 Internal: error 404 upstream".into(),
            answered: true,
            status: Some(500),
        };
        assert_eq!(server_crd_missing(other.clone()), other);
    }
}
