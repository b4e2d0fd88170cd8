//! Reaching the scheduler from a laptop, as `kubectl port-forward` does but without a second
//! terminal or a local listening port: Service `seldon-scheduler` → its port named `scheduler`
//! (`scheduler-mtls` with TLS) → the target port (maybe named) and a Ready pod, both read from
//! the Service's EndpointSlices (never by listing pods, whose specs carry every environment
//! variable) → one WebSocket port-forward (`v4.channel.k8s.io`) per connection.
//!
//! [`Link`] is what the connection's users share: the state of the forward (open to which pod,
//! closed and why), so the inspector follows the forward itself rather than guessing from calls.
//! Opening a forward needs kube's `ws` feature, which only the `tools` build has: the daemon
//! runs in the pod network and reaches the Service directly.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use thiserror::Error;
use tokio::sync::watch;

use super::{KubeClient, KubeConnection, KubeTarget};

/// The scheduler's Service, as Seldon's Helm chart and operator name it.
pub const SCHEDULER_SERVICE: &str = "seldon-scheduler";
/// The Service's plaintext gRPC port name (9004).
pub const PLAINTEXT_PORT_NAME: &str = "scheduler";
/// The Service's mutual-TLS gRPC port name (9044).
pub const TLS_PORT_NAME: &str = "scheduler-mtls";
/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What to forward to: the Service and its port name, through the Kubernetes target.
#[derive(Clone, Debug)]
pub struct ForwardSpec {
    pub kube: KubeTarget,
    pub service: String,
    pub port_name: &'static str,
    /// The state of the forward, shared by every clone.
    pub link: Link,
}

impl ForwardSpec {
    pub fn new(kube: KubeTarget, tls: bool) -> ForwardSpec {
        ForwardSpec {
            kube,
            service: SCHEDULER_SERVICE.into(),
            port_name: if tls {
                TLS_PORT_NAME
            } else {
                PLAINTEXT_PORT_NAME
            },
            link: Link::default(),
        }
    }

    /// "port-forward to pod seldon-scheduler-0 via context X", or, before a pod was found,
    /// what would be forwarded.
    pub fn describe(&self) -> String {
        self.view().describe()
    }

    /// What people are shown of this forward, now.
    pub fn view(&self) -> ForwardView {
        ForwardView {
            service: self.service.clone(),
            port_name: self.port_name.to_string(),
            via: crate::k8s::describe_target(&self.kube),
            state: self.link.state(),
            fallback: self.kubectl_hint(),
        }
    }

    /// The `kubectl port-forward` command that does by hand what this does.
    pub fn kubectl_hint(&self) -> String {
        let namespace = crate::k8s::namespace_of(&self.kube);
        let port = if self.port_name == TLS_PORT_NAME {
            9044
        } else {
            9004
        };
        let flag = if self.port_name == TLS_PORT_NAME {
            "--scheduler-tls-port"
        } else {
            "--scheduler-port"
        };
        format!(
            "or forward by hand: `kubectl port-forward -n {namespace} svc/{} {port}` and pass {flag} {port}",
            self.service
        )
    }

    /// The Kubernetes client of this forward, built once and kept.
    pub async fn client(&self) -> Result<KubeClient, ForwardError> {
        let mut kept = self.link.0.client.lock().await;
        if let Some(client) = kept.as_ref() {
            return Ok(client.clone());
        }
        match super::connect(&self.kube, None).await {
            KubeConnection::Ready(client) => {
                *kept = Some(client.clone());
                Ok(client)
            }
            KubeConnection::NotConfigured => Err(ForwardError::Kube(
                "no kubeconfig to port-forward through".into(),
            )),
            KubeConnection::Unusable(reason) => Err(ForwardError::Kube(reason)),
        }
    }

