//! `hodometer inspect`: the interactive inspector. One event loop merges key presses,
//! a clock tick and results from background tasks; collections and sends run as tasks, so the
//! screen never waits on the network.

pub mod app;
#[cfg(test)]
mod fixtures;
mod forward_watch;
mod kept;
pub mod keys;
pub mod layout;
mod session;
pub mod switch;
pub mod ui;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{PublishSettings, Settings};
use crate::consent::Observed;
use crate::consent::cluster::ConsentApi;
use crate::k8s::KubeClient;
use crate::ledger::cluster::LedgerApi;
use crate::metrics::Snapshot;
use crate::payload::Event;
use crate::publish::{EndpointOutcome, Publisher};
use app::{App, Approval, Effect, HistoryView, Info};

/// A validated inspector configuration.
pub struct InspectConfig {
    pub settings: Settings,
    pub publish: PublishSettings,
    pub refresh: Duration,
    /// `--log-file`; otherwise the per-user default (see `logging::init_to_file`).
    pub log_file: Option<PathBuf>,
}

/// The inspector's fast-fail policy: how long a connection to a source may take. With one quick
/// retry, a source that is down is reported within about two seconds; the daemon keeps its
/// patient policy.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);

/// What background tasks report to the event loop.
enum Msg {
    Collected {
        /// The session it was collected in (see `session`).
        epoch: u64,
        snapshot: Snapshot,
        kube_server: Option<String>,
        /// The session's one Kubernetes client, once built.
        kube: Option<KubeClient>,
    },
    /// The namespaces of a context for the switch picker, or why they cannot be listed, and
    /// the one to start on.
    Namespaces {
        context: String,
        listed: Result<Vec<String>, String>,
        default: String,
    },
    /// An outcome of the send with this `$insert_id`.
    Outcome(Uuid, EndpointOutcome),
    /// The connection kept open to the scheduler closed, or opened again: look now.
    SchedulerChanged,
    /// The port-forward to the scheduler changed state.
    Forward(crate::k8s::forward::ForwardView),
    /// The in-cluster reporter and its consent, as read in the session of that epoch.
    Reporter(u64, Box<Observed>),
    /// The approval was written (`resourceVersion`, approver), or why not.
    Approved(Result<(String, String), String>),
    /// The in-cluster reporter's history, as read.
    History(Box<HistoryView>),
}

/// Takes over the terminal until the operator quits; the terminal is restored on every exit,
/// a panic included (ratatui's `try_init` installs the hook).
/// `log_file` is where logs actually go, shown on the help screen.
pub async fn run(config: InspectConfig, log_file: &Path) -> anyhow::Result<()> {
    let publisher = Publisher::new(config.publish.policy.clone())?;
    let mut terminal = ratatui::try_init()
        .context("cannot take over the terminal (raw mode or the alternate screen failed)")?;
    let result = event_loop(&mut terminal, &config, log_file, publisher).await;
    ratatui::restore();
    result
}

