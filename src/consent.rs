//! Consent that lives in the cluster: the ConfigMap people write to approve what the
//! in-cluster reporter shares, read into the policy the daemon follows. Pure: no I/O here.
//!
//! The rule, in order: `DO_NOT_TRACK` shares nothing; a consent with an invalid `level`,
//! `fields` or `approvedAt` shares nothing (fail closed); a consent with a valid `level` shares
//! the fields it lists at or below that level; no consent, or one without a `level` key, leaves
//! `METRICS_LEVEL` in charge, as the original.

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::Value as Json;

use crate::metrics::{Level, METRICS, Snapshot};
use crate::payload::{Event, ascii_json};

/// The consent ConfigMap's default name.
pub const DEFAULT_CONSENT_CONFIGMAP: &str = "hodometer-consent";
/// The status ConfigMap the daemon writes (created empty by the manifests).
pub const STATUS_CONFIGMAP: &str = "hodometer-status";

pub const KEY_LEVEL: &str = "level";
pub const KEY_FIELDS: &str = "fields";
pub const KEY_APPROVED_BY: &str = "approvedBy";
pub const KEY_APPROVED_AT: &str = "approvedAt";
pub const KEY_NOTE: &str = "note";

/// The data keys of the status ConfigMap: written by the daemon, read by the inspector and
/// `consent show`.
pub mod status_key {
    pub const EFFECTIVE_LEVEL: &str = "effectiveLevel";
    pub const SOURCE: &str = "source";
    pub const REASON: &str = "reason";
    /// The consent ConfigMap's `resourceVersion` the reporter follows: its acknowledgement.
    pub const CONSENT_VERSION: &str = "consentVersion";
    /// The fields it shares when their values are known, one per line.
    pub const SHARED_FIELDS: &str = "sharedFields";
    pub const PENDING_FIELDS: &str = "pendingFields";
    pub const LAST_COLLECTION_AT: &str = "lastCollectionAt";
    /// The last event sent, its exact JSON bytes.
    pub const LAST_EVENT: &str = "lastEvent";
    pub const LAST_OUTCOMES: &str = "lastOutcomes";
    pub const NEXT_SEND_AT: &str = "nextSendAt";
    /// Where it publishes (credentials redacted), one per line, and how often.
    pub const ENDPOINTS: &str = "endpoints";
    pub const INTERVAL: &str = "interval";
    /// Whether the history (`hodometer-ledger`) is being kept, and why not.
    pub const HISTORY: &str = "history";
    /// The ledger's head: the hash of its newest entry, for `history verify --head`.
    pub const HISTORY_HEAD: &str = "historyHead";
}

/// A ConfigMap name: a DNS subdomain (lower-case letters, digits, `-` and `.`, at most 253).
pub fn parse_configmap_name(text: &str) -> Result<String, String> {
    crate::validate::parse_object_name(text, "ConfigMap")
}

/// Where the effective level comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Consent,
    Environment,
    DoNotTrack,
    InvalidConsent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Consent => "consent",
            Source::Environment => "environment",
            Source::DoNotTrack => "do-not-track",
            Source::InvalidConsent => "invalid-consent",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid consent: what people approved, and who and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub level: Level,
    /// The approved field names (metrics and `ext.` extensions).
    pub fields: BTreeSet<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<SystemTime>,
    pub note: Option<String>,
}

/// What a consent ConfigMap says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentReading {
    /// No ConfigMap, or one without a `level` key (as the manifests ship it).
    Unset,
    Given(Consent),
    /// A `level` is present but the consent cannot be trusted: the reason.
    Invalid(String),
}

