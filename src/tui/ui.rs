//! Drawing: a pure function of `&App` onto a frame. Nothing here waits on anything.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::{
    App, ApprovalState, Dialog, InCluster, PayloadForm, RowView, SendRecord, Shown, SourceState,
    Trend, View, age, short_id,
};
use super::keys::{BINDINGS, Context, Listing, hints};
use super::switch::Picker;
use crate::consent::ConsentReading;
use crate::metrics::{Level, METRICS, MetricDef, RowKind};
use crate::payload::Event;

/// Text from outside the process (servers, ConfigMaps, files) as it may be drawn: control,
/// bidi and zero-width characters shown escaped (ratatui itself drops only C0 and C1).
fn safe(text: &str) -> String {
    crate::sanitize::text(text).into_owned()
}

const SHARED: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const WITHHELD: Style = Style::new().fg(Color::DarkGray);
/// Unknown, omitted or stale: neither a value that leaves nor one held back by the level.
const UNKNOWN: Style = Style::new()
    .fg(Color::Magenta)
    .add_modifier(Modifier::ITALIC);
const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const HINT: Style = Style::new().fg(Color::DarkGray);
/// The in-cluster reporter's marks: its level, and the fields it shares.
const IN_CLUSTER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

/// From this width the metrics table and the payload sit side by side.
pub const SIDE_BY_SIDE_WIDTH: u16 = 120;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let header_lines = header(app);
    let header_height = wrapped_height(&header_lines, area.width).min(area.height / 3);
    let [header_area, levels, body, message, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(u16::from(app.message.is_some())),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(header_lines).wrap(Wrap { trim: false }),
        header_area,
    );
    render_levels(app, frame, levels);
    let dialog_area = if area.width >= SIDE_BY_SIDE_WIDTH {
        // The table keeps the 80 columns it is drawn for; the payload takes the rest, up to 45%.
        let payload_width = (area.width - 80).min(area.width * 45 / 100);
        let [metrics, payload] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(payload_width)])
                .areas(body);
        render_metrics(app, frame, metrics);
        if app.view == View::ReporterEvent {
            render_reporter_event(app, frame, payload);
        } else {
            render_payload(app, frame, payload);
        }
        // Dialogs cover the table, never the payload they are about.
        metrics
    } else {
        match app.view {
            View::Metrics => render_metrics(app, frame, body),
            View::Payload => render_payload(app, frame, body),
            View::ReporterEvent => render_reporter_event(app, frame, body),
        }
        area
    };
    if let Some(text) = &app.message {
        frame.render_widget(Paragraph::new(Line::styled(text.clone(), WARN)), message);
    }
    render_footer(app, frame, footer);
    if let Some(dialog) = &app.dialog {
        render_dialog(app, dialog, frame, dialog_area);
    } else if app.help {
        render_help(app, frame);
    }
}

