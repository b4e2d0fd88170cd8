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
    /// The in-cluster reporter's history (its ledger): sends and consent changes.
    ShowHistory,
    /// Open the send selected in the list.
    Open,
    /// Close the dialog or help on top; from a confirmation, cancel.
    Close,
    Refresh,
    /// Up one: the row above in the table, a line in a pane or dialog.
    ScrollUp,
    ScrollDown,
    /// A page up or down, the same way.
    PageUp,
    PageDown,
    /// Describe the selected row: its meaning, source, value and full reason.
    Describe,
    /// Start typing a filter on row names.
    Filter,
    /// A character typed into the filter.
    FilterChar(char),
    FilterBackspace,
    /// Keep the filter and go back to the table.
    FilterDone,
    ClearFilter,
    /// The sources, the reporter and this session's approval in full.
    Details,
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
    /// The selected row described.
    Describe,
    /// Typing a filter on row names.
    Filter,
    /// The sources and the reporter in full.
    Details,
    /// The in-cluster reporter's history.
    History,
}

impl Context {
    /// Every context, in the order help lists them.
    pub const ALL: [Context; 13] = [
        Context::Main,
        Context::Filter,
        Context::Describe,
        Context::Details,
        Context::Confirm,
        Context::Sent,
        Context::Sends,
        Context::History,
        Context::Approve,
        Context::Help,
        Context::Contexts,
        Context::Namespaces,
        Context::TypeNamespace,
    ];

    /// How help names it.
    pub fn name(self) -> &'static str {
        match self {
            Context::Main => "main screen",
            Context::Help => "help",
            Context::Confirm => "send dialog",
            Context::Sent => "a send",
            Context::Sends => "list of sends",
            Context::Approve => "approve dialog",
            Context::Describe => "describe",
            Context::Filter => "filter (typing)",
            Context::Details => "details",
            Context::History => "history",
            Context::Contexts => "context switch",
            Context::Namespaces => "namespaces",
            Context::TypeNamespace => "namespace (typing)",
        }
    }
}

/// Where a binding is listed. Help lists every binding with every key, whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// In the footer, in table order, while it fits.
    Footer,
    /// In the footer at every width: how to get help and how to get out.
    Essential,
    /// On the help screen only.
    Help,
    /// On the help screen, but not in the footer: another binding's label covers it (`0-3`).
    Covered,
}

pub struct Binding {
    pub keys: &'static [KeyCode],
    /// How the keys are written in the footer.
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
    Approve as Approving, Confirm as Asking, Contexts, Describe as Describing,
    Details as DetailsShown, Filter as Filtering, Help as HelpShown, History as HistoryShown, Main,
    Namespaces, Sends, Sent, TypeNamespace,
};
use KeyCode::{Backspace, Char, Down, Enter, Esc, Left, Right, Up};
use Listing::{Covered, Essential, Footer, Help};

