//! Drawing: a pure function of `&App` onto a frame. Nothing here waits on anything.

use std::time::Duration;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::{
    App, ApprovalState, Change, Dialog, HistoryView, InCluster, PayloadForm, RowView, SendRecord,
    Shown, SourceState, Trend, View, age, short_id,
};
use super::keys::{BINDINGS, Context, hints, keys_text};
use super::layout::{self, Fit, TREND_WIDTH, ellipsize, text_width};
use super::switch::Picker;
use crate::consent::ConsentReading;
use crate::ledger::{
    ConsentRecord, Entry, LEDGER_CONFIGMAP, Listed, Record, Verification, diff_events, printable,
};
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
const PENDING: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// The selected row: a background, so the cells' own colours stay readable (reversed, in
/// monochrome).
const SELECTED: Style = Style::new().bg(Color::DarkGray);

pub fn render(app: &App, frame: &mut Frame) {
    draw(app, frame);
    if app.monochrome {
        monochrome(frame.buffer_mut());
    }
}

/// No colour anywhere, so the backend never writes a colour sequence: under `NO_COLOR`,
/// crossterm writes those as a bare `ESC[m`, which resets the bold set just before it (rows
/// that became shared stayed plain until a resize redrew them). What colour told apart is
/// kept as weight: grey is dim, a coloured background is reversed.
fn monochrome(buffer: &mut Buffer) {
    for cell in &mut buffer.content {
        if cell.fg == Color::DarkGray {
            cell.modifier |= Modifier::DIM;
        }
        if cell.bg != Color::Reset {
            // Reversed and dim reads as plain on some terminals: a highlight is reversed only.
            cell.modifier = (cell.modifier | Modifier::REVERSED) - Modifier::DIM;
        }
        cell.fg = Color::Reset;
        cell.bg = Color::Reset;
    }
}

fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let fit = layout::fit(area.width, area.height);
    if fit == Fit::TooSmall {
        render_too_small(frame, area);
        return;
    }
    let header_lines = header_rows(app, area.width, area.height / 3);
    let header_height = u16::try_from(header_lines.len()).unwrap_or(u16::MAX);
    let filter_shown = app.filtering || !app.filter.is_empty();
    let [header_area, levels, filter, body, message, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(1),
        Constraint::Length(u16::from(filter_shown)),
        Constraint::Min(3),
        // A message is said whole: up to three rows.
        Constraint::Length(app.message.as_ref().map_or(0, |text| {
            wrapped_height(&[Line::raw(text.as_str())], area.width).min(3)
        })),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_lines), header_area);
    render_levels(app, frame, levels);
    if filter_shown {
        render_filter(app, frame, filter);
    }
    let dialog_area = if fit == Fit::Wide {
        // The table keeps the 80 columns it is drawn for; the payload takes the rest, up to 45%.
        let payload_width = (area.width - 80).min(area.width * 45 / 100);
        let [metrics, payload] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(payload_width)])
                .areas(body);
        render_metrics(app, frame, metrics, Fit::Full);
        if app.view == View::ReporterEvent {
            render_reporter_event(app, frame, payload);
        } else {
            render_payload(app, frame, payload);
        }
        // Dialogs cover the table, never the payload they are about; the footer stays.
        Rect {
            y: area.y,
            height: area.height.saturating_sub(1),
            ..metrics
        }
    } else {
        match app.view {
            View::Metrics => render_metrics(app, frame, body, fit),
            View::Payload => render_payload(app, frame, body),
            View::ReporterEvent => render_reporter_event(app, frame, body),
        }
        Rect {
            height: area.height.saturating_sub(1),
            ..area
        }
    };
    if let Some(text) = &app.message {
        frame.render_widget(
            Paragraph::new(Line::styled(text.clone(), WARN)).wrap(Wrap { trim: false }),
            message,
        );
    }
    render_footer(app, frame, footer);
    if let Some(dialog) = &app.dialog {
        render_dialog(app, dialog, frame, dialog_area);
    } else if app.help {
        // Help is about the whole screen: it takes all of it but the footer.
        let within = Rect {
            height: area.height.saturating_sub(1),
            ..area
        };
        render_help(app, frame, within);
    }
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let lines = vec![
        Line::styled(layout::too_small(area.width, area.height), BAD),
        Line::raw("enlarge the window; q quits"),
    ];
    let [middle] = Layout::vertical([Constraint::Length(2)])
        .flex(Flex::Center)
        .areas(area);
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(ratatui::layout::Alignment::Center)
            .wrap(Wrap { trim: true }),
        middle,
    );
}

/// `line` cut to `width` columns, with `…` where it was cut.
fn ellipsize_line(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let mut spans = Vec::new();
    let mut room = width;
    for span in line.spans {
        let w = span.width();
        if w < room {
            room -= w;
            spans.push(span);
        } else {
            spans.push(Span::styled(ellipsize(&span.content, room), span.style));
            break;
        }
    }
    Line::from(spans)
}

/// The header, one row per line: a line wraps only while the whole header fits in `budget`
/// rows, else each line is cut with `…` and `i` shows them in full.
fn header_rows(app: &App, width: u16, budget: u16) -> Vec<Line<'static>> {
    let lines = header(app, width);
    // What is wrong (a source down, a refused read) is worth more than one row wherever it
    // fits; the reporter's line too on a tall terminal. Everything else is one row.
    let urgent = |line: &Line| line.spans.iter().any(|s| s.style == BAD);
    let tall = budget >= 10;
    let wrappable = |line: &Line| {
        urgent(line)
            || (tall
                && line
                    .spans
                    .first()
                    .is_some_and(|s| s.content.starts_with("in-cluster reporter")))
    };
    let wrapped: u16 = lines
        .iter()
        .map(|line| {
            if wrappable(line) {
                wrapped_height(std::slice::from_ref(line), width)
            } else {
                1
            }
        })
        .sum();
    let wrap_urgent = wrapped <= budget;
    let tail = "  i: details";
    let mut rows = Vec::new();
    for line in lines {
        if line.width() <= usize::from(width) {
            rows.push(line);
        } else if wrap_urgent && wrappable(&line) {
            rows.extend(wrap_words(line, usize::from(width)));
        } else {
            let mut line = ellipsize_line(line, usize::from(width).saturating_sub(tail.len()));
            line.spans.push(Span::styled(tail, HINT));
            rows.push(line);
        }
    }
    rows
}

/// A styled line broken into rows of `width` columns (character-wise, spans kept).
fn wrap_line(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut rows = vec![Line::default()];
    let mut used = 0;
    for span in line.spans {
        let mut piece = String::new();
        for c in span.content.chars() {
            let w = layout::char_width(c);
            if used + w > width {
                if !piece.is_empty()
                    && let Some(row) = rows.last_mut()
                {
                    row.spans
                        .push(Span::styled(std::mem::take(&mut piece), span.style));
                }
                rows.push(Line::default());
                used = 0;
            }
            piece.push(c);
            used += w;
        }
        if !piece.is_empty()
            && let Some(row) = rows.last_mut()
        {
            row.spans.push(Span::styled(piece, span.style));
        }
    }
    rows
}

fn refreshed(app: &App) -> String {
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
    refreshed + &next
}