fn header(app: &App) -> Vec<Line<'static>> {
    let refreshed = match (app.refreshing, app.last_refresh) {
        (true, None) => "collecting…".to_string(),
        (true, Some(_)) => "refreshing…".to_string(),
        (false, Some(at)) => format!("refreshed {} ago", short_age(age(app.now, at))),
        (false, None) => "not collected yet".to_string(),
    };
    // When the next background refresh (and so the next try of a source that is down) starts.
    let next = match app.last_refresh {
        Some(at) if !app.refreshing => {
            let wait = app.info.refresh_every.saturating_sub(age(app.now, at));
            let what = if [app.scheduler_state(), app.kube_state()]
                .iter()
                .any(|s| matches!(s, SourceState::Down(_)))
            {
                "next try"
            } else {
                "next"
            };
            format!(", {what} in {} (r: now)", short_age(wait))
        }
        _ => String::new(),
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("hodometer inspect  ", Style::new().bold()),
            Span::styled(refreshed + &next, HINT),
        ]),
        Line::raw(format!("cluster id {}", app.info.cluster_id)),
        Line::from(source_spans(
            match (&app.forward, &app.info.scheduler_port_from) {
                (Some(forward), _) => format!("scheduler {}", forward.describe()),
                (None, Some(from)) => {
                    format!("scheduler {} (port from {from})", app.info.scheduler)
                }
                (None, None) => format!("scheduler {}", app.info.scheduler),
            },
            &app.scheduler_state(),
            "Seldon ",
            // Over hodometer's own forward there is no `kubectl port-forward` to check; a
            // refused forward offers doing it by hand.
            match &app.forward {
                None => port_forward_hint(&app.info.scheduler),
                Some(forward) => forward_fallback(forward),
            },
        )),
        Line::from(source_spans(
            match &app.kube_server {
                Some(server) => format!("Kubernetes {} ({server})", app.info.kube),
                None => format!("Kubernetes {}", app.info.kube),
            },
            &app.kube_state(),
            "",
            None,
        )),
    ];
    if let Some(reporter) = &app.reporter {
        let style = if reporter.line.starts_with("forbidden") {
            BAD
        } else {
            Style::new()
        };
        let mut spans = vec![
            Span::raw("in-cluster reporter "),
            Span::styled("◆", IN_CLUSTER),
            Span::raw(": "),
            Span::styled(safe(&reporter.line), style),
        ];
        if let Some(status) = reporter.status.as_ref().filter(|s| s.level.is_some()) {
            let legend = if status.pending.is_empty() {
                "   ◆ shared by it"
            } else {
                "   ◆ shared by it, ◇ awaiting approval"
            };
            spans.push(Span::styled(legend, HINT));
        }
        lines.push(Line::from(spans));
    }
    if let Some(record) = &app.approval {
        let approval = &record.approval;
        let what = format!(
            "your approval: level {}, {} fields: ",
            approval.level,
            approval.fields.len()
        );
        let state = app.approval_state();
        let text = state
            .as_ref()
            .map(ApprovalState::describe)
            .unwrap_or_default();
        let style = match state {
            Some(ApprovalState::Acknowledged { .. }) => SHARED,
            Some(ApprovalState::Failed(_)) => BAD,
            _ => WARN,
        };
        lines.push(Line::from(vec![
            Span::raw(what),
            Span::styled(safe(&text), style),
        ]));
    }
    if app.info.do_not_track {
        lines.push(Line::styled(
            "DO_NOT_TRACK is set: the level is locked at off and nothing can be sent",
            BAD,
        ));
    }
    lines
}

/// The `kubectl port-forward` way around a port-forward the API server refused.
fn forward_fallback(forward: &crate::k8s::forward::ForwardView) -> Option<String> {
    matches!(
        forward.state,
        crate::k8s::forward::LinkState::Failed {
            permanent: true,
            ..
        }
    )
    .then(|| format!(" — {}", forward.fallback))
}

/// What to check when a scheduler on this machine refuses connections: over `kubectl
/// port-forward`, the port-forward died.
fn port_forward_hint(scheduler: &str) -> Option<String> {
    let (host, port) = scheduler.rsplit_once(':')?;
    ["localhost", "127.0.0.1", "[::1]"].contains(&host).then(|| {
        format!(
            " — is `kubectl port-forward -n seldon-mesh svc/seldon-scheduler {port}:9004` running?"
        )
    })
}

fn source_spans(
    name: String,
    state: &SourceState,
    version_prefix: &str,
    refused_hint: Option<String>,
) -> Vec<Span<'static>> {
    let (text, style) = match state {
        SourceState::Connecting => ("connecting…".to_string(), WARN),
        SourceState::Connected(Some(version)) => {
            (format!("connected, {version_prefix}{version}"), SHARED)
        }
        SourceState::Connected(None) => ("connected".to_string(), SHARED),
        SourceState::NotUsed(why) => (format!("not used: {why}"), WITHHELD),
        SourceState::Reconnecting(why) => (format!("reconnecting: {why}"), WARN),
        SourceState::Down(why) => {
            // The reason in full; the header wraps rather than cut it at the screen edge.
            let why = why.strip_prefix("scheduler ").unwrap_or(why);
            // The connection check says "connection refused"; a call that failed mid-way quotes
            // the OS: "Connection refused (os error 111)".
            let hint = refused_hint
                .filter(|hint| {
                    hint.contains("forward by hand")
                        || why.to_ascii_lowercase().contains("connection refused")
                })
                .unwrap_or_default();
            (format!("down: {why}{hint}"), BAD)
        }
    };
    vec![
        Span::raw(format!("{}: ", safe(&name))),
        Span::styled(safe(&text), style),
    ]
}

