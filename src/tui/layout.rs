//! Sizes and fitting: which layout a terminal gets, and the pure rules that make text fit a
//! width without a silent cut (ellipsis, indented wrapping, a scroll window, the footer).

use ratatui::text::Span;

/// The smallest terminal the inspector draws on.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;
/// From this size on, every part is shown in full (the trend column, the approval line…).
pub const FULL_WIDTH: u16 = 80;
pub const FULL_HEIGHT: u16 = 24;
/// From this width the metrics table and the payload sit side by side.
pub const SIDE_BY_SIDE_WIDTH: u16 = 120;

/// Columns of the trend: a sparkline of this session's values.
pub const TREND_WIDTH: u16 = 6;

/// The layout a terminal of a size gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Below 60×20: only a screen that says so.
    TooSmall,
    /// 60×20 up to 80×24: no trend column, shorter labels; still every line that matters.
    Compact,
    /// 80×24 and up.
    Full,
    /// 120 columns and up: table and payload side by side.
    Wide,
}

pub fn fit(width: u16, height: u16) -> Fit {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        Fit::TooSmall
    } else if width < FULL_WIDTH || height < FULL_HEIGHT {
        Fit::Compact
    } else if width < SIDE_BY_SIDE_WIDTH {
        Fit::Full
    } else {
        Fit::Wide
    }
}

/// What the too-small screen says.
pub fn too_small(width: u16, height: u16) -> String {
    format!("terminal too small ({width}×{height}, need {MIN_WIDTH}×{MIN_HEIGHT})")
}

/// Columns a character takes on a terminal.
pub fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    Span::raw(&*c.encode_utf8(&mut buf)).width()
}

pub fn text_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// `text` cut to `width` columns with `…` where something was left out, never silently.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text_width(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// A line of pretty-printed JSON cut into rows of at most `width` columns; every continuation row
/// starts at the line's own indentation plus two, so a long string never runs back to column 0.
pub fn wrap_indented(line: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    if text_width(line) <= width {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start().len() + 2;
    // A deep indentation on a narrow pane leaves no room: continue at column 0 then.
    let indent = if indent * 2 > width { 0 } else { indent };
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    for c in line.chars() {
        let w = char_width(c);
        if used + w > width {
            rows.push(std::mem::take(&mut row));
            row.push_str(&" ".repeat(indent));
            used = indent;
        }
        row.push(c);
        used += w;
    }
    rows.push(row);
    rows
}

/// The first row to show of `len` rows in a window of `visible` rows so that row `selected` is
/// in view, kept in the middle where the ends allow.
pub fn scroll_window(len: usize, visible: usize, selected: usize) -> usize {
    if len <= visible || visible == 0 {
        return 0;
    }
    selected
        .saturating_sub(visible / 2)
        .min(len.saturating_sub(visible))
}

/// Which footer hints fit in `width` columns: every essential one (help, quit) always, then the
/// others in table order while they fit. Each hint takes its text's width plus two spaces.
pub fn footer_fit<T: Copy>(hints: &[(T, usize, bool)], width: usize) -> Vec<T> {
    let essential: usize = hints.iter().filter(|h| h.2).map(|h| h.1 + 2).sum();
    let mut room = width.saturating_sub(essential);
    let mut chosen = Vec::new();
    for (hint, w, essential) in hints {
        if *essential {
            chosen.push(*hint);
        } else if w + 2 <= room {
            room -= w + 2;
            chosen.push(*hint);
        }
    }
    chosen
}

/// The metrics table's columns at a width: `(name, sharing, mark, trend, value)`; trend 0 when
/// there is no room for it.
pub fn table_columns(width: u16, fit: Fit) -> TableColumns {
    let name = 24;
    let sharing = 9;
    let mark = 1;
    let trend = if fit == Fit::Compact { 0 } else { TREND_WIDTH };
    // Ratatui puts one column of space between columns.
    let gaps = if trend == 0 { 3 } else { 4 };
    let value = width.saturating_sub(name + sharing + mark + trend + gaps);
    TableColumns {
        name,
        sharing,
        mark,
        trend,
        value,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableColumns {
    pub name: u16,
    pub sharing: u16,
    /// `+`/`−`: the proposal against the reporter.
    pub mark: u16,
    pub trend: u16,
    pub value: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_layouts() {
        assert_eq!(fit(59, 40), Fit::TooSmall);
        assert_eq!(fit(100, 19), Fit::TooSmall);
        assert_eq!(fit(60, 20), Fit::Compact);
        assert_eq!(fit(79, 30), Fit::Compact);
        assert_eq!(fit(100, 23), Fit::Compact);
        assert_eq!(fit(80, 24), Fit::Full);
        assert_eq!(fit(119, 40), Fit::Full);
        assert_eq!(fit(120, 40), Fit::Wide);
        assert_eq!(too_small(50, 10), "terminal too small (50×10, need 60×20)");
    }

    #[test]
    fn ellipsis_marks_every_cut() {
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(ellipsize("exactly", 7), "exactly");
        assert_eq!(ellipsize("a longer text", 6), "a lon…");
        assert_eq!(text_width(&ellipsize("◆◇●○ wide", 3)), 3);
        assert_eq!(ellipsize("x", 0), "");
    }

    #[test]
    fn wrapped_json_strings_keep_their_indentation() {
        let line = r#"    "distinct_id": "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11","#;
        let rows = wrap_indented(line, 30);
        assert!(rows.len() > 1);
        for row in &rows[1..] {
            assert!(row.starts_with("      "), "{row:?} runs back to column 0");
        }
        for row in &rows {
            assert!(text_width(row) <= 30, "{row:?}");
        }
        let joined: String = rows
            .iter()
            .enumerate()
            .map(|(i, r)| if i == 0 { r.as_str() } else { &r[6..] })
            .collect();
        assert_eq!(joined, line, "nothing lost");
        assert_eq!(wrap_indented("  short", 30), vec!["  short"]);
    }

    #[test]
    fn the_selection_stays_in_the_window() {
        assert_eq!(scroll_window(10, 20, 9), 0, "everything fits");
        for selected in 0..30 {
            let offset = scroll_window(30, 10, selected);
            assert!(offset <= selected && selected < offset + 10, "{selected}");
            assert!(offset <= 20);
        }
    }

    #[test]
    fn the_footer_always_keeps_help_and_quit() {
        let hints = [
            ("level", 9, false),
            ("send", 6, false),
            ("help", 6, true),
            ("quit", 6, true),
        ];
        assert_eq!(
            footer_fit(&hints, 80),
            vec!["level", "send", "help", "quit"]
        );
        assert_eq!(footer_fit(&hints, 28), vec!["level", "help", "quit"]);
        assert_eq!(footer_fit(&hints, 10), vec!["help", "quit"]);
    }

    #[test]
    fn the_cluster_id_fits_the_value_column_from_80_columns() {
        let uuid = "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11".len() as u16;
        assert!(table_columns(80, Fit::Full).value >= uuid);
        assert!(table_columns(80, Fit::Wide).value >= uuid);
    }
}