/// Reads a consent ConfigMap's `data`.
pub fn parse(data: &BTreeMap<String, String>) -> ConsentReading {
    let Some(level_text) = data.get(KEY_LEVEL) else {
        return ConsentReading::Unset;
    };
    let mut problems = Vec::new();
    let level = Level::parse(level_text);
    if level.is_none() {
        problems.push(format!(
            "level {level_text:?} is not one of off, cluster, resource, feature"
        ));
    }
    let fields = match parse_fields(data.get(KEY_FIELDS).map_or("", String::as_str)) {
        Ok(fields) => fields,
        Err(problem) => {
            problems.push(problem);
            BTreeSet::new()
        }
    };
    let approved_at = match data.get(KEY_APPROVED_AT).filter(|t| !t.trim().is_empty()) {
        Some(text) => match humantime::parse_rfc3339_weak(text.trim()) {
            Ok(at) => Some(at),
            Err(e) => {
                problems.push(format!("approvedAt {text:?} is not an RFC 3339 time: {e}"));
                None
            }
        },
        None => None,
    };
    match level {
        Some(level) if problems.is_empty() => ConsentReading::Given(Consent {
            level,
            fields,
            approved_by: non_blank(data.get(KEY_APPROVED_BY)),
            approved_at,
            note: non_blank(data.get(KEY_NOTE)),
        }),
        _ => ConsentReading::Invalid(problems.join("; ")),
    }
}

fn non_blank(text: Option<&String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// Field names separated by newlines and/or commas (people edit the list by hand); each a
/// property name: letters, digits, `_`, `.`, `-` or `$`.
pub fn parse_fields(text: &str) -> Result<BTreeSet<String>, String> {
    let mut fields = BTreeSet::new();
    let mut bad = Vec::new();
    for name in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-$".contains(c));
        if valid {
            fields.insert(name.to_string());
        } else {
            bad.push(format!("{name:?}"));
        }
    }
    if bad.is_empty() {
        Ok(fields)
    } else {
        Err(format!(
            "fields holds names that are not field names: {}",
            bad.join(", ")
        ))
    }
}

/// What the daemon does: the level it shares at, why, and (under consent) the approved fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub source: Source,
    /// `Some` under consent: only these fields leave the cluster.
    pub approved: Option<BTreeSet<String>>,
    /// Why nothing is shared, or why the environment rules, when there is a reason to say.
    pub reason: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<SystemTime>,
    /// The note kept with the approval.
    pub note: Option<String>,
    /// The consent ConfigMap's `resourceVersion` this policy was read from.
    pub consent_version: Option<String>,
}

impl Policy {
    /// `METRICS_LEVEL` rules (already forced off by `DO_NOT_TRACK` in the settings).
    pub fn environment(level: Level, reason: Option<String>) -> Policy {
        Policy {
            level,
            source: Source::Environment,
            approved: None,
            reason,
            approved_by: None,
            approved_at: None,
            note: None,
            consent_version: None,
        }
    }

    /// Whether a field of `field_level` named `name` may leave the cluster.
    pub fn allows(&self, name: &str, field_level: Level) -> bool {
        self.level.shares(field_level)
            && self
                .approved
                .as_ref()
                .is_none_or(|approved| approved.contains(name))
    }

    /// Whether `event`, built earlier, is still within what is approved: a lowered level or a
    /// withdrawn field drops an event that is still being retried.
    pub fn permits(&self, event: &Event) -> bool {
        self.level != Level::Off
            && event.level <= self.level
            && self
                .approved
                .as_ref()
                .is_none_or(|approved| event.fields.iter().all(|field| approved.contains(field)))
    }

    /// Whether two policies send the same thing (who approved it aside).
    pub fn same_sharing(&self, other: &Policy) -> bool {
        self.level == other.level && self.source == other.source && self.approved == other.approved
    }
}

/// The policy from the consent read, the environment's level and `DO_NOT_TRACK`.
pub fn decide(reading: &ConsentReading, env_level: Level, do_not_track: bool) -> Policy {
    if do_not_track {
        return Policy {
            source: Source::DoNotTrack,
            ..Policy::environment(Level::Off, Some("DO_NOT_TRACK is set".into()))
        };
    }
    match reading {
        ConsentReading::Unset => Policy::environment(env_level, None),
        ConsentReading::Invalid(reason) => Policy {
            source: Source::InvalidConsent,
            reason: Some(format!("the consent is invalid, nothing is sent: {reason}")),
            ..Policy::environment(Level::Off, None)
        },
        ConsentReading::Given(consent) => Policy {
            level: consent.level,
            source: Source::Consent,
            approved: Some(consent.fields.clone()),
            reason: None,
            approved_by: consent.approved_by.clone(),
            approved_at: consent.approved_at,
            note: consent.note.clone(),
            consent_version: None,
        },
    }
}

