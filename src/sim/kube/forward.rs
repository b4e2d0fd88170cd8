//! The stand-in's side of reaching the scheduler from outside the cluster, as a real API server
//! and kubelet serve it: Service `seldon-scheduler` with named ports, its EndpointSlice naming
//! the one scheduler pod (Ready or not), that pod, and `pods/{name}/portforward` over WebSocket
//! (`v4.channel.k8s.io`) reaching the simulator's own gRPC listeners.
//!
//! The pod can be replaced (`hodometer sim` does it on SIGUSR1): the new pod has another name
//! and another target port, is not Ready for [`REPLACEMENT_READY_AFTER`], and every forward to
//! the old pod is cut, as when a pod dies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use super::{SIM_NAMESPACE, World, denial, denial_of, ok, status};

const SERVICE: &str = "seldon-scheduler";
/// The Service's ports: (name, port). The pod's container ports carry the same names.
const PLAIN: (&str, u16) = ("scheduler", 9004);
const MTLS: (&str, u16) = ("scheduler-mtls", 9044);
/// How long a replacement pod takes to become Ready.
pub const REPLACEMENT_READY_AFTER: Duration = Duration::from_secs(1);

/// The scheduler pod behind the Service, and where its ports really lead.
pub struct SchedulerPods {
    /// The simulator's plaintext and mutual-TLS listeners (forwarded to only with `tools`).
    #[cfg_attr(not(feature = "tools"), allow(dead_code))]
    plain: Option<SocketAddr>,
    #[cfg_attr(not(feature = "tools"), allow(dead_code))]
    mtls: Option<SocketAddr>,
    state: Mutex<PodState>,
    /// The current generation: forwards to an older one are cut.
    generation: watch::Sender<u64>,
}

#[derive(Clone, Copy)]
struct PodState {
    generation: u64,
    ready_at: Instant,
}

/// The pod of one generation, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub generation: u64,
    pub ready: bool,
    /// Its container ports: plaintext and mutual TLS.
    pub plain_port: u16,
    pub mtls_port: u16,
}

impl SchedulerPods {
    pub fn new(plain: Option<SocketAddr>, mtls: Option<SocketAddr>) -> SchedulerPods {
        SchedulerPods {
            plain,
            mtls,
            state: Mutex::new(PodState {
                generation: 0,
                ready_at: Instant::now(),
            }),
            generation: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PodState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current(&self) -> PodView {
        let state = *self.lock();
        let offset = u16::try_from(state.generation % 20).unwrap_or(0);
        PodView {
            name: format!("{SERVICE}-{}", state.generation),
            generation: state.generation,
            ready: Instant::now() >= state.ready_at,
            plain_port: PLAIN.1 + offset,
            mtls_port: MTLS.1 + offset,
        }
    }

    /// The pod dies and another takes its place: another name, another target port, Ready a
    /// moment later; forwards to the old pod are cut.
    pub fn replace(&self) -> PodView {
        {
            let mut state = self.lock();
            state.generation += 1;
            state.ready_at = Instant::now() + REPLACEMENT_READY_AFTER;
            self.generation.send_replace(state.generation);
        }
        self.current()
    }

    /// Where a forward to `port` of the current pod leads, or the kubelet's refusal.
    #[cfg(feature = "tools")]
    fn backend(&self, pod: &PodView, port: u16) -> Result<SocketAddr, String> {
        let backend = if port == pod.plain_port {
            self.plain
        } else if port == pod.mtls_port {
            self.mtls
        } else {
            None
        };
        backend.ok_or_else(|| {
            format!(
                "error forwarding port {port} to pod {}, uid : failed to connect to localhost:{port} inside namespace \"{SIM_NAMESPACE}\": connect: connection refused",
                pod.name
            )
        })
    }
}

pub(super) fn routes() -> Router<Arc<World>> {
    let router = Router::new()
        .route("/api/v1/namespaces/{ns}/services/{name}", get(service))
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            get(endpoint_slices),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(pod));
    #[cfg(feature = "tools")]
    let router = router.route(
        "/api/v1/namespaces/{ns}/pods/{name}/portforward",
        get(websocket::portforward),
    );
    router
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
    )
}

async fn service(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = denial_of(
        &world,
        &headers,
        ("", "services"),
        "get",
        false,
        Some(&name),
    ) {
        return denied;
    }
    if ns != SIM_NAMESPACE || name != SERVICE {
        return not_found("services", &name);
    }
    let port = |(name, port): (&str, u16)| json!({"name": name, "port": port, "protocol": "TCP", "targetPort": name});
    ok(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": SIM_NAMESPACE,
                     "labels": {"app.kubernetes.io/name": SERVICE}},
        "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.40",
            "selector": {"app": SERVICE},
            "ports": [
                {"name": "xds", "port": 9002, "protocol": "TCP", "targetPort": 9002},
                port(PLAIN), port(MTLS),
            ],
        },
    }))
}

