//! The inspector's state and how it changes: keys, collection results and publish outcomes come
//! in, effects (refresh, send) go out. No I/O and no drawing here, so every transition is
//! unit-tested; rendering reads this state through `&App`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::keys::{Action, Context};
use super::switch::{Picker, Step};
use crate::consent::{self, Consent, ConsentReading, ConsentSeen, Observed};
use crate::k8s::forward::{ForwardView, LinkState};
use crate::metrics::{
    Level, METRIC_COUNT, METRICS, MetricId, Reading, RowKind, Snapshot, Source, Value,
};
use crate::payload::{Event, build_event};
use crate::policy::{self, ConsentFound, ConsentRead, Policy, Source as PolicySource};
use crate::publish::EndpointOutcome;

/// What the screen shows that never changes while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Info {
    pub cluster_id: String,
    /// The scheduler's `host:port`.
    pub scheduler: String,
    /// The setting the port came from (`SCHEDULER_PLAINTXT_PORT`, its alias, …), when known.
    pub scheduler_port_from: Option<String>,
    /// The kubeconfig context, or why Kubernetes is not read.
    pub kube: String,
    /// The kubeconfig file named on purpose (`--kubeconfig`, the demo's sandbox), for the help.
    pub kubeconfig: Option<String>,
    /// Every endpoint a send goes to, credentials redacted.
    pub endpoints: Vec<String>,
    pub log_file: String,
    pub refresh_every: Duration,
    /// `DO_NOT_TRACK` is set: the level is locked at off and nothing can be sent.
    pub do_not_track: bool,
    /// The setting that fixed the scheduler's address, when one did: a context switch cannot
    /// move it.
    pub scheduler_fixed_by: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Metrics,
    Payload,
    /// The in-cluster reporter's last event, from its status.
    ReporterEvent,
}

/// How the payload is shown: indented for reading, or the bytes exactly as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadForm {
    Pretty,
    Raw,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dialog {
    /// Asking: send this event to every endpoint? The screen behind stays frozen on it.
    Confirm(Event),
    /// One send of this session, by its `$insert_id`: outcomes as they arrive, and its bytes.
    Sent(Uuid),
    /// Every send of this session; `selected` is an index into [`App::sends`].
    Sends { selected: usize },
    /// Asking: write this consent for the in-cluster reporter?
    Approve(Approval),
    /// Switching the kubeconfig context and namespace.
    Switch(Picker),
    /// One row described in full, by its property name.
    Describe(String),
    /// The sources, the in-cluster reporter and this session's approval in full.
    Details,
    /// The in-cluster reporter's history; `selected` indexes its entries (the newest when
    /// opened).
    History { selected: usize },
}

/// The in-cluster reporter's history (the ledger ConfigMap), as read for the history pane.
#[derive(Clone, Debug)]
pub enum HistoryView {
    Loading,
    /// Why it could not be read (no ConfigMap, forbidden, no Kubernetes).
    Failed(String),
    Loaded {
        entries: Vec<crate::ledger::Listed>,
        /// What `hodometer history verify` would say.
        verification: crate::ledger::Verification,
    },
}

impl HistoryView {
    /// From the ledger's data as read.
    pub fn read(data: Result<BTreeMap<String, String>, String>) -> HistoryView {
        match data {
            Err(why) => HistoryView::Failed(why),
            Ok(data) => HistoryView::Loaded {
                entries: crate::ledger::list(&data).1,
                verification: crate::ledger::verify(&data, &[]),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            HistoryView::Loaded { entries, .. } => entries.len(),
            _ => 0,
        }
    }
}

/// An approval for the in-cluster reporter, as the dialog shows it and as it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub level: Level,
    /// Exactly the fields approved, sorted.
    pub fields: Vec<String>,
    /// The consent's `resourceVersion` when the dialog opened (`None`: it does not exist). The
    /// write replaces exactly that version, so someone else's change in between is a conflict.
    pub seen_version: Option<String>,
    /// What that version said, shown so the operator knows what the approval replaces.
    pub replaces: Option<ConsentReading>,
}

impl Approval {
    /// The consent ConfigMap's data, approved by `by` at `at`.
    pub fn data(&self, by: Option<String>, at: SystemTime) -> BTreeMap<String, String> {
        consent::consent_data(&Consent {
            level: self.level,
            fields: self.fields.iter().cloned().collect(),
            approved_by: by,
            approved_at: Some(at),
            note: None,
        })
    }
}

/// Where this session's last approval stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalStage {
    Writing,
    /// Written at this `resourceVersion`: waiting for the reporter to follow it.
    Written {
        version: String,
        by: String,
    },
    /// Not written: the conflict, the missing permission or the failure.
    Failed(String),
}

/// This session's approval as the cluster shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    Writing,
    Failed(String),
    /// Written; the reporter does not follow it yet.
    Pending {
        version: String,
        by: String,
    },
    /// The reporter's status follows this version.
    Acknowledged {
        version: String,
        by: String,
    },
    /// Someone else has written the consent since (or deleted it): what it says now.
    Replaced {
        version: String,
        level: String,
        by: Option<String>,
    },
}

impl ApprovalState {
    pub fn describe(&self) -> String {
        match self {
            ApprovalState::Writing => "writing the consent ConfigMap…".into(),
            ApprovalState::Failed(why) => format!("not written: {why}"),
            // The state first: on a narrow screen the version and approver give way, not it.
            ApprovalState::Pending { version, by } => format!(
                "waiting for the reporter to acknowledge (written at resourceVersion {version}, by {by})"
            ),
            ApprovalState::Acknowledged { version, by } => format!(
                "acknowledged by the reporter (written at resourceVersion {version}, by {by})"
            ),
            ApprovalState::Replaced { version, level, by } => format!(
                "replaced by {} (level {level}, resourceVersion {version})",
                by.as_deref().unwrap_or("someone else")
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRecord {
    pub approval: Approval,
    pub stage: ApprovalStage,
}

/// One send of this session. Its outcomes keep arriving whether or not a dialog shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SendRecord {
    pub event: Event,
    pub at: SystemTime,
    /// One per endpoint, in the publisher's order; `None` until that endpoint's outcome arrives.
    pub outcomes: Vec<Option<EndpointOutcome>>,
    /// Sent by an earlier session (kept in the state directory).
    pub earlier: bool,
}

impl SendRecord {
    pub fn finished(&self) -> bool {
        self.outcomes.iter().all(Option::is_some)
    }
}

/// Work for the event loop to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Refresh,
    Send(Event),
    /// Write this consent ConfigMap.
    Approve(Approval),
    /// Read the kubeconfig's contexts for the picker.
    ListContexts,
    /// List the namespaces of this context for the picker.
    ListNamespaces(String),
    /// Reconnect everything to this context and namespace.
    SwitchContext {
        context: String,
        namespace: String,
    },
    /// Read the in-cluster reporter's history.
    LoadHistory,
}

/// Rows a page key moves.
const PAGE: i16 = 10;

/// Samples of a numeric metric kept for its trend: enough for a sparkline at any width used.
pub const TREND_SAMPLES: usize = 24;

/// A numeric metric over this session: recent values and when it last changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trend {
    pub samples: VecDeque<f64>,
    /// When each sample was read, oldest first: the window the trend covers.
    pub times: VecDeque<SystemTime>,
    /// When the value last changed, and by how much.
    pub last_change: Option<(SystemTime, f64)>,
}

impl Trend {
    fn push(&mut self, value: f64, at: SystemTime) {
        if let Some(&last) = self.samples.back()
            && last != value
        {
            self.last_change = Some((at, value - last));
        }
        if self.samples.len() == TREND_SAMPLES {
            self.samples.pop_front();
            self.times.pop_front();
        }
        self.samples.push_back(value);
        self.times.push_back(at);
    }

    /// How long the kept samples span.
    pub fn window(&self) -> Duration {
        match (self.times.front(), self.times.back()) {
            (Some(first), Some(last)) => age(*last, *first),
            _ => Duration::ZERO,
        }
    }
}

/// A row of the proposal (the level on screen) against what the in-cluster reporter shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Approving the proposal adds it.
    Added,
    /// Approving the proposal stops it.
    Removed,
}

