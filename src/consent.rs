//! Consent that lives in the cluster: the ConfigMap people write to approve what the
//! in-cluster reporter shares, read strictly (`policy::decide` turns it into what is sent), and
//! the reporter's typed status. Pure: no I/O here (`cluster` does the reads and writes).
//!
//! A consent is read strictly: empty data leaves `METRICS_LEVEL` in charge (the manifests ship
//! it empty, the drop-in behaviour); any other shape that is not exactly `level` with the known
//! keys — an unknown key, a key in the wrong case, an invalid level, a field name this binary
//! does not know — is invalid, and nothing is sent (fail closed).

pub mod cluster;
pub mod status;

pub use status::{ReporterStatus, reporter_line};

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::Value as Json;

use crate::metrics::{Level, METRICS};

/// The consent ConfigMap's default name.
pub const DEFAULT_CONSENT_CONFIGMAP: &str = "hodometer-consent";
/// The status ConfigMap the daemon writes (created empty by the manifests).
pub const STATUS_CONFIGMAP: &str = "hodometer-status";

pub const KEY_LEVEL: &str = "level";
pub const KEY_FIELDS: &str = "fields";
pub const KEY_APPROVED_BY: &str = "approvedBy";
pub const KEY_APPROVED_AT: &str = "approvedAt";
pub const KEY_NOTE: &str = "note";

/// A ConfigMap name: a DNS subdomain (lower-case letters, digits, `-` and `.`, at most 253).
pub fn parse_configmap_name(text: &str) -> Result<String, String> {
    crate::validate::parse_object_name(text, "ConfigMap")
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
    /// Empty data (as the manifests ship it): `METRICS_LEVEL` rules.
    Unset,
    Given(Consent),
    /// Any other shape: the offending keys and values, all of them.
    Invalid(String),
}

/// The keys a consent may hold, spelled exactly so.
const KEYS: [&str; 5] = [
    KEY_LEVEL,
    KEY_FIELDS,
    KEY_APPROVED_BY,
    KEY_APPROVED_AT,
    KEY_NOTE,
];

/// Reads a consent ConfigMap's `data`, strictly: see the module's rule.
pub fn parse(data: &BTreeMap<String, String>) -> ConsentReading {
    if data.is_empty() {
        return ConsentReading::Unset;
    }
    let mut problems = Vec::new();
    for key in data.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        match KEYS.iter().find(|known| known.eq_ignore_ascii_case(key)) {
            Some(known) => problems.push(format!(
                "key {key:?} is in the wrong case: keys are case-sensitive, the key is {known:?}"
            )),
            None => problems.push(format!(
                "unknown key {key:?}: a consent holds only {}",
                KEYS.join(", ")
            )),
        }
    }
    let level = match data.get(KEY_LEVEL) {
        None => {
            problems.push(format!(
                "no {KEY_LEVEL:?} key: a consent names the level it approves"
            ));
            None
        }
        Some(text) => {
            let level = Level::parse(text);
            if level.is_none() {
                problems.push(format!(
                    "level {text:?} is not one of off, cluster, resource, feature"
                ));
            }
            level
        }
    };
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

/// Whether this binary knows the field `name`: a metric, or `ext.KEY` with a valid extension key.
pub fn known_field(name: &str) -> bool {
    METRICS.iter().any(|m| m.name == name)
        || name
            .strip_prefix("ext.")
            .is_some_and(|key| crate::extensions::parse_key(key).is_ok())
}

/// Field names separated by newlines and/or commas (people edit the list by hand); each one a
/// field this binary knows (see [`known_field`]). Every unknown name is reported.
pub fn parse_fields(text: &str) -> Result<BTreeSet<String>, String> {
    let mut fields = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        if known_field(name) {
            fields.insert(name.to_string());
        } else {
            unknown.push(format!("{name:?}"));
        }
    }
    if unknown.is_empty() {
        Ok(fields)
    } else {
        Err(format!(
            "fields names what this hodometer does not know: {} (a metric name, or ext.KEY for an extension)",
            unknown.join(", ")
        ))
    }
}

