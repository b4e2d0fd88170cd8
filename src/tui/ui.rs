//! Drawing: a pure function of `&App` onto a frame. Nothing here waits on anything.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::{App, Dialog, RowView, Shown, SourceState, View, age};
use super::keys::{BINDINGS, Context, Listing, hints};
use crate::metrics::{Level, RowKind};

const SHARED: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const WITHHELD: Style = Style::new().fg(Color::DarkGray);
const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red);

pub fn render(app: &App, frame: &mut Frame) {
    let [header, levels, body, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(app, frame, header);
    render_levels(app, frame, levels);
    match app.view {
        View::Metrics => render_metrics(app, frame, body),
        View::Payload => render_payload(app, frame, body),
    }
    render_footer(app, frame, footer);
    if let Some(dialog) = &app.dialog {
        render_dialog(app, dialog, frame);
    } else if app.help {
        render_help(app, frame);
    }
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let scheduler = source_spans(
        "scheduler",
        &app.info.scheduler,
        &app.scheduler_state(),
        "Seldon ",
    );
    let kube = source_spans("Kubernetes", &app.info.kube, &app.kube_state(), "");
    let refreshed = match (app.refreshing, app.last_refresh) {
        (true, None) => "collecting…".to_string(),
        (true, Some(_)) => "refreshing…".to_string(),
        (false, Some(at)) => format!("refreshed {} ago", short_age(age(app.now, at))),
        (false, None) => "not collected yet".to_string(),
    };
    // When the next background refresh (and so the next retry of a source that is down) starts.
    let next = match app.last_refresh {
        Some(at) if !app.refreshing => {
            let wait = app.info.refresh_every.saturating_sub(age(app.now, at));
            format!(", next in {} (r: now)", short_age(wait))
        }
        _ => String::new(),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled("hodometer inspect  ", Style::new().bold()),
            Span::styled(refreshed + &next, WITHHELD),
        ]),
        Line::raw(format!("cluster id {}", app.info.cluster_id)),
        Line::from(scheduler),
        Line::from(kube),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

fn source_spans(
    name: &str,
    target: &str,
    state: &SourceState,
    version_prefix: &str,
) -> Vec<Span<'static>> {
    let (text, style) = match state {
        SourceState::Connecting => ("connecting…".to_string(), WARN),
        SourceState::Connected(Some(version)) => {
            (format!("connected, {version_prefix}{version}"), SHARED)
        }
        SourceState::Connected(None) => ("connected".to_string(), SHARED),
        SourceState::NotUsed(why) => (format!("not used: {why}"), WITHHELD),
        SourceState::Down(why) => (format!("down: {why}"), BAD),
    };
    vec![
        Span::raw(format!("{name} {target}: ")),
        Span::styled(text, style),
    ]
}

fn render_levels(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::raw("share: ")];
    for (i, level) in Level::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" | ", WITHHELD));
        }
        let label = format!("{i} {level}");
        spans.push(if *level == app.level {
            Span::styled(
                format!("[{label}]"),
                Style::new().fg(Color::Black).bg(Color::Green).bold(),
            )
        } else {
            Span::raw(format!(" {label} "))
        });
    }
    let shared = app.preview().map_or(0, |e| e.fields.len());
    spans.push(Span::styled(format!("   {shared} fields shared"), WITHHELD));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_metrics(app: &App, frame: &mut Frame, area: Rect) {
    let mut rows = Vec::new();
    let mut group = None;
    for row in app.rows() {
        if group != Some(row.level) {
            group = Some(row.level);
            let state = if app.level.shares(row.level) {
                "shared at this level"
            } else {
                "withheld"
            };
            rows.push(Row::new(vec![
                Cell::from(format!("── {} ──", row.level)).style(Style::new().bold()),
                Cell::from(""),
                Cell::from(state).style(WITHHELD),
            ]));
        }
        rows.push(metric_row(&row));
    }
    // Scroll no further than the last row reaching the bottom of the pane (one line is the header).
    let visible = usize::from(area.height.saturating_sub(1));
    let offset = usize::from(app.scroll).min(rows.len().saturating_sub(visible));
    let table = Table::new(
        rows.into_iter().skip(offset),
        [
            Constraint::Length(26),
            Constraint::Length(9),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(vec!["metric", "sharing", "value"]).style(Style::new().underlined()));
    frame.render_widget(table, area);
}

fn metric_row(row: &RowView) -> Row<'static> {
    let (sharing, sharing_style) = match (&row.shown, row.shared) {
        (Shown::Known(_), true) => ("shared", SHARED),
        (_, true) => ("omitted", WARN),
        (_, false) => ("withheld", WITHHELD),
    };
    let value = match &row.shown {
        Shown::Known(value) => Span::raw(value.clone()),
        Shown::Stale { value, age, reason } => Span::styled(
            format!("{value} (stale {} ago: {reason})", short_age(*age)),
            WARN,
        ),
        Shown::Unknown(reason) => Span::styled(format!("unknown, because {reason}"), WARN),
    };
    let mut value = vec![value];
    if let RowKind::Extension(ext) = &row.kind {
        value.push(Span::styled(
            format!("  operator-supplied, from {}", ext.source),
            WITHHELD,
        ));
        for suspicion in &ext.suspicions {
            value.push(Span::styled(format!("  ⚠ {suspicion}"), WARN));
        }
    }
    let name_style = if row.shared { Style::new() } else { WITHHELD };
    Row::new(vec![
        Cell::from(row.name.clone()).style(name_style),
        Cell::from(sharing).style(sharing_style),
        Cell::from(Line::from(value)),
    ])
}