fn render_levels(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::raw("share: ")];
    for (i, level) in Level::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" | ", WITHHELD));
        }
        let label = format!("{i} {level}");
        // The in-cluster reporter's level is marked in the place of the opening space.
        let reporter = app.reporter_level() == Some(*level);
        spans.push(if *level == app.level {
            Span::styled(
                format!("[{label}]"),
                Style::new().fg(Color::Black).bg(Color::Green).bold(),
            )
        } else {
            Span::raw(format!(" {label} "))
        });
        if reporter {
            spans.push(Span::styled("◆", IN_CLUSTER));
        }
    }
    let shared = shown_event(app).map_or(0, |e| e.fields.len());
    let note = if app.info.do_not_track {
        "   locked by DO_NOT_TRACK".to_string()
    } else {
        format!("   {shared} fields shared")
    };
    spans.push(Span::styled(note, HINT));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_metrics(app: &App, frame: &mut Frame, area: Rect) {
    let mut rows = Vec::new();
    let mut group = None;
    // A column for the in-cluster reporter once its status was read.
    let in_cluster = app.reporter_level().is_some();
    for row in app.rows() {
        if group != Some(row.level) {
            group = Some(row.level);
            let (state, style) = if app.level.shares(row.level) {
                ("shared at this level", SHARED)
            } else {
                ("withheld", WITHHELD)
            };
            let mut cells = vec![
                Cell::from(format!("── {} ──", row.level)).style(Style::new().bold()),
                Cell::from(""),
                Cell::from(""),
                Cell::from(state).style(style),
            ];
            if in_cluster {
                cells.insert(2, Cell::from(""));
            }
            rows.push(Row::new(cells));
        }
        rows.push(metric_row(app, &row, in_cluster));
    }
    // Scroll no further than the last row reaching the bottom of the pane (one line is the header).
    let visible = usize::from(area.height.saturating_sub(1));
    let offset = usize::from(app.scroll).min(rows.len().saturating_sub(visible));
    let mut widths = vec![
        Constraint::Length(24),
        Constraint::Length(8),
        Constraint::Length(TREND_WIDTH),
        Constraint::Fill(1),
    ];
    let mut titles = vec!["metric", "sharing", "trend", "value"];
    if in_cluster {
        widths.insert(2, Constraint::Length(1));
        titles.insert(2, "◆");
    }
    let table = Table::new(rows.into_iter().skip(offset), widths)
        .header(Row::new(titles).style(Style::new().underlined()));
    frame.render_widget(table, area);
}

/// Columns of the trend: a sparkline of this session's values.
const TREND_WIDTH: u16 = 8;

fn metric_row(app: &App, row: &RowView, in_cluster: bool) -> Row<'static> {
    let (sharing, sharing_style) = match (&row.shown, row.shared) {
        (Shown::Known(_), true) => ("● shared", SHARED),
        (_, true) => ("omitted", UNKNOWN),
        (_, false) => ("withheld", WITHHELD),
    };
    let unit = row
        .kind
        .metric()
        .and_then(unit)
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    let mut value = match &row.shown {
        Shown::Known(value) => vec![Span::styled(
            safe(&format!("{value}{unit}")),
            if row.shared {
                Style::new().bold()
            } else {
                WITHHELD
            },
        )],
        Shown::Stale { value, age, reason } => vec![Span::styled(
            safe(&format!(
                "{value}{unit} (stale {} ago: {reason})",
                short_age(*age)
            )),
            UNKNOWN,
        )],
        Shown::Unknown(reason) => vec![Span::styled(safe(&format!("unknown: {reason}")), UNKNOWN)],
    };
    if let (Shown::Known(_), Some(trend)) = (&row.shown, row.trend)
        && let Some((at, delta)) = trend.last_change
    {
        value.push(Span::styled(
            format!("  {delta:+} {} ago", short_age(age(app.now, at))),
            HINT,
        ));
    }
    let dim = |style: Style| if row.shared { style } else { WITHHELD };
    let name_style = if row.shared {
        Style::new().bold()
    } else {
        WITHHELD
    };
    if let RowKind::Extension(ext) = &row.kind {
        value.push(Span::styled(
            format!("  operator-supplied, from {}", ext.source),
            WITHHELD,
        ));
        for suspicion in &ext.suspicions {
            value.push(Span::styled(format!("  ⚠ {suspicion}"), WARN));
        }
    }
    let mut cells = vec![
        Cell::from(safe(&row.name)).style(name_style),
        Cell::from(sharing).style(sharing_style),
        Cell::from(row.trend.map(sparkline).unwrap_or_default())
            .style(dim(Style::new().fg(Color::Cyan))),
        Cell::from(Line::from(value)),
    ];
    if in_cluster {
        let mark = match row.in_cluster {
            Some(InCluster::Shares) => Span::styled("◆", IN_CLUSTER),
            Some(InCluster::Pending) => Span::styled("◇", WARN),
            Some(InCluster::Withholds) | None => Span::raw(""),
        };
        cells.insert(2, Cell::from(mark));
    }
    Row::new(cells)
}

