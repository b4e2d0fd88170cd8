//! The in-cluster reporter's status: one typed document, written whole to the `hodometer-status`
//! ConfigMap by the one reporter cycle, read back through the same type by the inspector and by
//! `consent show`. It lives in ConfigMap data (string values, readable with kubectl): lists are
//! one item per line, times RFC 3339, and a `schema` key says which layout this is. Readers
//! ignore keys they do not know, so a newer reporter's additions do not break an older reader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::metrics::Level;
use crate::policy::Source;

use super::STATUS_CONFIGMAP;

/// The layout this binary writes.
pub const SCHEMA: u32 = 1;

/// At most this many endpoints (and outcome lines) are kept, so the document stays small however
/// many extra URLs are configured.
const MAX_LINES: usize = 64;
/// A value longer than this is cut (with a note). An event is a few kilobytes at most; this bound
/// keeps a status far below the 1 MiB object limit whatever the inputs.
const MAX_VALUE_BYTES: usize = 32 * 1024;

/// The data keys.
mod key {
    pub const SCHEMA: &str = "schema";
    pub const WRITTEN_AT: &str = "writtenAt";
    pub const EFFECTIVE_LEVEL: &str = "effectiveLevel";
    pub const SOURCE: &str = "source";
    pub const REASON: &str = "reason";
    pub const WARNING: &str = "warning";
    pub const CONSENT_STATE: &str = "consentState";
    pub const CONSENT_VERSION: &str = "consentVersion";
    pub const APPROVED_BY: &str = "approvedBy";
    pub const SHARED_FIELDS: &str = "sharedFields";
    pub const PENDING_FIELDS: &str = "pendingFields";
    pub const LAST_COLLECTION_AT: &str = "lastCollectionAt";
    pub const LAST_EVENT: &str = "lastEvent";
    pub const LAST_OUTCOMES: &str = "lastOutcomes";
    pub const NEXT_SEND_AT: &str = "nextSendAt";
    pub const ENDPOINTS: &str = "endpoints";
    pub const INTERVAL: &str = "interval";
    /// Whether the history (`hodometer-ledger`) is being kept, and why not.
    pub const HISTORY: &str = "history";
    /// The ledger's head: the hash of its newest entry, for `history verify --head`.
    pub const HISTORY_HEAD: &str = "historyHead";
}

/// What the reporter did in its last cycle and will do next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReporterStatus {
    /// The layout it was written in; `None` when the ConfigMap has no `schema` (not yet written
    /// by a reporter, or by one older than the typed status).
    pub schema: Option<u32>,
    /// When the reporter wrote it: advances every cycle, whatever else does.
    pub written_at: Option<SystemTime>,
    /// `None` before its first report (or an unreadable value).
    pub level: Option<Level>,
    pub source: Option<Source>,
    pub reason: Option<String>,
    pub warning: Option<String>,
    /// What it found in the consent: `absent`, `empty`, `valid`, `invalid`, `unreadable`, …
    pub consent_state: Option<String>,
    /// The consent ConfigMap's `resourceVersion` it follows: its acknowledgement.
    pub consent_version: Option<String>,
    pub approved_by: Option<String>,
    /// The fields it shares when their values are known.
    pub shared: BTreeSet<String>,
    pub pending: BTreeSet<String>,
    pub last_collection_at: Option<SystemTime>,
    /// Its last event, exactly as sent.
    pub last_event: Option<String>,
    pub last_outcomes: Vec<String>,
    pub next_send_at: Option<SystemTime>,
    /// Where it publishes (credentials redacted), and how often.
    pub endpoints: Vec<String>,
    pub interval: Option<String>,
    /// Whether the history is being kept in `hodometer-ledger`, and why not.
    pub history: Option<String>,
    /// The ledger's head after the last record.
    pub history_head: Option<String>,
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `text`, cut at a character boundary to at most `MAX_VALUE_BYTES`.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_VALUE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_VALUE_BYTES - 32;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

fn bounded_lines<'a>(lines: impl ExactSizeIterator<Item = &'a String>) -> String {
    let total = lines.len();
    let mut kept: Vec<String> = lines.take(MAX_LINES).cloned().collect();
    if total > MAX_LINES {
        kept.push(format!("… and {} more", total - MAX_LINES));
    }
    bounded(&kept.join("\n"))
}