/// The one key table. A new key is one entry here: dispatch, the footer and help follow it.
/// Footer entries are shown in this order while they fit.
pub const BINDINGS: &[Binding] = &[
    // The main screen.
    bind(
        &[Left, Char('h')],
        "←/→",
        LevelDown,
        Main,
        "level down: share less",
        Footer,
    ),
    bind(
        &[Right, Char('l')],
        "→",
        LevelUp,
        Main,
        "level up: share more",
        Covered,
    ),
    bind(&[Char('0')], "0-3", SetLevel(0), Main, "level off", Help),
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
        &[Char('a')],
        "a",
        Approve,
        Main,
        "approve the level shown for the in-cluster reporter (shows the diff first)",
        Footer,
    ),
    bind(
        &[Char('s')],
        "s",
        Send,
        Main,
        "send now from this machine, at the level shown (not the reporter's)",
        Footer,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Main,
        "select the row above (payload: scroll)",
        Help,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Main,
        "select the row below (payload: scroll)",
        Covered,
    ),
    bind(
        &[KeyCode::PageUp],
        "PgUp",
        PageUp,
        Main,
        "a page up",
        Covered,
    ),
    bind(
        &[KeyCode::PageDown],
        "PgDn",
        PageDown,
        Main,
        "a page down",
        Covered,
    ),
    bind(
        &[Enter],
        "Enter",
        Describe,
        Main,
        "describe the selected row: meaning, source, value, full reason",
        Footer,
    ),
    bind(
        &[Char('/')],
        "/",
        Filter,
        Main,
        "filter rows by name",
        Footer,
    ),
    bind(&[Esc], "Esc", ClearFilter, Main, "clear the filter", Help),
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
        &[Char('v')],
        "v",
        ListSends,
        Main,
        "sends: this inspector's sends (kept), outcomes and bytes",
        Help,
    ),
    bind(
        &[Char('H')],
        "H",
        ShowHistory,
        Main,
        "history: what the in-cluster reporter sent, consent changes",
        Help,
    ),
    bind(
        &[Char('e')],
        "e",
        ToggleReporterEvent,
        Main,
        "event: the in-cluster reporter's last event, exactly as sent",
        Help,
    ),
    bind(
        &[Char('i')],
        "i",
        Details,
        Main,
        "info: the sources, the reporter and your approval in full",
        Help,
    ),
    bind(&[Char('r')], "r", Refresh, Main, "refresh now", Footer),
    bind(
        &[Char('c')],
        "c",
        ListContexts,
        Main,
        "context: switch to another kubeconfig context and namespace",
        Help,
    ),
    bind(
        &[Char('?')],
        "?",
        ToggleHelp,
        Main,
        "help: every key",
        Essential,
    ),
    bind(
        &[Char('q')],
        "q",
        Quit,
        Main,
        "quit (Ctrl-C always quits)",
        Essential,
    ),
    // Typing a filter.
    bind(
        &[Enter],
        "Enter",
        FilterDone,
        Filtering,
        "done: keep the filter",
        Footer,
    ),
    bind(
        &[Backspace],
        "⌫",
        FilterBackspace,
        Filtering,
        "delete a character",
        Footer,
    ),
    bind(
        &[Esc],
        "Esc",
        ClearFilter,
        Filtering,
        "clear the filter",
        Essential,
    ),
    // Describe.
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Describing,
        "scroll",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Describing,
        "scroll",
        Covered,
    ),
    bind(
        &[Esc, Enter, Char('q')],
        "Esc",
        Close,
        Describing,
        "close",
        Essential,
    ),
    // Details.
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        DetailsShown,
        "scroll",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        DetailsShown,
        "scroll",
        Covered,
    ),
    bind(
        &[Esc, Char('i'), Char('q')],
        "Esc",
        Close,
        DetailsShown,
        "close",
        Essential,
    ),
    // Help.
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        HelpShown,
        "scroll",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        HelpShown,
        "scroll",
        Covered,
    ),
    bind(
        &[Char('?'), Char('q'), Esc],
        "Esc",
        Close,
        HelpShown,
        "close",
        Essential,
    ),
    // The send dialog.
    bind(
        &[Char('y'), Enter],
        "y",
        Confirm,
        Asking,
        "yes: send it",
        Essential,
    ),
    bind(&[Up, Char('k')], "↑/↓", ScrollUp, Asking, "scroll", Footer),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Asking,
        "scroll",
        Covered,
    ),
    bind(
        &[Char('n'), Char('q'), Esc],
        "n/Esc",
        Close,
        Asking,
        "no: cancel",
        Essential,
    ),
    // One send.
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
        Essential,
    ),
    // The list of sends.
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
        "open: outcomes, bytes",
        Footer,
    ),
    bind(&[Esc, Char('q')], "Esc", Close, Sends, "close", Essential),
    // The reporter's history.
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        HistoryShown,
        "select an entry",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        HistoryShown,
        "select an entry",
        Covered,
    ),
    bind(
        &[Esc, Char('q'), Char('H')],
        "Esc",
        Close,
        HistoryShown,
        "close",
        Essential,
    ),
    // The approve dialog.
    bind(
        &[Char('y'), Enter],
        "y",
        Confirm,
        Approving,
        "yes: write the consent ConfigMap",
        Essential,
    ),
    bind(
        &[Up, Char('k')],
        "↑/↓",
        ScrollUp,
        Approving,
        "scroll",
        Footer,
    ),
    bind(
        &[Down, Char('j')],
        "↓",
        ScrollDown,
        Approving,
        "scroll",
        Covered,
    ),
    bind(
        &[Char('n'), Char('q'), Esc],
        "n/Esc",
        Close,
        Approving,
        "no: write nothing",
        Essential,
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
    bind(
        &[Esc, Char('q')],
        "Esc",
        Close,
        Contexts,
        "cancel",
        Essential,
    ),
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
        Essential,
    ),
    bind(
        &[Enter],
        "Enter",
        Choose,
        TypeNamespace,
        "switch: reconnect to it",
        Footer,
    ),
    bind(&[Esc], "Esc", Close, TypeNamespace, "cancel", Essential),
];