fn info(config: &InspectConfig, log_file: &Path) -> Info {
    let plan = &config.settings.plan;
    Info {
        cluster_id: plan.cluster_id.to_string(),
        scheduler: plan.scheduler.address(),
        scheduler_port_from: Some(config.settings.scheduler_port_from.to_string()),
        kube: match &plan.kube {
            None => "(--no-kube)".into(),
            Some(target) => crate::k8s::describe_target(target),
        },
        kubeconfig: plan
            .kube
            .as_ref()
            .and_then(|target| target.kubeconfig.as_ref())
            .map(|path| path.display().to_string()),
        endpoints: config
            .publish
            .endpoints
            .iter()
            .map(|e| e.redacted().to_string())
            .collect(),
        log_file: log_file.display().to_string(),
        refresh_every: config.refresh,
        do_not_track: config.settings.do_not_track,
        scheduler_fixed_by: plan
            .scheduler
            .forward()
            .is_none()
            .then(|| config.settings.scheduler_port_from.to_string()),
    }
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    config: &InspectConfig,
    log_file: &Path,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let mut app = App::new(
        info(config, log_file),
        config.settings.level,
        config.settings.token.clone(),
        SystemTime::now(),
    )
    .with_monochrome(without_colour(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    ));
    // This user's earlier sends, so `v` lists them after a restart.
    let kept_sends = kept::path();
    if let Some(path) = &kept_sends {
        match kept::load(path) {
            Ok((sends, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(skipped, path = %path.display(), "some kept sends could not be read");
                }
                app.sends = sends;
            }
            Err(error) => tracing::warn!(%error, "earlier sends not loaded"),
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut keys = EventStream::new();
    // Ages on screen are in whole seconds: a redraw a second keeps them current.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut session = session::Session::start(config.settings.plan.clone(), &mut app, &tx);

    while !app.quit {
        if app.refresh_due() {
            app.on_refresh_started();
            tasks.push(spawn_refresh(&session, tx.clone()));
        }
        let size = terminal.size()?;
        app.on_resize(size.width, size.height);
        terminal.draw(|frame| ui::render(&app, frame))?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) if key.kind == KeyEventKind::Press => {
                    // A namespace being typed takes letters as text, before any binding.
                    if app.on_text_key(key) {
                        continue;
                    }
                    if let Some(action) = keys::action_for(key, app.context()) {
                        match app.on_action(action) {
                            Some(Effect::Refresh) => tasks.push(spawn_refresh(&session, tx.clone())),
                            Some(Effect::Send(event)) => tasks.push(spawn_send(&publisher, event, config, tx.clone())),
                            Some(Effect::LoadHistory) => {
                                // Over the collection's client, as the consent and status.
                                let ledger = session.consent_api.as_ref().map(|api| {
                                    LedgerApi::new(api.client().clone(), &api.namespace)
                                });
                                tasks.push(spawn_history(ledger, tx.clone()));
                            }
                            Some(Effect::Approve(approval)) => {
                                match (&session.consent_api, &session.plan.kube) {
                                    (Some(api), Some(target)) => tasks.push(spawn_approve(
                                        api.clone(),
                                        target.clone(),
                                        approval,
                                        tx.clone(),
                                    )),
                                    _ => app.on_approved(Err(
                                        "no Kubernetes client: the reporter cannot be reached".into(),
                                    )),
                                }
                            }
                            Some(Effect::ListContexts) => app.on_contexts(
                                session
                                    .plan
                                    .kube
                                    .as_ref()
                                    .ok_or_else(|| "Kubernetes is not read (--no-kube)".to_string())
                                    .and_then(crate::k8s::contexts),
                            ),
                            Some(Effect::ListNamespaces(context)) => {
                                if let Some(target) = &session.plan.kube {
                                    tasks.push(spawn_namespaces(target, context, tx.clone()));
                                }
                            }
                            Some(Effect::SwitchContext { context, namespace }) => {
                                session.switch(&context, &namespace, &mut app, &tx);
                            }
                            None => {}
                        }
                    }
                }
                // A resize redraws on the next pass; other terminal events need nothing.
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
            Some(msg) = rx.recv() => match msg {
                // A collection of the cluster shown before a context switch is dropped.
                Msg::Collected { epoch, .. } if epoch != session.epoch => {}
                Msg::Collected { snapshot, kube_server, kube, .. } => {
                    app.kube_server = kube_server;
                    app.on_snapshot(snapshot);
                    if session.consent_api.is_none() && let Some(kube) = kube {
                        session.consent_api = Some(ConsentApi::over(
                            kube.client().clone(),
                            kube.namespace().to_string(),
                            &config.settings.consent_configmap,
                        ));
                    }
                    if let Some(api) = &session.consent_api {
                        tasks.push(spawn_reporter(api.clone(), session.epoch, tx.clone()));
                    }
                }
                Msg::Reporter(epoch, observed) => {
                    if epoch == session.epoch {
                        app.on_reporter(*observed);
                    }
                }
                Msg::Namespaces { context, listed, default } => {
                    app.on_namespaces(&context, listed, &default);
                }
                Msg::History(view) => app.on_history(*view),
                Msg::Approved(result) => {
                    app.on_approved(result);
                    // The consent's new version, and soon the reporter's acknowledgement.
                    if let Some(api) = &session.consent_api {
                        tasks.push(spawn_reporter(api.clone(), session.epoch, tx.clone()));
                    }
                }
                Msg::Outcome(insert_id, outcome) => {
                    app.on_outcome(insert_id, outcome);
                    let finished = app.send(insert_id).filter(|r| r.finished());
                    if let (Some(path), Some(record)) = (&kept_sends, finished)
                        && let Err(error) = kept::append(path, record)
                    {
                        tracing::warn!(%error, "the send could not be kept for later sessions");
                    }
                }
                Msg::Forward(view) => app.on_forward(view),
                Msg::SchedulerChanged => {
                    if let Some(Effect::Refresh) = app.on_action(keys::Action::Refresh) {
                        tasks.push(spawn_refresh(&session, tx.clone()));
                    }
                }
            },
            _ = tick.tick() => app.on_tick(SystemTime::now()),
        }
        tasks.retain(|t| !t.is_finished());
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Whether to draw without colours: `NO_COLOR` set to anything but empty (no-color.org), or a
/// terminal that has none (`TERM` unset, empty or `dumb`).
fn without_colour(no_color: Option<&std::ffi::OsStr>, term: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_some_and(|v| !v.is_empty()) || term.is_none_or(|t| t.is_empty() || t == "dumb")
}

/// Reads the in-cluster reporter's status and consent after each collection; nothing when
/// there is no usable Kubernetes configuration.
fn spawn_reporter(api: ConsentApi, epoch: u64, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tx.send(Msg::Reporter(epoch, Box::new(api.observe().await)));
    })
}

/// Lists the namespaces of `context` for the switch picker (the namespace in use first).
fn spawn_namespaces(
    target: &crate::k8s::KubeTarget,
    context: String,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    let mut target = target.clone();
    target.context = Some(context.clone());
    let default = target
        .namespace
        .clone()
        .unwrap_or_else(|| crate::k8s::DEFAULT_NAMESPACE.to_string());
    target.namespace = None;
    tokio::spawn(async move {
        let listed =
            tokio::time::timeout(Duration::from_secs(3), crate::k8s::list_namespaces(&target))
                .await
                .unwrap_or_else(|_| Err("the API server did not answer within 3s".into()));
        let _ = tx.send(Msg::Namespaces {
            context,
            listed,
            default,
        });
    })
}