/// The unit a metric's value is in, read from its name (`server_memory_gb_sum`: GB).
fn unit(def: &MetricDef) -> Option<&'static str> {
    if def.name.contains("_gb") {
        Some("GB")
    } else if def.name.contains("_cores") {
        Some("cores")
    } else {
        None
    }
}

/// The latest values of a trend as bars from lowest to highest; flat when nothing changed.
fn sparkline(trend: &Trend) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let samples: Vec<f64> = trend
        .samples
        .iter()
        .rev()
        .take(usize::from(TREND_WIDTH))
        .rev()
        .copied()
        .collect();
    let low = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let high = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    samples
        .iter()
        .map(|v| {
            if high > low {
                let at = ((v - low) / (high - low) * 7.0).round() as usize;
                BARS[at.min(7)]
            } else {
                BARS[0]
            }
        })
        .collect()
}

/// The event on screen: while a send is being confirmed, that event; otherwise the preview.
fn shown_event(app: &App) -> Option<&Event> {
    match &app.dialog {
        Some(Dialog::Confirm(event)) => Some(event),
        _ => app.preview(),
    }
}

fn render_payload(app: &App, frame: &mut Frame, area: Rect) {
    let inner_width = area.width.saturating_sub(2);
    let (title, body) = match shown_event(app) {
        Some(event) => (
            format!(
                " payload, level {}, {} bytes, {} ",
                event.level,
                event.json.len(),
                match app.payload_form {
                    PayloadForm::Pretty => "pretty (b: raw)",
                    PayloadForm::Raw => "as sent (b: pretty)",
                }
            ),
            payload_text(&event.json, app.payload_form, inner_width),
        ),
        None if app.level == Level::Off => (
            " payload ".into(),
            Text::from("Level off: nothing is sent."),
        ),
        None => (
            " payload ".into(),
            Text::from("Waiting for the first collection…"),
        ),
    };
    // Raw lines are cut to the pane's width already, so wrapping only ever breaks pretty lines.
    let paragraph = Paragraph::new(body)
        .block(Block::bordered().title(title))
        .wrap(Wrap { trim: false })
        .scroll((app.scroll, 0));
    frame.render_widget(paragraph, area);
}

/// The in-cluster reporter's last event, byte for byte from its status ConfigMap.
fn render_reporter_event(app: &App, frame: &mut Frame, area: Rect) {
    let inner_width = area.width.saturating_sub(2);
    let status = app.reporter.as_ref().and_then(|r| r.status.as_ref());
    let (title, body) = match status.and_then(|s| s.last_event.as_deref()) {
        Some(json) => (
            format!(
                " in-cluster reporter's last event, {} bytes, {} ",
                json.len(),
                match app.payload_form {
                    PayloadForm::Pretty => "pretty (b: raw)",
                    PayloadForm::Raw => "as sent (b: pretty)",
                }
            ),
            payload_text(json, app.payload_form, inner_width),
        ),
        None => (
            " in-cluster reporter's last event ".to_string(),
            Text::from(match &app.reporter {
                None => "The in-cluster reporter has not been read.".to_string(),
                Some(r) if r.status.is_none() => format!("Unknown: {}", safe(&r.line)),
                Some(_) => "It has sent no event yet.".to_string(),
            }),
        ),
    };
    let paragraph = Paragraph::new(body)
        .block(Block::bordered().title(title))
        .wrap(Wrap { trim: false })
        .scroll((app.scroll, 0));
    frame.render_widget(paragraph, area);
}

