//! Reads the Seldon scheduler's status API (SPEC 3.2): the five calls run concurrently, each
//! within its own deadline, retried with backoff while the scheduler is unavailable, and each
//! status stream folded item by item into a tally.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use super::aggregate::{ExperimentTally, ModelTally, PipelineTally, ServerTally, Tally};
use crate::proto::scheduler_client::SchedulerClient;
use crate::proto::{
    ExperimentStatusRequest, ModelStatusRequest, PipelineStatusRequest, SchedulerStatusRequest,
    ServerStatusRequest,
};

/// The name hodometer subscribes under, visible in the scheduler's logs.
pub const SUBSCRIBER_NAME: &str = "hodometer";

/// Model statuses carry whole model definitions; gRPC's 4 MiB default is too tight for some.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct SchedulerTarget {
    pub host: String,
    pub port: u16,
    /// Deadline for each call, retries included.
    pub rpc_timeout: Duration,
    /// Mutual TLS (`CONTROL_PLANE_SECURITY_PROTOCOL=SSL`); `port` is then the TLS port.
    pub tls: Option<ClientTls>,
}

/// PEM contents of the files named by the `CONTROL_PLANE_*_TLS_*_LOCATION` variables.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that verifies the scheduler's certificate.
    pub server_ca: Vec<u8>,
    pub client_cert: Vec<u8>,
    pub client_key: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    // Never print the private key, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}