/// How a key is written on screen.
pub fn key_name(code: KeyCode) -> String {
    match code {
        Left => "←".into(),
        Right => "→".into(),
        Up => "↑".into(),
        Down => "↓".into(),
        Enter => "Enter".into(),
        Esc => "Esc".into(),
        Backspace => "Backspace".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        Char(c) => c.to_string(),
        other => format!("{other:?}"),
    }
}

/// A binding's keys as help lists them: `← h`.
pub fn keys_text(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(|k| key_name(*k))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The action for a key in a context. Ctrl-C quits everywhere; a key held with any other
/// modifier than Shift (which `?` needs) is no binding, so `Alt-y` never confirms a send.
pub fn action_for(key: KeyEvent, context: Context) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == Char('c') {
        return Some(Quit);
    }
    if !(key.modifiers - KeyModifiers::SHIFT).is_empty() {
        return None;
    }
    let bound = BINDINGS
        .iter()
        .filter(|b| b.context == context)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.action);
    match (bound, context, key.code) {
        // While a filter is typed, any other character is part of it.
        (None, Filtering, Char(c)) => Some(FilterChar(c)),
        _ => bound,
    }
}

/// `label action essential` for the footer in a context, in table order.
pub fn hints(context: Context) -> Vec<(&'static str, &'static str, bool)> {
    BINDINGS
        .iter()
        .filter(|b| b.context == context && matches!(b.listing, Footer | Essential))
        .map(|b| (b.label, short(b.help), b.listing == Essential))
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
        assert_ne!(action_for(key(Esc), Main), Some(Quit), "Esc never quits");
        assert_eq!(action_for(key(Char('y')), Main), None);
        assert_eq!(action_for(key(Char('s')), Asking), None);
        let ctrl_c = KeyEvent::new(Char('c'), KeyModifiers::CONTROL);
        for context in Context::ALL {
            assert_eq!(action_for(ctrl_c, context), Some(Quit), "{context:?}");
        }
    }

    #[test]
    fn q_and_esc_close_every_dialog_and_help() {
        for context in [
            HelpShown,
            Asking,
            Sent,
            Sends,
            Approving,
            Describing,
            DetailsShown,
        ] {
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
    fn every_context_can_be_left_and_says_how_at_every_width() {
        for context in Context::ALL {
            let out = BINDINGS.iter().any(|b| {
                b.context == context
                    && matches!(b.action, Close | Quit | ClearFilter)
                    && b.listing == Essential
            });
            assert!(out, "{context:?} lists no way out in its essential footer");
        }
        // Every dialog's answer is essential too: its key line never drops out of the footer.
        for context in [Asking, Approving] {
            assert!(
                BINDINGS
                    .iter()
                    .any(|b| b.context == context && b.action == Confirm && b.listing == Essential)
            );
        }
    }

    #[test]
    fn help_lists_every_context_the_table_uses() {
        for binding in BINDINGS {
            assert!(
                Context::ALL.contains(&binding.context),
                "{:?} is missing from Context::ALL, so help would leave it out",
                binding.context
            );
        }
    }

    #[test]
    fn typing_a_filter_takes_every_character_but_its_own_keys() {
        assert_eq!(action_for(key(Char('/')), Main), Some(Filter));
        assert_eq!(action_for(key(Char('q')), Filtering), Some(FilterChar('q')));
        assert_eq!(action_for(key(Char('3')), Filtering), Some(FilterChar('3')));
        assert_eq!(action_for(key(Backspace), Filtering), Some(FilterBackspace));
        assert_eq!(action_for(key(Enter), Filtering), Some(FilterDone));
        assert_eq!(action_for(key(Esc), Filtering), Some(ClearFilter));
        assert_eq!(
            action_for(key(Esc), Main),
            Some(ClearFilter),
            "Esc never quits"
        );
        assert_eq!(action_for(key(Char('j')), Main), Some(ScrollDown));
        assert_eq!(action_for(key(Enter), Main), Some(Describe));
    }

    #[test]
    fn hints_come_from_the_table() {
        let main = hints(Main);
        assert!(main.contains(&("s", "send", false)));
        assert!(main.contains(&("p", "payload", false)));
        assert!(main.contains(&("/", "filter", false)));
        assert!(hints(Asking).contains(&("y", "yes", true)));
        assert!(hints(Sent).contains(&("Esc", "close", true)));
        assert!(main.contains(&("?", "help", true)));
        assert!(main.contains(&("q", "quit", true)));
        assert!(!main.iter().any(|(label, _, _)| *label == "y"));
        assert_eq!(keys_text(&BINDINGS[0]), "← h");
    }
}
