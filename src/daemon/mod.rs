//! `hodometer daemon`: collect and publish at start and then every interval, headless, as a
//! drop-in for the original in-cluster component: same environment variables, same event.

mod code_pages;
mod consent_watch;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Mutex as AsyncMutex, Notify, watch};

use crate::config::{PublishSettings, Settings};
use crate::consent::ReporterStatus;
use crate::consent::cluster::ConsentApi;
use crate::ledger::cluster::{History, Ledger, LedgerApi};
use crate::policy::Policy;
use crate::publish::Publisher;
use crate::reporter::{self, Governance, Report, Reporter, Sent};
use metrics::{CollectionOutcome, DaemonMetrics};

/// A validated daemon configuration.
pub struct DaemonConfig {
    pub settings: Settings,
    pub publish: PublishSettings,
    pub interval: Duration,
    pub once: bool,
    pub listen: Option<SocketAddr>,
    /// The consent ConfigMap that governs what is shared, when the Kubernetes API is used.
    pub consent: Option<String>,
    /// The byte budget of the history ConfigMap (`hodometer-ledger`).
    pub ledger_budget: usize,
    /// The daemon is the whole process, so the binary's code pages are its own to release
    /// between cycles; not so inside `demo`, where the inspector uses them all the time.
    pub own_process: bool,
}

impl DaemonConfig {
    /// Between cycles: hands back the code pages the last one touched (see `code_pages`).
    fn rest(&self) -> usize {
        if self.own_process {
            code_pages::release_code_pages()
        } else {
            0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The health/metrics listener stopped serving.
    #[error("the /healthz, /readyz and /metrics listener on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Publisher(#[from] crate::publish::SetupError),
}

/// How a daemon run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonExit {
    /// Stopped by a signal, or `--once` with every endpoint accepting.
    Clean,
    /// `--once` and at least one endpoint did not accept the event (or it was interrupted).
    PublishFailed,
}

type Shared = Arc<Mutex<DaemonMetrics>>;

fn lock(metrics: &Shared) -> std::sync::MutexGuard<'_, DaemonMetrics> {
    // A panic elsewhere must not take /metrics down with it.
    metrics.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds the health/metrics listener (if any) and runs until `shutdown` completes (or after one
/// cycle with `--once`). In-flight work is dropped, and so cancelled, on shutdown.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<DaemonExit, DaemonError> {
    let metrics: Shared = Arc::default();
    let server = match config.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Listen { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            tracing::info!(listen = %bound, "serving /healthz, /readyz and /metrics");
            Some((listener, bound, router(Arc::clone(&metrics))))
        }
        None => None,
    };
    let publisher = Publisher::new(config.publish.policy.clone())?;
    let health = async {
        match server {
            // Errors of an accepted connection are per connection; serve itself only ends with the task.
            Some((listener, bound, router)) => {
                axum::serve(listener, router)
                    .await
                    .map_err(|source| DaemonError::Serve {
                        addr: bound,
                        source,
                    })
            }
            None => std::future::pending().await,
        }
    };
    supervise(
        work(&config, &publisher, &metrics),
        health,
        shutdown,
        config.once,
    )
    .await
}

/// Runs `work` until it ends, the health listener stops (an error when it failed) or `shutdown`
/// completes, whichever comes first.
async fn supervise(
    work: impl Future<Output = DaemonExit>,
    health: impl Future<Output = Result<(), DaemonError>>,
    shutdown: impl Future<Output = ()>,
    once: bool,
) -> Result<DaemonExit, DaemonError> {
    tokio::select! {
        exit = work => Ok(exit),
        served = health => match served {
            Ok(()) => Ok(DaemonExit::Clean),
            Err(error) => {
                tracing::error!(%error, "stopping: the health listener failed");
                Err(error)
            }
        },
        _ = shutdown => {
            tracing::info!("stopping: signal received");
            Ok(if once { DaemonExit::PublishFailed } else { DaemonExit::Clean })
        }
    }
}