impl SchedulerTarget {
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
    #[error("{rpc}: {detail}")]
    Failed { rpc: &'static str, detail: String },
    #[error("scheduler address {address} is not usable: {detail}")]
    BadAddress { address: String, detail: String },
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
    match connect(target) {
        Ok(client) => collect_over(target, client).await,
        Err(error) => SchedulerFacts::all_failed(error),
    }
}

/// [`collect`] over a client the caller keeps between collections (see `collect::Sources`).
pub async fn collect_over(
    target: &SchedulerTarget,
    client: SchedulerClient<Channel>,
) -> SchedulerFacts {
    let timeout = target.rpc_timeout;
    let (version, models, servers, pipelines, experiments) = tokio::join!(
        application_version(client.clone(), timeout),
        tally_stream::<ModelTally, _, _>(
            "ModelStatus",
            timeout,
            |mut c, req_timeout| async move {
                let request = ModelStatusRequest {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                    ..Default::default()
                };
                c.model_status(with_timeout(request, req_timeout)).await
            },
            &client
        ),
        tally_stream::<ServerTally, _, _>(
            "ServerStatus",
            timeout,
            |mut c, req_timeout| async move {
                let request = ServerStatusRequest {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                    name: None,
                };
                c.server_status(with_timeout(request, req_timeout)).await
            },
            &client
        ),
        tally_stream::<PipelineTally, _, _>(
            "PipelineStatus",
            timeout,
            |mut c, req_timeout| async move {
                let request = PipelineStatusRequest {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                    ..Default::default()
                };
                c.pipeline_status(with_timeout(request, req_timeout)).await
            },
            &client
        ),
        tally_stream::<ExperimentTally, _, _>(
            "ExperimentStatus",
            timeout,
            |mut c, req_timeout| async move {
                let request = ExperimentStatusRequest {
                    subscriber_name: SUBSCRIBER_NAME.into(),
                    name: None,
                };
                c.experiment_status(with_timeout(request, req_timeout))
                    .await
            },
            &client
        ),
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
            result.map_err(|error| match error {
                CallError::DeadlineExceeded {
                    rpc,
                    timeout,
                    attempts,
                    last_error: Some(last),
                } => {
                    let last_error = Some(rejected_client_hint(&last).unwrap_or(last));
                    CallError::DeadlineExceeded {
                        rpc,
                        timeout,
                        attempts,
                        last_error,
                    }
                }
                CallError::Failed { rpc, detail } => {
                    let detail = rejected_client_hint(&detail).unwrap_or(detail);
                    CallError::Failed { rpc, detail }
                }
                other => other,
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

/// A lazy client for `target`: it connects on first use and reconnects after a failure, so one
/// client serves every collection.
pub fn connect(target: &SchedulerTarget) -> Result<SchedulerClient<Channel>, CallError> {
    let address = target.address();
    let bad = |detail: String| CallError::BadAddress {
        address: address.clone(),
        detail,
    };
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(target.rpc_timeout.min(Duration::from_secs(10)))
        .tcp_nodelay(true);
    if let Some(tls) = &target.tls {
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
    Ok(SchedulerClient::new(endpoint.connect_lazy()).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

async fn application_version(
    client: SchedulerClient<Channel>,
    timeout: Duration,
) -> Result<String, CallError> {
    with_retry("SchedulerStatus", timeout, |remaining| {
        let mut client = client.clone();
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

/// Folds a whole server stream into `T`. A stream that breaks part-way is retried from the start
/// (while the deadline allows); a partial tally is never returned.
async fn tally_stream<T, F, Fut>(
    rpc: &'static str,
    timeout: Duration,
    call: F,
    client: &SchedulerClient<Channel>,
) -> Result<T, CallError>
where
    T: Tally,
    F: Fn(SchedulerClient<Channel>, Duration) -> Fut,
    Fut: Future<Output = Result<tonic::Response<tonic::Streaming<T::Item>>, Status>>,
{
    with_retry(rpc, timeout, |remaining| {
        let opened = call(client.clone(), remaining);
        async move {
            let mut stream = opened
                .await
                .map_err(|status| Failure { status, items: 0 })?
                .into_inner();
            let mut tally = T::default();
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

/// Retries `attempt` with exponential backoff while the scheduler is unavailable, all within
/// `timeout`. Any other error is final at once.
async fn with_retry<R, F, Fut>(
    rpc: &'static str,
    timeout: Duration,
    mut attempt: F,
) -> Result<R, CallError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<R, Failure>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    let mut last_error = None;
    let exceeded = |attempts, last_error| CallError::DeadlineExceeded {
        rpc,
        timeout,
        attempts,
        last_error,
    };
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(exceeded(attempts, last_error));
        }
        attempts += 1;
        let failure = match tokio::time::timeout(remaining, attempt(remaining)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(failure)) => failure,
            Err(_elapsed) => return Err(exceeded(attempts, last_error)),
        };
        let detail = failure.describe();
        if !is_retryable(&failure.status) {
            return Err(CallError::Failed { rpc, detail });
        }
        tracing::debug!(rpc, attempts, error = %detail, "scheduler call failed; retrying");
        last_error = Some(detail);
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Worth another attempt: the scheduler said `Unavailable` (refused, restarting), or the
/// connection itself failed. A `kubectl port-forward` to a pod that is not ready accepts the
/// connection and then drops it, which tonic reports as `Unknown`/`Cancelled` carrying the
/// transport error as its source; statuses the scheduler itself sends carry no source.
fn is_retryable(status: &Status) -> bool {
    // A certificate the other side rejects will be rejected again: say so at once.
    if is_tls_failure(status) {
        return false;
    }
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => status.source().is_some(),
        _ => false,
    }
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

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let target = |host: &str| SchedulerTarget {
            host: host.into(),
            port: 9004,
            rpc_timeout: Duration::from_secs(1),
            tls: None,
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
        let result = with_retry("Test", Duration::from_secs(10), |_| {
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
        let result: Result<(), _> = with_retry("Test", Duration::from_secs(10), |_| {
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
        let result: Result<(), _> = with_retry("ModelStatus", Duration::from_secs(2), |_| async {
            Err(Failure {
                status: Status::unavailable("restarting"),
                items: 3,
            })
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let error = result.expect_err("never succeeds");
        let text = error.to_string();
        assert!(text.contains("ModelStatus"), "{text}");
        assert!(text.contains("stream broke after 3 items"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_is_cut_at_the_deadline() {
        let started = Instant::now();
        let result: Result<(), _> = with_retry("ServerStatus", Duration::from_secs(3), |_| {
            std::future::pending::<Result<(), Failure>>()
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(matches!(
            result,
            Err(CallError::DeadlineExceeded { attempts: 1, .. })
        ));
    }
}
