//! Publishing events to their endpoints.
//!
//! Each endpoint gets `GET <url>/track?data=…&verbose=1&ip=0` (`request.rs`), retried on
//! transient failures with full-jitter backoff within an overall deadline (`retry.rs`, on the
//! shared engine in [`crate::backoff`]),
//! and ends in an [`EndpointOutcome`] (`outcome.rs`). All endpoints are driven concurrently
//! *inside the caller's future*: nothing is spawned, so dropping the future (SIGTERM, a closed
//! UI) drops every in-flight request with it and closes their connections.
//!
//! Proxies: reqwest reads `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their
//! lower-case forms) when the [`Publisher`] is built, like curl; loopback is *not* exempt unless
//! `NO_PROXY` lists it, and the variables are ignored when `REQUEST_METHOD` is set (CGI).
//!
//! HTTPS: rustls, verifying against the system's CA certificates (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` replace them when set). A certificate the receiver's chain does not satisfy
//! is reported at once, not retried.

mod outcome;
mod request;
mod retry;

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

use futures::Stream;
use futures::stream::FuturesUnordered;
use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff;
use crate::payload::Event;

pub use outcome::{EndpointOutcome, OutcomeKind, PublishError, describe_outcomes};
pub use request::{Endpoint, parse_endpoint, parse_endpoint_list};
use retry::{Rejected, parse_retry_after};

/// How hard to try. Tests shrink these; the defaults are for production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishPolicy {
    /// The backoff ceiling after the first failure; it doubles after each further one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Requests sent to one endpoint at most, the first included.
    pub max_attempts: u32,
    /// The whole publish to one endpoint, retries and waits included.
    pub deadline: Duration,
    /// One request, from connecting to the end of the reply.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Honour the proxy environment variables (see the module documentation).
    pub env_proxy: bool,
}

impl Default for PublishPolicy {
    fn default() -> Self {
        PublishPolicy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_attempts: 20,
            // Room for the full backoff schedule (about 4 minutes of waits on average) and a few
            // slow replies, yet far below the daemon's 8 h interval so publishes never overlap.
            deadline: Duration::from_secs(10 * 60),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            env_proxy: true,
        }
    }
}

/// The HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for publishing: {reason}")]
pub struct SetupError {
    reason: String,
}

/// The largest reply body read; verdicts are a few bytes, anything longer is only excerpted.
const MAX_REPLY_BYTES: usize = 16 * 1024;

/// Publishes events. Cheap to clone (the connection pool is shared); build it once, since the
/// proxy variables are read when it is built.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: reqwest::Client,
    policy: PublishPolicy,
}

impl Publisher {
    pub fn new(policy: PublishPolicy) -> Result<Publisher, SetupError> {
        crate::tls::install_crypto_provider();
        let client = match client_builder(&policy).build() {
            Ok(client) => client,
            Err(error) => {
                // On Linux reqwest verifies HTTPS with the system's CA certificates and refuses
                // to build any client when there are none (a scratch image). Plain-HTTP
                // endpoints need no CA, so keep them working: HTTPS endpoints then fail one by
                // one with a certificate error instead of publishing stopping altogether.
                let reason = error_chain(&error);
                warn!(
                    %reason,
                    "no usable CA certificates on this system: https endpoints will fail \
                     verification (install ca-certificates or set SSL_CERT_FILE)"
                );
                client_builder(&policy)
                    .tls_certs_only(std::iter::empty())
                    .build()
                    .map_err(|_| SetupError { reason })?
            }
        };
        Ok(Publisher { client, policy })
    }

    pub fn policy(&self) -> &PublishPolicy {
        &self.policy
    }

    /// Publishes `event` to every endpoint concurrently; the outcomes are in `endpoints` order.
    pub async fn publish(&self, event: &Event, endpoints: &[Endpoint]) -> Vec<EndpointOutcome> {
        futures::future::join_all(
            endpoints
                .iter()
                .enumerate()
                .map(|(index, endpoint)| self.deliver(index, event, endpoint)),
        )
        .await
    }