impl ReporterStatus {
    /// The ConfigMap data: every key present (empty when there is nothing to say), so a write of
    /// the whole map leaves nothing stale.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let time = |at: Option<SystemTime>| at.map(rfc3339).unwrap_or_default();
        let text = |t: &Option<String>| bounded(t.as_deref().unwrap_or(""));
        let last_event = match &self.last_event {
            // Never cut: a cut event is not the bytes sent. An event this large is not built.
            Some(event) if event.len() <= MAX_VALUE_BYTES => event.clone(),
            Some(event) => format!(
                "(an event of {} bytes: too large to keep here)",
                event.len()
            ),
            None => String::new(),
        };
        [
            (key::SCHEMA, SCHEMA.to_string()),
            (key::WRITTEN_AT, time(self.written_at)),
            (
                key::EFFECTIVE_LEVEL,
                self.level
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default(),
            ),
            (
                key::SOURCE,
                self.source
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            ),
            (key::REASON, text(&self.reason)),
            (key::WARNING, text(&self.warning)),
            (key::CONSENT_STATE, text(&self.consent_state)),
            (key::CONSENT_VERSION, text(&self.consent_version)),
            (key::APPROVED_BY, text(&self.approved_by)),
            (key::SHARED_FIELDS, bounded_lines(self.shared.iter())),
            (key::PENDING_FIELDS, bounded_lines(self.pending.iter())),
            (key::LAST_COLLECTION_AT, time(self.last_collection_at)),
            (key::LAST_EVENT, last_event),
            (key::LAST_OUTCOMES, bounded_lines(self.last_outcomes.iter())),
            (key::NEXT_SEND_AT, time(self.next_send_at)),
            (key::ENDPOINTS, bounded_lines(self.endpoints.iter())),
            (key::INTERVAL, text(&self.interval)),
            (key::HISTORY, text(&self.history)),
            (key::HISTORY_HEAD, text(&self.history_head)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads the ConfigMap data; unknown keys are ignored, unreadable values are unknown.
    pub fn from_data(data: &BTreeMap<String, String>) -> ReporterStatus {
        let text = |key: &str| {
            data.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let lines = |key: &str| -> Vec<String> {
            data.get(key)
                .map(|v| {
                    v.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let time = |key: &str| text(key).and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
        ReporterStatus {
            schema: text(key::SCHEMA).and_then(|s| s.parse().ok()),
            written_at: time(key::WRITTEN_AT),
            level: text(key::EFFECTIVE_LEVEL).and_then(|l| Level::parse(&l)),
            source: text(key::SOURCE).and_then(|s| Source::parse(&s)),
            reason: text(key::REASON),
            warning: text(key::WARNING),
            consent_state: text(key::CONSENT_STATE),
            consent_version: text(key::CONSENT_VERSION),
            approved_by: text(key::APPROVED_BY),
            shared: lines(key::SHARED_FIELDS).into_iter().collect(),
            pending: lines(key::PENDING_FIELDS).into_iter().collect(),
            last_collection_at: time(key::LAST_COLLECTION_AT),
            // The bytes as written: never trimmed.
            last_event: data.get(key::LAST_EVENT).filter(|v| !v.is_empty()).cloned(),
            last_outcomes: lines(key::LAST_OUTCOMES),
            next_send_at: time(key::NEXT_SEND_AT),
            endpoints: lines(key::ENDPOINTS),
            interval: text(key::INTERVAL),
            history: text(key::HISTORY),
            history_head: text(key::HISTORY_HEAD),
        }
    }

    /// What this cycle did not renew stands from `previous`: the last collection, the last event
    /// sent and its outcomes (a cycle at level off, or one with nothing to send, sends nothing
    /// new, and the last send is still the last send).
    pub fn carry_from(&mut self, previous: &ReporterStatus) {
        if self.last_collection_at.is_none() {
            self.last_collection_at = previous.last_collection_at;
        }
        if self.last_event.is_none() {
            self.last_event = previous.last_event.clone();
        }
        if self.last_outcomes.is_empty() {
            self.last_outcomes = previous.last_outcomes.clone();
        }
    }

    /// Whether a reporter has reported here (a level written).
    pub fn reported(&self) -> bool {
        self.level.is_some()
    }

    /// `consent show`'s text: one `name value` line each, unknowns said as such.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "(unknown)".into());
        let time = |at: Option<SystemTime>| or_unknown(at.map(rfc3339));
        if !self.reported() {
            return vec![("status", "no report yet".into())];
        }
        let mut lines = vec![(
            "effective level",
            format!(
                "{} (source: {})",
                self.level.map_or("?", Level::as_str),
                self.source.map_or("?", Source::as_str)
            ),
        )];
        if let Some(reason) = &self.reason {
            lines.push(("reason", reason.clone()));
        }
        if let Some(warning) = &self.warning {
            lines.push(("warning", warning.clone()));
        }
        lines.push(("consent", or_unknown(self.consent_state.clone())));
        if let Some(version) = &self.consent_version {
            lines.push(("follows consent", format!("resourceVersion {version}")));
        }
        let list = |set: &BTreeSet<String>| {
            set.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(("shared fields", list(&self.shared)));
        lines.push(("pending fields", list(&self.pending)));
        lines.push(("publishes to", self.endpoints.join(", ")));
        lines.push(("every", or_unknown(self.interval.clone())));
        lines.push(("last collection", time(self.last_collection_at)));
        for outcome in &self.last_outcomes {
            lines.push(("last outcome", outcome.clone()));
        }
        lines.push(("next send", time(self.next_send_at)));
        if let Some(history) = &self.history {
            lines.push(("history", history.clone()));
        }
        lines.push(("written", time(self.written_at)));
        lines
    }
}

/// One line on the in-cluster reporter for the inspector's header, from its status ConfigMap
/// (`Err`: why it could not be read, e.g. the missing permission; `None`: not deployed).
pub fn reporter_line(status: Result<Option<&ReporterStatus>, String>, now: SystemTime) -> String {
    let status = match status {
        Err(why) => return why,
        Ok(None) => return format!("not deployed (no {STATUS_CONFIGMAP} ConfigMap)"),
        Ok(Some(status)) => status,
    };
    let (Some(level), Some(source)) = (status.level, status.source) else {
        return "deployed, no report yet".into();
    };
    let mut line = format!("level {level} ({source})");
    if let Some(reason) = &status.reason {
        line.push_str(&format!(": {reason}"));
    }
    if let Some(warning) = &status.warning {
        line.push_str(&format!(" (warning: {warning})"));
    }
    if !status.pending.is_empty() {
        line.push_str(&format!(", {} pending approval", status.pending.len()));
    }
    if let Some(at) = status.last_collection_at {
        let age = now.duration_since(at).unwrap_or_default();
        line.push_str(&format!("; last {} ago", whole_seconds(age)));
    }
    if !status.last_outcomes.is_empty() {
        line.push_str(&format!(": {}", status.last_outcomes.join("; ")));
    }
    if let Some(at) = status.next_send_at {
        match at.duration_since(now) {
            Ok(wait) => line.push_str(&format!("; next in {}", whole_seconds(wait))),
            Err(_) => line.push_str("; next due"),
        }
    }
    line
}

fn whole_seconds(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(duration.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    fn full() -> ReporterStatus {
        ReporterStatus {
            schema: Some(SCHEMA),
            written_at: Some(at("2026-11-30T10:00:01Z")),
            level: Some(Level::Cluster),
            source: Some(Source::Consent),
            reason: None,
            warning: Some("cannot reach the consent".into()),
            consent_state: Some("valid".into()),
            consent_version: Some("42".into()),
            approved_by: Some("alice".into()),
            shared: ["cluster_id".to_string()].into_iter().collect(),
            pending: ["node_count".to_string(), "ext.team".to_string()]
                .into_iter()
                .collect(),
            last_collection_at: Some(at("2026-11-30T10:00:00Z")),
            last_event: Some("{\"event\":\"collect metrics\"}\n".into()),
            last_outcomes: vec!["http://r/ ok (HTTP 200, 1 attempt, 3 ms)".into()],
            next_send_at: Some(at("2026-11-30T10:01:10Z")),
            endpoints: vec!["http://r/".into()],
            interval: Some("1m".into()),
            history: Some("kept in hodometer-ledger: head ab12 (3 entries, 0 dropped)".into()),
            history_head: Some("ab12".into()),
        }
    }

    #[test]
    fn the_status_round_trips_through_configmap_data_with_its_schema() {
        let status = full();
        let data = status.to_data();
        assert_eq!(data["schema"], "1");
        assert_eq!(data["pendingFields"], "ext.team\nnode_count");
        assert_eq!(ReporterStatus::from_data(&data), status);
        // Every key is written, so a whole write leaves nothing stale behind.
        let empty = ReporterStatus::default().to_data();
        assert_eq!(
            empty.keys().collect::<Vec<_>>(),
            data.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_cycle_that_sends_nothing_keeps_the_last_send() {
        let previous = full();
        let mut off = ReporterStatus {
            level: Some(Level::Off),
            source: Some(Source::Consent),
            ..ReporterStatus::default()
        };
        off.carry_from(&previous);
        assert_eq!(off.last_event, previous.last_event);
        assert_eq!(off.last_outcomes, previous.last_outcomes);
        assert_eq!(off.last_collection_at, previous.last_collection_at);
        assert_eq!(off.level, Some(Level::Off));
        // What the cycle renewed is its own.
        let mut sent = full();
        sent.last_outcomes = vec!["dropped: consent changed".into()];
        sent.carry_from(&ReporterStatus::default());
        assert_eq!(sent.last_outcomes, ["dropped: consent changed"]);
    }

    #[test]
    fn readers_ignore_keys_they_do_not_know_and_unreadable_values_are_unknown() {
        let mut data = full().to_data();
        data.insert("addedByANewerReporter".into(), "x".into());
        data.insert("lastCollectionAt".into(), "yesterday".into());
        data.insert("effectiveLevel".into(), "loud".into());
        let read = ReporterStatus::from_data(&data);
        assert_eq!(read.last_collection_at, None);
        assert_eq!(read.level, None);
        assert_eq!(read.consent_version.as_deref(), Some("42"));
    }

    #[test]
    fn the_status_stays_small_whatever_the_inputs() {
        let long = "x".repeat(200_000);
        let mut status = full();
        status.reason = Some(long.clone());
        status.warning = Some(long.clone());
        status.approved_by = Some(long.clone());
        status.last_event = Some(long.clone());
        status.endpoints = (0..10_000)
            .map(|i| format!("http://e{i}.example/"))
            .collect();
        status.last_outcomes = status
            .endpoints
            .iter()
            .map(|e| format!("{e} {long}"))
            .collect();
        status.pending = (0..10_000).map(|i| format!("ext.k{i}")).collect();
        let data = status.to_data();
        let bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes < 400 * 1024, "{bytes} bytes");
        assert!(data["endpoints"].ends_with("… and 9936 more"));
        assert!(
            !data["lastEvent"].contains("xxx"),
            "a cut event is not what was sent"
        );
        // What is small is kept exactly.
        assert_eq!(
            full().to_data()["lastEvent"],
            "{\"event\":\"collect metrics\"}\n"
        );
    }

    #[test]
    fn the_reporter_line_says_level_source_last_and_next_send_or_why_not() {
        let now = at("2026-11-30T10:00:10Z");
        let mut status = full();
        status.warning = None;
        assert_eq!(
            reporter_line(Ok(Some(&status)), now),
            "level cluster (consent), 2 pending approval; last 10s ago: http://r/ ok (HTTP 200, 1 attempt, 3 ms); next in 1m"
        );
        assert_eq!(
            reporter_line(Ok(None), now),
            "not deployed (no hodometer-status ConfigMap)"
        );
        let nothing = ReporterStatus::from_data(&BTreeMap::new());
        assert_eq!(
            reporter_line(Ok(Some(&nothing)), now),
            "deployed, no report yet"
        );
        assert_eq!(
            nothing.describe(),
            [("status", "no report yet".to_string())]
        );
        let forbidden = "forbidden: get configmaps hodometer-status".to_string();
        assert_eq!(reporter_line(Err(forbidden.clone()), now), forbidden);
    }
}