/// Reads the in-cluster reporter's history (its ledger ConfigMap) for the history pane.
fn spawn_history(api: Option<LedgerApi>, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let data = match api {
            None => {
                Err("no Kubernetes client (yet): the in-cluster reporter cannot be read".into())
            }
            Some(api) => match api.read().await {
                Ok(Some(cm)) => Ok(cm.data.unwrap_or_default()),
                Ok(None) => Err(format!(
                    "no history: configmaps {} does not exist in namespace {} (the manifests that create it have not been applied)",
                    crate::ledger::LEDGER_CONFIGMAP,
                    api.namespace
                )),
                Err(error) => Err(error.to_string()),
            },
        };
        let _ = tx.send(Msg::History(Box::new(HistoryView::read(data))));
    })
}

/// Writes the approval the operator confirmed over the consent version it was shown with.
fn spawn_approve(
    api: ConsentApi,
    target: crate::k8s::KubeTarget,
    approval: Approval,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let result = async {
            let by = api.approver(&target).await;
            let data = approval.data(by.clone(), SystemTime::now());
            let written = api
                .write_consent(data, approval.seen_version.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(level = %approval.level, fields = approval.fields.len(), "consent written from the inspector");
            Ok((
                written.metadata.resource_version.unwrap_or_default(),
                by.unwrap_or_else(|| "?".into()),
            ))
        }
        .await;
        let _ = tx.send(Msg::Approved(result));
    })
}

/// One collection over the kept connections (one at a time: the app never starts two).
fn spawn_refresh(session: &session::Session, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    let sources = Arc::clone(&session.sources);
    let epoch = session.epoch;
    tokio::spawn(async move {
        let mut sources = sources.lock().await;
        let snapshot = sources.collect().await;
        // One line per refresh in the log file: what an operator (and a test) can count.
        tracing::info!(
            unknown = snapshot
                .unknown_shared(crate::metrics::Level::Feature)
                .len(),
            "inspector refreshed"
        );
        let kube_server = sources.kube_server().map(str::to_string);
        let kube = sources.kube().cloned();
        let _ = tx.send(Msg::Collected {
            epoch,
            snapshot,
            kube_server,
            kube,
        });
    })
}

/// Keeps an idle TCP connection to the scheduler and reports when it closes or cannot be made,
/// and when it can be made again, so a killed scheduler or a dead `kubectl port-forward` (and its
/// return) is looked at at once rather than at the next refresh. It sends nothing, and it is
/// renewed every [`WATCH_HOLD`] so a server shutting down gracefully never waits long for it.
fn spawn_watch(address: String, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watching = false;
        loop {
            let changed = match tokio::net::TcpStream::connect(&address).await {
                Ok(mut stream) => {
                    let came_back = !watching;
                    watching = true;
                    if came_back && tx.send(Msg::SchedulerChanged).is_err() {
                        return;
                    }
                    // Reads (and drops) whatever the server says until the connection ends.
                    let mut sink = tokio::io::sink();
                    let drain = tokio::io::copy(&mut stream, &mut sink);
                    if tokio::time::timeout(WATCH_HOLD, drain).await.is_err() {
                        continue;
                    }
                    std::mem::take(&mut watching)
                }
                Err(_) => std::mem::take(&mut watching),
            };
            if changed && tx.send(Msg::SchedulerChanged).is_err() {
                return;
            }
            tokio::time::sleep(WATCH_RETRY).await;
        }
    })
}

/// How long one watch connection is held before it is renewed.
const WATCH_HOLD: Duration = Duration::from_secs(10);

/// How often the watch tries to connect again while the scheduler is away.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// Sends exactly `event`, the one the operator confirmed, reporting each outcome as it arrives.
fn spawn_send(
    publisher: &Publisher,
    event: Event,
    config: &InspectConfig,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    let publisher = publisher.clone();
    let endpoints = config.publish.endpoints.clone();
    tokio::spawn(async move {
        let mut outcomes = std::pin::pin!(publisher.publish_each(&event, &endpoints));
        while let Some(outcome) = outcomes.next().await {
            tracing::info!(endpoint = %outcome.endpoint, outcome = outcome.outcome_label(), "sent from the inspector");
            let _ = tx.send(Msg::Outcome(event.insert_id, outcome));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::without_colour;

    #[test]
    fn no_color_or_a_terminal_without_colours_draws_in_monochrome() {
        let term = Some(OsStr::new("xterm-256color"));
        assert!(!without_colour(None, term));
        assert!(
            !without_colour(Some(OsStr::new("")), term),
            "empty NO_COLOR is unset"
        );
        assert!(without_colour(Some(OsStr::new("1")), term));
        assert!(without_colour(None, Some(OsStr::new("dumb"))));
        assert!(without_colour(None, Some(OsStr::new(""))));
        assert!(without_colour(None, None));
    }
}