async fn endpoint_slices(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = denial(
        &world,
        &headers,
        ("discovery.k8s.io", "endpointslices"),
        "list",
        false,
    ) {
        return denied;
    }
    let selector = params.get("labelSelector").map(String::as_str);
    let selected = selector
        .is_none_or(|s| s.is_empty() || s == format!("kubernetes.io/service-name={SERVICE}"));
    let items = if ns == SIM_NAMESPACE && selected {
        let pod = world.pods.current();
        vec![json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{SERVICE}-x7k2p"), "namespace": SIM_NAMESPACE,
                         "labels": {"kubernetes.io/service-name": SERVICE}},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": [format!("10.244.0.{}", 10 + pod.generation % 200)],
                "conditions": {"ready": pod.ready, "serving": pod.ready, "terminating": false},
                "targetRef": {"kind": "Pod", "name": pod.name, "namespace": SIM_NAMESPACE},
            }],
            "ports": [
                {"name": "xds", "port": 9002, "protocol": "TCP"},
                {"name": PLAIN.0, "port": pod.plain_port, "protocol": "TCP"},
                {"name": MTLS.0, "port": pod.mtls_port, "protocol": "TCP"},
            ],
        })]
    } else {
        Vec::new()
    };
    ok(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "1"}, "items": items,
    }))
}

/// The scheduler pod (no environment: the stand-in's pods carry none).
async fn pod(
    State(world): State<Arc<World>>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(denied) = denial_of(&world, &headers, ("", "pods"), "get", false, Some(&name)) {
        return denied;
    }
    let pod = world.pods.current();
    if ns != SIM_NAMESPACE || name != pod.name {
        return not_found("pods", &name);
    }
    let ready = if pod.ready { "True" } else { "False" };
    ok(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": SIM_NAMESPACE, "labels": {"app": SERVICE}},
        "spec": {"containers": [{
            "name": "scheduler", "image": "docker.io/seldonio/seldon-scheduler:2.9.1",
            "ports": [
                {"name": PLAIN.0, "containerPort": pod.plain_port, "protocol": "TCP"},
                {"name": MTLS.0, "containerPort": pod.mtls_port, "protocol": "TCP"},
            ],
        }]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
    }))
}

/// `pods/{name}/portforward` over WebSocket, as the API server proxies it to the kubelet.
#[cfg(feature = "tools")]
mod websocket {
    use super::super::authorize;
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use futures::{SinkExt, StreamExt};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The only port-forward protocol served (no SPDY tunnelled over WebSocket).
    const PROTOCOL: &str = "v4.channel.k8s.io";

    pub(super) async fn portforward(
        State(world): State<Arc<World>>,
        Path((ns, name)): Path<(String, String)>,
        mut request: Request,
    ) -> Response {
        let headers = request.headers().clone();
        // A WebSocket upgrade is a GET; newer API servers also ask for `create` on it.
        for verb in ["get", "create"] {
            if let Err(refused) = authorize(
                &world,
                &headers,
                ("", "pods/portforward"),
                verb,
                false,
                Some(&name),
            ) {
                return *refused;
            }
        }
        let pod = world.pods.current();
        if ns != SIM_NAMESPACE || name != pod.name {
            return not_found("pods", &name);
        }
        let ports = match requested_ports(request.uri().query().unwrap_or("")) {
            Ok(ports) => ports,
            Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let offers_v4 = header("sec-websocket-protocol")
            .is_some_and(|p| p.split(',').any(|p| p.trim() == PROTOCOL));
        let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let (true, true, Some(key)) = (upgrade, offers_v4, header("sec-websocket-key")) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "unable to upgrade connection: this stand-in serves only WebSocket {PROTOCOL}"
                ),
            );
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgraded = hyper::upgrade::on(&mut request);
        let generation = world.pods.generation.subscribe();
        let backends: Vec<Result<SocketAddr, String>> =
            ports.iter().map(|p| world.pods.backend(&pod, *p)).collect();
        tokio::spawn(async move {
            match upgraded.await {
                Ok(io) => {
                    let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None)
                        .await;
                    carry(ws, &ports, backends, generation, pod.generation).await;
                }
                Err(error) => tracing::debug!(%error, "port-forward upgrade failed"),
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            // Exactly what a real API server answers (some clients compare the value).
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Accept", accept)
            .header("Sec-WebSocket-Protocol", PROTOCOL)
            .body(Body::empty())
            .unwrap_or_else(|_| {
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "response",
                )
            })
    }

    /// Completes when the pod of `pod_generation` is replaced.
    async fn replaced(mut generation: watch::Receiver<u64>, pod_generation: u64) {
        let _ = generation
            .wait_for(|g| *g != pod_generation)
            .await
            .map(|_| ());
        // The simulator shutting down drops the sender: that is no replacement.
        if *generation.borrow() == pod_generation {
            std::future::pending::<()>().await;
        }
    }