/// The header's lines in full: one per source, the reporter and this session's approval.
fn header(app: &App, width: u16) -> Vec<Line<'static>> {
    // The cluster id is never cut: the refresh note after it gives way first.
    let first = format!("hodometer  cluster id {}", app.info.cluster_id);
    let room = usize::from(width).saturating_sub(text_width(&first) + 2);
    let mut lines = vec![
        Line::from(vec![
            Span::styled("hodometer", Style::new().bold()),
            Span::raw(format!("  cluster id {}  ", app.info.cluster_id)),
            Span::styled(ellipsize(&refreshed(app), room), HINT),
        ]),
        source_line(
            source_spans(
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
            ),
            width,
        ),
        source_line(
            source_spans(
                match &app.kube_server {
                    Some(server) => format!("Kubernetes {} ({server})", app.info.kube),
                    None => format!("Kubernetes {}", app.info.kube),
                },
                &app.kube_state(),
                "",
                None,
            ),
            width,
        ),
    ];
    if let Some(reporter) = &app.reporter {
        let style = if reporter.line.starts_with("forbidden") {
            BAD
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::raw("in-cluster reporter "),
            Span::styled("◆", IN_CLUSTER),
            Span::raw(": "),
            Span::styled(safe(&reporter.line), style),
        ]));
    }
    if let Some(line) = approval_line(app) {
        lines.push(line);
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

/// A source's line: when it is too long, its name gives way (with `…`) before its state.
fn source_line(spans: Vec<Span<'static>>, width: u16) -> Line<'static> {
    let line = Line::from(spans);
    let [name, state] = line.spans.as_slice() else {
        return line;
    };
    let width = usize::from(width);
    if line.width() <= width || state.style == BAD {
        return line;
    }
    let room = width.saturating_sub(state.width()).max(width / 3);
    Line::from(vec![
        Span::styled(
            ellipsize(
                name.content.trim_end_matches([':', ' ']),
                room.saturating_sub(2),
            ) + ": ",
            name.style,
        ),
        state.clone(),
    ])
}

fn approval_line(app: &App) -> Option<Line<'static>> {
    let approval = &app.approval.as_ref()?.approval;
    let state = app.approval_state()?;
    let style = match state {
        ApprovalState::Acknowledged { .. } => SHARED,
        ApprovalState::Failed(_) => BAD,
        _ => WARN,
    };
    // The state first (as the message line says it): what follows gives way to the edge first.
    Some(Line::from(vec![
        Span::raw("your approval: "),
        Span::styled(safe(&state.describe()), style),
        Span::styled(
            format!(
                " (level {}, {} fields)",
                approval.level,
                approval.fields.len()
            ),
            HINT,
        ),
    ]))
}

/// What to check when a scheduler on this machine refuses connections: over `kubectl
/// port-forward`, the port-forward died.
fn port_forward_hint(scheduler: &str) -> Option<String> {
    crate::collect::scheduler::port_forward_hint(scheduler).map(|hint| format!(" — {hint}"))
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

/// The level bar. With a reporter, the level on screen is a proposal to it: the bar says what
/// approving it changes.
fn render_levels(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = if area.width < layout::FULL_WIDTH {
        Vec::new()
    } else {
        vec![Span::raw("level ")]
    };
    for (i, level) in Level::ALL.iter().enumerate() {
        let label = format!("{i} {level}");
        spans.push(if *level == app.level {
            Span::styled(
                format!("[{label}]"),
                Style::new().fg(Color::Black).bg(Color::Green).bold(),
            )
        } else {
            Span::raw(format!(" {label} "))
        });
        // The in-cluster reporter's level is marked right after it.
        if app.reporter_level() == Some(*level) {
            spans.push(Span::styled("◆", IN_CLUSTER));
        } else {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::raw(" "));
    }
    let (note, style) = if app.policy().source == crate::policy::Source::DoNotTrack {
        ("locked by DO_NOT_TRACK".to_string(), HINT)
    } else if app.reporter_level().is_some() {
        let rows = app.rows();
        let added = rows
            .iter()
            .filter(|r| r.change == Some(Change::Added))
            .count();
        let removed = rows
            .iter()
            .filter(|r| r.change == Some(Change::Removed))
            .count();
        if added + removed == 0 {
            (
                if area.width < layout::FULL_WIDTH {
                    "= ◆"
                } else {
                    "= the reporter's level ◆"
                }
                .to_string(),
                HINT,
            )
        } else if area.width < layout::FULL_WIDTH {
            (format!("+{added} −{removed} (a)"), PENDING)
        } else if area.width < 100 {
            (format!("+{added} −{removed} vs ◆ (a: approve)"), PENDING)
        } else {
            (
                format!("proposal: +{added} −{removed} against ◆ (a: approve)"),
                PENDING,
            )
        }
    } else {
        let shared = shown_event(app).map_or(0, |e| e.fields.len());
        (format!("{shared} fields shared"), HINT)
    };
    let used: usize = spans.iter().map(Span::width).sum();
    spans.push(Span::styled(
        ellipsize(&note, usize::from(area.width).saturating_sub(used)),
        style,
    ));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_filter(app: &App, frame: &mut Frame, area: Rect) {
    let shown = app.visible_rows().len();
    let total = app.rows().len();
    let cursor = if app.filtering { "█" } else { "" };
    let keys = if app.filtering {
        "Enter: keep · Esc: clear"
    } else {
        "/: edit · Esc: clear"
    };
    let line = Line::from(vec![
        Span::styled("filter /", Style::new().bold()),
        Span::raw(format!("{}{cursor}", safe(&app.filter))),
        Span::styled(format!("  {shown} of {total} rows  {keys}"), HINT),
    ]);
    frame.render_widget(
        Paragraph::new(ellipsize_line(line, usize::from(area.width))),
        area,
    );
}

fn render_metrics(app: &App, frame: &mut Frame, area: Rect, fit: Fit) {
    let columns = layout::table_columns(area.width, fit);
    let reporter = app.reporter_level();
    let mut rows = Vec::new();
    let mut group = None;
    let mut selected_at = None;
    let visible = app.visible_rows();
    let selected = app.selected.min(visible.len().saturating_sub(1));
    for (i, row) in visible.iter().enumerate() {
        if group != Some(row.level) {
            group = Some(row.level);
            let (state, style) = group_state(app, row.level, reporter);
            let mut cells = vec![
                Cell::from(format!("── {} ──", row.level)).style(Style::new().bold()),
                Cell::from(""),
                Cell::from(""),
                Cell::from(Line::from(ellipsize(&state, usize::from(columns.value)))).style(style),
            ];
            if columns.trend > 0 {
                cells.insert(3, Cell::from(""));
            }
            rows.push(Row::new(cells));
        }
        if i == selected {
            selected_at = Some(rows.len());
        }
        let mut table_row = metric_row(app, row, columns);
        if i == selected && app.dialog.is_none() && !app.help {
            table_row = table_row.style(SELECTED);
        }
        rows.push(table_row);
    }
    if visible.is_empty() {
        rows.push(Row::new(vec![Cell::from(Line::styled(
            format!("no row matches /{}", safe(&app.filter)),
            WARN,
        ))]));
    }
    // One line is the column titles; one more says what is above and below when not all fit.
    let room = usize::from(area.height.saturating_sub(1));
    let overflow = rows.len() > room;
    let window = if overflow {
        room.saturating_sub(1)
    } else {
        room
    };
    let offset = layout::scroll_window(rows.len(), window, selected_at.unwrap_or(0));
    let below = rows.len().saturating_sub(offset + window);
    let sharing_title = if reporter.is_some() {
        "reporter"
    } else {
        "sharing"
    };
    let mut titles = vec!["metric", sharing_title, "", "trend", "value"];
    let mut widths = vec![
        Constraint::Length(columns.name),
        Constraint::Length(columns.sharing),
        Constraint::Length(columns.mark),
        Constraint::Length(columns.trend),
        Constraint::Fill(1),
    ];
    if columns.trend == 0 {
        titles.remove(3);
        widths.remove(3);
    }
    let table = Table::new(rows.into_iter().skip(offset).take(window), widths)
        .header(Row::new(titles).style(Style::new().underlined()));
    let table_area = Rect {
        height: area.height.saturating_sub(u16::from(overflow)),
        ..area
    };
    frame.render_widget(table, table_area);
    if overflow {
        let text = format!(
            "{}  {}  row {} of {}  (↑/↓ select · Enter describe · / filter)",
            if offset > 0 {
                format!("↑ {offset} more")
            } else {
                "top".into()
            },
            if below > 0 {
                format!("↓ {below} more")
            } else {
                "end".into()
            },
            selected + 1,
            visible.len(),
        );
        frame.render_widget(
            Paragraph::new(Line::styled(
                ellipsize(&text, usize::from(area.width)),
                HINT,
            )),
            Rect {
                y: area.y + area.height - 1,
                height: 1,
                ..area
            },
        );
    }
}

/// A level group's note: what shares it, the reporter's and the proposal's.
fn group_state(app: &App, level: Level, reporter: Option<Level>) -> (String, Style) {
    let proposed = app.level.shares(level);
    match reporter {
        None if proposed => ("shared at this level".into(), SHARED),
        None => ("withheld".into(), WITHHELD),
        Some(now) => {
            let shares = now.shares(level);
            match (shares, proposed) {
                (false, true) => ("withheld · + proposal adds".into(), SHARED),
                (true, false) => ("◆ shared · − proposal stops".into(), BAD),
                (true, true) => ("◆ shared by the reporter".into(), IN_CLUSTER),
                (false, false) => ("withheld by the reporter".into(), WITHHELD),
            }
        }
    }
}

/// Whether the row leaves the cluster in the model the screen shows: the reporter's when there
/// is one, else the level on screen's.
fn leaves(row: &RowView) -> bool {
    match row.in_cluster {
        Some(in_cluster) => in_cluster == InCluster::Shares,
        None => row.shared,
    }
}

/// The sharing column's word and symbol: each state differs by text, not only by colour.
fn sharing(row: &RowView) -> (&'static str, Style) {
    match (row.in_cluster, &row.shown, row.shared) {
        (Some(InCluster::Shares), _, _) => ("◆ shared", IN_CLUSTER),
        (Some(InCluster::Pending), _, _) => ("◇ pending", PENDING),
        (Some(InCluster::Withholds), _, _) => ("withheld", WITHHELD),
        (None, Shown::Known(_), true) => ("● shared", SHARED),
        (None, _, true) => ("? omitted", UNKNOWN),
        (None, _, false) => ("withheld", WITHHELD),
    }
}

fn value_spans(app: &App, row: &RowView) -> Vec<Span<'static>> {
    let unit = row
        .kind
        .metric()
        .and_then(unit)
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    let mut value = match &row.shown {
        Shown::Known(value) => vec![Span::styled(
            safe(&format!("{value}{unit}")),
            if leaves(row) {
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
        Shown::Unknown(reason) => {
            vec![Span::styled(safe(&format!("? unknown: {reason}")), UNKNOWN)]
        }
    };
    if let (Shown::Known(_), Some(trend)) = (&row.shown, row.trend)
        && let Some((at, delta)) = trend.last_change
    {
        value.push(Span::styled(
            format!("  {delta:+} {} ago", short_age(age(app.now, at))),
            HINT,
        ));
    }
    if let RowKind::Extension(ext) = &row.kind {
        value.push(Span::styled(
            safe(&format!("  operator-supplied, from {}", ext.source)),
            WITHHELD,
        ));
        for suspicion in &ext.suspicions {
            value.push(Span::styled(safe(&format!("  ⚠ {suspicion}")), WARN));
        }
    }
    value
}

fn metric_row(app: &App, row: &RowView, columns: layout::TableColumns) -> Row<'static> {
    let (sharing, sharing_style) = sharing(row);
    let name_style = if leaves(row) {
        Style::new().bold()
    } else {
        WITHHELD
    };
    let mark = match row.change {
        Some(Change::Added) => Span::styled("+", SHARED),
        Some(Change::Removed) => Span::styled("−", BAD),
        None => Span::raw(""),
    };
    let value = ellipsize_line(
        Line::from(value_spans(app, row)),
        usize::from(columns.value),
    );
    let mut cells = vec![
        Cell::from(ellipsize(&safe(&row.name), usize::from(columns.name))).style(name_style),
        Cell::from(sharing).style(sharing_style),
        Cell::from(mark),
        Cell::from(value),
    ];
    if columns.trend > 0 {
        let trend = row.trend.map(sparkline).unwrap_or_default();
        let style = if leaves(row) {
            Style::new().fg(Color::Cyan)
        } else {
            WITHHELD
        };
        cells.insert(3, Cell::from(trend).style(style));
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

/// A bordered pane of `lines` scrolled by `scroll`, with "↑/↓ more" on its bottom border when
/// they do not all fit.
fn render_scrolled(
    frame: &mut Frame,
    area: Rect,
    title: String,
    lines: Vec<Line<'static>>,
    scroll: u16,
) {
    let inner = usize::from(area.height.saturating_sub(2));
    let total = lines.len();
    let offset = usize::from(scroll).min(total.saturating_sub(inner));
    let block = with_scroll_note(Block::bordered().title(title), total, inner, offset);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0)),
        area,
    );
}

/// `block` with "↑ n · ↓ n more (↑/↓)" on its bottom border when `total` rows do not fit in
/// `visible` from `offset`.
fn with_scroll_note(
    block: Block<'static>,
    total: usize,
    visible: usize,
    offset: usize,
) -> Block<'static> {
    if total <= visible {
        return block;
    }
    let below = total.saturating_sub(offset + visible);
    let above = if offset > 0 {
        format!("↑ {offset} · ")
    } else {
        String::new()
    };
    let below = if below > 0 {
        format!("↓ {below} more")
    } else {
        "end".to_string()
    };
    block.title_bottom(Line::styled(format!(" {above}{below} (↑/↓) "), HINT))
}

fn payload_form_note(form: PayloadForm) -> &'static str {
    match form {
        PayloadForm::Pretty => "pretty (b: raw)",
        PayloadForm::Raw => "as sent (b: pretty)",
    }
}

fn render_payload(app: &App, frame: &mut Frame, area: Rect) {
    let inner_width = area.width.saturating_sub(2);
    let (title, lines) = match shown_event(app) {
        Some(event) => (
            format!(
                " payload{}, level {}, {} bytes, {} ",
                if app.reporter_level().is_some() {
                    " (s sends it from here)"
                } else {
                    ""
                },
                event.level,
                event.json.len(),
                payload_form_note(app.payload_form)
            ),
            payload_text(&event.json, app.payload_form, inner_width).lines,
        ),
        None if app.level == Level::Off => (
            " payload ".into(),
            vec![Line::raw("Level off: nothing is sent.")],
        ),
        None => (
            " payload ".into(),
            vec![Line::raw("Waiting for the first collection…")],
        ),
    };
    render_scrolled(
        frame,
        area,
        ellipsize(&title, usize::from(area.width.saturating_sub(2))),
        lines,
        app.scroll,
    );
}

/// The in-cluster reporter's last event, byte for byte from its status ConfigMap.
fn render_reporter_event(app: &App, frame: &mut Frame, area: Rect) {
    let inner_width = area.width.saturating_sub(2);
    let status = app.reporter.as_ref().and_then(|r| r.status.as_ref());
    let (title, lines) = match status.and_then(|s| s.last_event.as_deref()) {
        Some(json) => (
            format!(
                " in-cluster reporter's last event, {} bytes, {} ",
                json.len(),
                payload_form_note(app.payload_form)
            ),
            payload_text(json, app.payload_form, inner_width).lines,
        ),
        None => (
            " in-cluster reporter's last event ".to_string(),
            vec![Line::raw(match &app.reporter {
                None => "The in-cluster reporter has not been read.".to_string(),
                Some(r) if r.status.is_none() => format!("Unknown: {}", safe(&r.line)),
                Some(_) => "It has sent no event yet.".to_string(),
            })],
        ),
    };
    render_scrolled(
        frame,
        area,
        ellipsize(&title, usize::from(area.width.saturating_sub(2))),
        lines,
        app.scroll,
    );
}

/// The event pretty-printed with the level that adds each field marked, a long line continued at
/// its own indentation; or its exact bytes cut into lines of `width` (no word wrapping, so the
/// lines join back into the very bytes).
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
    let mut lines = Vec::new();
    for line in pretty.lines() {
        let added_by = line
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split_once('"'))
            .and_then(|(name, _)| METRICS.iter().find(|m| m.name == name))
            .map(|m| m.level)
            .filter(|level| *level != Level::Cluster);
        // The note only where it fits whole: a wrapped JSON line is hard enough to read.
        let note = added_by
            .map(|level| format!("  +{level}"))
            .filter(|note| text_width(line) + text_width(note) <= usize::from(width));
        let full = format!("{line}{}", note.clone().unwrap_or_default());
        let rows = layout::wrap_indented(&full, usize::from(width));
        let count = rows.len();
        for (i, row) in rows.into_iter().enumerate() {
            // The level note keeps its colour when it ends the last row whole.
            match &note {
                Some(note) if i + 1 == count && row.ends_with(note.as_str()) => {
                    let text = row[..row.len() - note.len()].to_string();
                    lines.push(Line::from(vec![
                        Span::raw(text),
                        Span::styled(note.clone(), Style::new().fg(Color::Cyan)),
                    ]));
                }
                _ => lines.push(Line::raw(row)),
            }
        }
    }
    Text::from(lines)
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let all = hints(app.context());
    let sized: Vec<((&str, &str), usize, bool)> = all
        .iter()
        .map(|(label, text, essential)| {
            (
                (*label, *text),
                text_width(label) + 1 + text_width(text),
                *essential,
            )
        })
        .collect();
    let mut spans = Vec::new();
    for (label, text) in layout::footer_fit(&sized, usize::from(area.width)) {
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

/// A dialog: its body scrolls (with "↑ n · ↓ n more" on the border) and its key line stays
/// pinned at the bottom whatever the terminal's height.
fn render_box(
    frame: &mut Frame,
    within: Rect,
    title: String,
    body: Vec<Line<'static>>,
    keys: Line<'static>,
    scroll: u16,
) {
    render_box_indented(frame, within, title, body, 0, keys, scroll);
}

/// As [`render_box`], wrapped lines continuing `indent` columns in.
fn render_box_indented(
    frame: &mut Frame,
    within: Rect,
    title: String,
    body: Vec<Line<'static>>,
    indent: usize,
    keys: Line<'static>,
    scroll: u16,
) {
    let width = within.width.saturating_sub(4).min(100);
    let inner = usize::from(width.saturating_sub(2));
    let mut rows = Vec::new();
    for line in body {
        rows.extend(wrap_hanging(line, inner, indent));
    }
    let keys = ellipsize_line(keys, inner);
    let height = u16::try_from(rows.len())
        .unwrap_or(u16::MAX)
        .saturating_add(4);
    let area = popup(frame, within, width, height);
    let body_height = usize::from(area.height.saturating_sub(4));
    let total = rows.len();
    let offset = usize::from(scroll).min(total.saturating_sub(body_height));
    let block = with_scroll_note(
        Block::bordered().title(ellipsize(&title, inner)),
        total,
        body_height,
        offset,
    );
    let inside = block.inner(area);
    frame.render_widget(block, area);
    let [text, _, key_line] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inside);
    frame.render_widget(
        Paragraph::new(rows).scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0)),
        text,
    );
    frame.render_widget(Paragraph::new(keys), key_line);
}

