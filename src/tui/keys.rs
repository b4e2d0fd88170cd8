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
    /// Pretty-printed payload, or the bytes exactly as sent.
    TogglePayloadForm,
    /// The in-cluster reporter's last event, from its status.
    ToggleReporterEvent,
    /// Approve the level on screen for the in-cluster reporter (after confirmation).
    Approve,
    Send,
    Confirm,
    /// The session's sends.
    ListSends,
    /// Open the send selected in the list.
    Open,
    /// Close the dialog or help on top; from a confirmation, cancel.
    Close,
    Refresh,
    ScrollUp,
    ScrollDown,
    ToggleHelp,
    Quit,
    /// The kubeconfig's contexts, to switch to another cluster (and namespace).
    ListContexts,
    /// Choose the context or namespace selected in the picker.
    Choose,
}

/// Where a binding applies: what is on top of the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Main,
    Help,
    /// The send dialog asking for confirmation.
    Confirm,
    /// One send: its outcomes and bytes (it only closes; the send goes on).
    Sent,
    /// The list of this session's sends.
    Sends,
    /// "Approve for the in-cluster reporter" asking for confirmation.
    Approve,
    /// The kubeconfig's contexts, to switch to.
    Contexts,
    /// The chosen context's namespaces.
    Namespaces,
    /// A namespace being typed (they cannot be listed): letters are text, not keys.
    TypeNamespace,
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
use Context::{
    Approve as Approving, Confirm as Asking, Contexts, Help as HelpShown, Main, Namespaces, Sends,
    Sent, TypeNamespace,
};
use KeyCode::{Char, Down, Enter, Esc, Left, Right, Up};
use Listing::{Covered, Footer, Help};

pub const BINDINGS: &[Binding] = &[
    bind(
        &[Left, Char('h')],
        "←/→",
        LevelDown,
        Main,
        "level down or up: share less or more",
        Footer,
    ),
    bind(
        &[Right, Char('l')],
        "→",
        LevelUp,
        Main,
        "share more",
        Covered,
    ),
    bind(
        &[Char('0')],
        "0-3",
        SetLevel(0),
        Main,
        "level off, cluster, resource or feature",
        Help,
    ),
    bind(
        &[Char('1')],
        "1",
        SetLevel(1),
        Main,
        "level cluster",
        Covered,
    ),
    bind(
        &[Char('2')],
        "2",
        SetLevel(2),
        Main,
        "level resource",
        Covered,
    ),
    bind(
        &[Char('3')],
        "3",
        SetLevel(3),
        Main,
        "level feature",
        Covered,
    ),
    bind(
        &[Char('p')],
        "p",
        TogglePayload,
        Main,
        "payload: the JSON that would be sent (again: metrics)",
        Footer,
    ),
    bind(
        &[Char('b')],
        "b",
        TogglePayloadForm,
        Main,
        "bytes: the payload exactly as sent, or pretty-printed",
        Help,
    ),
    bind(
        &[Char('s')],
        "s",
        Send,
        Main,
        "send the payload shown, after confirmation",
        Footer,
    ),
    bind(
        &[Char('v')],
        "v",
        ListSends,
        Main,
        "sends: this session's sends, their outcomes and bytes",
        Footer,
    ),
    bind(
        &[Char('a')],
        "a",
        Approve,
        Main,
        "approve this level for the in-cluster reporter",
        Footer,
    ),
    bind(
        &[Char('e')],
        "e",
        ToggleReporterEvent,
        Main,
        "event: the in-cluster reporter's last event, exactly as sent",
        Help,
    ),
    bind(&[Char('r')], "r", Refresh, Main, "refresh now", Footer),
    bind(
        &[Char('c')],
        "c",
        ListContexts,
        Main,
        "context: switch to another kubeconfig context and namespace",
        // On the help screen as the title of the picker's line (it has no room for one more).
        Covered,
    ),
    bind(&[Up, Char('k')], "↑/↓", ScrollUp, Main, "scroll", Help),
    bind(&[Down, Char('j')], "↓", ScrollDown, Main, "scroll", Covered),
    bind(&[Char('?')], "?", ToggleHelp, Main, "help", Footer),
    bind(
        &[Char('q')],
        "q",
        Quit,
        Main,
        "quit (Ctrl-C always quits)",
        Footer,
    ),
    bind(
        &[Char('?'), Char('q'), Esc],
        "Esc",
        Close,
        HelpShown,
        "close",
        Footer,
    ),
    bind(
        &[Char('y'), Enter],
        "y",
        Confirm,
        Asking,
        "yes: send it",
        Footer,
    ),
    bind(
        &[Char('n'), Char('q'), Esc],
        "n/Esc",
        Close,
        Asking,
        "no: cancel",
        Footer,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Sent,
        "scroll the bytes",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Sent,
        "scroll the bytes",
        Covered,
    ),
    bind(
        &[Char('b')],
        "b",
        TogglePayloadForm,
        Sent,
        "bytes: exactly as sent, or pretty-printed",
        Footer,
    ),
    bind(
        &[Esc, Enter, Char('q')],
        "Esc",
        Close,
        Sent,
        "close (the send goes on)",
        Footer,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Sends,
        "select a send",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Sends,
        "select a send",
        Covered,
    ),
    bind(
        &[Enter],
        "Enter",
        Open,
        Sends,
        "open: its outcomes and exact bytes",
        Footer,
    ),
    bind(&[Esc, Char('q')], "Esc", Close, Sends, "close", Footer),
    bind(
        &[Char('y'), Enter],
        "y",
        Confirm,
        Approving,
        "yes: write the consent ConfigMap",
        Footer,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Approving,
        "scroll the field list",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Approving,
        "scroll the field list",
        Covered,
    ),
    bind(
        &[Char('n'), Char('q'), Esc],
        "n/Esc",
        Close,
        Approving,
        "no: write nothing",
        Footer,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Contexts,
        "select",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Contexts,
        "select",
        Covered,
    ),
    bind(
        &[Enter],
        "Enter",
        Choose,
        Contexts,
        "switch: reconnect to it",
        Footer,
    ),
    bind(&[Esc, Char('q')], "Esc", Close, Contexts, "cancel", Footer),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Namespaces,
        "select",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Namespaces,
        "select",
        Covered,
    ),
    bind(
        &[Enter],
        "Enter",
        Choose,
        Namespaces,
        "switch: reconnect to it",
        Footer,
    ),
    bind(
        &[Esc, Char('q')],
        "Esc",
        Close,
        Namespaces,
        "cancel",
        Footer,
    ),
    bind(
        &[Enter],
        "Enter",
        Choose,
        TypeNamespace,
        "switch: reconnect to it",
        Footer,
    ),
    bind(&[Esc], "Esc", Close, TypeNamespace, "cancel", Footer),
];