/// What an approval changes against the consent it replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Approved fields the reporter already shares.
    pub kept: usize,
}

/// `proposed` against `current`: added, removed (both sorted), and how many stay.
pub fn field_diff(proposed: &[String], current: &BTreeSet<String>) -> FieldDiff {
    let proposed: BTreeSet<&String> = proposed.iter().collect();
    FieldDiff {
        added: proposed
            .iter()
            .filter(|f| !current.contains(**f))
            .map(|f| (*f).clone())
            .collect(),
        removed: current
            .iter()
            .filter(|f| !proposed.contains(f))
            .cloned()
            .collect(),
        kept: proposed.iter().filter(|f| current.contains(**f)).count(),
    }
}

/// The fields approving `level` approves: every field the snapshot can carry at or below it.
pub fn proposed_fields(snapshot: Option<&Snapshot>, level: Level) -> Vec<String> {
    let mut fields: Vec<String> = match snapshot {
        Some(snapshot) => policy::candidate_fields(snapshot)
            .into_iter()
            .filter(|(_, at)| level.shares(*at))
            .map(|(name, _)| name)
            .collect(),
        None => consent::metric_fields_at(level).into_iter().collect(),
    };
    fields.sort();
    fields
}

/// Whether `name` contains the filter `filter`, ignoring case; an empty filter matches all.
pub fn matches_filter(name: &str, filter: &str) -> bool {
    name.to_lowercase().contains(&filter.to_lowercase())
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
pub struct RowView<'a> {
    /// The property name: a metric's, or `ext.<key>` for an operator-supplied extension.
    pub name: String,
    pub level: Level,
    pub kind: RowKind,
    pub shown: Shown,
    /// Shared at the chosen level (a stale or unknown value is still left out of the payload).
    pub shared: bool,
    /// What the in-cluster reporter does with it, once its status was read.
    pub in_cluster: Option<InCluster>,
    /// Against the reporter, what approving the level on screen changes (`None`: nothing, or
    /// no reporter).
    pub change: Option<Change>,
    /// Numeric metrics only.
    pub trend: Option<&'a Trend>,
}

/// A field as the in-cluster reporter treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InCluster {
    Shares,
    /// At or below its level but not approved: withheld until someone approves it.
    Pending,
    Withholds,
}

/// The state of a source, for the header.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceState {
    Connecting,
    Connected(Option<String>),
    NotUsed(String),
    Down(String),
    /// The port-forward ended (or found no Ready pod yet) and is being opened again.
    Reconnecting(String),
}

#[derive(Debug)]
pub struct App {
    pub info: Info,
    pub level: Level,
    pub view: View,
    pub help: bool,
    pub scroll: u16,
    /// The selected row among the rows the filter lets through.
    pub selected: usize,
    /// Rows whose name contains this are shown (empty: all).
    pub filter: String,
    /// The filter is being typed.
    pub filtering: bool,
    /// No colours: shared, withheld, pending and unknown differ by text, symbol and weight.
    pub monochrome: bool,
    /// The terminal is below the smallest size drawn: nothing but the too-small screen shows,
    /// so no key may act on what cannot be seen (a hidden dialog's `y` must not send).
    pub too_small: bool,
    /// Scroll inside a dialog (a send's bytes can be longer than the screen).
    pub dialog_scroll: u16,
    pub dialog: Option<Dialog>,
    pub payload_form: PayloadForm,
    /// Why the last key did nothing (a refused send, a locked level); cleared by the next key.
    pub message: Option<String>,
    /// Every send of this session, oldest first.
    pub sends: Vec<SendRecord>,
    /// The Kubernetes API server, once a client was built.
    pub kube_server: Option<String>,
    /// The port-forward to the scheduler, when it is reached through one: where and its state.
    pub forward: Option<ForwardView>,
    /// The in-cluster reporter and its consent, once read.
    pub reporter: Option<Observed>,
    /// This session's last approval for the in-cluster reporter.
    pub approval: Option<ApprovalRecord>,
    /// The reporter's history, once asked for (`H`).
    pub history: Option<HistoryView>,
    pub refreshing: bool,
    pub last_refresh: Option<SystemTime>,
    pub now: SystemTime,
    pub quit: bool,
    token: String,
    snapshot: Option<Snapshot>,
    /// A collection that arrived while the screen was frozen on a confirmation.
    held: Option<Snapshot>,
    /// Per metric: the last value read and when, to show while a source is down.
    last_known: Vec<Option<(Value, SystemTime)>>,
    trends: Vec<Trend>,
    /// The event the payload pane shows and a send would send.
    preview: Option<Event>,
    /// Makes each event's `$insert_id`; fixed in rendering tests.
    new_insert_id: fn() -> Uuid,
}

impl App {
    pub fn new(info: Info, level: Level, token: String, now: SystemTime) -> App {
        // The level bar starts at what the run's policy allows (DO_NOT_TRACK: off).
        let level = policy::decide(
            info.do_not_track,
            level,
            &ConsentRead::NotGoverned,
            &Default::default(),
        )
        .level;
        App {
            info,
            level,
            view: View::Metrics,
            help: false,
            scroll: 0,
            selected: 0,
            filter: String::new(),
            filtering: false,
            monochrome: false,
            too_small: false,
            dialog_scroll: 0,
            dialog: None,
            payload_form: PayloadForm::Pretty,
            message: None,
            sends: Vec::new(),
            kube_server: None,
            forward: None,
            reporter: None,
            approval: None,
            history: None,
            refreshing: false,
            last_refresh: None,
            now,
            quit: false,
            token,
            snapshot: None,
            held: None,
            last_known: vec![None; METRIC_COUNT],
            trends: vec![Trend::default(); METRIC_COUNT],
            preview: None,
            new_insert_id: Uuid::new_v4,
        }
    }

    /// Deterministic `$insert_id`s, for tests that compare whole screens.
    pub fn with_insert_ids(mut self, new_insert_id: fn() -> Uuid) -> App {
        self.new_insert_id = new_insert_id;
        self
    }

    /// Drawn without colours (`NO_COLOR`, a terminal without colours).
    pub fn with_monochrome(mut self, monochrome: bool) -> App {
        self.monochrome = monochrome;
        self
    }

    /// Which bindings apply now.
    pub fn context(&self) -> Context {
        match self.dialog {
            None if self.help => Context::Help,
            None if self.filtering => Context::Filter,
            None => Context::Main,
            Some(Dialog::Describe(_)) => Context::Describe,
            Some(Dialog::Details) => Context::Details,
            Some(Dialog::Confirm(_)) => Context::Confirm,
            Some(Dialog::Sent(_)) => Context::Sent,
            Some(Dialog::Sends { .. }) => Context::Sends,
            Some(Dialog::Approve(_)) => Context::Approve,
            Some(Dialog::Switch(ref picker)) => picker.key_context(),
            Some(Dialog::History { .. }) => Context::History,
        }
    }

    /// The terminal's size, before each draw.
    pub fn on_resize(&mut self, width: u16, height: u16) {
        self.too_small = super::layout::fit(width, height) == super::layout::Fit::TooSmall;
    }