/// A styled line broken at spaces into rows of `width` columns (a word longer than a row is
/// broken inside it), so the rows of a dialog can be counted and scrolled exactly.
fn wrap_words(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    wrap_hanging(line, width, 0)
}

/// As [`wrap_words`], each continuation row starting `indent` columns in (a hanging indent,
/// so a key's or a label's column stays clear).
fn wrap_hanging(line: Line<'static>, width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    if line.width() <= width {
        return vec![line];
    }
    let indent = if indent * 2 > width { 0 } else { indent };
    // Words with their style, each keeping its trailing space.
    let mut words: Vec<(String, Style)> = Vec::new();
    for span in &line.spans {
        let mut word = String::new();
        for c in span.content.chars() {
            word.push(c);
            if c == ' ' {
                words.push((std::mem::take(&mut word), span.style));
            }
        }
        if !word.is_empty() {
            words.push((word, span.style));
        }
    }
    let mut rows: Vec<Line<'static>> = vec![Line::default()];
    let mut used = 0;
    for (word, style) in words {
        let w = text_width(word.trim_end());
        if used > 0 && used + w > width {
            rows.push(Line::raw(" ".repeat(indent)));
            used = indent;
        }
        if w > width {
            for piece in wrap_line(Line::styled(word, style), width) {
                if used > 0 {
                    rows.push(Line::default());
                }
                used = piece.width();
                if let Some(row) = rows.last_mut() {
                    row.spans.extend(piece.spans);
                }
            }
            continue;
        }
        used += text_width(&word);
        if let Some(row) = rows.last_mut() {
            row.spans.push(Span::styled(word, style));
        }
    }
    rows
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
    record
        .outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| {
            // A send of an earlier session names the endpoint it went to, whatever is set now.
            let endpoint = match outcome {
                Some(o) if record.earlier => o.endpoint.clone(),
                _ => app.info.endpoints.get(index).cloned().unwrap_or_default(),
            };
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

/// The fields of a send's level left out because their values are unknown, grouped by reason.
fn unknown_warning(app: &App, level: Level) -> Vec<Line<'static>> {
    let unknown = app.unknown_at(level);
    if unknown.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![Line::styled(
        format!(
            "⚠ {} field{} level {level} shares {} unknown, so left out of this event:",
            unknown.len(),
            if unknown.len() == 1 { "" } else { "s" },
            if unknown.len() == 1 { "is" } else { "are" }
        ),
        WARN,
    )];
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, reason) in &unknown {
        match reasons.iter_mut().find(|(r, _)| *r == reason.as_str()) {
            Some((_, names)) => names.push(name),
            None => reasons.push((reason, vec![name])),
        }
    }
    for (reason, names) in reasons {
        lines.push(Line::from(vec![
            Span::styled(
                safe(&format!("  {}", names.join(", "))),
                Style::new().bold(),
            ),
            Span::styled(safe(&format!(": {reason}")), UNKNOWN),
        ]));
    }
    lines.push(Line::raw(""));
    lines
}