/// The event pretty-printed with the level that adds each field marked, or its exact bytes cut
/// into lines of `width` (no word wrapping, so the lines join back into the very bytes).
fn payload_text(json: &str, form: PayloadForm, width: u16) -> Text<'static> {
    let pretty = match form {
        PayloadForm::Pretty => serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            // serde_json leaves DEL, C1, bidi and zero-width characters raw: escape them all.
            .map(|pretty| crate::payload::ascii_json(&pretty)),
        PayloadForm::Raw => None,
    };
    let Some(pretty) = pretty else {
        let width = usize::from(width.max(1));
        // Our own JSON is ASCII (payload::ascii_json): byte chunks are character chunks. The
        // reporter's event comes from a ConfigMap and may hold anything: sanitised.
        return Text::from(
            json.as_bytes()
                .chunks(width)
                .map(|chunk| Line::raw(safe(&String::from_utf8_lossy(chunk))))
                .collect::<Vec<_>>(),
        );
    };
    Text::from(
        pretty
            .lines()
            .map(|line| {
                let added_by = line
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|rest| rest.split_once('"'))
                    .and_then(|(name, _)| METRICS.iter().find(|m| m.name == name))
                    .map(|m| m.level)
                    .filter(|level| *level != Level::Cluster);
                match added_by {
                    Some(level) => Line::from(vec![
                        Span::raw(line.to_string()),
                        Span::styled(format!("  +{level}"), Style::new().fg(Color::Cyan)),
                    ]),
                    None => Line::raw(line.to_string()),
                }
            })
            .collect::<Vec<_>>(),
    )
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (label, text) in hints(app.context()) {
        spans.push(Span::styled(label, Style::new().bold()));
        spans.push(Span::styled(format!(" {text}  "), HINT));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A centred box of at most `width`×`height` inside `within`, cleared.
fn popup(frame: &mut Frame, within: Rect, width: u16, height: u16) -> Rect {
    let [area] = Layout::horizontal([Constraint::Length(width.min(within.width))])
        .flex(Flex::Center)
        .areas(within);
    let [area] = Layout::vertical([Constraint::Length(height.min(within.height))])
        .flex(Flex::Center)
        .areas(area);
    frame.render_widget(Clear, area);
    area
}

fn event_summary(event: &Event) -> Vec<Line<'static>> {
    vec![
        Line::from(vec![
            Span::raw("level "),
            Span::styled(event.level.to_string(), Style::new().bold()),
            Span::raw(format!(
                ", {} bytes, {} fields",
                event.json.len(),
                event.fields.len()
            )),
        ]),
        // Written as in the payload, so the operator can match the two by eye.
        Line::raw(format!("$insert_id {}", event.insert_id.hyphenated())),
        Line::styled(event.fields.join(", "), HINT),
        Line::raw(""),
    ]
}

fn outcome_lines(app: &App, record: &SendRecord) -> Vec<Line<'static>> {
    app.info
        .endpoints
        .iter()
        .zip(&record.outcomes)
        .map(|(endpoint, outcome)| {
            let (text, style) = match outcome {
                None => ("sending…".to_string(), WARN),
                Some(o) => (safe(&o.detail()), if o.is_ok() { SHARED } else { BAD }),
            };
            Line::from(vec![
                Span::raw(format!("  {endpoint} ")),
                Span::styled(text, style),
            ])
        })
        .collect()
}

