//! What may leave the cluster, decided once per cycle by one pure function, [`decide`], from
//! `DO_NOT_TRACK`, the consent as read (or why it could not be) and the environment's level.
//! Nothing else reads the `DO_NOT_TRACK` setting or decides a level: the event is built from the
//! [`Policy`] (`payload::build_event`), and the status and the views report it.
//!
//! The table (each row is a unit test below):
//!
//! | `DO_NOT_TRACK` | consent read | result |
//! | --- | --- | --- |
//! | set | anything | off, `do-not-track` |
//! | — | not governed (no Kubernetes, or `--no-kube`) | environment level |
//! | — | absent / empty | environment level (the drop-in behaviour); a warning when a consent read before is gone |
//! | — | valid | its level and fields; nothing when no field is approved at its level |
//! | — | invalid | off, `invalid-consent`, naming the offending key or value |
//! | — | unreadable (down or forbidden), never read | environment level, saying why |
//! | — | unreadable (down or forbidden), read before | the last consent read stands, with a warning |

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::consent::{Consent, ConsentReading};
use crate::metrics::{Level, METRICS, Snapshot};

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

    pub fn parse(text: &str) -> Option<Source> {
        [
            Source::Consent,
            Source::Environment,
            Source::DoNotTrack,
            Source::InvalidConsent,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What reading the consent ConfigMap found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentFound {
    /// No such ConfigMap.
    Absent,
    /// The ConfigMap exists with no data (as the manifests ship it).
    Empty {
        version: String,
    },
    Valid {
        consent: Consent,
        version: String,
    },
    /// Any other shape: the offending key or value.
    Invalid {
        reason: String,
        version: String,
    },
}

impl ConsentFound {
    /// From a read ConfigMap: `None` when it does not exist, else its data and `resourceVersion`.
    pub fn from_read(found: Option<(std::collections::BTreeMap<String, String>, String)>) -> Self {
        match found {
            None => ConsentFound::Absent,
            Some((data, version)) => Self::from_reading(crate::consent::parse(&data), version),
        }
    }

    /// From a consent ConfigMap's parsed data and its `resourceVersion`.
    pub fn from_reading(reading: ConsentReading, version: String) -> Self {
        match reading {
            ConsentReading::Unset => ConsentFound::Empty { version },
            ConsentReading::Given(consent) => ConsentFound::Valid { consent, version },
            ConsentReading::Invalid(reason) => ConsentFound::Invalid { reason, version },
        }
    }

    fn version(&self) -> Option<&str> {
        match self {
            ConsentFound::Absent => None,
            ConsentFound::Empty { version }
            | ConsentFound::Valid { version, .. }
            | ConsentFound::Invalid { version, .. } => Some(version),
        }
    }

    /// The word the status and the views use for it.
    pub fn state(&self) -> &'static str {
        match self {
            ConsentFound::Absent => "absent",
            ConsentFound::Empty { .. } => "empty",
            ConsentFound::Valid { .. } => "valid",
            ConsentFound::Invalid { .. } => "invalid",
        }
    }
}

/// The consent as this cycle sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentRead {
    /// Nothing governs this run: no Kubernetes API to read a consent from.
    NotGoverned,
    Found(ConsentFound),
    /// The API server could not be reached, or refused (`forbidden`): why.
    Unreadable {
        forbidden: bool,
        error: String,
    },
}

/// The one decision of a cycle: the level shared at, the fields approved, where that comes from
/// and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub source: Source,
    /// `Some` under consent: only these fields leave the cluster.
    pub approved: Option<BTreeSet<String>>,
    /// Why nothing is shared, or why the environment rules.
    pub reason: Option<String>,
    /// Something an operator should look at although sharing goes on (a consent that is gone,
    /// one that cannot be read again).
    pub warning: Option<String>,
    /// `absent`, `empty`, `valid`, `invalid`, `unreadable`, or `not-governed`.
    pub consent_state: &'static str,
    pub approved_by: Option<String>,
    pub approved_at: Option<SystemTime>,
    /// The note kept with the approval.
    pub note: Option<String>,
    /// The consent ConfigMap's `resourceVersion` this policy follows.
    pub consent_version: Option<String>,
}

