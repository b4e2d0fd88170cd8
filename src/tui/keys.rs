//! The one key-binding table: it drives dispatch, the footer hints and the help screen, so the
//! three can never disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Everything a key can ask the inspector to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    LevelDown,
    LevelUp,
    /// Choose a level by its position in `off | cluster | resource | feature`.
    SetLevel(u8),
    TogglePayload,
    Send,
    Confirm,
    Cancel,
    Refresh,
    ScrollUp,
    ScrollDown,
    ToggleHelp,
    Quit,
}

/// Where a binding applies: the main screen, the send dialog asking for confirmation, or the
/// dialog showing outcomes once sent (which only closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Main,
    Dialog,
    Sent,
}

/// Where a binding is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// In the footer and on the help screen.
    Footer,
    /// On the help screen only.
    Help,
    /// Nowhere: another binding's label already covers it (`0-3` covers `1`).
    Covered,
}

pub struct Binding {
    pub keys: &'static [KeyCode],
    /// How the keys are written in hints and help.
    pub label: &'static str,
    pub action: Action,
    pub context: Context,
    pub help: &'static str,
    pub listing: Listing,
}

const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    action: Action,
    context: Context,
    help: &'static str,
    listing: Listing,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        context,
        help,
        listing,
    }
}

use Action::*;
use Context::{Dialog, Main, Sent};
use Listing::{Covered, Footer, Help};

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "←/→",
        LevelDown,
        Main,
        "level down or up: share less or more",
        Footer,
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "→",
        LevelUp,
        Main,
        "share more",
        Covered,
    ),
    bind(
        &[KeyCode::Char('0')],
        "0-3",
        SetLevel(0),
        Main,
        "level off, cluster, resource or feature",
        Footer,
    ),
    bind(
        &[KeyCode::Char('1')],
        "1",
        SetLevel(1),
        Main,
        "level cluster",
        Covered,
    ),
    bind(
        &[KeyCode::Char('2')],
        "2",
        SetLevel(2),
        Main,
        "level resource",
        Covered,
    ),
    bind(
        &[KeyCode::Char('3')],
        "3",
        SetLevel(3),
        Main,
        "level feature",
        Covered,
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        TogglePayload,
        Main,
        "payload: the exact JSON that would be sent (again: metrics)",
        Footer,
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        Send,
        Main,
        "send the payload shown, after confirmation",
        Footer,
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        Refresh,
        Main,
        "refresh now",
        Footer,
    ),
    bind(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑/↓",
        ScrollUp,
        Main,
        "scroll",
        Help,
    ),
    bind(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓",
        ScrollDown,
        Main,
        "scroll",
        Covered,
    ),
    bind(&[KeyCode::Char('?')], "?", ToggleHelp, Main, "help", Footer),
    bind(
        &[KeyCode::Char('q'), KeyCode::Esc],
        "q",
        Quit,
        Main,
        "quit (Ctrl-C always quits)",
        Footer,
    ),
    bind(
        &[KeyCode::Char('y'), KeyCode::Enter],
        "y",
        Confirm,
        Dialog,
        "yes: send it",
        Footer,
    ),
    bind(
        &[KeyCode::Char('n'), KeyCode::Esc],
        "n/Esc",
        Cancel,
        Dialog,
        "no: cancel",
        Footer,
    ),
    bind(
        &[KeyCode::Esc, KeyCode::Enter, KeyCode::Char('q')],
        "Esc",
        Cancel,
        Sent,
        "close the outcomes",
        Footer,
    ),
];

/// The action for a key in a context; Ctrl-C quits everywhere.
pub fn action_for(key: KeyEvent, context: Context) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Quit);
    }
    BINDINGS
        .iter()
        .filter(|b| b.context == context)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.action)
}

/// `label action` pairs for the footer in a context.
pub fn hints(context: Context) -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| b.context == context && b.listing == Listing::Footer)
        .map(|b| (b.label, short(b.help)))
        .collect()
}

/// The first word of a help text, for the footer.
fn short(help: &'static str) -> &'static str {
    help.split([' ', ':']).next().unwrap_or(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_dispatch_by_context() {
        assert_eq!(
            action_for(key(KeyCode::Char('3')), Context::Main),
            Some(SetLevel(3))
        );
        assert_eq!(
            action_for(key(KeyCode::Left), Context::Main),
            Some(LevelDown)
        );
        assert_eq!(action_for(key(KeyCode::Esc), Context::Main), Some(Quit));
        assert_eq!(action_for(key(KeyCode::Esc), Context::Dialog), Some(Cancel));
        assert_eq!(action_for(key(KeyCode::Char('y')), Context::Main), None);
        assert_eq!(action_for(key(KeyCode::Char('s')), Context::Dialog), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_c, Context::Dialog), Some(Quit));
    }

    #[test]
    fn no_key_is_bound_twice_in_a_context() {
        for a in BINDINGS {
            for b in BINDINGS {
                if !std::ptr::eq(a, b) && a.context == b.context {
                    assert!(
                        a.keys.iter().all(|k| !b.keys.contains(k)),
                        "{:?} bound twice",
                        a.keys
                    );
                }
            }
        }
    }

    #[test]
    fn hints_come_from_the_table() {
        let main = hints(Context::Main);
        assert!(main.contains(&("s", "send")));
        assert!(main.contains(&("p", "payload")));
        assert!(hints(Context::Dialog).contains(&("y", "yes")));
        assert_eq!(hints(Context::Sent), vec![("Esc", "close")]);
        assert!(main.contains(&("?", "help")));
        assert!(!main.iter().any(|(label, _)| *label == "y"));
    }
}