    pub fn on_action(&mut self, action: Action) -> Option<Effect> {
        if self.too_small && !matches!(action, Action::Quit) {
            return None;
        }
        self.message = None;
        match action {
            Action::Quit => self.quit = true,
            Action::LevelDown => self.set_level(step(self.level, -1)),
            Action::LevelUp => self.set_level(step(self.level, 1)),
            Action::SetLevel(n) => {
                if let Some(level) = Level::ALL.get(usize::from(n)) {
                    self.set_level(*level);
                }
            }
            Action::TogglePayload => self.toggle_view(View::Payload),
            Action::ToggleReporterEvent => match &self.reporter {
                None => {
                    self.message = Some(format!(
                        "no in-cluster reporter to show: it has not been read (Kubernetes {})",
                        self.info.kube
                    ));
                }
                Some(observed) if observed.status.is_none() => {
                    self.message = Some(format!("no in-cluster reporter event: {}", observed.line));
                }
                Some(_) => self.toggle_view(View::ReporterEvent),
            },
            Action::Approve => self.ask_to_approve(),
            Action::TogglePayloadForm => {
                self.payload_form = match self.payload_form {
                    PayloadForm::Pretty => PayloadForm::Raw,
                    PayloadForm::Raw => PayloadForm::Pretty,
                };
            }
            Action::ToggleHelp => {
                self.help = !self.help;
                self.dialog_scroll = 0;
            }
            Action::ScrollUp => self.scroll_by(-1),
            Action::ScrollDown => self.scroll_by(1),
            Action::PageUp => self.scroll_by(-PAGE),
            Action::PageDown => self.scroll_by(PAGE),
            Action::Describe => {
                if let Some(row) = self.selected_row() {
                    self.dialog = Some(Dialog::Describe(row.name));
                    self.dialog_scroll = 0;
                }
            }
            Action::Details => {
                self.dialog = Some(Dialog::Details);
                self.dialog_scroll = 0;
            }
            Action::Filter => {
                self.filtering = true;
                self.view = View::Metrics;
            }
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.selected = 0;
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.selected = 0;
            }
            Action::FilterDone => self.filtering = false,
            Action::ClearFilter => {
                self.filtering = false;
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.selected = 0;
                }
            }
            Action::Refresh => {
                if !self.refreshing {
                    self.refreshing = true;
                    return Some(Effect::Refresh);
                }
            }
            Action::Send => self.ask_to_send(),
            Action::Confirm => return self.confirm(),
            Action::ListSends => {
                self.help = false;
                if self.sends.is_empty() {
                    self.message = Some("nothing was sent from this inspector yet".into());
                } else {
                    self.dialog = Some(Dialog::Sends {
                        selected: self.sends.len() - 1,
                    });
                }
            }
            Action::Open => {
                if let Some(Dialog::Sends { selected }) = self.dialog
                    && let Some(record) = self.sends.get(selected)
                {
                    self.dialog = Some(Dialog::Sent(record.event.insert_id));
                    self.dialog_scroll = 0;
                }
            }
            Action::ShowHistory => {
                self.help = false;
                self.dialog = Some(Dialog::History {
                    selected: self
                        .history
                        .as_ref()
                        .map_or(0, |h| h.len().saturating_sub(1)),
                });
                if !matches!(self.history, Some(HistoryView::Loaded { .. })) {
                    self.history = Some(HistoryView::Loading);
                }
                // Read again each time it opens: the reporter keeps appending.
                return Some(Effect::LoadHistory);
            }
            Action::Close => self.close(),
            Action::ListContexts => return self.ask_to_switch(),
            Action::Choose => return self.choose(),
        }
        None
    }

    /// Opens the context picker, unless the scheduler's address was given: a switch could not
    /// move it, and one cluster's scheduler with another's Kubernetes would mix two clusters.
    fn ask_to_switch(&mut self) -> Option<Effect> {
        self.help = false;
        if let Some(setting) = &self.info.scheduler_fixed_by {
            self.message = Some(format!(
                "the scheduler address {} was set by {setting}: switching the context cannot move it (start without it to switch)",
                self.info.scheduler
            ));
            return None;
        }
        Some(Effect::ListContexts)
    }

    /// The kubeconfig's contexts (and the one in use), or why they cannot be read.
    pub fn on_contexts(&mut self, contexts: Result<(Vec<String>, Option<String>), String>) {
        match contexts {
            Ok((names, _)) if names.is_empty() => {
                self.message = Some("the kubeconfig has no contexts".into());
            }
            Ok((names, current)) => {
                let selected = current
                    .as_ref()
                    .and_then(|c| names.iter().position(|n| n == c))
                    .unwrap_or(0);
                self.dialog = Some(Dialog::Switch(Picker::Contexts {
                    names,
                    current,
                    selected,
                }));
            }
            Err(why) => self.message = Some(format!("cannot list the contexts: {why}")),
        }
    }

    /// The namespaces of `context` for the picker, or why they cannot be listed.
    pub fn on_namespaces(
        &mut self,
        context: &str,
        listed: Result<Vec<String>, String>,
        default: &str,
    ) {
        if let Some(Dialog::Switch(picker)) = &mut self.dialog {
            picker.on_namespaces(context, listed, default);
        }
    }

    fn choose(&mut self) -> Option<Effect> {
        let Some(Dialog::Switch(picker)) = &mut self.dialog else {
            return None;
        };
        match picker.choose() {
            Ok(Step::ListNamespaces(context)) => Some(Effect::ListNamespaces(context)),
            Ok(Step::Switch { context, namespace }) => {
                self.dialog = None;
                Some(Effect::SwitchContext { context, namespace })
            }
            Err(why) => {
                self.message = Some(why);
                None
            }
        }
    }

    /// A key typed into the namespace field: `true` when it was text for it.
    pub fn on_text_key(&mut self, key: crossterm::event::KeyEvent) -> bool {
        use crossterm::event::{KeyCode, KeyModifiers};
        let Some(Dialog::Switch(picker)) = &mut self.dialog else {
            return false;
        };
        if !(key.modifiers - KeyModifiers::SHIFT).is_empty() {
            return false;
        }
        match key.code {
            KeyCode::Char(ch) => picker.type_char(ch),
            KeyCode::Backspace => picker.backspace(),
            _ => false,
        }
    }

    /// Everything now comes from another cluster: its id, its Kubernetes, its scheduler. What
    /// was read from the last one is forgotten (values, trends, the reporter), so two clusters'
    /// numbers never mix; this session's sends stay listed.
    pub fn on_switched(&mut self, cluster_id: String, kube: String, scheduler: String) {
        self.info.cluster_id = cluster_id;
        self.info.kube = kube;
        self.info.scheduler = scheduler;
        self.snapshot = None;
        self.held = None;
        self.preview = None;
        self.reporter = None;
        self.approval = None;
        self.kube_server = None;
        self.forward = None;
        self.last_refresh = None;
        self.refreshing = false;
        self.last_known = vec![None; METRIC_COUNT];
        self.trends = vec![Trend::default(); METRIC_COUNT];
        self.scroll = 0;
        // The last cluster's history too.
        self.history = None;
    }

    /// The history as read; the selection moves to the newest entry when it was there before.
    pub fn on_history(&mut self, view: HistoryView) {
        let before = self.history.as_ref().map_or(0, HistoryView::len);
        let newest = view.len().saturating_sub(1);
        if let Some(Dialog::History { selected }) = &mut self.dialog
            && (*selected + 1 >= before || *selected > newest)
        {
            *selected = newest;
        }
        self.history = Some(view);
    }

    /// Shows `view`, or the metrics again when it is already shown.
    fn toggle_view(&mut self, view: View) {
        self.view = if self.view == view {
            View::Metrics
        } else {
            view
        };
        self.scroll = 0;
    }

    fn scroll_by(&mut self, by: i16) {
        let step = |at: u16| at.saturating_add_signed(by);
        match &mut self.dialog {
            None if self.help => self.dialog_scroll = step(self.dialog_scroll),
            None if self.view == View::Metrics => {
                let last = self.visible_rows().len().saturating_sub(1);
                let at = i64::try_from(self.selected).unwrap_or(i64::MAX) + i64::from(by);
                self.selected = usize::try_from(at.max(0)).unwrap_or(0).min(last);
            }
            None => self.scroll = step(self.scroll),
            Some(Dialog::Switch(picker)) => picker.scroll(by),
            Some(Dialog::History { selected }) => {
                let last = self
                    .history
                    .as_ref()
                    .map_or(0, HistoryView::len)
                    .saturating_sub(1);
                *selected = if by < 0 {
                    selected.saturating_sub(1)
                } else {
                    (*selected + 1).min(last)
                };
            }
            Some(Dialog::Sends { selected }) => {
                let last = self.sends.len().saturating_sub(1);
                *selected = if by < 0 {
                    selected.saturating_sub(usize::from(by.unsigned_abs()))
                } else {
                    (*selected + usize::from(by.unsigned_abs())).min(last)
                };
            }
            Some(_) => self.dialog_scroll = step(self.dialog_scroll),
        }
    }

    fn ask_to_send(&mut self) {
        self.help = false;
        if self.policy().source == PolicySource::DoNotTrack {
            self.message = Some("DO_NOT_TRACK is set: nothing is sent from this session".into());
            return;
        }
        if let Some(busy) = self.sends.iter().find(|s| !s.finished()) {
            self.message = Some(format!(
                "the send {} is still waiting for outcomes: try again once it is done (v: sends)",
                short_id(busy.event.insert_id)
            ));
            return;
        }
        match &self.preview {
            Some(event) => self.dialog = Some(Dialog::Confirm(event.clone())),
            None if self.policy().source == PolicySource::InvalidConsent => {
                self.message = self.consent_bound();
            }
            None if self.snapshot.is_some() && self.level != Level::Off => {
                self.message = Some(match self.consent_bound() {
                    Some(bound) => format!("nothing to send: {bound}, none of them known"),
                    None => "nothing to send: no field is known".into(),
                });
            }
            None if self.level == Level::Off => {
                self.message = Some("level off: nothing to send".into());
            }
            None => self.message = Some("nothing to send before the first collection".into()),
        }
    }

    /// Opens "approve for the in-cluster reporter" on the level and fields on screen, when the
    /// consent can be written from here.
    fn ask_to_approve(&mut self) {
        self.help = false;
        let Some(observed) = &self.reporter else {
            self.message = Some(format!(
                "no in-cluster reporter to approve for: it has not been read (Kubernetes {})",
                self.info.kube
            ));
            return;
        };
        if matches!(
            self.approval,
            Some(ApprovalRecord {
                stage: ApprovalStage::Writing,
                ..
            })
        ) {
            self.message = Some("the last approval is still being written".into());
            return;
        }
        let (seen_version, replaces) = match &observed.consent {
            ConsentSeen::Missing => (None, None),
            ConsentSeen::Found {
                resource_version,
                reading,
            } => (Some(resource_version.clone()), Some(reading.clone())),
            ConsentSeen::Unreadable(why) => {
                self.message = Some(format!("cannot read the consent to approve over it: {why}"));
                return;
            }
        };
        let fields = proposed_fields(self.snapshot.as_ref(), self.level);
        self.dialog = Some(Dialog::Approve(Approval {
            level: self.level,
            fields,
            seen_version,
            replaces,
        }));
        self.dialog_scroll = 0;
    }

    /// The outcome of writing the approval: the `resourceVersion` written and who approved it,
    /// or why nothing was written.
    pub fn on_approved(&mut self, result: Result<(String, String), String>) {
        if let Some(record) = &mut self.approval {
            record.stage = match result {
                Ok((version, by)) => ApprovalStage::Written { version, by },
                Err(why) => ApprovalStage::Failed(why),
            };
            // Also said on the message line: a short terminal may not have room for the header's.
            self.message = self.approval_message();
        }
    }

    /// Where this session's last approval stands in the cluster, by the last read of the consent
    /// and of the reporter's status.
    pub fn approval_state(&self) -> Option<ApprovalState> {
        let record = self.approval.as_ref()?;
        let (version, by) = match &record.stage {
            ApprovalStage::Writing => return Some(ApprovalState::Writing),
            ApprovalStage::Failed(why) => return Some(ApprovalState::Failed(why.clone())),
            ApprovalStage::Written { version, by } => (version.clone(), by.clone()),
        };
        let observed = self.reporter.as_ref();
        // Someone else wrote the consent since: it is at a version that is neither ours nor the
        // one ours replaced (a read that started before our write still shows that one).
        match observed.map(|o| &o.consent) {
            Some(ConsentSeen::Found {
                resource_version,
                reading,
            }) if *resource_version != version
                && Some(resource_version) != record.approval.seen_version.as_ref() =>
            {
                let (level, by) = match reading {
                    ConsentReading::Given(consent) => (
                        consent.level.as_str().to_string(),
                        consent.approved_by.clone(),
                    ),
                    ConsentReading::Unset => ("none (empty)".to_string(), None),
                    ConsentReading::Invalid(_) => ("invalid".to_string(), None),
                };
                return Some(ApprovalState::Replaced {
                    version: resource_version.clone(),
                    level,
                    by,
                });
            }
            Some(ConsentSeen::Missing) => {
                return Some(ApprovalState::Replaced {
                    version: "none: deleted".into(),
                    level: "none".into(),
                    by: None,
                });
            }
            _ => {}
        }
        let acknowledged = observed
            .and_then(|o| o.status.as_ref())
            .is_some_and(|status| status.consent_version.as_ref() == Some(&version));
        Some(if acknowledged {
            ApprovalState::Acknowledged { version, by }
        } else {
            ApprovalState::Pending { version, by }
        })
    }

    /// Whether the in-cluster reporter follows this session's written approval.
    pub fn approval_acknowledged(&self) -> bool {
        matches!(
            self.approval_state(),
            Some(ApprovalState::Acknowledged { .. })
        )
    }

    /// The approval's state in words, as the header says it and the message line repeats it.
    fn approval_message(&self) -> Option<String> {
        let state = self.approval_state()?;
        Some(match state {
            ApprovalState::Failed(why) => format!("consent not written: {why}"),
            other => format!("your approval: {}", other.describe()),
        })
    }

    /// The reporter as read. The screen opens on its level, and follows it while the level on
    /// screen is the reporter's (not a proposal of another).
    pub fn on_reporter(&mut self, observed: Observed) {
        let before = self.reporter_level();
        self.reporter = Some(observed);
        if let Some(now) = self.reporter_level()
            && (before.is_none() || before == Some(self.level))
            && self.dialog.is_none()
        {
            self.set_level_quietly(now);
        }
        // The message line follows the approval, never contradicting the header.
        if self
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("your approval: "))
        {
            self.message = self.approval_message();
        }
        // What may be sent follows the consent; a confirmation on screen keeps its event (a send
        // is checked against the consent when confirmed).
        if !matches!(self.dialog, Some(Dialog::Confirm(_))) {
            self.rebuild_preview();
        }
    }

    /// What the consent says is approved now, as the approve dialog diffs against it: a valid
    /// consent's fields at its level; with none (the environment rules), what the reporter
    /// shares; an invalid consent shares nothing.
    pub fn approved_now(&self) -> BTreeSet<String> {
        let Some(observed) = &self.reporter else {
            return BTreeSet::new();
        };
        let reporter_shares = || {
            observed
                .status
                .as_ref()
                .map(|s| s.shared.clone())
                .unwrap_or_default()
        };
        match &observed.consent {
            ConsentSeen::Found {
                reading: ConsentReading::Given(given),
                ..
            } => {
                let levels: BTreeMap<String, Level> = match &self.snapshot {
                    Some(snapshot) => policy::candidate_fields(snapshot).into_iter().collect(),
                    None => METRICS
                        .iter()
                        .map(|m| (m.name.to_string(), m.level))
                        .collect(),
                };
                given
                    .fields
                    .iter()
                    .filter(|f| levels.get(*f).is_none_or(|at| given.level.shares(*at)))
                    .cloned()
                    .collect()
            }
            ConsentSeen::Found {
                reading: ConsentReading::Invalid(_),
                ..
            } => BTreeSet::new(),
            _ => reporter_shares(),
        }
    }

    /// What an approval changes against the consent it replaces.
    pub fn approval_diff(&self, approval: &Approval) -> FieldDiff {
        let fields = if approval.level == Level::Off {
            Vec::new()
        } else {
            approval.fields.clone()
        };
        field_diff(&fields, &self.approved_now())
    }

    /// Fields of the event's level whose values are unknown (so left out), with the reason.
    pub fn unknown_at(&self, level: Level) -> Vec<(String, String)> {
        self.rows()
            .into_iter()
            .filter(|row| level.shares(row.level))
            .filter_map(|row| match row.shown {
                Shown::Known(_) => None,
                Shown::Stale { reason, .. } | Shown::Unknown(reason) => Some((row.name, reason)),
            })
            .collect()
    }

    /// The rows the filter lets through.
    pub fn visible_rows(&self) -> Vec<RowView<'_>> {
        self.rows()
            .into_iter()
            .filter(|row| matches_filter(&row.name, &self.filter))
            .collect()
    }

    /// The row selected, if the filter leaves any.
    pub fn selected_row(&self) -> Option<RowView<'_>> {
        let mut rows = self.visible_rows();
        let at = self.selected.min(rows.len().checked_sub(1)?);
        Some(rows.swap_remove(at))
    }

    fn confirm(&mut self) -> Option<Effect> {
        if let Some(Dialog::Approve(approval)) = &self.dialog {
            let approval = approval.clone();
            self.dialog = None;
            self.approval = Some(ApprovalRecord {
                approval: approval.clone(),
                stage: ApprovalStage::Writing,
            });
            return Some(Effect::Approve(approval));
        }
        let Some(Dialog::Confirm(event)) = self.dialog.take() else {
            return None;
        };
        if !self.policy().covers(event.level, &event.fields) {
            self.message = Some(
                "nothing sent: the consent changed while confirming and no longer approves this event"
                    .into(),
            );
            self.rebuild_preview();
            return None;
        }
        self.sends.push(SendRecord {
            event: event.clone(),
            at: self.now,
            outcomes: vec![None; self.info.endpoints.len()],
            earlier: false,
        });
        self.dialog = Some(Dialog::Sent(event.insert_id));
        self.dialog_scroll = 0;
        self.release_held();
        Some(Effect::Send(event))
    }

    /// Closing never ends a send: its outcomes keep arriving into the session list.
    fn close(&mut self) {
        if self.dialog.take().is_none() {
            self.help = false;
        }
        self.dialog_scroll = 0;
        self.release_held();
    }

    fn release_held(&mut self) {
        if let Some(snapshot) = self.held.take() {
            self.on_snapshot(snapshot);
        }
    }

    /// The send a dialog shows, if any.
    pub fn send(&self, insert_id: Uuid) -> Option<&SendRecord> {
        self.sends.iter().find(|s| s.event.insert_id == insert_id)
    }

    /// The background refresh the event loop started on its own timer.
    pub fn on_refresh_started(&mut self) {
        self.refreshing = true;
    }

    pub fn on_snapshot(&mut self, snapshot: Snapshot) {
        // While a send is being confirmed the screen shows exactly that event: hold what came.
        if matches!(self.dialog, Some(Dialog::Confirm(_))) {
            self.refreshing = false;
            self.last_refresh = Some(snapshot.collected_at);
            self.held = Some(snapshot);
            return;
        }
        for m in METRICS {
            if let Reading::Known(value) = snapshot.get(m.id) {
                self.last_known[m.id as usize] = Some((value.clone(), snapshot.collected_at));
                if let Some(number) = numeric(value) {
                    self.trends[m.id as usize].push(number, snapshot.collected_at);
                }
            }
        }
        self.refreshing = false;
        self.last_refresh = Some(snapshot.collected_at);
        self.snapshot = Some(snapshot);
        self.rebuild_preview();
    }

    /// An outcome of the send whose `$insert_id` is `insert_id`, whichever dialog is open.
    pub fn on_outcome(&mut self, insert_id: Uuid, outcome: EndpointOutcome) {
        if let Some(record) = self
            .sends
            .iter_mut()
            .find(|s| s.event.insert_id == insert_id)
            && let Some(slot) = record.outcomes.get_mut(outcome.index)
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
        if self.policy().source == PolicySource::DoNotTrack {
            self.message = Some("DO_NOT_TRACK is set: the level stays off".into());
            return;
        }
        self.set_level_quietly(level);
    }

    fn set_level_quietly(&mut self, level: Level) {
        if level != self.level && !self.info.do_not_track {
            self.level = level;
            self.rebuild_preview();
        }
    }

    /// What this session may send: the chosen level under the run's policy — `DO_NOT_TRACK`, and
    /// the in-cluster consent as last read (an invalid one: nothing) — never more than either.
    pub fn policy(&self) -> Policy {
        let read = match self.reporter.as_ref().map(|r| &r.consent) {
            None => ConsentRead::NotGoverned,
            Some(ConsentSeen::Missing) => ConsentRead::Found(ConsentFound::Absent),
            Some(ConsentSeen::Found {
                resource_version,
                reading,
            }) => ConsentRead::Found(ConsentFound::from_reading(
                reading.clone(),
                resource_version.clone(),
            )),
            Some(ConsentSeen::Unreadable(why)) => ConsentRead::Unreadable {
                forbidden: why.starts_with("forbidden"),
                error: why.clone(),
            },
        };
        policy::decide(
            self.info.do_not_track,
            self.level,
            &read,
            &Default::default(),
        )
        .at_most(self.level)
    }

    /// When a consent bounds what this session sends, a line saying so (for the send dialog).
    pub fn consent_bound(&self) -> Option<String> {
        let policy = self.policy();
        let name = self
            .reporter
            .as_ref()
            .map_or("the consent", |r| r.consent_configmap.as_str());
        match policy.source {
            PolicySource::Consent => Some(format!(
                "bounded by the consent {name} (level {}, resourceVersion {}): only the fields it approves",
                policy.level,
                policy.consent_version.as_deref().unwrap_or("?")
            )),
            PolicySource::InvalidConsent => {
                Some(format!("the consent {name} is invalid: nothing is sent"))
            }
            PolicySource::Environment | PolicySource::DoNotTrack => None,
        }
    }

    /// A new event (and `$insert_id`) whenever what would be sent changes.
    fn rebuild_preview(&mut self) {
        let policy = self.policy();
        let preview = self
            .snapshot
            .as_ref()
            .and_then(|s| build_event(s, &policy, &self.token, (self.new_insert_id)()));
        // The same bytes keep their `$insert_id`: a reporter read that changes nothing does not
        // make a new event.
        let same = match (&self.preview, &preview) {
            (Some(old), Some(new)) => {
                old.level == new.level && old.fields == new.fields && {
                    let old_bytes = old.json.replace(&old.insert_id.to_string(), "");
                    let new_bytes = new.json.replace(&new.insert_id.to_string(), "");
                    old_bytes == new_bytes
                }
            }
            _ => false,
        };
        if !same {
            self.preview = preview;
        }
    }

    pub fn preview(&self) -> Option<&Event> {
        self.preview.as_ref()
    }

    /// Every metric as the table shows it at the chosen level.
    pub fn rows(&self) -> Vec<RowView<'_>> {
        let policy = self.policy();
        let Some(snapshot) = &self.snapshot else {
            return METRICS
                .iter()
                .map(|def| RowView {
                    name: def.name.into(),
                    level: def.level,
                    kind: RowKind::Metric(def),
                    shown: Shown::Unknown("not collected yet".into()),
                    shared: policy.allows(def.name, def.level),
                    in_cluster: self.in_cluster(def.name),
                    change: self.change(def.name, def.level),
                    trend: None,
                })
                .collect();
        };
        // Read at the policy's level: `metrics_level` shows what a send would say.
        snapshot
            .rows(policy.level)
            .into_iter()
            .map(|row| {
                let shown = match row.reading {
                    Reading::Known(_) if row.name == MetricId::MetricsLevel.name() => {
                        Shown::Known(self.metrics_level_shown())
                    }
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
                // Extensions are text: only metrics have a trend.
                let trend = row.kind.metric().map(|def| &self.trends[def.id as usize]);
                RowView {
                    in_cluster: self.in_cluster(&row.name),
                    change: self.change(&row.name, row.level),
                    // Shared as a send from here would share it: under a consent, only approved.
                    shared: policy.allows(&row.name, row.level),
                    name: row.name,
                    level: row.level,
                    kind: row.kind,
                    shown,
                    trend: trend.filter(|trend| !trend.samples.is_empty()),
                }
            })
            .collect()
    }

    /// What the in-cluster reporter does with the field `name`, by its last status.
    fn in_cluster(&self, name: &str) -> Option<InCluster> {
        let status = self.reporter.as_ref()?.status.as_ref()?;
        status.level?;
        Some(if status.shared.contains(name) {
            InCluster::Shares
        } else if status.pending.contains(name) {
            InCluster::Pending
        } else {
            InCluster::Withholds
        })
    }

    /// Against the reporter, what approving the level on screen does to the field `name`.
    fn change(&self, name: &str, level: Level) -> Option<Change> {
        let shares_now = self.in_cluster(name)? == InCluster::Shares;
        match (shares_now, self.level.shares(level)) {
            (false, true) => Some(Change::Added),
            (true, false) => Some(Change::Removed),
            _ => None,
        }
    }

    /// `metrics_level` as the table shows it: with a reporter, the level it sends, and the
    /// proposal's when that differs; alone, the level on screen.
    fn metrics_level_shown(&self) -> String {
        let proposal = match self.level {
            Level::Off => "off (nothing is sent)".to_string(),
            level => level.to_string(),
        };
        match self.reporter_level() {
            Some(now) if now != self.level => format!("{now} → {proposal}"),
            Some(now) => now.to_string(),
            None => proposal,
        }
    }

    /// The in-cluster reporter's level, by its last status.
    pub fn reporter_level(&self) -> Option<Level> {
        self.reporter.as_ref()?.status.as_ref()?.level
    }

    /// The port-forward's state changed.
    pub fn on_forward(&mut self, view: ForwardView) {
        self.forward = Some(view);
    }

    pub fn scheduler_state(&self) -> SourceState {
        // Over a port-forward the forward itself says when the connection went away, before
        // any call notices.
        match self.forward.as_ref().map(|f| &f.state) {
            Some(LinkState::Closed { reason, .. }) => {
                return SourceState::Reconnecting(reason.clone());
            }
            Some(LinkState::Failed {
                reason,
                permanent: false,
            }) => return SourceState::Reconnecting(reason.clone()),
            // A refused forward is down for as long as nobody grants the permission: its own
            // words name it, shorter than any call's error quoting it.
            Some(LinkState::Failed {
                reason,
                permanent: true,
            }) if self.snapshot.is_some() => return SourceState::Down(reason.clone()),
            _ => {}
        }
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
            Reading::Unknown(reason) if reason == crate::collect::KUBE_NOT_READ => {
                SourceState::NotUsed("not read".into())
            }
            Reading::Unknown(reason) => SourceState::Down(reason.clone()),
        }
    }
}