fn render_dialog(app: &App, dialog: &Dialog, frame: &mut Frame, within: Rect) {
    let width = within.width.saturating_sub(4).min(100);
    let (title, lines, scroll) = match dialog {
        Dialog::Confirm(event) => {
            let mut lines = event_summary(event);
            lines.push(Line::raw("to every endpoint:"));
            for endpoint in &app.info.endpoints {
                lines.push(Line::raw(format!("  {endpoint}")));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "y: send exactly the payload shown    n/Esc: cancel",
                Style::new().bold(),
            ));
            (" send this payload? ".to_string(), lines, 0)
        }
        Dialog::Sent(insert_id) => match app.send(*insert_id) {
            Some(record) => {
                let mut lines = event_summary(&record.event);
                lines.extend(outcome_lines(app, record));
                lines.push(Line::raw(""));
                lines.extend(
                    payload_text(
                        &record.event.json,
                        app.payload_form,
                        width.saturating_sub(2),
                    )
                    .lines,
                );
                let title = format!(
                    " sent {} ({}) ",
                    short_id(*insert_id),
                    match app.payload_form {
                        PayloadForm::Pretty => "pretty-printed; b: bytes as sent",
                        PayloadForm::Raw => "bytes exactly as sent",
                    }
                );
                (title, lines, app.dialog_scroll)
            }
            None => (" sent ".to_string(), vec![Line::raw("no such send")], 0),
        },
        Dialog::Approve(approval) => {
            let status = app.reporter.as_ref().and_then(|r| r.status.as_ref());
            let consent = app
                .reporter
                .as_ref()
                .map(|r| r.consent_configmap.as_str())
                .unwrap_or_default();
            let mut lines = vec![
                Line::from(vec![
                    Span::raw("level "),
                    Span::styled(approval.level.to_string(), Style::new().bold()),
                    Span::raw(format!(", exactly these {} fields:", approval.fields.len())),
                ]),
                Line::styled(approval.fields.join(", "), HINT),
                Line::raw(""),
            ];
            match status.filter(|s| !s.endpoints.is_empty()) {
                Some(status) => {
                    lines.push(Line::raw(format!(
                        "the reporter publishes to (every {}):",
                        status.interval.as_deref().unwrap_or("?")
                    )));
                    for endpoint in &status.endpoints {
                        lines.push(Line::raw(format!("  {endpoint}")));
                    }
                }
                None => lines.push(Line::styled(
                    "where the reporter publishes and how often: unknown (it has not reported yet)",
                    UNKNOWN,
                )),
            }
            lines.push(Line::raw(""));
            let replaced = match &approval.replaces {
                None => "nothing: it does not exist yet, so it is created".to_string(),
                Some(ConsentReading::Unset) => "an empty consent (METRICS_LEVEL rules)".to_string(),
                Some(ConsentReading::Invalid(why)) => format!("an invalid consent ({why})"),
                Some(ConsentReading::Given(given)) => format!(
                    "level {}, {} fields, approved by {}{}",
                    given.level,
                    given.fields.len(),
                    given.approved_by.as_deref().unwrap_or("?"),
                    given
                        .approved_at
                        .map(|at| format!(" at {}", humantime::format_rfc3339_seconds(at)))
                        .unwrap_or_default()
                ),
            };
            lines.push(Line::raw(format!("replaces: {}", safe(&replaced))));
            lines.push(Line::raw(match &approval.seen_version {
                Some(version) => format!(
                    "writes configmaps {consent} over resourceVersion {version}; a change by someone else since is shown, not overwritten"
                ),
                None => format!("creates configmaps {consent}"),
            }));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "y: approve and write    n/Esc: write nothing",
                Style::new().bold(),
            ));
            (
                " approve for the in-cluster reporter? ".to_string(),
                lines,
                app.dialog_scroll,
            )
        }
        Dialog::Switch(picker) => switch_lines(app, picker),
        Dialog::Sends { selected } => {
            let lines = app
                .sends
                .iter()
                .enumerate()
                .map(|(i, record)| {
                    let outcomes: Vec<&str> = record
                        .outcomes
                        .iter()
                        .map(|o| match o {
                            None => "sending",
                            Some(o) if o.is_ok() => "ok",
                            Some(_) => "failed",
                        })
                        .collect();
                    let text = format!(
                        "{} ago  {}  level {}  {} bytes  {}",
                        short_age(age(app.now, record.at)),
                        short_id(record.event.insert_id),
                        record.event.level,
                        record.event.json.len(),
                        outcomes.join(", ")
                    );
                    if i == *selected {
                        Line::styled(format!("> {text}"), Style::new().reversed())
                    } else {
                        Line::raw(format!("  {text}"))
                    }
                })
                .collect();
            (" sends of this session ".to_string(), lines, 0)
        }
    };
    // One spare row: word wrapping can take a row more than counting characters says.
    let area = popup(
        frame,
        within,
        width,
        wrapped_height(&lines, width.saturating_sub(2)) + 3,
    );
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}

fn render_help(app: &App, frame: &mut Frame) {
    let listed = |context: Context| {
        BINDINGS
            .iter()
            .filter(move |b| b.context == context && b.listing != Listing::Covered)
    };
    // The main screen's keys one per line; each dialog's on one line of its own, to fit 80×24.
    let mut lines: Vec<Line> = listed(Context::Main)
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:>6}  ", b.label), Style::new().bold()),
                Span::raw(b.help),
            ])
        })
        .collect();
    let switch_key = BINDINGS
        .iter()
        .find(|b| b.action == super::keys::Action::ListContexts)
        .map_or("", |b| b.label);
    let switch = format!("{switch_key} context");
    for (context, name) in [
        (Context::Help, "help"),
        (Context::Confirm, "send dialog"),
        (Context::Sent, "a send"),
        (Context::Sends, "list of sends"),
        (Context::Approve, "approve dialog"),
        (Context::Contexts, switch.as_str()),
    ] {
        let mut spans = vec![Span::raw(format!("{name}: "))];
        for (i, b) in listed(context).enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", HINT));
            }
            spans.push(Span::styled(b.label, Style::new().bold()));
            spans.push(Span::raw(format!(" {}", b.help)));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(format!("logs: {}", app.info.log_file)));
    let width = frame.area().width.saturating_sub(4).min(80);
    let area = popup(
        frame,
        frame.area(),
        width,
        wrapped_height(&lines, width.saturating_sub(2)) + 2,
    );
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" keys "))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The context switch picker: contexts, then the chosen one's namespaces (or a field to type
/// one into when they cannot be listed).
fn switch_lines(app: &App, picker: &Picker) -> (String, Vec<Line<'static>>, u16) {
    let list = |names: &[String], selected: usize, current: Option<&String>| {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mark = if current == Some(name) {
                    " (in use)"
                } else {
                    ""
                };
                if i == selected {
                    Line::styled(format!("> {name}{mark}"), Style::new().reversed())
                } else {
                    Line::raw(format!("  {name}{mark}"))
                }
            })
            .collect::<Vec<_>>()
    };
    // The keys are in the footer, as for every dialog.
    match picker {
        Picker::Contexts {
            names,
            current,
            selected,
        } => {
            let lines = list(names, *selected, current.as_ref());
            (" switch context ".into(), lines, app.dialog_scroll)
        }
        Picker::Listing { context } => (
            format!(" context {context} "),
            vec![Line::styled("listing its namespaces…", WARN)],
            0,
        ),
        Picker::Namespaces {
            context,
            names,
            selected,
        } => {
            let lines = list(names, *selected, None);
            (format!(" context {context}: namespace "), lines, 0)
        }
        Picker::Typing {
            context,
            typed,
            why,
        } => (
            format!(" context {context}: namespace "),
            vec![
                Line::styled(format!("cannot list the namespaces: {why}"), HINT),
                Line::raw("type the Seldon namespace:"),
                Line::from(vec![
                    Span::raw("> "),
                    Span::styled(typed.clone(), Style::new().bold()),
                    Span::styled("▏", WARN),
                ]),
            ],
            0,
        ),
    }
}

