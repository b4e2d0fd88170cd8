//! Reads the Seldon scheduler's status API: `SchedulerStatus` (unary) and the four status
//! streams run concurrently over one connection, each within its own deadline, retried with
//! backoff while the scheduler is unavailable (the shared engine in [`crate::backoff`]), and
//! each stream folded item by item into a tally, so memory stays flat however many items come.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Response, Status, Streaming};

use super::aggregate::{ExperimentTally, ModelTally, PipelineTally, ServerTally, Tally};
use crate::backoff::{self, AttemptFailure, GaveUp, Jitter, PastDeadline, Stop, Verdict};
use crate::k8s::forward::{ForwardError, ForwardSpec};
use crate::proto::scheduler_client::SchedulerClient;
use crate::proto::{
    ExperimentStatusRequest, ModelStatusRequest, PipelineStatusRequest, SchedulerStatusRequest,
    ServerStatusRequest,
};
pub use crate::tls::ClientTls;
use crate::tls_secret::TlsSource;

/// The name hodometer subscribes under, visible in the scheduler's logs.
pub const SUBSCRIBER_NAME: &str = "hodometer";

/// Model statuses carry whole model definitions; gRPC's 4 MiB default is too tight for some.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows of the scheduler connection (see `connect`).
const STREAM_WINDOW_BYTES: u32 = 128 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 512 * 1024;
/// Over a port-forward each window update crosses the API server and a WebSocket, so the round
/// trip is far longer than on loopback: wider windows keep the stream flowing (the bytes in
/// flight are bounded all the same, by these).
const FORWARD_STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
const FORWARD_CONNECTION_WINDOW_BYTES: u32 = 4 * 1024 * 1024;

/// The generated client over one (lazy, reconnecting) channel.
pub type Client = SchedulerClient<Channel>;

#[derive(Clone, Debug)]
pub struct SchedulerTarget {
    /// How the scheduler is reached: its address, or a port-forward through the API server.
    pub route: Route,
    pub host: String,
    pub port: u16,
    /// Deadline for each call, retries included.
    pub rpc_timeout: Duration,
    /// Mutual TLS (`CONTROL_PLANE_SECURITY_PROTOCOL=SSL`); `port` is then the TLS port. Its
    /// material is loaded at every collection, so a rotated Secret is picked up.
    pub tls: Option<TlsSource>,
    /// How hard to try: [`CallPolicy::patient`] for collections, [`CallPolicy::fast_fail`] where a
    /// person waits for the answer.
    pub policy: CallPolicy,
}

/// How the scheduler is reached.
#[derive(Clone, Debug, Default)]
pub enum Route {
    /// `host:port`: an explicit address, the Service address in a pod, or `kubectl port-forward`.
    #[default]
    Direct,
    /// A port-forward hodometer opens itself through the API server, one per connection.
    Forward(ForwardSpec),
}

/// How hard each scheduler call tries. Only `Unavailable` and transport failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPolicy {
    /// The longest wait for a connection (TCP and TLS); never longer than `rpc_timeout`.
    pub connect_timeout: Duration,
    /// The retry schedule. Its deadline only shortens `rpc_timeout`, which always applies.
    pub backoff: backoff::Policy,
}

impl CallPolicy {
    /// Keeps trying until `rpc_timeout`: 100 ms doubling to 5 s, so a scheduler that is
    /// restarting or starts late is picked up within the deadline.
    pub fn patient() -> CallPolicy {
        CallPolicy {
            connect_timeout: Duration::from_secs(10),
            backoff: backoff::Policy {
                initial: Duration::from_millis(100),
                factor: 2,
                cap: Duration::from_secs(5),
                max_attempts: u32::MAX,
                // One client against one scheduler: nothing to spread out.
                jitter: Jitter::None,
                deadline: Duration::MAX,
                attempt_timeout: None,
                past_deadline: PastDeadline::WaitOut,
            },
        }
    }