    /// Publishes `event` to every endpoint concurrently, yielding each outcome as soon as it is
    /// known (match them up with [`EndpointOutcome::index`]). Dropping the stream cancels the
    /// endpoints still in progress.
    pub fn publish_each<'a>(
        &'a self,
        event: &'a Event,
        endpoints: &'a [Endpoint],
    ) -> impl Stream<Item = EndpointOutcome> + 'a {
        endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| self.deliver(index, event, endpoint))
            .collect::<FuturesUnordered<_>>()
    }

    /// Publishes `event` to one endpoint, retrying as the policy allows.
    pub async fn publish_one(&self, event: &Event, endpoint: &Endpoint) -> EndpointOutcome {
        self.deliver(0, event, endpoint).await
    }

    async fn deliver(&self, index: usize, event: &Event, endpoint: &Endpoint) -> EndpointOutcome {
        let started = Instant::now();
        // Built once: every attempt sends exactly the same bytes, hence the same `$insert_id`.
        let url = endpoint.track_url(&event.json);
        // The latest HTTP status any attempt got (0 for none yet), for the outcome.
        let last_status = AtomicU16::new(0);
        let retried = backoff::retry(
            &self.policy.backoff(),
            |attempt| {
                debug!(%endpoint, attempt = attempt.number, bytes = event.json.len(), "publishing");
                let (url, last_status) = (url.clone(), &last_status);
                async move {
                    let reply = self.attempt(url).await;
                    if let Some(status) = reply.status {
                        last_status.store(status, Ordering::Relaxed);
                    }
                    reply.result.map_err(|error| Rejected {
                        error,
                        retry_after: reply.retry_after,
                    })
                }
            },
            retry::verdict,
            |retrying| {
                info!(
                    %endpoint,
                    attempt = retrying.attempt,
                    error = %retry::attempt_error(retrying.failure),
                    wait_ms = retrying.wait.as_millis() as u64,
                    "publish attempt failed; retrying"
                );
            },
        )
        .await;
        let attempts = retried.attempts;
        let result = retried
            .result
            .map_err(|gave_up| retry::give_up(gave_up, &self.policy, attempts));
        let last_status = Some(last_status.into_inner()).filter(|status| *status != 0);
        let outcome = EndpointOutcome {
            index,
            endpoint: endpoint.redacted().to_string(),
            result,
            attempts,
            latency: started.elapsed(),
            last_status,
        };
        debug!(
            %endpoint,
            outcome = outcome.outcome_label(),
            attempts,
            latency_ms = outcome.latency.as_millis() as u64,
            "publish finished"
        );
        outcome
    }

    /// One request and its judged reply.
    async fn attempt(&self, url: Url) -> Attempt {
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(error) => return Attempt::failed(transport_error(error)),
        };
        let status = response.status();
        // Retry-After is honoured on the two statuses that define it as a pause.
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now())),
            _ => None,
        };
        let result = match read_reply(response).await {
            Ok(body) => outcome::judge_reply(status.as_u16(), &body),
            // Without the body there is no verdict, but an error status is its own verdict.
            Err(_) if !status.is_success() => outcome::judge_reply(status.as_u16(), b""),
            Err(error) => Err(transport_error(error)),
        };
        Attempt {
            status: Some(status.as_u16()),
            retry_after,
            result,
        }
    }
}

fn client_builder(policy: &PublishPolicy) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(policy.connect_timeout)
        .user_agent(concat!("hodometer/", env!("CARGO_PKG_VERSION")));
    if policy.env_proxy {
        builder
    } else {
        builder.no_proxy()
    }
}

struct Attempt {
    status: Option<u16>,
    retry_after: Option<Duration>,
    result: Result<(), PublishError>,
}

impl Attempt {
    fn failed(error: PublishError) -> Attempt {
        Attempt {
            status: None,
            retry_after: None,
            result: Err(error),
        }
    }
}

/// Reads the body up to [`MAX_REPLY_BYTES`]; the rest is left unread (and the connection with it).
async fn read_reply(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_REPLY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_REPLY_BYTES {
            break;
        }
    }
    Ok(body)
}

/// Maps a reqwest error to a [`PublishError`] without its URL, which carries the event and any
/// credentials.
fn transport_error(error: reqwest::Error) -> PublishError {
    let error = error.without_url();
    let reason = error_chain(&error);
    if certificate_problem(&error) {
        PublishError::Certificate { reason }
    } else if error.is_connect() {
        PublishError::Connect { reason }
    } else if error.is_redirect() || error.is_builder() {
        PublishError::Unsendable { reason }
    } else {
        PublishError::Transport { reason }
    }
}

/// Whether the TLS handshake failed on the peer's certificate (unknown CA, wrong name, expired)
/// or on TLS versions/algorithms: configuration problems that retrying cannot fix.
fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        // reqwest wraps the rustls error in io::Errors, whose `source()` skips what they wrap:
        // peel them by hand.
        let mut inner = error;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::PeerIncompatible(_)
            );
        }
        next = error.source();
    }
    false
}

/// `outer: inner: innermost`, skipping a level that only repeats the one below it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}
