//! `hodometer inspect`: the interactive inspector. One event loop merges key presses,
//! a clock tick and results from background tasks; collections and sends run as tasks, so the
//! screen never waits on the network.

pub mod app;
#[cfg(test)]
mod fixtures;
pub mod keys;
pub mod ui;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::collect::{self, CollectPlan};
use crate::config::{PublishSettings, Settings};
use crate::metrics::Snapshot;
use crate::payload::Event;
use crate::publish::{EndpointOutcome, Publisher};
use app::{App, Effect, Info};

/// A validated inspector configuration.
pub struct InspectConfig {
    pub settings: Settings,
    pub publish: PublishSettings,
    pub refresh: Duration,
    /// `--log-file`; otherwise the per-user default (see `logging::init_to_file`).
    pub log_file: Option<PathBuf>,
}

/// What background tasks report to the event loop.
enum Msg {
    Collected(Snapshot),
    Outcome(EndpointOutcome),
}

/// Takes over the terminal until the operator quits; the terminal is restored on every exit,
/// a panic included (ratatui's `init` installs the hook).
/// `log_file` is where logs actually go, shown on the help screen.
pub async fn run(config: InspectConfig, log_file: &Path) -> anyhow::Result<()> {
    let publisher = Publisher::new(config.publish.policy.clone())?;
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &config, log_file, publisher).await;
    ratatui::restore();
    result
}

fn info(config: &InspectConfig, log_file: &Path) -> Info {
    let plan = &config.settings.plan;
    Info {
        cluster_id: plan.cluster_id.to_string(),
        scheduler: config.settings.scheduler_description(),
        kube: match &plan.kube {
            None => "(--no-kube)".into(),
            Some(target) => collect::kube::describe_target(target),
        },
        endpoints: config
            .publish
            .endpoints
            .iter()
            .map(|e| e.redacted().to_string())
            .collect(),
        log_file: log_file.display().to_string(),
        refresh_every: config.refresh,
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
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut keys = EventStream::new();
    // Ages on screen are in whole seconds: a redraw a second keeps them current.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();

    while !app.quit {
        if app.refresh_due() {
            app.on_refresh_started();
            tasks.push(spawn_refresh(config.settings.plan.clone(), tx.clone()));
        }
        terminal.draw(|frame| ui::render(&app, frame))?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) if key.kind == KeyEventKind::Press => {
                    if let Some(action) = keys::action_for(key, app.context()) {
                        match app.on_action(action) {
                            Some(Effect::Refresh) => tasks.push(spawn_refresh(config.settings.plan.clone(), tx.clone())),
                            Some(Effect::Send(event)) => tasks.push(spawn_send(&publisher, event, config, tx.clone())),
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
                Msg::Collected(snapshot) => app.on_snapshot(snapshot),
                Msg::Outcome(outcome) => app.on_outcome(outcome),
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

fn spawn_refresh(plan: CollectPlan, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let snapshot = collect::collect(&plan).await;
        let _ = tx.send(Msg::Collected(snapshot));
    })
}

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
            let _ = tx.send(Msg::Outcome(outcome));
        }
    })
}