fn step(level: Level, by: i32) -> Level {
    let index = Level::ALL.iter().position(|l| *l == level).unwrap_or(0) as i32;
    let next = (index + by).clamp(0, Level::ALL.len() as i32 - 1) as usize;
    Level::ALL[next]
}

/// The value a trend follows: counts and sums, not text or flags.
fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Float(x) => Some(*x),
        Value::Text(_) | Value::Bool(_) => None,
    }
}

/// The first eight hex digits of an `$insert_id`: enough to tell this session's sends apart.
pub fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// How long ago `then` was; zero if the clock went backwards.
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;
    use crate::tui::fixtures::{at, healthy, info, reporter, scheduler_down};

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

    fn outcome(index: usize, result: Result<(), PublishError>) -> EndpointOutcome {
        EndpointOutcome {
            index,
            endpoint: format!("endpoint {index}"),
            result,
            attempts: 1,
            latency: Duration::from_millis(12),
            last_status: Some(200),
        }
    }

    fn rejected() -> Result<(), PublishError> {
        Err(PublishError::Rejected {
            error: "bad token".into(),
        })
    }

    #[test]
    fn send_needs_confirmation_and_the_screen_stays_on_the_event_being_confirmed() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        let shown = app.preview().expect("preview").clone();
        assert_eq!(
            app.on_action(Action::Send),
            None,
            "nothing leaves without confirmation"
        );
        assert_eq!(app.context(), Context::Confirm);
        // A refresh while the dialog is open is held: the screen does not change under it.
        app.on_snapshot(healthy(at(5)));
        assert_eq!(app.preview(), Some(&shown), "the preview froze");
        assert_eq!(
            app.on_action(Action::Confirm),
            Some(Effect::Send(shown.clone()))
        );
        assert_eq!(app.dialog, Some(Dialog::Sent(shown.insert_id)));
        let record = app.send(shown.insert_id).expect("recorded");
        assert_eq!(record.event, shown);
        assert_eq!(record.outcomes.len(), 2);
        assert_ne!(
            app.preview(),
            Some(&shown),
            "the held refresh is shown once the confirmation is over"
        );
        assert_eq!(
            app.context(),
            Context::Sent,
            "once sent, the dialog only closes"
        );
        assert_eq!(app.on_action(Action::Close), None);
        assert_eq!(app.context(), Context::Main);
    }

    #[test]
    fn cancel_sends_nothing_and_nothing_is_sent_at_off() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        assert_eq!(app.on_action(Action::Close), None);
        assert!(app.dialog.is_none());
        assert!(app.sends.is_empty());
        app.on_action(Action::SetLevel(0));
        assert_eq!(app.on_action(Action::Send), None);
        assert!(
            app.dialog.is_none(),
            "no dialog when there is nothing to send"
        );
        assert!(app.message.as_deref().is_some_and(|m| m.contains("off")));
    }

    #[test]
    fn do_not_track_locks_the_level_at_off_and_nothing_can_be_sent() {
        let mut info = info();
        info.do_not_track = true;
        let mut app = App::new(info, Level::Feature, "tok".into(), at(0));
        assert_eq!(app.level, Level::Off, "DO_NOT_TRACK wins over --level");
        app.on_snapshot(healthy(at(0)));
        for action in [Action::SetLevel(3), Action::LevelUp] {
            app.on_action(action);
            assert_eq!(app.level, Level::Off);
            assert!(
                app.message
                    .as_deref()
                    .is_some_and(|m| m.contains("DO_NOT_TRACK"))
            );
        }
        assert_eq!(app.on_action(Action::Send), None);
        assert_eq!(app.on_action(Action::Confirm), None);
        assert!(app.dialog.is_none() && app.sends.is_empty());
        assert!(app.preview().is_none());
    }

    #[test]
    fn outcomes_are_matched_to_their_send_by_insert_id() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        let first = match app.on_action(Action::Confirm) {
            Some(Effect::Send(event)) => event.insert_id,
            other => panic!("{other:?}"),
        };
        app.on_outcome(first, outcome(1, Ok(())));
        app.on_action(Action::Close);
        // The first send is still waiting for endpoint 0: a second one is refused, visibly.
        app.on_action(Action::Send);
        assert!(app.dialog.is_none());
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.contains(&short_id(first))),
            "{:?}",
            app.message
        );
        app.on_outcome(first, outcome(0, rejected()));
        assert!(app.send(first).expect("first").finished());

        app.on_snapshot(healthy(at(5)));
        app.on_action(Action::Send);
        let second = match app.on_action(Action::Confirm) {
            Some(Effect::Send(event)) => event.insert_id,
            other => panic!("{other:?}"),
        };
        assert_ne!(first, second);
        // A late outcome of the first send lands in the first send, never in the open dialog.
        app.on_outcome(first, outcome(1, rejected()));
        app.on_outcome(second, outcome(0, Ok(())));
        let second_record = app.send(second).expect("second");
        assert!(
            second_record.outcomes[0]
                .as_ref()
                .is_some_and(|o| o.is_ok())
        );
        assert!(
            second_record.outcomes[1].is_none(),
            "nothing arrived for it"
        );
        let first_record = app.send(first).expect("first");
        assert!(
            first_record.outcomes[0]
                .as_ref()
                .is_some_and(|o| !o.is_ok())
        );
        assert_eq!(app.dialog, Some(Dialog::Sent(second)));
    }

    #[test]
    fn the_session_list_opens_each_send() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::ListSends);
        assert!(app.dialog.is_none(), "nothing to list yet");
        let mut ids = Vec::new();
        for level in [1, 3] {
            app.on_action(Action::SetLevel(level));
            app.on_action(Action::Send);
            if let Some(Effect::Send(event)) = app.on_action(Action::Confirm) {
                ids.push(event.insert_id);
                app.on_outcome(event.insert_id, outcome(0, Ok(())));
                app.on_outcome(event.insert_id, outcome(1, Ok(())));
            }
            app.on_action(Action::Close);
        }
        app.on_action(Action::ListSends);
        assert_eq!(
            app.dialog,
            Some(Dialog::Sends { selected: 1 }),
            "newest first selected"
        );
        app.on_action(Action::ScrollUp);
        app.on_action(Action::Open);
        assert_eq!(app.dialog, Some(Dialog::Sent(ids[0])));
        assert_eq!(app.send(ids[0]).expect("first").event.level, Level::Cluster);
    }

    #[test]
    fn trends_follow_numeric_metrics_and_mark_the_last_change() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        let mut more = healthy(at(5));
        more.set(MetricId::ModelCount, Reading::Known(Value::Integer(5)));
        app.on_snapshot(more);
        let rows = app.rows();
        let model = rows.iter().find(|r| r.name == "model_count").expect("row");
        let trend = model.trend.expect("a count has a trend");
        assert_eq!(trend.samples, [3.0, 5.0]);
        assert_eq!(trend.last_change, Some((at(5), 2.0)));
        let version = rows
            .iter()
            .find(|r| r.name == "kubernetes_version")
            .expect("row");
        assert!(version.trend.is_none(), "text has no trend");
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
    fn approve_opens_on_the_level_shown_and_writes_over_the_version_seen() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_reporter(reporter("cluster", "7", &["node_count"], &[]));
        app.on_action(Action::SetLevel(2));
        assert_eq!(app.on_action(Action::Approve), None, "asks first");
        let expected = Approval {
            level: Level::Resource,
            fields: consent::metric_fields_at(Level::Resource)
                .into_iter()
                .collect(),
            seen_version: Some("7".into()),
            replaces: Some(ConsentReading::Unset),
        };
        assert_eq!(app.dialog, Some(Dialog::Approve(expected.clone())));
        assert_eq!(app.context(), Context::Approve);
        // The level can no longer change under the dialog: keys go to the dialog.
        assert_eq!(
            app.on_action(Action::Confirm),
            Some(Effect::Approve(expected))
        );
        assert!(app.dialog.is_none());
        assert!(matches!(
            app.approval.as_ref().map(|a| &a.stage),
            Some(ApprovalStage::Writing)
        ));
        app.on_approved(Ok(("8".into(), "alice".into())));
        assert!(!app.approval_acknowledged(), "the reporter still follows 7");
        app.on_reporter(reporter(
            "resource",
            "8",
            &["node_count", "model_count"],
            &[],
        ));
        assert!(app.approval_acknowledged());
        assert_eq!(app.reporter_level(), Some(Level::Resource));
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.starts_with("your approval: acknowledged")),
            "the message line follows the header, 'waiting' no longer: {:?}",
            app.message
        );
    }

    #[test]
    fn a_send_from_the_inspector_is_bounded_by_the_consent_in_force() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::SetLevel(3));
        assert!(app.preview().is_some_and(|e| e.fields.len() > 10));
        let mut observed = reporter("cluster", "7", &["node_count"], &[]);
        observed.consent = ConsentSeen::Found {
            resource_version: "7".into(),
            reading: ConsentReading::Given(Consent {
                level: Level::Cluster,
                fields: ["node_count".to_string()].into_iter().collect(),
                approved_by: None,
                approved_at: None,
                note: None,
            }),
        };
        app.on_reporter(observed.clone());
        let preview = app.preview().expect("an approved field");
        assert_eq!(preview.fields, ["node_count"]);
        assert!(!preview.json.contains("cluster_id"), "{}", preview.json);
        assert!(
            app.consent_bound()
                .is_some_and(|b| b.contains("level cluster, resourceVersion 7")),
            "{:?}",
            app.consent_bound()
        );
        // The consent narrows while the operator confirms: nothing is sent.
        app.on_action(Action::Send);
        assert_eq!(app.context(), Context::Confirm);
        observed.consent = ConsentSeen::Found {
            resource_version: "8".into(),
            reading: ConsentReading::Invalid("unknown key \"Level\"".into()),
        };
        app.on_reporter(observed);
        assert_eq!(app.on_action(Action::Confirm), None);
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.starts_with("nothing sent"))
        );
        // Invalid: nothing to send, and `s` says why.
        assert!(app.preview().is_none());
        app.on_action(Action::Send);
        assert!(app.dialog.is_none());
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.contains("is invalid: nothing is sent")),
            "{:?}",
            app.message
        );
    }

    #[test]
    fn the_approval_follows_the_cluster_and_the_message_line_agrees_with_it() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_reporter(reporter("cluster", "7", &["node_count"], &[]));
        app.on_action(Action::Approve);
        app.on_action(Action::Confirm);
        app.on_approved(Ok(("8".into(), "alice".into())));
        let pending = ApprovalState::Pending {
            version: "8".into(),
            by: "alice".into(),
        };
        assert_eq!(app.approval_state(), Some(pending.clone()));
        assert_eq!(
            app.message.as_deref(),
            Some(format!("your approval: {}", pending.describe()).as_str())
        );
        // A read that began before the write still shows the version it replaced: still pending.
        app.on_reporter(reporter("cluster", "7", &["node_count"], &[]));
        assert_eq!(app.approval_state(), Some(pending));
        // The reporter follows 8: acknowledged, and the message line says so too.
        let mut acknowledged = reporter("cluster", "8", &["node_count"], &[]);
        app.on_reporter(acknowledged.clone());
        assert!(app.approval_acknowledged());
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.starts_with("your approval: acknowledged by the reporter")),
            "{:?}",
            app.message
        );
        // Someone else writes version 9 at level feature.
        acknowledged.consent = ConsentSeen::Found {
            resource_version: "9".into(),
            reading: ConsentReading::Given(Consent {
                level: Level::Feature,
                fields: Default::default(),
                approved_by: Some("bob".into()),
                approved_at: None,
                note: None,
            }),
        };
        app.on_reporter(acknowledged);
        assert_eq!(
            app.approval_state(),
            Some(ApprovalState::Replaced {
                version: "9".into(),
                level: "feature".into(),
                by: Some("bob".into()),
            })
        );
        assert!(!app.approval_acknowledged());
        assert_eq!(
            app.message.as_deref(),
            Some("your approval: replaced by bob (level feature, resourceVersion 9)")
        );
    }

    #[test]
    fn a_failed_write_is_kept_with_its_reason_and_cancel_writes_nothing() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_reporter(reporter("cluster", "7", &[], &[]));
        app.on_action(Action::Approve);
        assert_eq!(app.on_action(Action::Close), None);
        assert!(app.approval.is_none(), "cancelled: nothing written");
        app.on_action(Action::Approve);
        app.on_action(Action::Confirm);
        app.on_approved(Err(
            "conflict: configmaps hodometer-consent was changed".into()
        ));
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.starts_with("consent not written: conflict")),
            "{:?}",
            app.message
        );
        assert!(matches!(
            app.approval.as_ref().map(|a| &a.stage),
            Some(ApprovalStage::Failed(why)) if why.starts_with("conflict")
        ));
        assert!(!app.approval_acknowledged());
    }

    #[test]
    fn approve_is_refused_with_the_reason_when_the_consent_cannot_be_written_over() {
        let refused_with = |app: &mut App, reason: &str| {
            app.on_action(Action::Approve);
            assert!(app.dialog.is_none());
            assert!(
                app.message.as_deref().is_some_and(|m| m.contains(reason)),
                "{:?}",
                app.message
            );
        };
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        refused_with(&mut app, "has not been read");
        let mut unreadable = reporter("cluster", "7", &[], &[]);
        unreadable.consent = ConsentSeen::Unreadable(
            "forbidden: get configmaps hodometer-consent (in namespace seldon-mesh)".into(),
        );
        app.on_reporter(unreadable);
        refused_with(&mut app, "forbidden: get configmaps hodometer-consent");
        // Where it does not exist yet, the approval creates it.
        let mut missing = reporter("cluster", "7", &[], &[]);
        missing.consent = ConsentSeen::Missing;
        app.on_reporter(missing);
        app.on_action(Action::Approve);
        assert!(matches!(
            &app.dialog,
            Some(Dialog::Approve(Approval {
                seen_version: None,
                ..
            }))
        ));
    }

    #[test]
    fn rows_mark_what_the_reporter_shares_and_what_waits_for_approval() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        let in_cluster = |app: &App, name: &str| {
            app.rows()
                .into_iter()
                .find(|r| r.name == name)
                .and_then(|r| r.in_cluster)
        };
        assert_eq!(in_cluster(&app, "node_count"), None, "not read yet");
        app.on_reporter(reporter("resource", "7", &["node_count"], &["model_count"]));
        assert_eq!(in_cluster(&app, "node_count"), Some(InCluster::Shares));
        assert_eq!(in_cluster(&app, "model_count"), Some(InCluster::Pending));
        assert_eq!(
            in_cluster(&app, "gpu_enabled_count"),
            Some(InCluster::Withholds)
        );
    }

    #[test]
    fn the_reporter_event_view_toggles_with_the_metrics_and_says_when_there_is_none() {
        let mut app = app();
        app.on_action(Action::ToggleReporterEvent);
        assert_eq!(app.view, View::Metrics);
        assert!(
            app.message
                .as_deref()
                .is_some_and(|m| m.starts_with("no in-cluster reporter")),
            "{:?}",
            app.message
        );
        app.on_reporter(reporter("cluster", "7", &[], &[]));
        app.on_action(Action::ToggleReporterEvent);
        assert_eq!(app.view, View::ReporterEvent);
        app.on_action(Action::TogglePayload);
        assert_eq!(app.view, View::Payload);
        app.on_action(Action::TogglePayload);
        assert_eq!(app.view, View::Metrics);
    }

    #[test]
    fn the_screen_opens_on_the_reporters_level_and_marks_a_proposal_against_it() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::SetLevel(3));
        let shared: Vec<&str> = METRICS
            .iter()
            .filter(|m| m.level == Level::Cluster)
            .map(|m| m.name)
            .collect();
        app.on_reporter(reporter("cluster", "7", &shared, &[]));
        assert_eq!(app.level, Level::Cluster, "opens on the reporter's level");
        let change = |app: &App, name: &str| {
            app.rows()
                .into_iter()
                .find(|r| r.name == name)
                .and_then(|r| r.change)
        };
        assert_eq!(change(&app, "model_count"), None, "no proposal yet");
        app.on_action(Action::SetLevel(2));
        assert_eq!(change(&app, "model_count"), Some(Change::Added));
        assert_eq!(change(&app, "node_count"), None, "unchanged");
        assert_eq!(
            change(&app, "gpu_enabled_count"),
            None,
            "withheld either way"
        );
        app.on_action(Action::SetLevel(0));
        assert_eq!(change(&app, "node_count"), Some(Change::Removed));
        // A later report does not move a proposal away from where the operator put it…
        app.on_reporter(reporter("cluster", "8", &shared, &[]));
        assert_eq!(app.level, Level::Off);
        // …but while the screen shows the reporter's level, it follows the reporter.
        app.on_action(Action::SetLevel(1));
        app.on_reporter(reporter("resource", "9", &shared, &[]));
        assert_eq!(app.level, Level::Resource);
        let metrics_level = app
            .rows()
            .into_iter()
            .find(|r| r.name == "metrics_level")
            .map(|r| r.shown);
        assert_eq!(metrics_level, Some(Shown::Known("resource".into())));
        app.on_action(Action::SetLevel(0));
        let metrics_level = app
            .rows()
            .into_iter()
            .find(|r| r.name == "metrics_level")
            .map(|r| r.shown);
        assert_eq!(
            metrics_level,
            Some(Shown::Known("resource → off (nothing is sent)".into())),
            "what the reporter sends, and what the proposal would"
        );
    }

    #[test]
    fn the_approval_is_diffed_against_the_consent_it_replaces() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        let mut observed = reporter(
            "resource",
            "7",
            &["cluster_id", "model_count"],
            &["node_count"],
        );
        observed.consent = ConsentSeen::Found {
            resource_version: "7".into(),
            reading: ConsentReading::Given(Consent {
                level: Level::Resource,
                // gpu_enabled_count is above the consent's level: approved, never sent.
                fields: ["cluster_id", "model_count", "gpu_enabled_count"]
                    .map(String::from)
                    .into(),
                approved_by: Some("alice".into()),
                approved_at: None,
                note: None,
            }),
        };
        app.on_reporter(observed);
        app.on_action(Action::SetLevel(1));
        app.on_action(Action::Approve);
        let Some(Dialog::Approve(approval)) = app.dialog.clone() else {
            panic!("no dialog: {:?}", app.message);
        };
        let diff = app.approval_diff(&approval);
        assert!(diff.added.contains(&"node_count".to_string()));
        assert!(!diff.added.contains(&"cluster_id".to_string()));
        assert_eq!(diff.removed, ["model_count"]);
        assert_eq!(diff.kept, 1);
        app.on_action(Action::Close);
        app.on_action(Action::SetLevel(0));
        app.on_action(Action::Approve);
        let Some(Dialog::Approve(off)) = app.dialog.clone() else {
            panic!("no dialog");
        };
        let diff = app.approval_diff(&off);
        assert!(diff.added.is_empty());
        assert_eq!(diff.removed, ["cluster_id", "model_count"]);
    }

    #[test]
    fn rows_are_selected_filtered_and_described() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::ScrollDown);
        app.on_action(Action::ScrollDown);
        assert_eq!(
            app.selected_row().map(|r| r.name),
            Some("collector_git_commit".into())
        );
        app.on_action(Action::ScrollUp);
        app.on_action(Action::PageDown);
        app.on_action(Action::PageDown);
        app.on_action(Action::PageDown);
        assert_eq!(
            app.selected_row().map(|r| r.name),
            Some("inference_server_name".into()),
            "the selection stops at the last row"
        );
        app.on_action(Action::Filter);
        assert_eq!(app.context(), Context::Filter);
        for c in "COUNT".chars() {
            app.on_action(Action::FilterChar(c));
        }
        let names: Vec<String> = app.visible_rows().into_iter().map(|r| r.name).collect();
        assert!(names.iter().all(|n| n.contains("count")), "{names:?}");
        assert!(names.contains(&"node_count".to_string()));
        assert_eq!(app.selected, 0, "a new filter selects its first row");
        app.on_action(Action::FilterBackspace);
        assert_eq!(app.filter, "COUN");
        app.on_action(Action::FilterDone);
        assert_eq!(
            app.context(),
            Context::Main,
            "the filter stays, the keys are the table's"
        );
        assert_eq!(app.filter, "COUN");
        app.on_action(Action::Describe);
        assert_eq!(app.dialog, Some(Dialog::Describe("node_count".into())));
        assert_eq!(app.context(), Context::Describe);
        app.on_action(Action::Close);
        app.on_action(Action::ClearFilter);
        assert!(app.filter.is_empty());
        assert_eq!(app.visible_rows().len(), METRIC_COUNT);
        // A filter that matches nothing: nothing to describe, and no panic.
        app.on_action(Action::Filter);
        app.on_action(Action::FilterChar('~'));
        app.on_action(Action::FilterDone);
        app.on_action(Action::Describe);
        assert!(app.dialog.is_none());
    }

    #[test]
    fn on_a_terminal_too_small_to_show_it_only_quitting_acts() {
        let mut app = app();
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        assert_eq!(app.context(), Context::Confirm);
        app.on_resize(50, 15);
        assert_eq!(
            app.on_action(Action::Confirm),
            None,
            "a hidden dialog never sends"
        );
        assert!(app.sends.is_empty());
        app.on_action(Action::LevelUp);
        assert_eq!(app.level, Level::Cluster);
        app.on_resize(80, 24);
        assert_eq!(
            app.context(),
            Context::Confirm,
            "the dialog is shown again, as it was"
        );
        app.on_resize(50, 15);
        app.on_action(Action::Quit);
        assert!(app.quit);
    }

    #[test]
    fn quit_from_the_main_screen() {
        let mut app = app();
        app.on_action(Action::Quit);
        assert!(app.quit);
    }
}
