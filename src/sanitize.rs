//! The one sanitiser for text that came from outside the process (a scheduler, an API server,
//! a ConfigMap, a file, a peer) on its way to a person's terminal or a text log. A leaf module.
//!
//! Why: a terminal obeys what it is sent. A control character can move the cursor or rewrite
//! what is shown (`\r`, ESC sequences; OSC 52 writes the clipboard, OSC 8 hides a link), a
//! bidirectional override or isolate reorders the text after it (U+202E shows `exe.txt` as
//! `txt.exe`), and a zero-width character hides inside a name that looks familiar. Such
//! characters are shown visibly escaped (`\u{202e}`), never emitted, so a person sees that
//! they are there.

use std::borrow::Cow;

/// Whether `c` may not reach a terminal as it is: C0 and C1 controls and DEL, bidirectional
/// marks, embeddings, overrides and isolates, zero-width and other invisible characters, and
/// the Unicode line and paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                  // soft hyphen: invisible
            | '\u{061C}'                // Arabic letter mark
            | '\u{180E}'                // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
            | '\u{2028}'..='\u{202E}'   // line/paragraph separators; embeddings, overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // isolates
            | '\u{206A}'..='\u{206F}'   // deprecated format characters
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

/// `text` with every unsafe character escaped as `\u{…}` (lower-case hex): one line, whatever
/// it holds.
pub fn text(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// As [`text`], keeping line feeds: for messages of several lines (an error listing every bad
/// setting). A carriage return is still escaped, so no line can overwrite another.
pub fn lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_line_feeds: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_line_feeds && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_zero_width_characters_are_shown_escaped() {
        let hostile = "v1.2\r\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\u{9b}31m\u{7f}\
                       \u{202e}gpj.exe\u{2066}x\u{2069}a\u{200b}b\u{200d}c\u{feff}\u{2028}";
        let shown = text(hostile);
        for c in shown.chars() {
            assert!(!is_unsafe(c), "{c:?} emitted in {shown}");
        }
        assert_eq!(
            shown,
            "v1.2\\u{d}\\u{1b}]52;c;cHduZWQ=\\u{7}\\u{1b}[2J\\u{9b}31m\\u{7f}\
             \\u{202e}gpj.exe\\u{2066}x\\u{2069}a\\u{200b}b\\u{200d}c\\u{feff}\\u{2028}"
        );
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for fine in [
            "v1.30.2+k3s1",
            "linux/amd64",
            "mlserver,triton",
            "Grüße 日本 🙂",
            "",
        ] {
            assert!(matches!(text(fine), Cow::Borrowed(_)), "{fine}");
        }
    }

    #[test]
    fn lines_keep_line_feeds_only() {
        assert_eq!(lines("a\nb\r\nc\t"), "a\nb\\u{d}\nc\\u{9}");
        assert_eq!(text("a\nb"), "a\\u{a}b");
    }
}