fn keys_line(keys: &[(&str, &str)]) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (key, what)) in keys.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("    "));
        }
        spans.push(Span::styled(format!("{key}:"), Style::new().bold()));
        spans.push(Span::raw(format!(" {what}")));
    }
    Line::from(spans)
}

fn render_dialog(app: &App, dialog: &Dialog, frame: &mut Frame, within: Rect) {
    let width = within.width.saturating_sub(4).min(100);
    match dialog {
        Dialog::Confirm(event) => {
            let mut lines = event_summary(event);
            if let Some(bound) = app.consent_bound() {
                lines.push(Line::styled(safe(&bound), WARN));
            }
            lines.extend(unknown_warning(app, event.level));
            lines.push(Line::raw(
                "from this machine (not the in-cluster reporter), to every endpoint:",
            ));
            for endpoint in &app.info.endpoints {
                lines.push(Line::raw(format!("  {endpoint}")));
            }
            render_box(
                frame,
                within,
                " send this payload? ".to_string(),
                lines,
                keys_line(&[("y", "send exactly the payload shown"), ("n/Esc", "cancel")]),
                app.dialog_scroll,
            );
        }
        Dialog::Sent(insert_id) => {
            let (title, lines) = match app.send(*insert_id) {
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
                    (title, lines)
                }
                None => (" sent ".to_string(), vec![Line::raw("no such send")]),
            };
            render_box(
                frame,
                within,
                title,
                lines,
                keys_line(&[
                    ("b", "bytes or pretty"),
                    ("Esc", "close (the send goes on)"),
                ]),
                app.dialog_scroll,
            );
        }
        Dialog::Approve(approval) => {
            let lines = approve_lines(app, approval);
            render_box(
                frame,
                within,
                " approve for the in-cluster reporter? ".to_string(),
                lines,
                keys_line(&[("y", "approve and write"), ("n/Esc", "write nothing")]),
                app.dialog_scroll,
            );
        }
        Dialog::History { selected } => {
            let lines = match &app.history {
                None | Some(HistoryView::Loading) => {
                    vec![Line::raw(format!("reading {LEDGER_CONFIGMAP}…"))]
                }
                Some(HistoryView::Failed(why)) => {
                    vec![Line::styled(printable(why), BAD)]
                }
                Some(HistoryView::Loaded {
                    entries,
                    verification,
                }) => history_lines(app, entries, verification, *selected, width),
            };
            // The list keeps the selected entry in view itself: the body starts at the top.
            render_box(
                frame,
                within,
                format!(" history of the in-cluster reporter ({LEDGER_CONFIGMAP}) "),
                lines,
                keys_line(&[("↑/↓", "select an entry"), ("Esc", "close")]),
                0,
            );
        }
        Dialog::Switch(picker) => {
            let (title, lines, scroll) = switch_lines(app, picker);
            let keys: Vec<(&str, &str)> = hints(picker.key_context())
                .into_iter()
                .map(|(label, help, _)| (label, help))
                .collect();
            render_box(frame, within, title, lines, keys_line(&keys), scroll);
        }
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
                        Line::styled(format!("> {text}"), SELECTED)
                    } else {
                        Line::raw(format!("  {text}"))
                    }
                })
                .collect();
            render_box(
                frame,
                within,
                " sends from this inspector (kept across sessions) ".to_string(),
                lines,
                keys_line(&[("↑/↓", "select"), ("Enter", "open"), ("Esc", "close")]),
                u16::try_from(selected.saturating_sub(5)).unwrap_or(0),
            );
        }
        Dialog::Describe(name) => {
            let lines = describe_lines(app, name);
            render_box_indented(
                frame,
                within,
                format!(" {} ", safe(name)),
                lines,
                10,
                keys_line(&[("↑/↓", "scroll"), ("Esc", "close")]),
                app.dialog_scroll,
            );
        }
        Dialog::Details => {
            let mut lines = Vec::new();
            for line in header(app, u16::MAX) {
                lines.push(line);
                lines.push(Line::raw(""));
            }
            lines.push(Line::raw(format!(
                "refresh every {}; logs: {}",
                short_age(app.info.refresh_every),
                app.info.log_file
            )));
            lines.push(Line::raw("endpoints of s (this machine's sends):"));
            for endpoint in &app.info.endpoints {
                lines.push(Line::raw(format!("  {endpoint}")));
            }
            render_box(
                frame,
                within,
                " details ".to_string(),
                lines,
                keys_line(&[("↑/↓", "scroll"), ("Esc", "close")]),
                app.dialog_scroll,
            );
        }
    }
}