/// Runs reporter cycles until the end (or after one with `--once`): each cycle's policy comes
/// from the consent as it is now (re-read as soon as a watch sees it change, and periodically,
/// should the watch be refused), so that a lowered level or `off` applies at once, even to an
/// event still being retried; the status ConfigMap says what each cycle did.
async fn work(config: &DaemonConfig, publisher: &Publisher, metrics: &Shared) -> DaemonExit {
    let api = match (&config.consent, &config.settings.plan.kube) {
        (Some(name), Some(target)) => match ConsentApi::connect(target, name).await {
            Ok(api) => Some(api),
            Err(reason) => {
                tracing::info!(%reason, "no consent ConfigMap to read: METRICS_LEVEL rules");
                None
            }
        },
        _ => None,
    };
    // The status is written wherever there is an API to write it to (under DO_NOT_TRACK too:
    // it says why nothing is sent); the consent is read only where it can change anything.
    let status_api = api.clone();
    // History (#24): each send and each consent change seen, appended to hodometer-ledger.
    let ledger = status_api.as_ref().map(|api| {
        Ledger::new(
            LedgerApi::new(api.client().clone(), &api.namespace),
            config.ledger_budget,
        )
    });
    let governance = AsyncMutex::new(Governance::new(api, &config.settings));
    let api = governance.lock().await.consent_api().cloned();
    let first = governance.lock().await.decide().await;
    if let Some(ledger) = &ledger {
        ledger.observe_consent(&first).await;
    }
    let (updates, mut policies) = watch::channel(first);
    // Reads the consent and publishes the policy to the cycle and to a publish in flight.
    let refresh_policy = || async {
        let policy = governance.lock().await.decide().await;
        if let Some(ledger) = &ledger {
            ledger.observe_consent(&policy).await;
        }
        updates.send_if_modified(|current| {
            let changed = *current != policy;
            *current = policy;
            changed
        });
    };
    let refresh = config.interval.min(CONSENT_REFRESH);
    let changed = Notify::new();
    let poll = async {
        if api.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(refresh) => {}
                () = changed.notified() => tracing::debug!("the consent changed: reading it now"),
            }
            refresh_policy().await;
        }
    };
    let watcher = async {
        // One cycle and out: nothing to watch for.
        if let (Some(api), false) = (&api, config.once) {
            consent_watch::watch(api, &updates.subscribe(), &changed, refresh).await;
        }
        std::future::pending::<()>().await
    };
    let reporter = Reporter {
        settings: &config.settings,
        publisher,
        endpoints: &config.publish.endpoints,
        interval: Some(config.interval),
        person: None,
    };
    let cycles = async {
        let mut last: Option<Policy> = None;
        let mut last_status = ReporterStatus::default();
        let mut first_cycle = true;
        loop {
            // Every cycle starts from the consent as it is now.
            if !std::mem::take(&mut first_cycle) && api.is_some() {
                refresh_policy().await;
            }
            let policy = policies.borrow_and_update().clone();
            if last.as_ref() != Some(&policy) {
                reporter::log_policy(&policy);
            }
            let report =
                reporter::cycle(&reporter, policy.clone(), Some(policies.clone()), true).await;
            record(metrics, &report);
            last = Some(policy.clone());
            let all_ok = report.all_ok();
            if let Some(ledger) = &ledger {
                keep_history(ledger, &report).await;
            }
            let mut status = report.status;
            if let Some(ledger) = &ledger {
                ledger.status_into(&mut status).await;
            }
            status.carry_from(&last_status);
            last_status = status.clone();
            if config.once {
                write_status(status_api.as_ref(), status).await;
                return if all_ok {
                    DaemonExit::Clean
                } else {
                    DaemonExit::PublishFailed
                };
            }
            let pause = config.interval + jitter(config.interval);
            status.next_send_at = Some(SystemTime::now() + pause);
            write_status(status_api.as_ref(), status).await;
            let resident_file_kib_before = code_pages::resident_file_kib();
            let released = config.rest();
            tracing::debug!(
                next_in = ?pause,
                released,
                resident_file_kib_before,
                resident_file_kib_after = code_pages::resident_file_kib(),
                "waiting for the next collection"
            );
            // A change in what is shared starts a cycle at once: the acknowledgement is visible,
            // and a raised level need not wait for the next interval.
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = policies.wait_for(|p| !p.same_sharing(&policy)) => {
                    tracing::debug!("consent changed: collecting now");
                }
            }
        }
    };
    tokio::select! {
        exit = cycles => exit,
        () = poll => DaemonExit::Clean,
        () = watcher => DaemonExit::Clean,
    }
}