    /// Which pod and port a new connection would go to, read now (a replaced pod is found).
    pub async fn resolve(&self) -> Result<(KubeClient, Resolved), ForwardError> {
        let client = self.client().await?;
        let namespace = client.namespace().to_string();
        let services: kube::Api<Service> =
            kube::Api::namespaced(client.client().clone(), &namespace);
        let service = services
            .get(&self.service)
            .await
            .map_err(|e| api_error(e, "get", "services", &self.service, &namespace))?;
        let slices: kube::Api<EndpointSlice> =
            kube::Api::namespaced(client.client().clone(), &namespace);
        let params = kube::api::ListParams::default()
            .labels(&format!("{SERVICE_NAME_LABEL}={}", self.service));
        let slices = slices
            .list(&params)
            .await
            .map_err(|e| api_error(e, "list", "endpointslices", &self.service, &namespace))?;
        let resolved = pick_target(&service, &slices.items, self.port_name)?;
        Ok((client, resolved))
    }
}

/// A forward as people are shown it: where it goes, through which context, and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardView {
    pub service: String,
    pub port_name: String,
    /// "context X".
    pub via: String,
    pub state: LinkState,
    /// The `kubectl port-forward` way around a refused forward.
    pub fallback: String,
}

impl ForwardView {
    pub fn describe(&self) -> String {
        let via = &self.via;
        match &self.state {
            LinkState::Open { pod, .. } | LinkState::Closed { pod, .. } => {
                format!("port-forward to pod {pod} via {via}")
            }
            _ => format!(
                "port-forward to service {} port {} via {via}",
                self.service, self.port_name
            ),
        }
    }
}

/// A pod and the port on it to forward to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub pod: String,
    pub port: u16,
}

/// The state of the forward, as its users see it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum LinkState {
    /// Nothing opened yet.
    #[default]
    Idle,
    Open {
        pod: String,
        port: u16,
    },
    /// The forward to `pod` ended (the pod went away, the stream broke): the next connection
    /// resolves and opens again.
    Closed {
        pod: String,
        reason: String,
    },
    /// No forward could be opened, and why (with the refused permission, when that is it);
    /// `permanent` when trying again will not help (a missing permission or object).
    Failed {
        reason: String,
        permanent: bool,
    },
}

#[derive(Default)]
struct LinkInner {
    state: watch::Sender<LinkState>,
    /// Which connection the state is about: a late "closed" of an old one changes nothing.
    generation: std::sync::atomic::AtomicU64,
    client: tokio::sync::Mutex<Option<KubeClient>>,
}

/// The forward's state and its Kubernetes client, shared by every clone of a [`ForwardSpec`].
#[derive(Clone, Default)]
pub struct Link(Arc<LinkInner>);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({:?})", *self.0.state.borrow())
    }
}

impl Link {
    pub fn state(&self) -> LinkState {
        self.0.state.borrow().clone()
    }

    /// Follows every change of the state.
    pub fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.0.state.subscribe()
    }

    /// A forward to `resolved` opened: its generation, for [`Link::closed`].
    pub fn opened(&self, resolved: &Resolved) -> u64 {
        let generation = self
            .0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.0.state.send_replace(LinkState::Open {
            pod: resolved.pod.clone(),
            port: resolved.port,
        });
        generation
    }

    /// The forward of `generation` ended; ignored when a newer one opened since.
    pub fn closed(&self, generation: u64, pod: &str, reason: String) {
        if self.0.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            self.0.state.send_replace(LinkState::Closed {
                pod: pod.to_string(),
                reason,
            });
        }
    }

    pub fn failed(&self, error: &ForwardError) {
        self.0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.state.send_replace(LinkState::Failed {
            reason: error.to_string(),
            permanent: error.is_permanent(),
        });
    }
}

/// Why no forward could be opened.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ForwardError {
    /// The API server refused a request: which verb on which resource, for the Role to grant.
    #[error("port-forward refused: forbidden: {verb} {resource}{names} (assets/k8s/inspector-role.yaml grants it)", names = named(.name))]
    Forbidden {
        verb: String,
        resource: String,
        name: Option<String>,
        message: String,
    },
    #[error("port-forward: {0}")]
    NotFound(String),
    #[error(
        "port-forward: service {service} has no Ready pod behind port {port_name} (its EndpointSlices list none)"
    )]
    NoReadyPod { service: String, port_name: String },
    #[error("port-forward: {0}")]
    Kube(String),
    /// The forward opened but the pod's side refused the port.
    #[error("port-forward to pod {pod}: {message}")]
    Pod { pod: String, message: String },
}

