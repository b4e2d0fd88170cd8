//! The inspector's state and how it changes: keys, collection results and publish outcomes come
//! in, effects (refresh, send) go out. No I/O and no drawing here, so every transition is
//! unit-tested; rendering reads this state through `&App`.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::keys::{Action, Context};
use crate::metrics::{
    Level, METRIC_COUNT, METRICS, MetricId, Reading, RowKind, Snapshot, Source, Value,
};
use crate::payload::{Event, build_event};
use crate::publish::EndpointOutcome;

/// What the screen shows that never changes while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Info {
    pub cluster_id: String,
    pub scheduler: String,
    /// The kubeconfig context, or why Kubernetes is not read.
    pub kube: String,
    /// Every endpoint a send goes to, credentials redacted.
    pub endpoints: Vec<String>,
    pub log_file: String,
    pub refresh_every: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Metrics,
    Payload,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dialog {
    /// Asking: send this event (frozen when the dialog opened) to every endpoint?
    Confirm(Event),
    /// Sent; outcomes fill in as they arrive, by endpoint index.
    Sending {
        event: Event,
        outcomes: Vec<Option<EndpointOutcome>>,
    },
}

/// Work for the event loop to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Refresh,
    Send(Event),
}

/// How one metric is shown.
#[derive(Clone, Debug, PartialEq)]
pub enum Shown {
    Known(String),
    /// The latest collection could not read it; this is the last value read, and when.
    Stale {
        value: String,
        age: Duration,
        reason: String,
    },
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RowView {
    /// The property name: a metric's, or `ext.<key>` for an operator-supplied extension.
    pub name: String,
    pub level: Level,
    pub kind: RowKind,
    pub shown: Shown,
    /// Shared at the chosen level (a stale or unknown value is still left out of the payload).
    pub shared: bool,
}

/// The state of a source, for the header.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceState {
    Connecting,
    Connected(Option<String>),
    NotUsed(String),
    Down(String),
}

#[derive(Debug)]
pub struct App {
    pub info: Info,
    pub level: Level,
    pub view: View,
    pub help: bool,
    pub scroll: u16,
    pub dialog: Option<Dialog>,
    pub refreshing: bool,
    pub last_refresh: Option<SystemTime>,
    pub now: SystemTime,
    pub quit: bool,
    token: String,
    snapshot: Option<Snapshot>,
    /// Per metric: the last value read and when, to show while a source is down.
    last_known: Vec<Option<(Value, SystemTime)>>,
    /// The event the payload pane shows and a send would send.
    preview: Option<Event>,
    /// Makes each event's `$insert_id`; fixed in rendering tests.
    new_insert_id: fn() -> Uuid,
}

impl App {
    pub fn new(info: Info, level: Level, token: String, now: SystemTime) -> App {
        App {
            info,
            level,
            view: View::Metrics,
            help: false,
            scroll: 0,
            dialog: None,
            refreshing: false,
            last_refresh: None,
            now,
            quit: false,
            token,
            snapshot: None,
            last_known: vec![None; METRIC_COUNT],
            preview: None,
            new_insert_id: Uuid::new_v4,
        }
    }

    /// Deterministic `$insert_id`s, for tests that compare whole screens.
    pub fn with_insert_ids(mut self, new_insert_id: fn() -> Uuid) -> App {
        self.new_insert_id = new_insert_id;
        self
    }

    /// Which bindings apply now.
    pub fn context(&self) -> Context {
        match self.dialog {
            None => Context::Main,
            Some(Dialog::Confirm(_)) => Context::Dialog,
            Some(Dialog::Sending { .. }) => Context::Sent,
        }
    }