impl Policy {
    /// The environment's level in charge, for `why`.
    fn environment(level: Level, consent_state: &'static str, reason: Option<String>) -> Policy {
        Policy {
            level,
            source: Source::Environment,
            approved: None,
            reason,
            warning: None,
            consent_state,
            approved_by: None,
            approved_at: None,
            note: None,
            consent_version: None,
        }
    }

    /// Every known field at `level` and nothing above: what a level decided elsewhere allows (the
    /// inspector's level bar under this run's policy, a test).
    pub fn level(level: Level) -> Policy {
        Policy::environment(level, "not-governed", None)
    }

    /// Whether a field of `field_level` named `name` may leave the cluster.
    pub fn allows(&self, name: &str, field_level: Level) -> bool {
        self.level.shares(field_level)
            && self
                .approved
                .as_ref()
                .is_none_or(|approved| approved.contains(name))
    }

    /// This policy, sharing no more than `level` (what a person chose in the inspector, or a
    /// command's `--level`): it never widens what the policy allows.
    pub fn at_most(&self, level: Level) -> Policy {
        Policy {
            level: self.level.min(level),
            ..self.clone()
        }
    }

    /// Whether an event built earlier under another policy is still within this one: a lowered
    /// level or a withdrawn field stops an event that is still being retried.
    pub fn covers(&self, event_level: Level, fields: &[String]) -> bool {
        self.level != Level::Off
            && event_level <= self.level
            && self
                .approved
                .as_ref()
                .is_none_or(|approved| fields.iter().all(|field| approved.contains(field)))
    }

    /// Whether two policies send the same thing (who approved it aside).
    pub fn same_sharing(&self, other: &Policy) -> bool {
        self.level == other.level && self.source == other.source && self.approved == other.approved
    }