    /// For someone watching: a 1 s connect timeout and one quick retry, so an unreachable
    /// scheduler is reported in about two seconds rather than at `rpc_timeout`.
    pub fn fast_fail() -> CallPolicy {
        CallPolicy {
            connect_timeout: Duration::from_secs(1),
            backoff: backoff::Policy {
                max_attempts: 2,
                past_deadline: PastDeadline::GiveUp,
                ..CallPolicy::patient().backoff
            },
        }
    }

    /// For a person's one-shot command, after a quick connection check: a few quick retries
    /// (100 ms doubling, about 1.5 s in all) so a scheduler that stumbles is still read, then it
    /// gives up rather than wait out `rpc_timeout`.
    pub fn brief() -> CallPolicy {
        CallPolicy {
            connect_timeout: Duration::from_secs(2),
            backoff: backoff::Policy {
                max_attempts: 5,
                past_deadline: PastDeadline::GiveUp,
                ..CallPolicy::patient().backoff
            },
        }
    }

    /// The schedule of one call whose deadline is `rpc_timeout`.
    fn for_call(&self, rpc_timeout: Duration) -> backoff::Policy {
        backoff::Policy {
            deadline: self.backoff.deadline.min(rpc_timeout),
            ..self.backoff
        }
    }
}

/// What to check when a scheduler on this machine (`host:port`) refuses connections: over
/// `kubectl port-forward`, the port-forward is not running.
pub fn port_forward_hint(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    ["localhost", "127.0.0.1", "[::1]"]
        .contains(&host)
        .then(|| {
            format!(
                "is `kubectl port-forward -n seldon-mesh svc/seldon-scheduler {port}:9004` running?"
            )
        })
}

impl SchedulerTarget {
    /// The port-forward, when the scheduler is reached through one.
    pub fn forward(&self) -> Option<&ForwardSpec> {
        match &self.route {
            Route::Forward(spec) => Some(spec),
            Route::Direct => None,
        }
    }