/// Rows of the history list shown at once, around the selected entry.
const HISTORY_ROWS: usize = 5;

/// The history pane: whether the chain verifies, the entries around the selected one, and the
/// selected entry: a send's consent changes since the send before, its diff to that send, and
/// its bytes; a consent change in full.
fn history_lines(
    app: &App,
    entries: &[Listed],
    verification: &Verification,
    selected: usize,
    width: u16,
) -> Vec<Line<'static>> {
    let mut lines = vec![match &verification.broken {
        None => Line::styled(
            format!(
                "chain verified: {} entries, {} dropped before, head {}…",
                verification.entries,
                verification.dropped,
                &verification.head[..16.min(verification.head.len())]
            ),
            SHARED,
        ),
        Some(broken) => Line::styled(format!("BROKEN: {}", printable(&broken.to_string())), BAD),
    }];
    if entries.is_empty() {
        lines.push(Line::raw(
            "no entries yet: the reporter has not sent since it was deployed",
        ));
        return lines;
    }
    let selected = selected.min(entries.len() - 1);
    let start = selected
        .saturating_sub(HISTORY_ROWS / 2)
        .min(entries.len().saturating_sub(HISTORY_ROWS));
    for (i, listed) in entries.iter().enumerate().skip(start).take(HISTORY_ROWS) {
        let text = format!("{:>4}  {}", listed.seq, entry_summary(listed));
        lines.push(if i == selected {
            Line::styled(format!("> {text}"), Style::new().reversed())
        } else {
            Line::raw(format!("  {text}"))
        });
    }
    lines.push(Line::raw(""));
    let listed = &entries[selected];
    let entry = match &listed.entry {
        Ok(entry) => entry,
        Err(error) => {
            lines.push(Line::styled(
                format!(
                    "entry {} is not a ledger entry: {}",
                    listed.seq,
                    printable(error)
                ),
                BAD,
            ));
            return lines;
        }
    };
    match &entry.record {
        Record::Consent(consent) => lines.extend(consent_lines(consent)),
        Record::Send(send) => {
            lines.push(Line::from(vec![
                Span::styled(format!("entry {}", listed.seq), Style::new().bold()),
                Span::raw(format!(
                    ": sent {} at level {} ({}), {} bytes{}",
                    entry.at,
                    send.level,
                    send.source,
                    send.event.len(),
                    match (&send.consent_version, &send.approved_by) {
                        (Some(version), Some(by)) => {
                            format!(", consent {version} approved by {}", printable(by))
                        }
                        (Some(version), None) => format!(", consent version {version}"),
                        _ => String::new(),
                    }
                )),
            ]));
            for outcome in &send.outcomes {
                let style = if outcome.ok { SHARED } else { BAD };
                lines.push(Line::from(vec![
                    Span::raw(format!("  {} ", printable(&outcome.endpoint))),
                    Span::styled(printable(&outcome.detail), style),
                ]));
            }
            if let Some(why) = &send.cancelled {
                lines.push(Line::styled(
                    format!("  cancelled: {}", printable(why)),
                    WARN,
                ));
            }
            let before = entries[..selected].iter().rposition(|e| {
                matches!(
                    &e.entry,
                    Ok(Entry {
                        record: Record::Send(_),
                        ..
                    })
                )
            });
            let since = before.map_or(0, |b| b + 1);
            let changes: Vec<&Listed> = entries[since..selected]
                .iter()
                .filter(|e| {
                    matches!(
                        &e.entry,
                        Ok(Entry {
                            record: Record::Consent(_),
                            ..
                        })
                    )
                })
                .collect();
            if !changes.is_empty() {
                lines.push(Line::styled(
                    "consent changes since the send before:",
                    Style::new().bold(),
                ));
                for change in changes {
                    lines.push(Line::raw(format!(
                        "  {:>4}  {}",
                        change.seq,
                        entry_summary(change)
                    )));
                }
            }
            match before.map(|b| &entries[b]) {
                Some(Listed {
                    seq,
                    entry:
                        Ok(Entry {
                            record: Record::Send(previous),
                            ..
                        }),
                    ..
                }) => {
                    let diff = diff_events(&previous.event, &send.event);
                    if diff.is_empty() {
                        lines.push(Line::styled(
                            format!("same fields and values as entry {seq}"),
                            HINT,
                        ));
                    } else {
                        lines.push(Line::styled(
                            format!("diff to entry {seq}:"),
                            Style::new().bold(),
                        ));
                    }
                    for (name, value) in &diff.added {
                        lines.push(Line::styled(
                            format!("  + {} {}", printable(name), printable(&value.to_string())),
                            SHARED,
                        ));
                    }
                    for (name, value) in &diff.removed {
                        lines.push(Line::styled(
                            format!("  - {} {}", printable(name), printable(&value.to_string())),
                            BAD,
                        ));
                    }
                    for (name, [was, now]) in &diff.changed {
                        lines.push(Line::styled(
                            format!(
                                "  ~ {} {} -> {}",
                                printable(name),
                                printable(&was.to_string()),
                                printable(&now.to_string())
                            ),
                            WARN,
                        ));
                    }
                }
                _ => lines.push(Line::styled(
                    "the oldest send kept: nothing to compare with",
                    HINT,
                )),
            }
            lines.push(Line::raw(""));
            // The bytes come from the cluster: anything but a genuine (ASCII) event shows escaped.
            let bytes = printable(&send.event);
            lines.extend(payload_text(&bytes, app.payload_form, width.saturating_sub(2)).lines);
        }
    }
    lines
}

/// One line on an entry, as the history list shows it.
fn entry_summary(listed: &Listed) -> String {
    match &listed.entry {
        Err(_) => "unreadable".into(),
        Ok(entry) => match &entry.record {
            Record::Send(send) => {
                let failed = send.outcomes.len() - send.accepted();
                format!(
                    "{}  send     {:<8} {:>5} B  {} ok / {failed} failed",
                    entry.at,
                    send.level,
                    send.event.len(),
                    send.accepted()
                )
            }
            Record::Consent(consent) => format!(
                "{}  consent  {} {} (version {}) by {}",
                entry.at,
                consent.change.as_str(),
                consent.level.as_deref().unwrap_or(""),
                consent.version.as_deref().unwrap_or("-"),
                printable(consent.approved_by.as_deref().unwrap_or("-"))
            ),
        },
    }
}

fn consent_lines(consent: &ConsentRecord) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(
        format!(
            "consent {} (version {})",
            consent.change.as_str(),
            consent.version.as_deref().unwrap_or("-")
        ),
        Style::new().bold(),
    )];
    let mut field = |name: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            lines.push(Line::raw(format!("  {name:<12} {}", printable(value))));
        }
    };
    field("level", consent.level.as_deref());
    field("approved by", consent.approved_by.as_deref());
    field("approved at", consent.approved_at.as_deref());
    field("note", consent.note.as_deref());
    field("reason", consent.reason.as_deref());
    field("added", Some(&consent.added.join(", ")));
    field("removed", Some(&consent.removed.join(", ")));
    field("fields", Some(&consent.fields.join(", ")));
    lines
}