fn named(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" on {n:?}"))
        .unwrap_or_default()
}

impl ForwardError {
    /// Errors trying again will not fix: a missing permission or object, as opposed to a pod
    /// that is restarting or a stream that broke.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ForwardError::Forbidden { .. } | ForwardError::NotFound(_)
        )
    }
}

/// The API error of a read, in the words an operator acts on.
pub(crate) fn api_error(
    error: kube::Error,
    verb: &str,
    resource: &str,
    name: &str,
    namespace: &str,
) -> ForwardError {
    match error {
        kube::Error::Api(status) if status.code == 403 => ForwardError::Forbidden {
            verb: refused_verb(&status.message).unwrap_or(verb).to_string(),
            resource: resource.to_string(),
            name: None,
            message: status.message,
        },
        kube::Error::Api(status) if status.code == 404 => ForwardError::NotFound(format!(
            "{resource} {name:?} not found in namespace {namespace:?} ({})",
            status.message
        )),
        kube::Error::Api(status) => ForwardError::Kube(format!(
            "{verb} {resource}: {} {}",
            status.code, status.message
        )),
        other => ForwardError::Kube(format!("{verb} {resource}: {other}")),
    }
}

/// The verb a Forbidden message names ("… cannot create resource \"pods/portforward\" …").
fn refused_verb(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" cannot ")?;
    rest.split_whitespace().next()
}