    pub fn on_action(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Quit => self.quit = true,
            Action::LevelDown => self.set_level(step(self.level, -1)),
            Action::LevelUp => self.set_level(step(self.level, 1)),
            Action::SetLevel(n) => {
                if let Some(level) = Level::ALL.get(usize::from(n)) {
                    self.set_level(*level);
                }
            }
            Action::TogglePayload => {
                self.view = if self.view == View::Metrics {
                    View::Payload
                } else {
                    View::Metrics
                };
                self.scroll = 0;
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::ScrollUp => self.scroll = self.scroll.saturating_sub(1),
            Action::ScrollDown => self.scroll = self.scroll.saturating_add(1),
            Action::Refresh => {
                if !self.refreshing {
                    self.refreshing = true;
                    return Some(Effect::Refresh);
                }
            }
            Action::Send => {
                self.help = false;
                // Nothing to send at level off, or before the first collection.
                if let Some(event) = &self.preview {
                    self.dialog = Some(Dialog::Confirm(event.clone()));
                }
            }
            Action::Confirm => {
                if let Some(Dialog::Confirm(event)) = self.dialog.take() {
                    let outcomes = vec![None; self.info.endpoints.len()];
                    self.dialog = Some(Dialog::Sending {
                        event: event.clone(),
                        outcomes,
                    });
                    return Some(Effect::Send(event));
                }
            }
            Action::Cancel => self.dialog = None,
        }
        None
    }

    /// The background refresh the event loop started on its own timer.
    pub fn on_refresh_started(&mut self) {
        self.refreshing = true;
    }

    pub fn on_snapshot(&mut self, snapshot: Snapshot) {
        for m in METRICS {
            if let Reading::Known(value) = snapshot.get(m.id) {
                self.last_known[m.id as usize] = Some((value.clone(), snapshot.collected_at));
            }
        }
        self.refreshing = false;
        self.last_refresh = Some(snapshot.collected_at);
        self.snapshot = Some(snapshot);
        self.rebuild_preview();
    }

    pub fn on_outcome(&mut self, outcome: EndpointOutcome) {
        if let Some(Dialog::Sending { outcomes, .. }) = &mut self.dialog
            && let Some(slot) = outcomes.get_mut(outcome.index)
        {
            *slot = Some(outcome);
        }
    }

    pub fn on_tick(&mut self, now: SystemTime) {
        self.now = now;
    }

    /// When the timer should start the next refresh.
    pub fn refresh_due(&self) -> bool {
        !self.refreshing
            && self
                .last_refresh
                .is_none_or(|last| age(self.now, last) >= self.info.refresh_every)
    }

    fn set_level(&mut self, level: Level) {
        if level != self.level {
            self.level = level;
            self.rebuild_preview();
        }
    }

    /// A new event (and `$insert_id`) whenever what would be sent changes.
    fn rebuild_preview(&mut self) {
        self.preview = self
            .snapshot
            .as_ref()
            .and_then(|s| build_event(s, self.level, &self.token, (self.new_insert_id)()));
    }

    pub fn preview(&self) -> Option<&Event> {
        self.preview.as_ref()
    }

    /// Every metric as the table shows it at the chosen level.
    pub fn rows(&self) -> Vec<RowView> {
        let Some(snapshot) = &self.snapshot else {
            return METRICS
                .iter()
                .map(|def| RowView {
                    name: def.name.into(),
                    level: def.level,
                    kind: RowKind::Metric(def),
                    shown: Shown::Unknown("not collected yet".into()),
                    shared: self.level.shares(def.level),
                })
                .collect();
        };
        snapshot
            .rows(self.level)
            .into_iter()
            .map(|row| {
                let shown = match row.reading {
                    Reading::Known(value) => Shown::Known(value.to_string()),
                    Reading::Unknown(reason) => match row
                        .kind
                        .metric()
                        .and_then(|def| self.last_known[def.id as usize].as_ref())
                    {
                        Some((value, at)) => Shown::Stale {
                            value: value.to_string(),
                            age: age(self.now, *at),
                            reason,
                        },
                        None => Shown::Unknown(reason),
                    },
                };
                RowView {
                    name: row.name,
                    level: row.level,
                    kind: row.kind,
                    shown,
                    shared: row.shared,
                }
            })
            .collect()
    }

