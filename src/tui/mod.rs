//! `hodometer inspect`: the interactive inspector (SPEC 6). One event loop merges key presses,
//! a clock tick and results from background tasks; collections and sends run as tasks, so the
//! screen never waits on the network.

pub mod app;
pub mod keys;
pub mod ui;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::collect::{self, CollectPlan};
use crate::config::{
    Checker, CommonArgs, ConfigErrors, PublishArgs, PublishSettings, Settings, parse_duration,
};
use crate::metrics::Snapshot;
use crate::payload::Event;
use crate::publish::{EndpointOutcome, Publisher};
use app::{App, Effect, Info};

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Time between background refreshes (r refreshes at once).
    #[arg(long, default_value = "5s")]
    pub refresh: String,
    /// Where the inspector writes its logs (never over the screen).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// A validated inspector configuration.
pub struct InspectConfig {
    pub settings: Settings,
    pub publish: PublishSettings,
    pub refresh: Duration,
    pub log_file: PathBuf,
}

/// The default log file: the inspector owns the terminal, so logs go to a file.
pub fn default_log_file() -> PathBuf {
    std::env::temp_dir().join("hodometer-inspect.log")
}

impl InspectArgs {
    pub fn validate(&self) -> Result<InspectConfig, ConfigErrors> {
        let mut c = Checker::default();
        let settings = self.common.check(&mut c, "localhost");
        let publish = self.publish.check(&mut c);
        let refresh = c.check("--refresh", &self.refresh, parse_duration);
        c.finish()?;
        match (settings, publish, refresh) {
            (Some(settings), Some(publish), Some(refresh)) => Ok(InspectConfig {
                settings,
                publish,
                refresh,
                log_file: self.log_file.clone().unwrap_or_else(default_log_file),
            }),
            _ => Err(ConfigErrors::default()),
        }
    }
}

/// What background tasks report to the event loop.
enum Msg {
    Collected(Snapshot),
    Outcome(EndpointOutcome),
}

/// Takes over the terminal until the operator quits; the terminal is restored on every exit,
/// a panic included (ratatui's `init` installs the hook).
pub async fn run(config: InspectConfig) -> anyhow::Result<()> {
    let publisher = Publisher::new(config.publish.policy.clone())?;
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &config, publisher).await;
    ratatui::restore();
    result
}

fn info(config: &InspectConfig) -> Info {
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
        log_file: config.log_file.display().to_string(),
        refresh_every: config.refresh,
    }
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    config: &InspectConfig,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let mut app = App::new(
        info(config),
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