/// Appends the cycle's send, if it sent (or started to), to the history, and logs the head.
async fn keep_history(ledger: &Ledger, report: &Report) {
    let (Some(event), policy) = (&report.event, &report.policy) else {
        return;
    };
    let history = match &report.sent {
        Sent::Outcomes(outcomes) => ledger.record_send(event, outcomes, None, policy).await,
        Sent::Dropped(now) => {
            let why = format!("consent changed to level {} ({})", now.level, now.source);
            ledger.record_send(event, &[], Some(why), policy).await
        }
        Sent::Nothing(_) | Sent::Held => return,
    };
    if let Some(head) = history.head() {
        tracing::info!(history_head = head, "{}", history_message(&history));
    }
}

fn history_message(history: &History) -> &'static str {
    match history {
        History::Kept { .. } => "send recorded in the history",
        _ => "send not recorded: the history is not being kept",
    }
}

/// How often consent is re-read whatever the watch says: well within the 30 s in which a lowered
/// level must apply.
const CONSENT_REFRESH: Duration = Duration::from_secs(10);

/// Counts the cycle's collection and publish for `/metrics`; the daemon is ready after it.
fn record(metrics: &Shared, report: &Report) {
    let mut m = lock(metrics);
    if report.snapshot.is_some() {
        m.record_collection(if report.unknown.is_empty() {
            CollectionOutcome::Complete
        } else {
            CollectionOutcome::Partial
        });
    }
    if let Sent::Outcomes(outcomes) = &report.sent {
        m.record_publish(outcomes, SystemTime::now());
    }
    m.ready = true;
}

async fn write_status(api: Option<&ConsentApi>, mut status: ReporterStatus) {
    let Some(api) = api else { return };
    status.written_at = Some(SystemTime::now());
    if let Err(error) = api.replace_status(&status).await {
        tracing::warn!(%error, "cannot write the status ConfigMap");
    }
}

/// Up to 5% of the interval (at most 10 minutes), so a fleet restarted together spreads out.
fn jitter(interval: Duration) -> Duration {
    let span = (interval / 20).min(Duration::from_secs(600));
    span.mul_f64(fastrand::f64())
}

fn router(metrics: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(m): State<Shared>| async move {
                if lock(&m).ready {
                    (StatusCode::OK, "ready\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "first collection not finished\n",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Shared>| async move {
                let text = lock(&m).render();
                (
                    [(header::CONTENT_TYPE, crate::prometheus::CONTENT_TYPE)],
                    text,
                )
                    .into_response()
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    #[tokio::test]
    async fn a_failed_health_listener_ends_the_daemon_with_an_error() {
        let failed = async {
            Err(DaemonError::Serve {
                addr: addr(),
                source: std::io::Error::other("accept failed"),
            })
        };
        let result = supervise(
            std::future::pending(),
            failed,
            std::future::pending(),
            false,
        )
        .await;
        match result {
            Err(error @ DaemonError::Serve { .. }) => {
                let text = error.to_string();
                assert!(
                    text.contains("127.0.0.1:8080") && text.contains("accept failed"),
                    "{text}"
                );
            }
            other => panic!("expected a Serve error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn work_and_shutdown_end_the_daemon_as_before() {
        let pending_health = std::future::pending::<Result<(), DaemonError>>;
        let done = supervise(
            async { DaemonExit::PublishFailed },
            pending_health(),
            std::future::pending(),
            true,
        );
        assert_eq!(done.await.ok(), Some(DaemonExit::PublishFailed));
        let stopped = supervise(std::future::pending(), pending_health(), async {}, true);
        assert_eq!(stopped.await.ok(), Some(DaemonExit::PublishFailed));
        let stopped = supervise(std::future::pending(), pending_health(), async {}, false);
        assert_eq!(stopped.await.ok(), Some(DaemonExit::Clean));
        let served = supervise(
            std::future::pending(),
            async { Ok(()) },
            std::future::pending(),
            false,
        );
        assert_eq!(served.await.ok(), Some(DaemonExit::Clean));
    }
}