    pub fn scheduler_state(&self) -> SourceState {
        let Some(s) = &self.snapshot else {
            return SourceState::Connecting;
        };
        let answered = METRICS
            .iter()
            .filter(|m| m.source == Source::Scheduler && m.id != MetricId::SeldonCoreVersion)
            .any(|m| matches!(s.get(m.id), Reading::Known(_)));
        match (answered, s.get(MetricId::ModelCount)) {
            (true, _) => SourceState::Connected(
                s.get(MetricId::SeldonCoreVersion)
                    .known()
                    .map(|v| v.to_string()),
            ),
            (false, Reading::Unknown(reason)) => SourceState::Down(reason.clone()),
            (false, Reading::Known(_)) => SourceState::Connected(None),
        }
    }

    pub fn kube_state(&self) -> SourceState {
        let Some(s) = &self.snapshot else {
            return SourceState::Connecting;
        };
        match s.get(MetricId::IsKubernetes) {
            Reading::Known(Value::Bool(true)) => SourceState::Connected(
                s.get(MetricId::KubernetesVersion)
                    .known()
                    .map(|v| v.to_string()),
            ),
            Reading::Known(_) => SourceState::NotUsed(match s.get(MetricId::NodeCount) {
                Reading::Unknown(reason) => reason.clone(),
                Reading::Known(_) => "not a Kubernetes installation".into(),
            }),
            Reading::Unknown(reason) => SourceState::Down(reason.clone()),
        }
    }
}

fn step(level: Level, by: i32) -> Level {
    let index = Level::ALL.iter().position(|l| *l == level).unwrap_or(0) as i32;
    let next = (index + by).clamp(0, Level::ALL.len() as i32 - 1) as usize;
    Level::ALL[next]
}

