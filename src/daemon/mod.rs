//! `hodometer daemon`: collect and publish at start and then every interval, headless, as a
//! drop-in for the original in-cluster component: same environment variables, same event.

mod code_pages;
mod governed;
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
use uuid::Uuid;

use crate::collect;
use crate::config::{PublishSettings, Settings};
use crate::metrics::Level;
use crate::payload::build_event;
use crate::publish::{EndpointOutcome, Publisher, describe_outcomes};
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

async fn work(config: &DaemonConfig, publisher: &Publisher, metrics: &Shared) -> DaemonExit {
    if let (Some(name), Some(target)) = (&config.consent, &config.settings.plan.kube) {
        match crate::consent::cluster::ConsentApi::connect(target, name).await {
            Ok(api) => return governed::work(config, &api, publisher, metrics).await,
            Err(reason) => {
                tracing::info!(%reason, "no consent ConfigMap to read: METRICS_LEVEL rules")
            }
        }
    }
    let level = config.settings.level;
    if level == Level::Off {
        let why = if config.settings.do_not_track {
            "DO_NOT_TRACK is set"
        } else {
            "the level is off"
        };
        tracing::info!("{why}: nothing is collected and nothing is published");
        lock(metrics).ready = true;
        if config.once {
            return DaemonExit::Clean;
        }
        config.rest();
        return std::future::pending().await;
    }
    loop {
        let all_ok = cycle(config, publisher, metrics).await;
        if config.once {
            return if all_ok {
                DaemonExit::Clean
            } else {
                DaemonExit::PublishFailed
            };
        }
        let pause = config.interval + jitter(config.interval);
        let resident_file_kib_before = code_pages::resident_file_kib();
        let released = config.rest();
        tracing::debug!(
            next_in = ?pause,
            released,
            resident_file_kib_before,
            resident_file_kib_after = code_pages::resident_file_kib(),
            "waiting for the next collection"
        );
        tokio::time::sleep(pause).await;
    }
}

/// Up to 5% of the interval (at most 10 minutes), so a fleet restarted together spreads out.
fn jitter(interval: Duration) -> Duration {
    let span = (interval / 20).min(Duration::from_secs(600));
    span.mul_f64(fastrand::f64())
}

/// One collection and publish; true when every endpoint accepted the event.
async fn cycle(config: &DaemonConfig, publisher: &Publisher, metrics: &Shared) -> bool {
    let settings = &config.settings;
    let (snapshot, unknown) = collect_and_record(settings, settings.level, metrics).await;

    let Some(event) = build_event(&snapshot, settings.level, &settings.token, Uuid::new_v4())
    else {
        return true;
    };
    let outcomes = publisher.publish(&event, &config.publish.endpoints).await;
    let all_ok = outcomes.iter().all(EndpointOutcome::is_ok);
    {
        let mut m = lock(metrics);
        m.record_publish(&outcomes, SystemTime::now());
        m.ready = true;
    }
    // One line per cycle: what was sent (by name, never values from model definitions) and how
    // each endpoint answered. The message itself says whether the event got out, so an operator
    // grepping the logs reads the truth without parsing `ok`.
    tracing::info!(
        metrics_level = %settings.level,
        sent = %event.fields.join(","),
        unknown = %unknown.join(","),
        endpoints = %describe_outcomes(&outcomes),
        ok = all_ok,
        "{}",
        cycle_message(&outcomes)
    );
    all_ok
}

/// Collects, logs the extensions' warnings and counts the collection; also the names of the
/// metrics `level` shares that are unknown.
async fn collect_and_record(
    settings: &Settings,
    level: Level,
    metrics: &Shared,
) -> (crate::metrics::Snapshot, Vec<&'static str>) {
    let snapshot = collect::collect(&settings.plan).await;
    crate::extensions::log_warnings(&snapshot.extensions);
    let unknown = snapshot.unknown_shared(level);
    let outcome = if unknown.is_empty() {
        CollectionOutcome::Complete
    } else {
        CollectionOutcome::Partial
    };
    lock(metrics).record_collection(outcome);
    (snapshot, unknown)
}

/// The per-cycle log message: published to every endpoint, to some, or to none.
fn cycle_message(outcomes: &[EndpointOutcome]) -> &'static str {
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    if accepted == outcomes.len() {
        "collected and published"
    } else if accepted > 0 {
        "collected and partly published"
    } else {
        "collected but not published"
    }
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

    fn outcome(index: usize, ok: bool) -> EndpointOutcome {
        EndpointOutcome {
            index,
            endpoint: format!("http://e{index}"),
            result: if ok {
                Ok(())
            } else {
                Err(crate::publish::PublishError::Connect {
                    reason: "refused".into(),
                })
            },
            attempts: 1,
            latency: Duration::ZERO,
            last_status: None,
        }
    }

    #[test]
    fn the_cycle_message_says_whether_the_event_got_out() {
        let (good, bad) = (outcome(0, true), outcome(1, false));
        assert_eq!(
            cycle_message(&[good.clone(), good.clone()]),
            "collected and published"
        );
        assert_eq!(
            cycle_message(&[bad.clone(), good]),
            "collected and partly published"
        );
        assert_eq!(
            cycle_message(&[bad.clone(), bad]),
            "collected but not published"
        );
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