/// The metric names at or below `level`, sorted: what approving `level` approves.
pub fn metric_fields_at(level: Level) -> BTreeSet<String> {
    METRICS
        .iter()
        .filter(|def| level.shares(def.level))
        .map(|def| def.name.to_string())
        .collect()
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

    fn invalid(reading: ConsentReading) -> String {
        match reading {
            ConsentReading::Invalid(reason) => reason,
            other => panic!("expected an invalid consent, got {other:?}"),
        }
    }

    #[test]
    fn only_empty_data_leaves_the_environment_in_charge() {
        assert_eq!(parse(&data(&[])), ConsentReading::Unset);
        let reason = invalid(parse(&data(&[("fields", "cluster_id"), ("note", "x")])));
        assert!(reason.contains("no \"level\" key"), "{reason}");
    }

    #[test]
    fn fields_are_read_across_newlines_and_commas() {
        let consent = given(parse(&data(&[
            ("level", "Resource"),
            (
                "fields",
                "node_count,\n cluster_id , \n\nmodel_count,ext.team\n",
            ),
            ("approvedBy", "alice"),
            ("approvedAt", "2026-11-30T10:00:00Z"),
            ("note", "  reviewed  "),
        ])));
        assert_eq!(consent.level, Level::Resource);
        let names: Vec<&str> = consent.fields.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            ["cluster_id", "ext.team", "model_count", "node_count"]
        );
        assert_eq!(consent.approved_by.as_deref(), Some("alice"));
        assert_eq!(
            consent.approved_at,
            humantime::parse_rfc3339("2026-11-30T10:00:00Z").ok()
        );
        assert_eq!(consent.note.as_deref(), Some("reviewed"));
    }

    #[test]
    fn every_other_shape_is_invalid_and_names_the_offence() {
        for (bad, why) in [
            (data(&[("level", "loud")]), "\"loud\""),
            (
                data(&[("Level", "off"), ("note", "withdrawn")]),
                "\"Level\" is in the wrong case",
            ),
            (data(&[("level", "off"), ("Level", "off")]), "wrong case"),
            (
                data(&[("level", "cluster"), ("levels", "x")]),
                "unknown key \"levels\"",
            ),
            (data(&[("note", "only a note")]), "no \"level\" key"),
            (
                data(&[("level", "cluster"), ("fields", "cluster_id\nclusterid")]),
                "\"clusterid\"",
            ),
            (
                data(&[("level", "cluster"), ("fields", "ext.Team")]),
                "\"ext.Team\"",
            ),
            (
                data(&[("level", "cluster"), ("fields", "not ok")]),
                "\"not ok\"",
            ),
            (
                data(&[("level", "cluster"), ("approvedAt", "yesterday")]),
                "approvedAt",
            ),
        ] {
            let reason = invalid(parse(&bad));
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
        // Every problem at once.
        let reason = invalid(parse(&data(&[("Level", "x"), ("fields", "nope")])));
        assert!(
            reason.contains("\"Level\"")
                && reason.contains("\"nope\"")
                && reason.contains("no \"level\""),
            "{reason}"
        );
    }

    #[test]
    fn known_fields_are_the_metrics_and_valid_extension_keys() {
        assert!(known_field("cluster_id") && known_field("gpu_enabled_count"));
        assert!(known_field("ext.team") && known_field("ext.cost-centre.eu"));
        assert!(
            !known_field("ext.") && !known_field("ext.Team") && !known_field("ext.model_count")
        );
        assert!(!known_field("distinct_id") && !known_field("token"));
        let error = parse_fields("cluster_id,made_up").expect_err("unknown");
        assert!(error.contains("\"made_up\""), "{error}");
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
            fields: ["node_count".to_string(), "cluster_id".to_string()]
                .into_iter()
                .collect(),
            approved_by: Some("alice \"admin\"".into()),
            approved_at: humantime::parse_rfc3339("2026-11-30T10:00:00Z").ok(),
            note: Some("line one: #1".into()),
        };
        let data = consent_data(&consent);
        assert_eq!(data["fields"], "cluster_id\nnode_count");
        let yaml = manifest_yaml("hodometer-consent", "seldon-mesh", &data);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
        assert_eq!(parsed["kind"], "ConfigMap");
        assert_eq!(parsed["metadata"]["name"], "hodometer-consent");
        let back: BTreeMap<String, String> =
            serde_json::from_value(parsed["data"].clone()).expect("string data");
        assert_eq!(back, data);
        assert_eq!(given(parse(&back)), consent);
    }
}