/// How long ago `then` was; zero if the clock went backwards.
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;
    use crate::tui::fixtures::{at, healthy, info, scheduler_down};

    fn app() -> App {
        App::new(info(), Level::Cluster, "tok".into(), at(0))
    }

    fn shared_names(app: &App) -> Vec<String> {
        app.rows()
            .into_iter()
            .filter(|r| r.shared)
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn levels_change_with_arrows_and_digits_and_stop_at_the_ends() {
        let mut app = app();
        app.on_action(Action::LevelUp);
        assert_eq!(app.level, Level::Resource);
        app.on_action(Action::LevelUp);
        app.on_action(Action::LevelUp);
        assert_eq!(app.level, Level::Feature);
        app.on_action(Action::SetLevel(0));
        assert_eq!(app.level, Level::Off);
        app.on_action(Action::LevelDown);
        assert_eq!(app.level, Level::Off);
        app.on_action(Action::SetLevel(9));
        assert_eq!(app.level, Level::Off, "no such level");
    }

    #[test]
    fn rows_flip_between_shared_and_withheld_with_the_level() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        assert!(shared_names(&app).contains(&"node_count".into()));
        assert!(!shared_names(&app).contains(&"model_count".into()));
        app.on_action(Action::SetLevel(2));
        assert!(shared_names(&app).contains(&"model_count".into()));
        app.on_action(Action::SetLevel(0));
        assert!(shared_names(&app).is_empty());
    }

    #[test]
    fn the_preview_is_rebuilt_for_each_level_and_absent_at_off() {
        let mut app = app();
        assert!(
            app.preview().is_none(),
            "nothing before the first collection"
        );
        app.on_snapshot(healthy(at(0)));
        let cluster = app.preview().expect("preview").clone();
        assert!(!cluster.fields.iter().any(|f| f == "model_count"));
        app.on_action(Action::SetLevel(3));
        let feature = app.preview().expect("preview").clone();
        assert!(feature.fields.iter().any(|f| f == "gpu_enabled_count"));
        assert_ne!(
            cluster.insert_id, feature.insert_id,
            "a different event is a new insert id"
        );
        app.on_action(Action::SetLevel(0));
        assert!(app.preview().is_none());
    }

    #[test]
    fn send_needs_confirmation_and_sends_the_event_that_was_shown() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        let shown = app.preview().expect("preview").clone();
        assert_eq!(
            app.on_action(Action::Send),
            None,
            "nothing leaves without confirmation"
        );
        assert_eq!(app.context(), Context::Dialog);
        // A refresh while the dialog is open changes the preview, not what was confirmed.
        app.on_snapshot(healthy(at(5)));
        assert_ne!(app.preview().expect("preview"), &shown);
        assert_eq!(
            app.on_action(Action::Confirm),
            Some(Effect::Send(shown.clone()))
        );
        match &app.dialog {
            Some(Dialog::Sending { event, outcomes }) => {
                assert_eq!(event, &shown);
                assert_eq!(outcomes.len(), 2);
            }
            other => panic!("expected the sending dialog, got {other:?}"),
        }
        assert_eq!(
            app.context(),
            Context::Sent,
            "once sent, the dialog only closes"
        );
        assert_eq!(app.on_action(Action::Cancel), None);
        assert_eq!(app.context(), Context::Main);
    }

    #[test]
    fn cancel_sends_nothing_and_nothing_is_sent_at_off() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        assert_eq!(app.on_action(Action::Cancel), None);
        assert!(app.dialog.is_none());
        app.on_action(Action::SetLevel(0));
        assert_eq!(app.on_action(Action::Send), None);
        assert!(
            app.dialog.is_none(),
            "no dialog when there is nothing to send"
        );
    }

    #[test]
    fn outcomes_fill_in_by_endpoint() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        app.on_action(Action::Confirm);
        app.on_outcome(EndpointOutcome {
            index: 1,
            endpoint: "http://127.0.0.1:8001/".into(),
            result: Err(PublishError::Rejected {
                error: "bad token".into(),
            }),
            attempts: 1,
            latency: Duration::from_millis(12),
            last_status: Some(200),
        });
        match &app.dialog {
            Some(Dialog::Sending { outcomes, .. }) => {
                assert!(outcomes[0].is_none());
                assert_eq!(outcomes[1].as_ref().map(|o| o.attempts), Some(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_values_marked_stale_with_their_age() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_snapshot(scheduler_down(at(60)));
        app.on_tick(at(90));
        let model = app
            .rows()
            .into_iter()
            .find(|r| r.name == "model_count")
            .expect("row");
        match model.shown {
            Shown::Stale { value, age, reason } => {
                assert_eq!(value, "3");
                assert_eq!(age, Duration::from_secs(90));
                assert!(reason.contains("no complete answer"));
            }
            other => panic!("expected stale, got {other:?}"),
        }
        // Stale values are shown, never sent.
        app.on_action(Action::SetLevel(3));
        assert!(
            !app.preview()
                .expect("preview")
                .fields
                .iter()
                .any(|f| f == "model_count")
        );
        assert!(matches!(app.scheduler_state(), SourceState::Down(_)));
        app.on_snapshot(healthy(at(95)));
        assert!(
            matches!(app.scheduler_state(), SourceState::Connected(Some(_))),
            "picked up again"
        );
    }

    #[test]
    fn refresh_is_due_on_the_timer_and_never_twice_at_once() {
        let mut app = app();
        assert!(app.refresh_due(), "at start");
        assert_eq!(app.on_action(Action::Refresh), Some(Effect::Refresh));
        assert!(!app.refresh_due());
        assert_eq!(
            app.on_action(Action::Refresh),
            None,
            "one refresh at a time"
        );
        app.on_snapshot(healthy(at(0)));
        app.on_tick(at(3));
        assert!(!app.refresh_due());
        app.on_tick(at(5));
        assert!(app.refresh_due());
    }

    #[test]
    fn quit_from_the_main_screen() {
        let mut app = app();
        app.on_action(Action::Quit);
        assert!(app.quit);
    }
}