/// Every field a snapshot can carry, with its level: the metrics in table order, then the
/// extensions.
pub fn candidate_fields(snapshot: &Snapshot) -> Vec<(String, Level)> {
    METRICS
        .iter()
        .map(|def| (def.name.to_string(), def.level))
        .chain(snapshot.extensions.iter().map(|e| (e.property(), e.level)))
        .collect()
}

/// The metric names at or below `level`, sorted: what approving `level` approves.
pub fn metric_fields_at(level: Level) -> BTreeSet<String> {
    METRICS
        .iter()
        .filter(|def| level.shares(def.level))
        .map(|def| def.name.to_string())
        .collect()
}

/// The fields the policy lets leave, among `candidates`: what the reporter shares.
pub fn shared_fields(policy: &Policy, candidates: &[(String, Level)]) -> Vec<String> {
    candidates
        .iter()
        .filter(|(name, level)| policy.allows(name, *level))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Fields at or below the policy's level that consent does not list: withheld until approved.
pub fn pending_fields(policy: &Policy, candidates: &[(String, Level)]) -> Vec<String> {
    let Some(approved) = &policy.approved else {
        return Vec::new();
    };
    candidates
        .iter()
        .filter(|(name, level)| policy.level.shares(*level) && !approved.contains(name))
        .map(|(name, _)| name.clone())
        .collect()
}

/// `event` with only the approved properties kept (the envelope always stays); the bytes are
/// rebuilt with the same escaping, so what is recorded is exactly what is sent.
pub fn restrict(event: Event, policy: &Policy) -> Event {
    let Some(approved) = &policy.approved else {
        return event;
    };
    if event.fields.iter().all(|f| approved.contains(f)) {
        return event;
    }
    let withheld: Vec<&String> = event
        .fields
        .iter()
        .filter(|f| !approved.contains(*f))
        .collect();
    let mut json: Json = match serde_json::from_str(&event.json) {
        Ok(json) => json,
        // Our own bytes always parse; if they ever did not, send nothing rather than too much.
        Err(_) => {
            return Event {
                fields: Vec::new(),
                json: String::new(),
                ..event
            };
        }
    };
    if let Some(properties) = json["properties"].as_object_mut() {
        for name in &withheld {
            properties.shift_remove(name.as_str());
        }
    }
    Event {
        fields: event
            .fields
            .iter()
            .filter(|f| approved.contains(*f))
            .cloned()
            .collect(),
        json: ascii_json(&json.to_string()),
        ..event
    }
}

/// The consent ConfigMap's data for an approval.
pub fn consent_data(consent: &Consent) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    data.insert(KEY_LEVEL.into(), consent.level.as_str().into());
    let fields: Vec<&str> = consent.fields.iter().map(String::as_str).collect();
    data.insert(KEY_FIELDS.into(), fields.join("\n"));
    if let Some(by) = &consent.approved_by {
        data.insert(KEY_APPROVED_BY.into(), by.clone());
    }
    if let Some(at) = consent.approved_at {
        data.insert(
            KEY_APPROVED_AT.into(),
            humantime::format_rfc3339_seconds(at).to_string(),
        );
    }
    if let Some(note) = &consent.note {
        data.insert(KEY_NOTE.into(), note.clone());
    }
    data
}

/// The consent as a ConfigMap manifest in YAML, for GitOps. Values are JSON strings, which YAML
/// reads as double-quoted scalars, except `fields`: one name per line, as people review it.
pub fn manifest_yaml(name: &str, namespace: &str, data: &BTreeMap<String, String>) -> String {
    let quote = |text: &str| Json::from(text).to_string();
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    app.kubernetes.io/name: hodometer\ndata:\n",
        quote(name),
        quote(namespace)
    );
    for (key, value) in data {
        if key == KEY_FIELDS && !value.is_empty() {
            yaml.push_str(&format!("  {key}: |-\n"));
            for line in value.lines() {
                yaml.push_str(&format!("    {line}\n"));
            }
        } else {
            yaml.push_str(&format!("  {key}: {}\n", quote(value)));
        }
    }
    yaml
}