    /// `host:port`, bracketing IPv6 literals.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a scheduler call produced no value. Its text is the "unknown, because …" shown to people.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum CallError {
    #[error("{rpc}: no complete answer within {timeout:?} ({attempts} attempts){}", last_error_suffix(.last_error))]
    DeadlineExceeded {
        rpc: &'static str,
        timeout: Duration,
        attempts: u32,
        last_error: Option<String>,
    },
    #[error("{rpc}: no complete answer in {attempts} attempts{}", last_error_suffix(.last_error))]
    AttemptsExhausted {
        rpc: &'static str,
        attempts: u32,
        last_error: Option<String>,
    },
    #[error("{rpc}: {detail}")]
    Failed { rpc: &'static str, detail: String },
    #[error("scheduler address {address} is not usable: {detail}")]
    BadAddress { address: String, detail: String },
    /// The mutual-TLS material (from files or Secrets) could not be loaded.
    #[error("mutual TLS: {0}")]
    Tls(String),
}

fn last_error_suffix(last: &Option<String>) -> String {
    last.as_ref()
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default()
}

/// Everything learnt from the scheduler in one collection.
#[derive(Clone, Debug)]
pub struct SchedulerFacts {
    pub version: Result<String, CallError>,
    pub models: Result<ModelTally, CallError>,
    pub servers: Result<ServerTally, CallError>,
    pub pipelines: Result<PipelineTally, CallError>,
    pub experiments: Result<ExperimentTally, CallError>,
}

impl SchedulerFacts {
    pub(crate) fn all_failed(error: CallError) -> SchedulerFacts {
        SchedulerFacts {
            version: Err(error.clone()),
            models: Err(error.clone()),
            servers: Err(error.clone()),
            pipelines: Err(error.clone()),
            experiments: Err(error),
        }
    }
}

/// Runs the five calls concurrently over one HTTP/2 connection. Never fails as a whole: each
/// part that could not be read is an error inside the facts.
pub async fn collect(target: &SchedulerTarget) -> SchedulerFacts {
    match client_for(target).await {
        Ok(client) => collect_over(target, client).await,
        Err(error) => SchedulerFacts::all_failed(error),
    }
}

/// A lazy client for `target`, with its mutual-TLS material loaded now (from files or Secrets,
/// so a rotated Secret is picked up by the next client). It connects on first use and reconnects
/// after a failure, so a caller may keep it across collections (see `collect::Sources`).
pub async fn client_for(target: &SchedulerTarget) -> Result<Client, CallError> {
    let tls = match &target.tls {
        Some(source) => Some(
            source
                .load()
                .await
                .map_err(|error| CallError::Tls(error.to_string()))?,
        ),
        None => None,
    };
    connect(target, tls.as_ref())
}

/// [`collect`] over a client the caller keeps between collections.
pub async fn collect_over(target: &SchedulerTarget, client: Client) -> SchedulerFacts {
    let call = Call {
        client,
        policy: target.policy.for_call(target.rpc_timeout),
    };
    let (version, models, servers, pipelines, experiments) = tokio::join!(
        call.application_version(),
        call.read_stream::<ModelTally>(),
        call.read_stream::<ServerTally>(),
        call.read_stream::<PipelineTally>(),
        call.read_stream::<ExperimentTally>(),
    );
    let facts = SchedulerFacts {
        version,
        models,
        servers,
        pipelines,
        experiments,
    };
    if target.tls.is_some() {
        facts.with_tls_hint()
    } else {
        facts
    }
}

/// What a closed connection most often means over mutual TLS: the scheduler refused our client
/// certificate after the handshake, which the client only sees as the connection closing.
const TLS_REJECTED_HINT: &str = "with mutual TLS this usually means the scheduler rejects the \
     client certificate (CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION and its CA)";

/// The scheduler refusing our client certificate reaches us either as a TLS alert or, when it
/// closes first, as a closed connection; neither names the certificate, so the reason does.
fn rejected_client_hint(text: &str) -> Option<String> {
    let looks_rejected = ["fatal alert", "connection closed", "broken pipe"]
        .iter()
        .any(|m| text.contains(m));
    looks_rejected.then(|| format!("{text} ({TLS_REJECTED_HINT})"))
}

impl SchedulerFacts {
    fn with_tls_hint(self) -> SchedulerFacts {
        fn hint<T>(result: Result<T, CallError>) -> Result<T, CallError> {
            result.map_err(|mut error| {
                if let CallError::DeadlineExceeded {
                    last_error: Some(text),
                    ..
                }
                | CallError::AttemptsExhausted {
                    last_error: Some(text),
                    ..
                }
                | CallError::Failed { detail: text, .. } = &mut error
                    && let Some(hinted) = rejected_client_hint(text)
                {
                    *text = hinted;
                }
                error
            })
        }
        SchedulerFacts {
            version: hint(self.version),
            models: hint(self.models),
            servers: hint(self.servers),
            pipelines: hint(self.pipelines),
            experiments: hint(self.experiments),
        }
    }
}

fn connect(target: &SchedulerTarget, tls: Option<&ClientTls>) -> Result<Client, CallError> {
    let address = target.address();
    let bad = |detail: String| CallError::BadAddress {
        address: address.clone(),
        detail,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Over a port-forward the scheduler is reached as `localhost`, the name its certificate
    // carries for that (SPEC 3.3); opening a forward takes two API reads and an upgrade, so its
    // connection may take a little longer than a TCP connect.
    let (authority, connect_timeout, stream_window, connection_window) = match &target.route {
        Route::Direct => (
            address.clone(),
            target.policy.connect_timeout,
            STREAM_WINDOW_BYTES,
            CONNECTION_WINDOW_BYTES,
        ),
        Route::Forward(_) => (
            format!("localhost:{}", target.port),
            target.policy.connect_timeout.max(FORWARD_CONNECT_TIMEOUT),
            FORWARD_STREAM_WINDOW_BYTES,
            FORWARD_CONNECTION_WINDOW_BYTES,
        ),
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(connect_timeout.min(target.rpc_timeout))
        .tcp_nodelay(true)
        // Small flow-control windows: the reader folds each item as it arrives, so data the
        // scheduler sends ahead only waits in buffers. These bound what the five concurrent
        // streams can hold at once (the defaults allow megabytes per stream).
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(connection_window);
    if let Some(tls) = tls {
        crate::tls::install_crypto_provider();
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.server_ca))
            .identity(Identity::from_pem(&tls.client_cert, &tls.client_key));
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| bad(format!("TLS configuration rejected: {e}")))?;
    }
    // No HTTP/2 keep-alive pings: the scheduler rejects frequent ones and each collection is short.
    // A lazy channel connects on first use and reconnects after a failure, which is what retries need.
    let channel = match &target.route {
        Route::Direct => endpoint.connect_lazy(),
        Route::Forward(spec) => forward_channel(&endpoint, spec).map_err(bad)?,
    };
    Ok(SchedulerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// The longest wait for a port-forward to open (resolve, upgrade) when someone is watching.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazy channel whose every connection is a new port-forward: resolved again each time, so
/// when the pod is replaced or the stream breaks, the channel's reconnect finds the new pod.
#[cfg(feature = "tools")]
fn forward_channel(endpoint: &Endpoint, spec: &ForwardSpec) -> Result<Channel, String> {
    Ok(endpoint.connect_with_connector_lazy(ForwardConnector(spec.clone())))
}

#[cfg(not(feature = "tools"))]
fn forward_channel(_: &Endpoint, _: &ForwardSpec) -> Result<Channel, String> {
    Err("this build has no port-forward (it is the daemon-only build); set the address".into())
}

/// The connector tonic calls for each new connection: opens a port-forward and hands its stream
/// to HTTP/2. No local port is listened on.
#[cfg(feature = "tools")]
#[derive(Clone)]
struct ForwardConnector(ForwardSpec);

#[cfg(feature = "tools")]
impl tower_service::Service<tonic::codegen::http::Uri> for ForwardConnector {
    type Response = hyper_util::rt::TokioIo<tokio::io::DuplexStream>;
    type Error = ForwardError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, ForwardError>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ForwardError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let spec = self.0.clone();
        Box::pin(async move {
            crate::k8s::forward::open(&spec)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// A server-streaming status RPC, implemented by the tally its items fold into: the RPC's name
/// and how to open it.
trait StatusStream: Tally + Send {
    const RPC: &'static str;
    fn open(
        client: Client,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response<Streaming<Self::Item>>, Status>> + Send;
}

/// The status streams, one line each: tally => RPC name, client method (request type). Every
/// request subscribes as [`SUBSCRIBER_NAME`] and names no resource, so the scheduler sends all.
macro_rules! status_streams {
    ($($tally:ty => $rpc:literal, $method:ident($request:ident);)*) => {$(
        impl StatusStream for $tally {
            const RPC: &'static str = $rpc;
            async fn open(
                mut client: Client,
                timeout: Duration,
            ) -> Result<Response<Streaming<Self::Item>>, Status> {
                let request = $request {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                    ..Default::default()
                };
                client.$method(with_timeout(request, timeout)).await
            }
        }
    )*};
}

status_streams! {
    ModelTally => "ModelStatus", model_status(ModelStatusRequest);
    ServerTally => "ServerStatus", server_status(ServerStatusRequest);
    PipelineTally => "PipelineStatus", pipeline_status(PipelineStatusRequest);
    ExperimentTally => "ExperimentStatus", experiment_status(ExperimentStatusRequest);
}

/// What every call of one collection shares.
struct Call {
    client: Client,
    policy: backoff::Policy,
}

impl Call {
    async fn application_version(&self) -> Result<String, CallError> {
        with_retry("SchedulerStatus", &self.policy, |remaining| {
            let mut client = self.client.clone();
            async move {
                let request = SchedulerStatusRequest {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                };
                client
                    .scheduler_status(with_timeout(request, remaining))
                    .await
                    .map(|response| response.into_inner().application_version)
                    .map_err(|status| Failure { status, items: 0 })
            }
        })
        .await
    }

    /// Folds a whole status stream into its tally. A stream that breaks part-way is read again
    /// from the start (while the deadline allows); a partial tally is never returned.
    async fn read_stream<S: StatusStream>(&self) -> Result<S, CallError> {
        with_retry(S::RPC, &self.policy, |remaining| {
            let opened = S::open(self.client.clone(), remaining);
            async move {
                let mut stream = opened
                    .await
                    .map_err(|status| Failure { status, items: 0 })?
                    .into_inner();
                let mut tally = S::default();
                let mut items = 0u64;
                loop {
                    match stream.message().await {
                        Ok(Some(item)) => {
                            tally.add(&item);
                            items += 1;
                        }
                        Ok(None) => return Ok(tally),
                        Err(status) => return Err(Failure { status, items }),
                    }
                }
            }
        })
        .await
    }
}

/// One failed attempt: the gRPC status and how many stream items had arrived before it.
struct Failure {
    status: Status,
    items: u64,
}

impl Failure {
    fn describe(&self) -> String {
        let status = describe_status(&self.status);
        if self.items > 0 {
            format!("stream broke after {} items: {status}", self.items)
        } else {
            status
        }
    }
}

/// Runs `attempt` under `policy`, retrying while the scheduler is unavailable (see
/// [`is_retryable`]); any other error is final at once. `attempt` is told the time left, which
/// it passes on as the gRPC deadline.
async fn with_retry<R, F, Fut>(
    rpc: &'static str,
    policy: &backoff::Policy,
    mut attempt: F,
) -> Result<R, CallError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<R, Failure>>,
{
    let retried = backoff::retry(
        policy,
        |started| attempt(started.remaining),
        |failure: &Failure| {
            if is_retryable(&failure.status) {
                Verdict::Retry { not_before: None }
            } else {
                Verdict::Final
            }
        },
        |retrying| {
            let error = last_error(retrying.failure);
            tracing::debug!(
                rpc,
                attempts = retrying.attempt,
                error = error.as_deref().unwrap_or("no answer"),
                "scheduler call failed; retrying"
            );
        },
    )
    .await;
    let attempts = retried.attempts;
    retried.result.map_err(|gave_up| match gave_up {
        GaveUp::Final(failure) => CallError::Failed {
            rpc,
            detail: failure.describe(),
        },
        GaveUp::Stopped {
            stop: Stop::AttemptsExhausted,
            last,
        } => CallError::AttemptsExhausted {
            rpc,
            attempts,
            last_error: last_error(&last),
        },
        GaveUp::Stopped { last, .. } => CallError::DeadlineExceeded {
            rpc,
            timeout: policy.deadline,
            attempts,
            last_error: last_error(&last),
        },
    })
}

/// The latest error the scheduler or the transport gave; a call cut off at the deadline says
/// nothing itself.
fn last_error(failure: &AttemptFailure<Failure>) -> Option<String> {
    match failure {
        AttemptFailure::Error(failure) => Some(failure.describe()),
        AttemptFailure::TimedOut { earlier, .. } => earlier.as_ref().map(Failure::describe),
    }
}

/// Worth another attempt: the scheduler said `Unavailable` (refused, restarting), or the
/// connection itself failed. A `kubectl port-forward` to a pod that is not ready accepts the
/// connection and then drops it, which tonic reports as `Unknown`/`Cancelled` carrying the
/// transport error as its source; statuses the scheduler itself sends carry no source.
fn is_retryable(status: &Status) -> bool {
    // A certificate the other side rejects will be rejected again: say so at once. So will a
    // port-forward the API server refuses.
    if is_tls_failure(status) || is_permanent_forward_failure(status) {
        return false;
    }
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => status.source().is_some(),
        _ => false,
    }
}

/// A missing permission or object behind the port-forward, somewhere in the causes.
fn is_permanent_forward_failure(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(cause) = source {
        if cause
            .downcast_ref::<ForwardError>()
            .is_some_and(ForwardError::is_permanent)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn is_tls_failure(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(cause) = source {
        let is_rustls = cause.downcast_ref::<rustls::Error>().is_some()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        // h2 keeps only the text of the I/O errors it passes on, so a TLS error can arrive as
        // words alone.
        let text = cause.to_string();
        let says_tls =
            text.contains("received fatal alert") || text.contains("invalid peer certificate");
        if is_rustls || says_tls {
            return true;
        }
        source = cause.source();
    }
    false
}

/// "unavailable: tcp connect error: Connection refused (os error 111)": the status and the
/// chain of causes beneath it, which is where transport errors keep the useful part.
fn describe_status(status: &Status) -> String {
    let mut text = format!("{}", status.code()).to_lowercase();
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    let mut source = status.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// An attempt the scheduler answers `Unavailable` after `items` stream items.
    async fn restarting(items: u64) -> Result<(), Failure> {
        Err(Failure {
            status: Status::unavailable("restarting"),
            items,
        })
    }

    /// The daemon's policy for calls with an `rpc_timeout` of `seconds`.
    fn patient(seconds: u64) -> backoff::Policy {
        CallPolicy::patient().for_call(Duration::from_secs(seconds))
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let target = |host: &str| SchedulerTarget {
            route: Route::Direct,
            host: host.into(),
            port: 9004,
            rpc_timeout: Duration::from_secs(1),
            tls: None,
            policy: CallPolicy::patient(),
        };
        assert_eq!(target("::1").address(), "[::1]:9004");
        assert_eq!(target("[::1]").address(), "[::1]:9004");
        assert_eq!(
            target("seldon-scheduler").address(),
            "seldon-scheduler:9004"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_is_retried_with_growing_backoff_until_success() {
        let started = Instant::now();
        let mut calls = 0;
        let result = with_retry("Test", &patient(10), |_| {
            calls += 1;
            let n = calls;
            async move {
                if n < 4 {
                    Err(Failure {
                        status: Status::unavailable("down"),
                        items: 0,
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(4));
        // 100 + 200 + 400 ms of backoff before the fourth attempt.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[test]
    fn transport_failures_are_retryable_but_scheduler_answers_are_not() {
        assert!(is_retryable(&Status::unavailable("restarting")));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed");
        assert!(is_retryable(&Status::from_error(Box::new(io))));
        assert!(!is_retryable(&Status::unknown("the scheduler said so")));
        assert!(!is_retryable(&Status::permission_denied("no")));
        assert!(!is_retryable(&Status::unimplemented("old scheduler")));
    }

    #[test]
    fn a_tls_alert_that_arrives_as_text_is_final() {
        // What h2 passes on when the scheduler refuses our certificate: only the words survive.
        let io = std::io::Error::other("received fatal alert: DecryptError");
        assert!(!is_retryable(&Status::from_error(Box::new(io))));
    }

    #[test]
    fn both_ways_a_rejected_client_certificate_shows_are_explained() {
        let facts = SchedulerFacts {
            version: Err(CallError::Failed {
                rpc: "SchedulerStatus",
                detail: "unknown error: received fatal alert: DecryptError".into(),
            }),
            models: Err(CallError::DeadlineExceeded {
                rpc: "ModelStatus",
                timeout: Duration::from_secs(2),
                attempts: 5,
                last_error: Some("transport error: connection closed".into()),
            }),
            servers: Err(CallError::Failed {
                rpc: "ServerStatus",
                detail: "permission denied".into(),
            }),
            pipelines: Ok(PipelineTally::default()),
            experiments: Ok(ExperimentTally::default()),
        }
        .with_tls_hint();
        for error in [facts.version.err(), facts.models.err()] {
            let text = error.expect("still an error").to_string();
            assert!(text.contains("rejects the client certificate"), "{text}");
        }
        let other = facts.servers.expect_err("error").to_string();
        assert!(
            !other.contains("client certificate"),
            "unrelated errors keep their text: {other}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_final_at_once() {
        let mut calls = 0;
        let result: Result<(), _> = with_retry("Test", &patient(10), |_| {
            calls += 1;
            async {
                Err(Failure {
                    status: Status::permission_denied("no"),
                    items: 0,
                })
            }
        })
        .await;
        assert_eq!(calls, 1);
        assert!(matches!(result, Err(CallError::Failed { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline_and_keep_the_last_error() {
        let started = Instant::now();
        let result = with_retry("ModelStatus", &patient(2), |_| restarting(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let error = result.expect_err("never succeeds");
        let text = error.to_string();
        assert!(text.contains("ModelStatus"), "{text}");
        assert!(text.contains("stream broke after 3 items"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_is_cut_at_the_deadline() {
        let started = Instant::now();
        let result: Result<(), _> = with_retry("ServerStatus", &patient(3), |_| {
            std::future::pending::<Result<(), Failure>>()
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(matches!(
            result,
            Err(CallError::DeadlineExceeded { attempts: 1, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn fast_fail_gives_up_after_one_quick_retry() {
        let started = Instant::now();
        let policy = CallPolicy::fast_fail().for_call(Duration::from_secs(30));
        let result = with_retry("SchedulerStatus", &policy, |_| restarting(0)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        let text = result.expect_err("never succeeds").to_string();
        assert_eq!(
            text,
            "SchedulerStatus: no complete answer in 2 attempts; last error: the service is currently unavailable: restarting"
        );
    }

    #[test]
    fn a_policy_deadline_only_ever_shortens_the_rpc_timeout() {
        assert_eq!(patient(7).deadline, Duration::from_secs(7));
        let short = CallPolicy {
            backoff: backoff::Policy {
                deadline: Duration::from_secs(2),
                ..CallPolicy::patient().backoff
            },
            ..CallPolicy::patient()
        };
        assert_eq!(
            short.for_call(Duration::from_secs(1)).deadline,
            Duration::from_secs(1)
        );
        assert_eq!(
            short.for_call(Duration::from_secs(9)).deadline,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_rejected_certificate_is_explained_when_attempts_run_out() {
        let error = CallError::AttemptsExhausted {
            rpc: "ModelStatus",
            attempts: 2,
            last_error: Some("transport error: connection closed".into()),
        };
        let facts = SchedulerFacts::all_failed(error).with_tls_hint();
        let text = facts.models.expect_err("still an error").to_string();
        assert!(text.contains("rejects the client certificate"), "{text}");
    }

    /// Over real loopback TCP: with nothing listening, every call is refused twice and says so.
    #[tokio::test]
    async fn fast_fail_reports_a_refused_scheduler_after_two_attempts() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let target = SchedulerTarget {
            route: Route::Direct,
            host: "127.0.0.1".into(),
            port,
            rpc_timeout: Duration::from_secs(600),
            tls: None,
            policy: CallPolicy::fast_fail(),
        };
        let facts = collect(&target).await;
        let errors = [
            facts.version.err(),
            facts.models.err(),
            facts.servers.err(),
            facts.pipelines.err(),
            facts.experiments.err(),
        ];
        for error in errors {
            match error {
                Some(CallError::AttemptsExhausted {
                    attempts: 2,
                    last_error: Some(last),
                    ..
                }) => assert!(last.contains("refused"), "{last}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