fn render_payload(app: &App, frame: &mut Frame, area: Rect) {
    let (title, body) = match app.preview() {
        Some(event) => (
            format!(
                " payload at level {}: {} bytes, exactly as sent ",
                event.level,
                event.json.len()
            ),
            Text::from(event.json.clone()),
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
    let paragraph = Paragraph::new(body)
        .block(Block::bordered().title(title))
        .wrap(Wrap { trim: false })
        .scroll((app.scroll, 0));
    frame.render_widget(paragraph, area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (label, text) in hints(app.context()) {
        spans.push(Span::styled(label, Style::new().bold()));
        spans.push(Span::styled(format!(" {text}  "), WITHHELD));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn popup(frame: &mut Frame, width: u16, height: u16) -> Rect {
    let area = frame.area();
    let [area] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [area] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    frame.render_widget(Clear, area);
    area
}

fn render_dialog(app: &App, dialog: &Dialog, frame: &mut Frame) {
    let mut lines = Vec::new();
    let event = match dialog {
        Dialog::Confirm(event) | Dialog::Sending { event, .. } => event,
    };
    lines.push(Line::from(vec![
        Span::raw("level "),
        Span::styled(event.level.to_string(), Style::new().bold()),
        Span::raw(format!(
            ", {} bytes, {} fields:",
            event.json.len(),
            event.fields.len()
        )),
    ]));
    lines.push(Line::styled(event.fields.join(", "), WITHHELD));
    lines.push(Line::raw(""));
    match dialog {
        Dialog::Confirm(_) => {
            lines.push(Line::raw("to every endpoint:"));
            for endpoint in &app.info.endpoints {
                lines.push(Line::raw(format!("  {endpoint}")));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "y: send exactly the payload shown    n/Esc: cancel",
                Style::new().bold(),
            ));
        }
        Dialog::Sending { outcomes, .. } => {
            for (endpoint, outcome) in app.info.endpoints.iter().zip(outcomes) {
                let (text, style) = match outcome {
                    None => ("sending…".to_string(), WARN),
                    Some(o) => (o.detail(), if o.is_ok() { SHARED } else { BAD }),
                };
                lines.push(Line::from(vec![
                    Span::raw(format!("  {endpoint} ")),
                    Span::styled(text, style),
                ]));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled("Esc: close", Style::new().bold()));
        }
    }
    let title = match dialog {
        Dialog::Confirm(_) => " send this payload? ",
        Dialog::Sending { .. } => " sent ",
    };
    let width = frame.area().width.saturating_sub(4).min(100);
    // One spare row: word wrapping can take a row more than counting characters says.
    let area = popup(
        frame,
        width,
        wrapped_height(&lines, width.saturating_sub(2)) + 3,
    );
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn render_help(app: &App, frame: &mut Frame) {
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        .filter(|b| b.listing != Listing::Covered)
        .map(|b| {
            let context = match b.context {
                Context::Main => "",
                Context::Dialog => " (send dialog)",
                Context::Sent => " (once sent)",
            };
            Line::from(vec![
                Span::styled(format!("{:>6}  ", b.label), Style::new().bold()),
                Span::raw(format!("{}{context}", b.help)),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::raw(format!("logs: {}", app.info.log_file)));
    let width = frame.area().width.saturating_sub(4).min(72);
    let area = popup(frame, width, lines.len() as u16 + 2);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        area,
    );
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
    use crate::tui::fixtures::{at, healthy, info, scheduler_down};
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
        app.on_outcome(EndpointOutcome {
            index: 1,
            endpoint: "http://127.0.0.1:8001/".into(),
            result: Ok(()),
            attempts: 1,
            latency: Duration::from_millis(7),
            last_status: Some(200),
        });
        insta::assert_snapshot!(screen(&app, 80, 24));
        app.on_outcome(EndpointOutcome {
            index: 0,
            endpoint: "http://hodometer.seldon.io/".into(),
            result: Err(PublishError::Rejected {
                error: "bad token".into(),
            }),
            attempts: 1,
            latency: Duration::from_millis(80),
            last_status: Some(200),
        });
        insta::assert_snapshot!(screen(&app, 80, 24));
    }

    #[test]
    fn help_lists_the_key_table_and_the_log_file_80x24() {
        let mut app = app(Level::Cluster);
        app.on_action(Action::ToggleHelp);
        let text = screen(&app, 80, 24);
        for binding in BINDINGS.iter().filter(|b| b.listing != Listing::Covered) {
            assert!(
                text.contains(binding.help),
                "help lacks {:?}:\n{text}",
                binding.help
            );
        }
        assert!(text.contains("/tmp/hodometer-inspect.log"));
        insta::assert_snapshot!(text);
    }
}