/// What the status ConfigMap says of the in-cluster reporter, parsed for the inspector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReporterStatus {
    /// `None` before its first report (or an unreadable value).
    pub level: Option<Level>,
    pub consent_version: Option<String>,
    pub shared: BTreeSet<String>,
    pub pending: BTreeSet<String>,
    /// Its last event, exactly as sent.
    pub last_event: Option<String>,
    pub endpoints: Vec<String>,
    pub interval: Option<String>,
}

impl ReporterStatus {
    pub fn parse(data: &BTreeMap<String, String>) -> ReporterStatus {
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
        ReporterStatus {
            level: text(status_key::EFFECTIVE_LEVEL).and_then(|l| Level::parse(&l)),
            consent_version: text(status_key::CONSENT_VERSION),
            shared: lines(status_key::SHARED_FIELDS).into_iter().collect(),
            pending: lines(status_key::PENDING_FIELDS).into_iter().collect(),
            // The bytes as written: never trimmed.
            last_event: data
                .get(status_key::LAST_EVENT)
                .filter(|v| !v.is_empty())
                .cloned(),
            endpoints: lines(status_key::ENDPOINTS),
            interval: text(status_key::INTERVAL),
        }
    }
}

/// What the consent ConfigMap held when it was read: the version a write must replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentSeen {
    /// It does not exist: a write creates it.
    Missing,
    Found {
        resource_version: String,
        reading: ConsentReading,
    },
    /// Why it could not be read, e.g. the missing permission.
    Unreadable(String),
}

/// The in-cluster reporter as the inspector last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The header line (see [`reporter_line`]).
    pub line: String,
    /// `None` when not deployed or unreadable.
    pub status: Option<ReporterStatus>,
    pub consent: ConsentSeen,
    /// `NAME in NAMESPACE`, as an approval writes it.
    pub consent_configmap: String,
}

/// One line on the in-cluster reporter for the inspector's header, from its status ConfigMap
/// (`Err`: why it could not be read, e.g. the missing permission; `None`: not deployed).
pub fn reporter_line(
    status: Result<Option<&BTreeMap<String, String>>, String>,
    now: SystemTime,
) -> String {
    let data = match status {
        Err(why) => return why,
        Ok(None) => return format!("not deployed (no {STATUS_CONFIGMAP} ConfigMap)"),
        Ok(Some(data)) => data,
    };
    let get = |key: &str| data.get(key).map(String::as_str).unwrap_or("");
    if get(status_key::EFFECTIVE_LEVEL).is_empty() {
        return "deployed, no report yet".into();
    }
    let mut line = format!(
        "level {} ({})",
        get(status_key::EFFECTIVE_LEVEL),
        get(status_key::SOURCE)
    );
    if !get(status_key::REASON).is_empty() {
        line.push_str(&format!(": {}", get(status_key::REASON)));
    }
    let pending = get(status_key::PENDING_FIELDS).lines().count();
    if pending > 0 {
        line.push_str(&format!(", {pending} pending approval"));
    }
    let when = |key: &str| humantime::parse_rfc3339_weak(get(key)).ok();
    if let Some(at) = when(status_key::LAST_COLLECTION_AT) {
        let age = now.duration_since(at).unwrap_or_default();
        line.push_str(&format!("; last {} ago", whole_seconds(age)));
    }
    let outcomes: Vec<&str> = get(status_key::LAST_OUTCOMES).lines().collect();
    if !outcomes.is_empty() {
        line.push_str(&format!(": {}", outcomes.join("; ")));
    }
    if let Some(at) = when(status_key::NEXT_SEND_AT) {
        match at.duration_since(now) {
            Ok(wait) => line.push_str(&format!("; next in {}", whole_seconds(wait))),
            Err(_) => line.push_str("; next due"),
        }
    }
    line
}