    /// The fields the policy lets leave, among `candidates`.
    pub fn shared_fields(&self, candidates: &[(String, Level)]) -> Vec<String> {
        candidates
            .iter()
            .filter(|(name, level)| self.allows(name, *level))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Fields at or below the level that the consent does not list: withheld until approved.
    pub fn pending_fields(&self, candidates: &[(String, Level)]) -> Vec<String> {
        let Some(approved) = &self.approved else {
            return Vec::new();
        };
        candidates
            .iter()
            .filter(|(name, level)| self.level.shares(*level) && !approved.contains(name))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Whether a consent can change anything: not under `DO_NOT_TRACK`, which beats every consent
/// (so the consent is not even read then).
pub fn consent_matters(do_not_track: bool) -> bool {
    !do_not_track
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

/// What this process read of the consent before this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Earlier {
    /// The last successful read: it stands through an outage.
    pub last_read: Option<ConsentFound>,
    /// The last consent that governed (valid or invalid): while it is gone, a warning says so.
    pub last_governing: Option<ConsentFound>,
}

impl Earlier {
    /// Remembers a successful read, after the cycle's decision.
    pub fn remember(&mut self, found: &ConsentFound) {
        self.last_read = Some(found.clone());
        if matches!(
            found,
            ConsentFound::Valid { .. } | ConsentFound::Invalid { .. }
        ) {
            self.last_governing = Some(found.clone());
        }
    }

    /// After reading `found` (a shorthand for tests and one-off callers).
    pub fn after(found: &ConsentFound) -> Earlier {
        let mut earlier = Earlier::default();
        earlier.remember(found);
        earlier
    }
}

/// The policy of this cycle, from `DO_NOT_TRACK`, the consent as read now, what was read before
/// (see [`Earlier`]) and the environment's level.
pub fn decide(
    do_not_track: bool,
    env_level: Level,
    read: &ConsentRead,
    earlier: &Earlier,
) -> Policy {
    if do_not_track {
        return Policy {
            source: Source::DoNotTrack,
            ..Policy::environment(Level::Off, "not-read", Some("DO_NOT_TRACK is set".into()))
        };
    }
    match read {
        ConsentRead::NotGoverned => Policy::environment(env_level, "not-governed", None),
        ConsentRead::Found(found) => from_found(found, env_level, earlier.last_governing.as_ref()),
        ConsentRead::Unreadable { forbidden, error } => {
            let what = if *forbidden {
                "forbidden to read the consent"
            } else {
                "cannot reach the consent"
            };
            match &earlier.last_read {
                Some(last) => Policy {
                    warning: Some(format!("{what}: the last consent read stands: {error}")),
                    consent_state: "unreadable",
                    ..from_found(last, env_level, None)
                },
                None => Policy::environment(
                    env_level,
                    "unreadable",
                    Some(format!("{what}, METRICS_LEVEL rules: {error}")),
                ),
            }
        }
    }
}

fn from_found(
    found: &ConsentFound,
    env_level: Level,
    last_governing: Option<&ConsentFound>,
) -> Policy {
    let version = found.version().map(str::to_string);
    let gone = |now: &str| {
        last_governing
            .map(|last| {
                format!(
                    "the consent read before (resourceVersion {}) is gone: it is {now} now, METRICS_LEVEL rules",
                    last.version().unwrap_or("?")
                )
            })
    };
    match found {
        ConsentFound::Absent => Policy {
            warning: gone("deleted"),
            ..Policy::environment(
                env_level,
                "absent",
                Some("no consent ConfigMap: METRICS_LEVEL rules".into()),
            )
        },
        ConsentFound::Empty { .. } => Policy {
            warning: gone("empty"),
            consent_version: version,
            ..Policy::environment(
                env_level,
                "empty",
                Some("the consent ConfigMap is empty: METRICS_LEVEL rules".into()),
            )
        },
        ConsentFound::Invalid { reason, .. } => Policy {
            source: Source::InvalidConsent,
            consent_version: version,
            ..Policy::environment(
                Level::Off,
                "invalid",
                Some(format!("the consent is invalid, nothing is sent: {reason}")),
            )
        },
        ConsentFound::Valid { consent, .. } => {
            let approved_here = METRICS
                .iter()
                .any(|m| consent.level.shares(m.level) && consent.fields.contains(m.name))
                || consent.fields.iter().any(|f| f.starts_with("ext."));
            let reason = (consent.level != Level::Off && !approved_here).then(|| {
                format!(
                    "the consent approves no field at level {}: nothing is sent",
                    consent.level
                )
            });
            Policy {
                level: consent.level,
                source: Source::Consent,
                approved: Some(consent.fields.clone()),
                reason,
                warning: None,
                consent_state: "valid",
                approved_by: consent.approved_by.clone(),
                approved_at: consent.approved_at,
                note: consent.note.clone(),
                consent_version: version,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(level: Level, fields: &[&str]) -> ConsentFound {
        ConsentFound::Valid {
            consent: Consent {
                level,
                fields: fields.iter().map(|f| f.to_string()).collect(),
                approved_by: Some("alice".into()),
                approved_at: None,
                note: None,
            },
            version: "7".into(),
        }
    }

    fn found(f: ConsentFound) -> ConsentRead {
        ConsentRead::Found(f)
    }

    fn down() -> ConsentRead {
        ConsentRead::Unreadable {
            forbidden: false,
            error: "connection refused".into(),
        }
    }

    fn forbidden() -> ConsentRead {
        ConsentRead::Unreadable {
            forbidden: true,
            error: "forbidden: get configmaps".into(),
        }
    }

    #[test]
    fn do_not_track_beats_every_consent_and_every_outage() {
        for read in [
            ConsentRead::NotGoverned,
            found(consent(Level::Feature, &["cluster_id"])),
            found(ConsentFound::Absent),
            found(ConsentFound::Invalid {
                reason: "x".into(),
                version: "1".into(),
            }),
            down(),
            forbidden(),
        ] {
            let policy = decide(true, Level::Feature, &read, &Earlier::default());
            assert_eq!(policy.level, Level::Off, "{read:?}");
            assert_eq!(policy.source, Source::DoNotTrack);
            assert!(!policy.allows("cluster_id", Level::Cluster));
        }
    }

    #[test]
    fn not_governed_the_environment_rules() {
        let policy = decide(
            false,
            Level::Resource,
            &ConsentRead::NotGoverned,
            &Earlier::default(),
        );
        assert_eq!(
            (policy.level, policy.source, policy.consent_state),
            (Level::Resource, Source::Environment, "not-governed")
        );
        assert!(policy.allows("model_count", Level::Resource));
        assert!(!policy.allows("gpu_enabled_count", Level::Feature));
        assert_eq!(policy.warning, None);
    }

    #[test]
    fn absent_or_empty_the_environment_rules_and_says_which() {
        let absent = decide(
            false,
            Level::Feature,
            &found(ConsentFound::Absent),
            &Earlier::default(),
        );
        assert_eq!(
            (absent.level, absent.source),
            (Level::Feature, Source::Environment)
        );
        assert_eq!(absent.consent_state, "absent");
        assert!(
            absent
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("no consent ConfigMap"))
        );
        let empty = ConsentFound::Empty {
            version: "3".into(),
        };
        let empty = decide(false, Level::Cluster, &found(empty), &Earlier::default());
        assert_eq!(
            (empty.level, empty.source),
            (Level::Cluster, Source::Environment)
        );
        assert_eq!(empty.consent_state, "empty");
        assert!(empty.reason.as_deref().is_some_and(|r| r.contains("empty")));
        assert_eq!(empty.warning, None, "nothing was read before: no warning");
    }

    fn now_again(word: &str) -> ConsentFound {
        if word == "deleted" {
            ConsentFound::Absent
        } else {
            ConsentFound::Empty {
                version: "9".into(),
            }
        }
    }

    #[test]
    fn a_consent_that_was_read_before_and_is_gone_warns() {
        let before = consent(Level::Cluster, &["cluster_id"]);
        for (now, word) in [
            (ConsentFound::Absent, "deleted"),
            (
                ConsentFound::Empty {
                    version: "9".into(),
                },
                "empty",
            ),
        ] {
            let policy = decide(false, Level::Feature, &found(now), &Earlier::after(&before));
            assert_eq!(policy.source, Source::Environment);
            assert_eq!(policy.level, Level::Feature);
            let warning = policy.warning.expect("a warning");
            assert!(
                warning.contains("resourceVersion 7") && warning.contains(word),
                "{warning}"
            );
            // Read again next cycle: still gone, still said.
            let mut earlier = Earlier::after(&before);
            earlier.remember(&now_again(word));
            let again = decide(false, Level::Feature, &found(now_again(word)), &earlier);
            assert!(again.warning.is_some_and(|w| w.contains("is gone")));
        }
    }

    #[test]
    fn a_valid_consent_shares_its_listed_fields_at_or_below_its_level() {
        let read = found(consent(
            Level::Cluster,
            &["cluster_id", "node_count", "model_count"],
        ));
        let policy = decide(false, Level::Feature, &read, &Earlier::default());
        assert_eq!(
            (policy.level, policy.source),
            (Level::Cluster, Source::Consent)
        );
        assert_eq!(policy.consent_version.as_deref(), Some("7"));
        assert_eq!(policy.approved_by.as_deref(), Some("alice"));
        assert!(policy.allows("cluster_id", Level::Cluster));
        assert!(
            !policy.allows("kubernetes_version", Level::Cluster),
            "not listed"
        );
        assert!(
            !policy.allows("model_count", Level::Resource),
            "above the level"
        );
        assert_eq!(policy.reason, None);
        let candidates = [
            ("cluster_id".to_string(), Level::Cluster),
            ("kubernetes_version".to_string(), Level::Cluster),
            ("ext.team".to_string(), Level::Cluster),
            ("model_count".to_string(), Level::Resource),
        ];
        assert_eq!(policy.shared_fields(&candidates), ["cluster_id"]);
        assert_eq!(
            policy.pending_fields(&candidates),
            ["kubernetes_version", "ext.team"]
        );
    }

    #[test]
    fn a_valid_consent_with_nothing_approved_at_its_level_says_nothing_is_sent() {
        let read = found(consent(Level::Cluster, &["model_count"]));
        let policy = decide(false, Level::Feature, &read, &Earlier::default());
        assert_eq!(policy.source, Source::Consent);
        assert!(
            policy
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("nothing is sent")),
            "{policy:?}"
        );
        let off = decide(
            false,
            Level::Feature,
            &found(consent(Level::Off, &[])),
            &Earlier::default(),
        );
        assert_eq!((off.level, off.source), (Level::Off, Source::Consent));
    }

    #[test]
    fn an_invalid_consent_shares_nothing_and_names_the_problem() {
        let read = found(ConsentFound::Invalid {
            reason: "unknown key \"Level\"".into(),
            version: "4".into(),
        });
        let policy = decide(false, Level::Feature, &read, &Earlier::default());
        assert_eq!(
            (policy.level, policy.source),
            (Level::Off, Source::InvalidConsent)
        );
        assert!(
            policy
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("\"Level\""))
        );
        assert_eq!(policy.consent_version.as_deref(), Some("4"));
    }

    #[test]
    fn an_outage_before_any_read_leaves_the_environment_in_charge_saying_why() {
        for (read, word) in [(down(), "cannot reach"), (forbidden(), "forbidden")] {
            let policy = decide(false, Level::Resource, &read, &Earlier::default());
            assert_eq!(
                (policy.level, policy.source),
                (Level::Resource, Source::Environment)
            );
            assert_eq!(policy.consent_state, "unreadable");
            assert!(
                policy.reason.as_deref().is_some_and(|r| r.contains(word)),
                "{policy:?}"
            );
        }
    }

    #[test]
    fn an_outage_after_a_read_keeps_the_last_consent_read_with_a_warning() {
        let last = consent(Level::Cluster, &["cluster_id"]);
        for read in [down(), forbidden()] {
            let policy = decide(false, Level::Feature, &read, &Earlier::after(&last));
            assert_eq!(
                (policy.level, policy.source),
                (Level::Cluster, Source::Consent)
            );
            assert!(policy.allows("cluster_id", Level::Cluster));
            assert!(!policy.allows("node_count", Level::Cluster));
            assert!(
                policy
                    .warning
                    .as_deref()
                    .is_some_and(|w| w.contains("last consent read stands"))
            );
        }
        // An invalid consent read last stands too: still nothing is sent.
        let invalid = ConsentFound::Invalid {
            reason: "bad".into(),
            version: "2".into(),
        };
        let policy = decide(false, Level::Feature, &down(), &Earlier::after(&invalid));
        assert_eq!(policy.level, Level::Off);
        // An empty one read last: the environment, as it was.
        let empty = ConsentFound::Empty {
            version: "2".into(),
        };
        let policy = decide(false, Level::Feature, &down(), &Earlier::after(&empty));
        assert_eq!(
            (policy.level, policy.source),
            (Level::Feature, Source::Environment)
        );
    }

    #[test]
    fn at_most_never_widens_and_covers_follows_a_lowered_consent() {
        let consent_policy = decide(
            false,
            Level::Feature,
            &found(consent(Level::Resource, &["a", "b"])),
            &Earlier::default(),
        );
        assert_eq!(
            consent_policy.at_most(Level::Feature).level,
            Level::Resource
        );
        assert_eq!(consent_policy.at_most(Level::Cluster).level, Level::Cluster);
        let fields = ["a".to_string(), "b".to_string()];
        assert!(consent_policy.covers(Level::Resource, &fields));
        assert!(
            !consent_policy
                .at_most(Level::Cluster)
                .covers(Level::Resource, &fields)
        );
        assert!(!consent_policy.covers(Level::Resource, &["c".to_string()]));
        assert!(
            !consent_policy
                .at_most(Level::Off)
                .covers(Level::Cluster, &fields)
        );
    }
}