/// The approve dialog: what changes against the consent (`+`/`−`), what it replaces, where
/// the reporter sends.
fn approve_lines(app: &App, approval: &super::app::Approval) -> Vec<Line<'static>> {
    let status = app.reporter.as_ref().and_then(|r| r.status.as_ref());
    let consent = app
        .reporter
        .as_ref()
        .map(|r| r.consent_configmap.clone())
        .unwrap_or_default();
    let diff = app.approval_diff(approval);
    let mut lines = Vec::new();
    if approval.level == Level::Off {
        lines.push(Line::styled(
            "stop sharing: the reporter sends nothing from now on, including an event it is still retrying",
            Style::new().bold(),
        ));
    } else {
        let now = app
            .reporter_level()
            .map(|l| format!(" (the reporter now: {l})"))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::raw("level "),
            Span::styled(approval.level.to_string(), Style::new().bold()),
            Span::raw(format!(
                "{now}, exactly {} fields; against the current consent:",
                approval.fields.len()
            )),
        ]));
    }
    for field in &diff.added {
        lines.push(Line::styled(safe(&format!("  + {field}")), SHARED));
    }
    for field in &diff.removed {
        lines.push(Line::styled(safe(&format!("  − {field}")), BAD));
    }
    if diff.added.is_empty() && diff.removed.is_empty() {
        lines.push(Line::styled("  no field changes", HINT));
    }
    if diff.kept > 0 {
        lines.push(Line::styled(
            format!("  {} fields stay as they are", diff.kept),
            HINT,
        ));
    }
    if let Some(status) = status.filter(|s| !s.pending.is_empty()) {
        let pending: Vec<&str> = status.pending.iter().map(String::as_str).collect();
        let approved = pending
            .iter()
            .filter(|p| approval.fields.iter().any(|f| f == *p))
            .count();
        let fate = if approved == pending.len() {
            "this approval shares them"
        } else if approved == 0 {
            "this approval leaves them withheld"
        } else {
            "this approval shares those marked +"
        };
        let (are, them) = if pending.len() == 1 {
            ("is", "it")
        } else {
            ("are", "them")
        };
        let fate = fate.replace("them", them);
        lines.push(Line::from(vec![
            Span::styled("◇ pending: ", PENDING),
            Span::raw(safe(&format!(
                "{} {are} at the reporter's level but not in the consent, so withheld until approved; {fate}",
                pending.join(", ")
            ))),
        ]));
    }
    lines.push(Line::raw(""));
    if approval.level != Level::Off {
        match status.filter(|s| !s.endpoints.is_empty()) {
            Some(status) => {
                lines.push(Line::raw(safe(&format!(
                    "the reporter publishes to (every {}):",
                    status.interval.as_deref().unwrap_or("?")
                ))));
                for endpoint in &status.endpoints {
                    lines.push(Line::raw(safe(&format!("  {endpoint}"))));
                }
            }
            None => lines.push(Line::styled(
                "where the reporter publishes and how often: unknown (it has not reported yet)",
                UNKNOWN,
            )),
        }
    }
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
    lines.push(Line::raw(safe(&match &approval.seen_version {
        Some(version) => format!(
            "writes configmaps {consent} over resourceVersion {version}; a change by someone else since is shown, not overwritten"
        ),
        None => format!("creates configmaps {consent}"),
    })));
    lines
}

/// Everything about one row: the metrics table's meaning, level, type and source, its value
/// with its unit, the full reason when unknown, its trend, and what the reporter does with it.
fn describe_lines(app: &App, name: &str) -> Vec<Line<'static>> {
    let Some(row) = app.rows().into_iter().find(|r| r.name == name) else {
        return vec![Line::raw("no such row")];
    };
    let field = |label: &str, text: String| {
        Line::from(vec![
            Span::styled(format!("{label:<10}"), Style::new().bold()),
            // Values, reasons and extensions come from outside the process.
            Span::raw(safe(&text)),
        ])
    };
    let mut lines = Vec::new();
    match &row.kind {
        RowKind::Metric(def) => {
            lines.push(field("meaning", def.description.replace('`', "")));
            lines.push(field(
                "level",
                format!("{} (shared from level {} up)", def.level, def.level),
            ));
            lines.push(field("type", def.value_type.as_str().to_string()));
            lines.push(field("source", def.source.as_str().to_string()));
        }
        RowKind::Extension(ext) => {
            lines.push(field(
                "meaning",
                format!("a static fact the operator supplied (from {})", ext.source),
            ));
            lines.push(field(
                "level",
                format!("{} (shared from level {} up)", ext.level, ext.level),
            ));
            lines.push(field("type", "string".into()));
            lines.push(field("source", format!("operator ({})", ext.source)));
            for suspicion in &ext.suspicions {
                lines.push(Line::styled(safe(&format!("⚠ {suspicion}")), WARN));
            }
        }
    }
    let unit = row
        .kind
        .metric()
        .and_then(unit)
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    lines.push(match &row.shown {
        Shown::Known(value) => field("value", format!("{value}{unit}")),
        Shown::Stale { value, age, reason } => Line::from(vec![
            Span::styled(format!("{:<10}", "value"), Style::new().bold()),
            Span::styled(
                safe(&format!(
                    "{value}{unit}, stale: read {} ago; now unknown because {reason}",
                    short_age(*age)
                )),
                UNKNOWN,
            ),
        ]),
        Shown::Unknown(reason) => Line::from(vec![
            Span::styled(format!("{:<10}", "value"), Style::new().bold()),
            Span::styled(safe(&format!("unknown, because {reason}")), UNKNOWN),
        ]),
    });
    match row.trend {
        Some(trend) => {
            let low = trend.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let high = trend
                .samples
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            lines.push(field(
                "trend",
                format!(
                    "{} {} sample{} over {} (from {low} to {high})",
                    sparkline(trend),
                    trend.samples.len(),
                    if trend.samples.len() == 1 { "" } else { "s" },
                    short_age(trend.window())
                ),
            ));
            lines.push(field(
                "changed",
                match trend.last_change {
                    Some((at, delta)) => format!("{delta:+} {} ago", short_age(age(app.now, at))),
                    None => "not in this session".to_string(),
                },
            ));
        }
        None if row.kind.metric().is_some_and(|d| {
            matches!(
                d.value_type,
                crate::metrics::ValueType::Integer | crate::metrics::ValueType::Float
            )
        }) =>
        {
            lines.push(field("trend", "no value read yet".into()));
        }
        None => {}
    }
    lines.push(field(
        "here",
        if row.shared {
            format!("shared at the level on screen ({})", app.level)
        } else {
            format!("withheld at the level on screen ({})", app.level)
        },
    ));
    lines.push(field(
        "reporter",
        match row.in_cluster {
            Some(InCluster::Shares) => "◆ shares it".to_string(),
            Some(InCluster::Pending) => {
                "◇ pending: at its level but not approved, so withheld until approved".to_string()
            }
            Some(InCluster::Withholds) => "withholds it".to_string(),
            None => match &app.reporter {
                None => "not read".to_string(),
                Some(r) => format!("unknown: {}", r.line),
            },
        },
    ));
    if let Some(change) = row.change {
        lines.push(field(
            "proposal",
            match change {
                Change::Added => format!("+ approving level {} adds it", app.level),
                Change::Removed => format!("− approving level {} stops it", app.level),
            },
        ));
    }
    lines
}