fn whole_seconds(duration: std::time::Duration) -> humantime::FormattedDuration {
    humantime::format_duration(std::time::Duration::from_secs(duration.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn given(reading: ConsentReading) -> Consent {
        match reading {
            ConsentReading::Given(consent) => consent,
            other => panic!("expected a valid consent, got {other:?}"),
        }
    }

    #[test]
    fn no_level_key_leaves_the_environment_in_charge() {
        assert_eq!(parse(&data(&[])), ConsentReading::Unset);
        assert_eq!(
            parse(&data(&[("fields", "cluster_id"), ("note", "x")])),
            ConsentReading::Unset
        );
        let policy = decide(&ConsentReading::Unset, Level::Resource, false);
        assert_eq!(policy.level, Level::Resource);
        assert_eq!(policy.source, Source::Environment);
        assert!(policy.allows("anything", Level::Resource));
        assert!(!policy.allows("anything", Level::Feature));
    }

    #[test]
    fn fields_are_read_across_newlines_and_commas() {
        let consent = given(parse(&data(&[
            ("level", "Resource"),
            ("fields", "b_metric,\n a_metric , \n\nc_metric,ext.team\n"),
            ("approvedBy", "alice"),
            ("approvedAt", "2026-11-30T10:00:00Z"),
            ("note", "  reviewed  "),
        ])));
        assert_eq!(consent.level, Level::Resource);
        let names: Vec<&str> = consent.fields.iter().map(String::as_str).collect();
        assert_eq!(names, ["a_metric", "b_metric", "c_metric", "ext.team"]);
        assert_eq!(consent.approved_by.as_deref(), Some("alice"));
        assert_eq!(
            consent.approved_at,
            humantime::parse_rfc3339("2026-11-30T10:00:00Z").ok()
        );
        assert_eq!(consent.note.as_deref(), Some("reviewed"));
    }

    #[test]
    fn an_invalid_consent_shares_nothing_and_says_why() {
        for (bad, why) in [
            (data(&[("level", "loud")]), "\"loud\""),
            (
                data(&[("level", "cluster"), ("fields", "ok\nnot ok")]),
                "\"not ok\"",
            ),
            (
                data(&[("level", "cluster"), ("approvedAt", "yesterday")]),
                "approvedAt",
            ),
        ] {
            let reading = parse(&bad);
            let ConsentReading::Invalid(reason) = &reading else {
                panic!("{bad:?} should be invalid, got {reading:?}");
            };
            assert!(reason.contains(why), "{reason}");
            let policy = decide(&reading, Level::Feature, false);
            assert_eq!(policy.level, Level::Off);
            assert_eq!(policy.source, Source::InvalidConsent);
            assert!(policy.reason.as_deref().is_some_and(|r| r.contains(why)));
        }
    }

    #[test]
    fn do_not_track_beats_consent() {
        let reading = parse(&data(&[("level", "feature"), ("fields", "cluster_id")]));
        let policy = decide(&reading, Level::Feature, true);
        assert_eq!(policy.level, Level::Off);
        assert_eq!(policy.source, Source::DoNotTrack);
        assert!(!policy.allows("cluster_id", Level::Cluster));
    }

    #[test]
    fn consent_shares_listed_fields_at_or_below_its_level_and_the_rest_is_pending() {
        let reading = parse(&data(&[
            ("level", "cluster"),
            ("fields", "a\nb\nc_feature"),
        ]));
        let policy = decide(&reading, Level::Feature, false);
        assert_eq!(policy.source, Source::Consent);
        assert!(policy.allows("a", Level::Cluster));
        assert!(!policy.allows("new_metric", Level::Cluster));
        assert!(!policy.allows("c_feature", Level::Feature));
        let candidates = [
            ("a".to_string(), Level::Cluster),
            ("new_metric".to_string(), Level::Cluster),
            ("ext.team".to_string(), Level::Cluster),
            ("c_feature".to_string(), Level::Feature),
        ];
        assert_eq!(
            pending_fields(&policy, &candidates),
            ["new_metric", "ext.team"]
        );
        let environment = decide(&ConsentReading::Unset, Level::Feature, false);
        assert!(pending_fields(&environment, &candidates).is_empty());
    }

    fn event(level: Level, fields: &[&str]) -> Event {
        let mut properties = serde_json::Map::new();
        properties.insert("token".into(), "t".into());
        for f in fields {
            properties.insert((*f).into(), format!("v>{f}").into());
        }
        let json = serde_json::json!({"event": "collect metrics", "properties": properties});
        Event {
            level,
            insert_id: uuid::Uuid::nil(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            json: ascii_json(&json.to_string()),
        }
    }

    #[test]
    fn restrict_removes_unapproved_properties_and_keeps_the_escaping() {
        let policy = decide(
            &parse(&data(&[("level", "cluster"), ("fields", "a\nc")])),
            Level::Off,
            false,
        );
        let restricted = restrict(event(Level::Cluster, &["a", "b", "c"]), &policy);
        assert_eq!(restricted.fields, ["a", "c"]);
        assert_eq!(
            restricted.json,
            r#"{"event":"collect metrics","properties":{"token":"t","a":"v\u003ea","c":"v\u003ec"}}"#
        );
        let environment = Policy::environment(Level::Cluster, None);
        let untouched = event(Level::Cluster, &["a", "b"]);
        assert_eq!(restrict(untouched.clone(), &environment), untouched);
    }

    #[test]
    fn a_lowered_level_or_withdrawn_field_no_longer_permits_an_event() {
        let sent = event(Level::Resource, &["a", "b"]);
        let approve = |level: &str, fields: &str| {
            decide(
                &parse(&data(&[("level", level), ("fields", fields)])),
                Level::Off,
                false,
            )
        };
        assert!(approve("resource", "a\nb").permits(&sent));
        assert!(approve("feature", "a,b,c").permits(&sent));
        assert!(!approve("cluster", "a\nb").permits(&sent));
        assert!(!approve("off", "a\nb").permits(&sent));
        assert!(!approve("resource", "a").permits(&sent));
        assert!(Policy::environment(Level::Resource, None).permits(&sent));
        assert!(!Policy::environment(Level::Cluster, None).permits(&sent));
    }

    #[test]
    fn approving_a_level_lists_exactly_its_metrics() {
        assert!(metric_fields_at(Level::Off).is_empty());
        let cluster = metric_fields_at(Level::Cluster);
        let feature = metric_fields_at(Level::Feature);
        assert!(cluster.contains("cluster_id") && cluster.is_subset(&feature));
        assert_eq!(feature.len(), METRICS.len());
    }

    #[test]
    fn the_manifest_round_trips_through_yaml() {
        let consent = Consent {
            level: Level::Resource,
            fields: ["b".to_string(), "a".to_string()].into_iter().collect(),
            approved_by: Some("alice \"admin\"".into()),
            approved_at: humantime::parse_rfc3339("2026-11-30T10:00:00Z").ok(),
            note: Some("line one: #1".into()),
        };
        let data = consent_data(&consent);
        assert_eq!(data["fields"], "a\nb");
        let yaml = manifest_yaml("hodometer-consent", "seldon-mesh", &data);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
        assert_eq!(parsed["kind"], "ConfigMap");
        assert_eq!(parsed["metadata"]["name"], "hodometer-consent");
        let back: BTreeMap<String, String> =
            serde_json::from_value(parsed["data"].clone()).expect("string data");
        assert_eq!(back, data);
        assert_eq!(given(parse(&back)), consent);
    }

    #[test]
    fn the_reporter_line_says_level_source_last_and_next_send_or_why_not() {
        let now = humantime::parse_rfc3339("2026-11-30T10:00:10Z").expect("time");
        let status = data(&[
            ("effectiveLevel", "cluster"),
            ("source", "consent"),
            ("pendingFields", "node_count\next.team"),
            ("lastCollectionAt", "2026-11-30T10:00:00Z"),
            ("lastOutcomes", "http://r/ ok (HTTP 200, 1 attempt, 3 ms)"),
            ("nextSendAt", "2026-11-30T10:01:10Z"),
        ]);
        assert_eq!(
            reporter_line(Ok(Some(&status)), now),
            "level cluster (consent), 2 pending approval; last 10s ago: http://r/ ok (HTTP 200, 1 attempt, 3 ms); next in 1m"
        );
        assert_eq!(
            reporter_line(Ok(None), now),
            "not deployed (no hodometer-status ConfigMap)"
        );
        assert_eq!(
            reporter_line(Ok(Some(&data(&[]))), now),
            "deployed, no report yet"
        );
        let forbidden = "forbidden: get configmaps hodometer-status".to_string();
        assert_eq!(reporter_line(Err(forbidden.clone()), now), forbidden);
    }
}