/// The action for a key in a context. Ctrl-C quits everywhere; a key held with any other
/// modifier than Shift (which `?` needs) is no binding, so `Alt-y` never confirms a send.
pub fn action_for(key: KeyEvent, context: Context) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == Char('c') {
        return Some(Quit);
    }
    if !(key.modifiers - KeyModifiers::SHIFT).is_empty() {
        return None;
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
        assert_eq!(action_for(key(Char('3')), Main), Some(SetLevel(3)));
        assert_eq!(action_for(key(Left), Main), Some(LevelDown));
        assert_eq!(action_for(key(Char('q')), Main), Some(Quit));
        assert_eq!(action_for(key(Esc), Main), None, "Esc never quits");
        assert_eq!(action_for(key(Char('y')), Main), None);
        assert_eq!(action_for(key(Char('s')), Asking), None);
        let ctrl_c = KeyEvent::new(Char('c'), KeyModifiers::CONTROL);
        for context in [Main, HelpShown, Asking, Sent, Sends, Approving] {
            assert_eq!(action_for(ctrl_c, context), Some(Quit), "{context:?}");
        }
    }

    #[test]
    fn q_and_esc_close_every_dialog_and_help() {
        for context in [HelpShown, Asking, Sent, Sends, Approving] {
            assert_eq!(
                action_for(key(Char('q')), context),
                Some(Close),
                "{context:?}"
            );
            assert_eq!(action_for(key(Esc), context), Some(Close), "{context:?}");
        }
    }

    #[test]
    fn unexpected_modifiers_match_nothing() {
        let alt_y = KeyEvent::new(Char('y'), KeyModifiers::ALT);
        assert_eq!(action_for(alt_y, Asking), None, "Alt-y must not confirm");
        let ctrl_s = KeyEvent::new(Char('s'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_s, Main), None);
        let shifted = KeyEvent::new(Char('?'), KeyModifiers::SHIFT);
        assert_eq!(
            action_for(shifted, Main),
            Some(ToggleHelp),
            "Shift is how ? is typed"
        );
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
    fn every_context_can_be_left() {
        for context in [
            HelpShown,
            Asking,
            Sent,
            Sends,
            Approving,
            Contexts,
            Namespaces,
            TypeNamespace,
        ] {
            assert!(
                BINDINGS
                    .iter()
                    .any(|b| b.context == context && b.action == Close && b.listing == Footer),
                "{context:?} lists no way out"
            );
        }
    }

    #[test]
    fn hints_come_from_the_table() {
        let main = hints(Main);
        assert!(main.contains(&("s", "send")));
        assert!(main.contains(&("p", "payload")));
        assert!(main.contains(&("v", "sends")));
        assert!(hints(Asking).contains(&("y", "yes")));
        assert!(hints(Sent).contains(&("Esc", "close")));
        assert!(main.contains(&("?", "help")));
        assert!(!main.iter().any(|(label, _)| *label == "y"));
    }
}