fn render_help(app: &App, frame: &mut Frame, within: Rect) {
    // Where the logs go comes first: it is what a person opens help for when something failed.
    let mut lines: Vec<Line> = vec![Line::raw(format!("logs: {}", app.info.log_file))];
    // A kubeconfig named on purpose (`--kubeconfig`, the demo's sandbox): where to point kubectl.
    if let Some(kubeconfig) = &app.info.kubeconfig {
        lines.push(Line::raw(format!("kubeconfig: {kubeconfig}")));
    }
    for context in Context::ALL {
        let bindings: Vec<_> = BINDINGS.iter().filter(|b| b.context == context).collect();
        if bindings.is_empty() {
            continue;
        }
        if !lines.is_empty() {
            lines.push(Line::raw(""));
        }
        lines.push(Line::styled(
            context.name().to_string(),
            Style::new().bold().underlined(),
        ));
        for b in bindings {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<11} ", keys_text(b)), Style::new().bold()),
                Span::raw(b.help),
            ]));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw("Ctrl-C quits from everywhere."));
    lines.push(Line::raw(
        "sharing: ● shared here · ◆ shared by the reporter · ◇ pending approval · withheld · ? unknown (left out)",
    ));
    lines.push(Line::raw(
        "proposal: + approving the level shown adds it · − approving it stops it",
    ));
    render_box_indented(
        frame,
        within,
        " keys ".to_string(),
        lines,
        14,
        keys_line(&[("↑/↓", "scroll"), ("Esc", "close")]),
        app.dialog_scroll,
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
    use crate::tui::keys::{Action, BINDINGS, Context, keys_text};

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
        assert!(
            text.contains("[2 resource]◆"),
            "opens on the reporter's level:\n{text}"
        );
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

    /// Sizes every view is drawn and snapshotted at.
    const SIZES: [(u16, u16); 4] = [(60, 20), (80, 24), (120, 40), (160, 48)];

    /// A reporter at resource that holds `pipeline_count` back, and on screen a proposal of
    /// feature: the screen an operator reviewing an approval sees.
    fn governed() -> App {
        let mut app = app(Level::Cluster);
        let shared: Vec<&str> = METRICS
            .iter()
            .filter(|m| m.level <= Level::Resource && m.name != "pipeline_count")
            .map(|m| m.name)
            .collect();
        app.on_reporter(reporter("resource", "7", &shared, &["pipeline_count"]));
        assert_eq!(
            app.level,
            Level::Resource,
            "the screen opens on the reporter's level"
        );
        app.on_action(Action::SetLevel(3));
        app
    }

    /// `text` with the lines of every box joined: what it says, however it was wrapped.
    fn flat(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn main_view_at_every_size() {
        for (w, h) in SIZES {
            let app = governed();
            let text = screen(&app, w, h);
            // What must be there at every size: the reporter's line, how to quit, help.
            assert!(
                text.contains("in-cluster reporter ◆: level resource"),
                "{w}x{h}\n{text}"
            );
            assert!(
                text.contains("q quit") && text.contains("? help"),
                "{w}x{h}\n{text}"
            );
            assert!(
                text.contains("6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11"),
                "cluster id cut at {w}x{h}\n{text}"
            );
            assert!(
                text.contains("[3 feature]") && text.contains("2 resource ◆"),
                "{w}x{h}\n{text}"
            );
            insta::assert_snapshot!(format!("main_{w}x{h}"), text);
        }
    }

    #[test]
    fn approve_dialog_at_every_size() {
        for (w, h) in SIZES {
            let mut app = governed();
            app.on_action(Action::Approve);
            let text = screen(&app, w, h);
            // The answer is always on screen, whatever scrolls.
            assert!(text.contains("y: approve and write"), "{w}x{h}\n{text}");
            assert!(text.contains("n/Esc: write nothing"), "{w}x{h}\n{text}");
            assert!(text.contains("+ pipeline_count"), "{w}x{h}\n{text}");
            insta::assert_snapshot!(format!("approve_{w}x{h}"), text);
        }
    }

    #[test]
    fn describe_at_every_size() {
        for (w, h) in SIZES {
            let mut app = governed();
            let mut down = scheduler_down(at(10));
            down.set(
                crate::metrics::MetricId::ModelCount,
                crate::metrics::Reading::unknown(
                    "scheduler ModelStatus: no complete answer in 2 attempts; last error: tcp connect error: Connection refused (os error 111)",
                ),
            );
            app.on_snapshot(down);
            app.on_tick(at(12));
            app.on_action(Action::Filter);
            for c in "model".chars() {
                app.on_action(Action::FilterChar(c));
            }
            app.on_action(Action::FilterDone);
            app.on_action(Action::Describe);
            let text = screen(&app, w, h);
            assert!(text.contains(" model_count "), "{w}x{h}\n{text}");
            assert!(text.contains("Esc: close"), "{w}x{h}\n{text}");
            if h >= 24 {
                let said = flat(&text);
                assert!(
                    said.contains("models the scheduler reports that are not deleted"),
                    "{w}x{h}\n{text}"
                );
                assert!(
                    said.contains("(os error 111)"),
                    "the full reason at {w}x{h}\n{text}"
                );
            }
            insta::assert_snapshot!(format!("describe_{w}x{h}"), text);
        }
    }

    #[test]
    fn help_at_every_size() {
        for (w, h) in SIZES {
            let mut app = governed();
            app.on_action(Action::ToggleHelp);
            let text = screen(&app, w, h);
            assert!(
                text.contains("Esc: close") && text.contains("↑/↓: scroll"),
                "{w}x{h}\n{text}"
            );
            insta::assert_snapshot!(format!("help_{w}x{h}"), text);
        }
    }

    #[test]
    fn below_60x20_the_screen_says_it_is_too_small() {
        let text = screen(&governed(), 59, 30);
        assert!(
            text.contains("terminal too small (59×30, need 60×20)"),
            "{text}"
        );
        let text = screen(&governed(), 100, 19);
        assert!(
            text.contains("terminal too small (100×19, need 60×20)"),
            "{text}"
        );
    }

    #[test]
    fn help_names_a_kubeconfig_given_on_purpose_within_80x24() {
        let mut info = info();
        info.kubeconfig = Some("/tmp/hodometer-demo-Ab12Cd/kubeconfig".into());
        let mut app = App::new(info, Level::Cluster, "tok".into(), at(0));
        app.on_action(Action::ToggleHelp);
        let text = screen(&app, 80, 24);
        assert!(
            text.contains("kubeconfig: /tmp/hodometer-demo-Ab12Cd/kubeconfig"),
            "{text}"
        );
    }

    #[test]
    fn help_lists_every_key_of_the_table_and_scrolls_to_the_end() {
        let mut app = app(Level::Cluster);
        app.on_action(Action::ToggleHelp);
        // Scroll through the whole help at 80x24, keeping each page's text inside the box.
        let mut pages = Vec::new();
        for _ in 0..80 {
            let text = screen(&app, 80, 24);
            let inside: Vec<&str> = text
                .lines()
                .filter_map(|line| {
                    let (start, end) = (line.find('│')?, line.rfind('│')?);
                    (end > start).then(|| &line[start + '│'.len_utf8()..end])
                })
                .collect();
            pages.push(flat(&inside.join(" ")));
            app.on_action(Action::ScrollDown);
        }
        let seen = pages.join("\n");
        for binding in BINDINGS {
            let line = flat(&format!("{} {}", keys_text(binding), binding.help));
            assert!(
                pages.iter().any(|page| page.contains(&line)),
                "help lacks {line:?} ({:?})",
                binding.context
            );
        }
        for context in Context::ALL {
            assert!(seen.contains(context.name()), "{context:?}");
        }
        assert!(seen.contains("/tmp/hodometer-inspect.log"));
        assert!(seen.contains("← h level down"), "h/j/k/l are in help");
    }

    /// Style of the cells of the row whose text starts with `name`.
    fn row_cells(buffer: &Buffer, name: &str) -> Vec<ratatui::buffer::Cell> {
        let width = buffer.area.width;
        (0..buffer.area.height)
            .find(|y| {
                (0..width)
                    .map(|x| buffer[(x, *y)].symbol().to_string())
                    .collect::<String>()
                    .starts_with(&format!("{name} "))
            })
            .map(|y| (0..width).map(|x| buffer[(x, y)].clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn main_view_without_colour_80x24() {
        let app = governed().with_monochrome(true);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        terminal.draw(|frame| render(&app, frame)).expect("draw");
        let buffer = terminal.backend().buffer().clone();
        for cell in &buffer.content {
            assert_eq!(
                (cell.fg, cell.bg),
                (Color::Reset, Color::Reset),
                "a colour in monochrome"
            );
        }
        // Told apart by text and symbol, and by weight.
        let shared = row_cells(&buffer, "node_count");
        let text: String = shared.iter().map(|c| c.symbol()).collect();
        assert!(text.contains("◆ shared"), "{text}");
        assert!(shared[0].modifier.contains(Modifier::BOLD));
        let pending: String = row_cells(&buffer, "pipeline_count")
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            pending.contains("◇ pending") && pending.contains("+"),
            "{pending}"
        );
        let withheld = row_cells(&buffer, "multimodel_enabled_count");
        if !withheld.is_empty() {
            let text: String = withheld.iter().map(|c| c.symbol()).collect();
            assert!(text.contains("withheld") && text.contains("+"), "{text}");
            assert!(withheld[0].modifier.contains(Modifier::DIM));
        }
        insta::assert_snapshot!("main_no_color_80x24", screen(&app, 80, 24));
    }

    /// The cells a real terminal shows after `bytes`: each printed character with whether it
    /// is bold. Enough of ECMA-48 for what ratatui's crossterm backend writes: cursor moves
    /// (`CSI row;col H`) and SGR (`CSI … m`, an empty one being a full reset).
    fn bold_cells(bytes: &[u8], width: usize, height: usize) -> Vec<Vec<(char, bool)>> {
        let mut screen = vec![vec![(' ', false); width]; height];
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        let (mut x, mut y, mut bold) = (0usize, 0usize, false);
        while let Some(c) = chars.next() {
            if c != '\u{1b}' {
                if y < height && x < width {
                    screen[y][x] = (c, bold);
                }
                x += 1;
                continue;
            }
            if chars.peek() != Some(&'[') {
                continue;
            }
            chars.next();
            let mut params = String::new();
            let mut end = ' ';
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() || c == '~' {
                    end = c;
                    break;
                }
                params.push(c);
            }
            match end {
                'H' => {
                    let mut it = params.split(';').map(|p| p.parse::<usize>().unwrap_or(1));
                    y = it.next().unwrap_or(1) - 1;
                    x = it.next().unwrap_or(1) - 1;
                }
                'm' => {
                    for p in params.split(';') {
                        match p {
                            "" | "0" => bold = false,
                            "1" => bold = true,
                            "22" => bold = false,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        screen
    }

    #[test]
    fn a_newly_shared_row_renders_as_shared_without_a_resize() {
        use ratatui::backend::CrosstermBackend;
        use ratatui::{TerminalOptions, Viewport};
        // crossterm writes a colour under NO_COLOR as a bare `ESC[m`, a full reset: exactly the
        // terminal that lost the bold of rows that became shared.
        crossterm::style::Colored::set_ansi_color_disabled(true);
        let (w, h) = (80u16, 24u16);
        let mut app = app(Level::Cluster).with_monochrome(true);
        /// What the backend writes, kept readable from outside it.
        #[derive(Clone, Default)]
        struct Tape(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl std::io::Write for Tape {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let tape = Tape::default();
        let mut terminal = Terminal::with_options(
            CrosstermBackend::new(tape.clone()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, w, h)),
            },
        )
        .expect("terminal");
        terminal
            .draw(|frame| render(&app, frame))
            .expect("first frame");
        let row_of = |cells: &Vec<Vec<(char, bool)>>, name: &str| {
            cells
                .iter()
                .find(|row| {
                    row.iter()
                        .map(|c| c.0)
                        .collect::<String>()
                        .starts_with(&format!("{name} "))
                })
                .cloned()
                .unwrap_or_default()
        };
        let before = bold_cells(&tape.0.borrow(), usize::from(w), usize::from(h));
        let model = row_of(&before, "model_count");
        assert!(
            model
                .iter()
                .map(|c| c.0)
                .collect::<String>()
                .contains("withheld")
        );
        assert!(!model[0].1, "withheld is not bold");
        // One state change, one redraw (ratatui sends only the cells that changed), no resize.
        app.on_action(Action::LevelUp);
        terminal
            .draw(|frame| render(&app, frame))
            .expect("second frame");
        let after = bold_cells(&tape.0.borrow(), usize::from(w), usize::from(h));
        let model = row_of(&after, "model_count");
        let text: String = model.iter().map(|c| c.0).collect();
        assert!(text.contains("● shared"), "{text}");
        assert!(
            model[..11].iter().all(|c| c.1),
            "the newly shared row is bold at once: {model:?}"
        );
        crossterm::style::Colored::set_ansi_color_disabled(false);
    }

    #[test]
    fn the_send_dialog_warns_of_unknown_fields_and_why() {
        let mut app = app(Level::Resource);
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
        let mut app2 = App::new(info(), Level::Resource, "tok".into(), at(0));
        app2.on_snapshot(down);
        app2.on_action(Action::Send);
        let said = flat(&screen(&app2, 100, 30));
        assert!(
            said.contains(
                "⚠ 6 fields level resource shares are unknown, so left out of this event:"
            ),
            "{said}"
        );
        assert!(
            said.contains("seldon_core_version, model_count, pipeline_count, experiment_count,")
                && said.contains("server_replica_count: scheduler connect: connection refused"),
            "{said}"
        );
        app.on_action(Action::Send);
        assert!(
            !flat(&screen(&app, 100, 30)).contains("⚠"),
            "nothing to warn of"
        );
    }

    #[test]
    fn approving_off_says_stop_sharing_and_what_stops() {
        let mut app = governed();
        app.on_action(Action::SetLevel(0));
        app.on_action(Action::Approve);
        let said = flat(&screen(&app, 100, 40));
        assert!(said.contains("stop sharing: the reporter sends nothing from now on, including an event it is still retrying"), "{said}");
        assert!(said.contains("− node_count"), "{said}");
        assert!(!said.contains("publishes to"), "{said}");
        assert!(!said.contains("exactly 0 fields"), "{said}");
    }

    #[test]
    fn a_long_source_name_gives_way_to_its_state() {
        let mut info = info();
        info.scheduler_port_from = Some("--scheduler-port (SCHEDULER_PLAINTXT_PORT)".into());
        info.kube = "context a-very-long-kubeconfig-context-name-for-a-production-cluster".into();
        let mut app = App::new(info, Level::Cluster, "tok".into(), at(0));
        app.on_snapshot(healthy(at(0)));
        for (w, h) in SIZES {
            let text = screen(&app, w, h);
            let line = |start: &str| {
                text.lines()
                    .find(|l| l.starts_with(start))
                    .unwrap_or_default()
                    .to_string()
            };
            assert!(
                line("scheduler ").ends_with(": connected, Seldon 2.9.1"),
                "{w}x{h}\n{text}"
            );
            assert!(
                line("Kubernetes ").ends_with(": connected, v1.31.2"),
                "{w}x{h}\n{text}"
            );
        }
    }

    #[test]
    fn the_payload_pane_never_wraps_a_string_back_to_column_0() {
        for width in [120u16, 140, 159] {
            let text = screen(&app(Level::Feature), width, 40);
            for line in text.lines() {
                let Some((_, pane)) = line.split_once('│') else {
                    continue;
                };
                let inside = pane.trim_end_matches('│').trim_end();
                // A row that starts at the pane's first column is only `{` or `}`.
                if !inside.is_empty() && !inside.starts_with(' ') {
                    assert!(
                        inside == "{" || inside == "}",
                        "{width}: {inside:?}\n{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_history_pane_shows_a_send_its_diff_and_the_consent_change_before_it() {
        use crate::ledger::{
            ConsentChange, DEFAULT_BUDGET, Index, OutcomeRecord, SendRecord as Sent, apply,
            plan_append, sha256_hex,
        };
        use crate::tui::app::{Effect, HistoryView};
        let send = |extra: &str| {
            let event = format!(
                "{{\"event\":\"collect metrics\",\"properties\":{{\"time\":1,\"node_count\":3{extra}}}}}"
            );
            Record::Send(Sent {
                level: "resource".into(),
                source: "consent".into(),
                sha256: sha256_hex(event.as_bytes()),
                event,
                outcomes: vec![OutcomeRecord {
                    endpoint: "http://127.0.0.1:8001/".into(),
                    ok: true,
                    detail: "ok (HTTP 200, 1 attempt, 3 ms)".into(),
                }],
                consent_version: Some("7".into()),
                approved_by: Some("alice".into()),
                cancelled: None,
            })
        };
        let approval = Record::Consent(ConsentRecord {
            change: ConsentChange::Approved,
            version: Some("7".into()),
            level: Some("resource".into()),
            fields: vec!["model_count".into(), "node_count".into()],
            added: vec!["model_count".into()],
            removed: Vec::new(),
            approved_by: Some("alice\u{202e}evil".into()),
            approved_at: Some("2026-12-04T10:00:00Z".into()),
            note: Some("ticket 42".into()),
            reason: None,
        });
        let records = [
            ("2026-12-04T09:00:00Z".to_string(), send("")),
            ("2026-12-04T10:00:00Z".to_string(), approval),
            (
                "2026-12-04T11:00:00Z".to_string(),
                send(",\"model_count\":24"),
            ),
        ];
        let mut data = std::collections::BTreeMap::new();
        apply(
            &mut data,
            &plan_append(&Index::default(), &records, DEFAULT_BUDGET),
        );
        let mut app = app(Level::Cluster);
        assert_eq!(
            app.on_action(Action::ShowHistory),
            Some(Effect::LoadHistory)
        );
        assert!(screen(&app, 120, 40).contains("reading hodometer-ledger"));
        app.on_history(HistoryView::read(Ok(data)));
        let text = screen(&app, 120, 40);
        assert!(text.contains("chain verified: 3 entries"), "{text}");
        assert!(
            text.contains(">    3  2026-12-04T11:00:00Z  send"),
            "{text}"
        );
        assert!(
            text.contains("consent changes since the send before:"),
            "{text}"
        );
        assert!(text.contains("diff to entry 1:"), "{text}");
        assert!(text.contains("+ model_count 24"), "{text}");
        // Text from the cluster never reaches the terminal as control or bidi characters.
        assert!(text.contains("alice\\u{202e}evil"), "{text}");
        assert!(!text.contains('\u{202e}'));
        // The entry before: the approval in full.
        app.on_action(Action::ScrollUp);
        let text = screen(&app, 120, 40);
        assert!(
            text.contains("ticket 42") && text.contains("consent approved (version 7)"),
            "{text}"
        );
        app.on_action(Action::Close);
        assert!(app.dialog.is_none());
        // Where the ledger cannot be read, the pane says why.
        app.on_action(Action::ShowHistory);
        app.on_history(HistoryView::read(Err(
            "forbidden: get configmaps hodometer-ledger".into(),
        )));
        assert!(screen(&app, 80, 24).contains("forbidden: get configmaps hodometer-ledger"));
    }
}