/// Rows `lines` take when wrapped to `width` columns, so a popup fits all of its text.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let rows: usize = lines
        .iter()
        .map(|line| line.width().div_ceil(width).max(1))
        .sum();
    u16::try_from(rows).unwrap_or(u16::MAX)
}

/// `4s`, `3m`, `2h` — ages at a glance.
fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use uuid::Uuid;

    use super::*;
    use crate::publish::{EndpointOutcome, PublishError};
    use crate::tui::fixtures::{at, healthy, info, reporter, scheduler_down};
    use crate::tui::keys::Action;

    fn app(level: Level) -> App {
        let mut app = App::new(info(), level, "tok".into(), at(0))
            .with_insert_ids(|| Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef));
        app.on_snapshot(healthy(at(0)));
        app.on_tick(at(4));
        app
    }

    /// The screen as text, one line per row, trailing blanks trimmed.
    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| render(app, frame)).expect("draw");
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
                line.trim_end().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn cluster_level_80x24() {
        insta::assert_snapshot!(screen(&app(Level::Cluster), 80, 24));
    }

    #[test]
    fn feature_level_80x24() {
        insta::assert_snapshot!(screen(&app(Level::Feature), 80, 24));
    }

    #[test]
    fn off_level_80x24() {
        insta::assert_snapshot!(screen(&app(Level::Off), 80, 24));
    }

    #[test]
    fn feature_level_160x48() {
        insta::assert_snapshot!(screen(&app(Level::Feature), 160, 48));
    }

    #[test]
    fn scheduler_down_shows_stale_values_80x24() {
        let mut app = app(Level::Resource);
        app.on_snapshot(scheduler_down(at(60)));
        app.on_tick(at(125));
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn unknown_before_anything_was_read_80x24() {
        let mut app = App::new(info(), Level::Resource, "tok".into(), at(0));
        app.on_refresh_started();
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn payload_pane_80x24() {
        let mut app = app(Level::Resource);
        app.on_action(Action::TogglePayload);
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn send_dialog_80x24() {
        let mut app = app(Level::Resource);
        app.on_action(Action::Send);
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn send_outcomes_as_they_arrive_80x24() {
        let mut app = app(Level::Resource);
        app.on_action(Action::Send);
        app.on_action(Action::Confirm);
        let sent = app.sends[0].event.insert_id;
        app.on_outcome(
            sent,
            EndpointOutcome {
                index: 1,
                endpoint: "http://127.0.0.1:8001/".into(),
                result: Ok(()),
                attempts: 1,
                latency: Duration::from_millis(7),
                last_status: Some(200),
            },
        );
        insta::assert_snapshot!(screen(&app, 80, 24));
        app.on_outcome(
            sent,
            EndpointOutcome {
                index: 0,
                endpoint: "http://hodometer.seldon.io/".into(),
                result: Err(PublishError::Rejected {
                    error: "bad token".into(),
                }),
                attempts: 1,
                latency: Duration::from_millis(80),
                last_status: Some(200),
            },
        );
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn sends_list_and_a_send_as_raw_bytes_160x48() {
        let mut app = app(Level::Resource);
        app.on_action(Action::Send);
        app.on_action(Action::Confirm);
        let sent = app.sends[0].event.insert_id;
        app.on_outcome(
            sent,
            EndpointOutcome {
                index: 0,
                endpoint: "http://hodometer.seldon.io/".into(),
                result: Ok(()),
                attempts: 1,
                latency: Duration::from_millis(7),
                last_status: Some(200),
            },
        );
        app.on_action(Action::Close);
        app.on_action(Action::ListSends);
        insta::assert_snapshot!(screen(&app, 160, 48));
        app.on_action(Action::Open);
        app.on_action(Action::TogglePayloadForm);
        insta::assert_snapshot!(screen(&app, 160, 48));
    }

    #[test]
    fn do_not_track_header_80x24() {
        let mut info = info();
        info.do_not_track = true;
        let mut app = App::new(info, Level::Feature, "tok".into(), at(0));
        app.on_snapshot(healthy(at(0)));
        app.on_action(Action::Send);
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn a_refused_connection_is_said_in_full_with_the_port_forward_hint_80x24() {
        let mut app = app(Level::Cluster);
        let mut down = healthy(at(10));
        for m in METRICS
            .iter()
            .filter(|m| m.source == crate::metrics::Source::Scheduler)
        {
            down.set(
                m.id,
                crate::metrics::Reading::unknown("scheduler connect: connection refused"),
            );
        }
        app.on_snapshot(down);
        app.on_tick(at(12));
        let text = screen(&app, 80, 24);
        assert!(
            text.replace('\n', " ").contains(
                "down: connect: connection refused — is `kubectl port-forward -n seldon-mesh svc/seldon-scheduler 9004:9004` running?"
            ),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_call_refused_mid_way_gets_the_port_forward_hint_too() {
        let mut app = app(Level::Cluster);
        let mut down = healthy(at(10));
        let reason = "scheduler ModelStatus: no complete answer in 2 attempts; last error: tcp \
                      connect error: Connection refused (os error 111)";
        for m in METRICS
            .iter()
            .filter(|m| m.source == crate::metrics::Source::Scheduler)
        {
            down.set(m.id, crate::metrics::Reading::unknown(reason));
        }
        app.on_snapshot(down);
        app.on_tick(at(12));
        let text = screen(&app, 80, 24).replace('\n', " ");
        assert!(
            text.contains("(os error 111) — is `kubectl port-forward -n seldon-mesh svc/seldon-scheduler 9004:9004` running?"),
            "{text}"
        );
    }

    #[test]
    fn the_reporter_marked_in_the_level_bar_and_rows_160x48() {
        let mut app = app(Level::Feature);
        app.on_reporter(reporter(
            "resource",
            "7",
            &["cluster_id", "node_count", "model_count"],
            &["pipeline_count"],
        ));
        let text = screen(&app, 160, 48);
        assert!(text.contains(" 2 resource ◆"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn approve_dialog_80x24() {
        let mut app = app(Level::Resource);
        app.on_reporter(reporter("cluster", "7", &["node_count"], &[]));
        app.on_action(Action::Approve);
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn the_reporter_last_event_pane_shows_its_bytes_80x24() {
        let mut app = app(Level::Resource);
        app.on_reporter(reporter("cluster", "7", &["node_count"], &[]));
        app.on_action(Action::ToggleReporterEvent);
        app.on_action(Action::TogglePayloadForm);
        let text = screen(&app, 80, 24);
        assert!(
            text.contains(r#"{"event":"collect metrics","properties":{"node_count":3}}"#),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn help_lists_the_key_table_and_the_log_file_80x24() {
        let mut app = app(Level::Cluster);
        app.on_action(Action::ToggleHelp);
        let text = screen(&app, 80, 24);
        // The popup's text with its wrapping undone.
        let inside: Vec<&str> = text
            .lines()
            .filter_map(|line| {
                let (start, end) = (line.find('│')?, line.rfind('│')?);
                (end > start).then(|| &line[start + '│'.len_utf8()..end])
            })
            .collect();
        let flat = inside
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for binding in BINDINGS.iter().filter(|b| b.listing != Listing::Covered) {
            assert!(
                flat.contains(&format!("{} {}", binding.label, binding.help)),
                "help lacks {:?}:\n{text}",
                binding.help
            );
        }
        assert!(text.contains("/tmp/hodometer-inspect.log"));
        insta::assert_snapshot!(text);
    }
}