/// The pure step: the Service's port named `port_name`, and the first Ready endpoint backed by
/// a pod in its EndpointSlices, with the port number the slice resolved (a named target port is
/// resolved by the endpoints controller, under the Service port's name).
pub fn pick_target(
    service: &Service,
    slices: &[EndpointSlice],
    port_name: &str,
) -> Result<Resolved, ForwardError> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .cloned()
        .unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.name.as_deref() == Some(port_name)) else {
        let names: Vec<String> = ports.iter().filter_map(|p| p.name.clone()).collect();
        return Err(ForwardError::NotFound(format!(
            "service {name} has no port named {port_name} (its ports: {})",
            if names.is_empty() {
                "none named".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let numeric_target = match &service_port.target_port {
        None => u16::try_from(service_port.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(_)) => None,
    };
    for slice in slices {
        let slice_port = slice
            .ports
            .as_ref()
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(port_name)))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = slice_port.or(numeric_target) else {
            continue;
        };
        let ready = slice.endpoints.iter().flatten().find(|e| {
            // A missing `ready` means ready (the API's own rule).
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let terminating = e
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            let pod = e
                .target_ref
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some("Pod") && r.name.is_some());
            ready && !terminating && pod
        });
        if let Some(pod) = ready
            .and_then(|e| e.target_ref.as_ref())
            .and_then(|r| r.name.clone())
        {
            return Ok(Resolved { pod, port });
        }
    }
    Err(ForwardError::NoReadyPod {
        service: name,
        port_name: port_name.to_string(),
    })
}

/// An open forward: the byte stream to the pod's port. The task that carries it reports its end
/// on the [`Link`].
#[cfg(feature = "tools")]
pub async fn open(spec: &ForwardSpec) -> Result<tokio::io::DuplexStream, ForwardError> {
    let result = open_once(spec).await;
    if let Err(error) = &result {
        if let ForwardError::Forbidden { message, .. } = error {
            // The API server's own words (who was refused), for the log.
            tracing::warn!(%message, "port-forward refused");
        }
        spec.link.failed(error);
    }
    result
}

#[cfg(feature = "tools")]
async fn open_once(spec: &ForwardSpec) -> Result<tokio::io::DuplexStream, ForwardError> {
    use k8s_openapi::api::core::v1::Pod;
    let (client, resolved) = spec.resolve().await?;
    let namespace = client.namespace().to_string();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.client().clone(), &namespace);
    let mut forwarder = pods
        .portforward(&resolved.pod, &[resolved.port])
        .await
        .map_err(|e| {
            let mut error = api_error(e, "create", "pods/portforward", &resolved.pod, &namespace);
            if let ForwardError::Forbidden { name, .. } = &mut error {
                *name = Some(resolved.pod.clone());
            }
            error
        })?;
    let missing = || ForwardError::Kube("the port-forward returned no stream".into());
    let stream = forwarder.take_stream(resolved.port).ok_or_else(missing)?;
    let pod_error = forwarder.take_error(resolved.port).ok_or_else(missing)?;
    let generation = spec.link.opened(&resolved);
    tracing::debug!(pod = %resolved.pod, port = resolved.port, "port-forward opened");
    let link = spec.link.clone();
    tokio::spawn(async move {
        // The pod's side reports at most one error; the sender is dropped when the forward ends.
        let reason = match pod_error.await {
            Some(message) => format!("the pod's side refused the port: {message}"),
            None => "the forward closed".to_string(),
        };
        let reason = match forwarder.join().await {
            Err(error) if reason == "the forward closed" => format!("the forward broke: {error}"),
            _ => reason,
        };
        tracing::debug!(pod = %resolved.pod, %reason, "port-forward ended");
        link.closed(generation, &resolved.pod, reason);
    });
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(target: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "seldon-scheduler"},
            "spec": {"ports": [
                {"name": "xds", "port": 9002, "targetPort": 9002},
                {"name": "scheduler", "port": 9004, "targetPort": target},
            ]},
        }))
        .expect("service")
    }

    fn slice(endpoints: serde_json::Value, port: u16) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "seldon-scheduler-abcde"},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "scheduler", "port": port, "protocol": "TCP"}],
        }))
        .expect("slice")
    }

    fn endpoint(pod: &str, ready: Option<bool>) -> serde_json::Value {
        json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready},
               "targetRef": {"kind": "Pod", "name": pod}})
    }

    #[test]
    fn a_named_target_port_is_resolved_by_the_endpoint_slice() {
        let resolved = pick_target(
            &service(json!("scheduler")),
            &[slice(
                json!([endpoint("seldon-scheduler-0", Some(true))]),
                9005,
            )],
            "scheduler",
        );
        assert_eq!(
            resolved,
            Ok(Resolved {
                pod: "seldon-scheduler-0".into(),
                port: 9005
            })
        );
    }

    #[test]
    fn only_ready_pods_are_picked_and_none_is_said() {
        let slices = [slice(
            json!([endpoint("old", Some(false)), endpoint("new", None)]),
            9004,
        )];
        let resolved = pick_target(&service(json!(9004)), &slices, "scheduler").expect("ready");
        assert_eq!(resolved.pod, "new", "a missing ready condition means ready");
        let none = [slice(json!([endpoint("old", Some(false))]), 9004)];
        let error = pick_target(&service(json!(9004)), &none, "scheduler").expect_err("none");
        assert!(matches!(error, ForwardError::NoReadyPod { .. }), "{error}");
    }

    #[test]
    fn a_missing_port_name_lists_the_ports_there_are() {
        let error = pick_target(&service(json!(9004)), &[], "scheduler-mtls").expect_err("none");
        let text = error.to_string();
        assert!(text.contains("no port named scheduler-mtls"), "{text}");
        assert!(text.contains("xds, scheduler"), "{text}");
        assert!(error.is_permanent());
    }

    #[test]
    fn a_refusal_names_the_verb_and_resource() {
        let status = kube::core::Status::failure(
            "pods \"seldon-scheduler-0\" is forbidden: User \"alice\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"seldon-mesh\"",
            "Forbidden",
        )
        .with_code(403);
        let error = api_error(
            kube::Error::Api(Box::new(status)),
            "get",
            "pods/portforward",
            "seldon-scheduler-0",
            "seldon-mesh",
        );
        let text = error.to_string();
        assert!(
            text.contains("forbidden: create pods/portforward"),
            "{text}"
        );
        assert!(error.is_permanent());
    }
}