    /// `ports=9004` or `ports=9004,9044`, possibly repeated.
    pub(super) fn requested_ports(query: &str) -> Result<Vec<u16>, String> {
        let mut ports = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "ports" {
                for port in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let port: u16 = port
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("invalid port {port:?}"))?;
                    ports.push(port);
                }
            }
        }
        if ports.is_empty() {
            return Err("at least one port must be given in ports=".into());
        }
        Ok(ports)
    }

    /// Carries one forward: per port i, channel 2i for data and 2i+1 for errors, each opened
    /// by a frame holding the port as two little-endian bytes. It ends when the client closes,
    /// when a port's connection ends, or when the pod is replaced.
    async fn carry<S>(
        ws: WebSocketStream<S>,
        ports: &[u16],
        backends: Vec<Result<SocketAddr, String>>,
        generation: watch::Receiver<u64>,
        pod_generation: u64,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        for (i, port) in ports.iter().enumerate() {
            let [lo, hi] = port.to_le_bytes();
            for channel in [2 * i as u8, 2 * i as u8 + 1] {
                if sink
                    .send(Message::binary(vec![channel, lo, hi]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let (from_pod, mut to_client) = mpsc::channel::<(u8, Vec<u8>)>(16);
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (i, backend) in backends.into_iter().enumerate() {
            let connected = match backend {
                Ok(addr) => tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("failed to connect to localhost:{}: {e}", ports[i])),
                Err(refusal) => Err(refusal),
            };
            match connected {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let (mut read, write) = tcp.into_split();
                    writers.push(Some(write));
                    let from_pod = from_pod.clone();
                    let channel = 2 * i as u8;
                    readers.push(tokio::spawn(async move {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            match read.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if from_pod
                                        .send((channel, buffer[..n].to_vec()))
                                        .await
                                        .is_err()
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                        // An empty payload: this port's connection ended.
                        let _ = from_pod.send((channel, Vec::new())).await;
                    }));
                }
                Err(message) => {
                    writers.push(None);
                    let mut frame = vec![2 * i as u8 + 1];
                    frame.extend_from_slice(message.as_bytes());
                    let _ = sink.send(Message::binary(frame)).await;
                }
            }
        }
        drop(from_pod);
        let replaced = replaced(generation, pod_generation);
        tokio::pin!(replaced);
        // With no port connected there is nothing to carry: the errors were sent, close.
        if writers.iter().all(Option::is_none) {
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Binary(bytes))) if bytes.len() > 1 => {
                        let index = usize::from(bytes[0] / 2);
                        // Data channels only: a client writes nothing on an error channel.
                        if bytes[0] % 2 == 0
                            && let Some(Some(writer)) = writers.get_mut(index)
                            && writer.write_all(&bytes[1..]).await.is_err()
                        {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                carried = to_client.recv() => match carried {
                    Some((_, bytes)) if bytes.is_empty() => break,
                    Some((channel, bytes)) => {
                        let mut frame = Vec::with_capacity(bytes.len() + 1);
                        frame.push(channel);
                        frame.extend_from_slice(&bytes);
                        // Flushed only once nothing more is waiting: fewer writes under load.
                        let sent = if to_client.is_empty() {
                            sink.send(Message::binary(frame)).await
                        } else {
                            sink.feed(Message::binary(frame)).await
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                () = &mut replaced => {
                    // The pod is gone: its connections end with it, without a goodbye.
                    for reader in &readers {
                        reader.abort();
                    }
                    return;
                }
            }
        }
        for reader in &readers {
            reader.abort();
        }
        let _ = sink.send(Message::Close(None)).await;
    }
}

#[cfg(all(test, feature = "tools"))]
mod tests {
    use super::websocket::requested_ports;
    use super::*;

    #[test]
    fn ports_are_read_as_kube_and_the_python_client_send_them() {
        assert_eq!(requested_ports("ports=9004"), Ok(vec![9004]));
        assert_eq!(requested_ports("ports=9004%2C9044"), Ok(vec![9004, 9044]));
        assert_eq!(
            requested_ports("ports=9004&ports=9044"),
            Ok(vec![9004, 9044])
        );
        assert!(requested_ports("ports=x").is_err());
        assert!(requested_ports("").is_err());
    }

    #[test]
    fn a_replaced_pod_has_another_name_and_port_and_is_ready_a_moment_later() {
        let pods = SchedulerPods::new(None, None);
        let first = pods.current();
        assert_eq!(
            (first.name.as_str(), first.plain_port, first.ready),
            ("seldon-scheduler-0", 9004, true)
        );
        let second = pods.replace();
        assert_eq!(second.name, "seldon-scheduler-1");
        assert_ne!(second.plain_port, first.plain_port);
        assert!(!second.ready, "a new pod is not Ready at once");
    }
}
