//! Snapshot + level → the event that is published (a Mixpanel `track` event). The preview,
//! `collect` and the publishers all take their bytes from [`Event::json`], so what is shown is
//! what is sent.

use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::metrics::{Level, MetricId, Reading, Snapshot, Value};
use crate::policy::Policy;

pub const EVENT_NAME: &str = "collect metrics";

/// The Mixpanel project token the original Hodometer publishes with.
pub const DEFAULT_TOKEN: &str = "e943e8a2ebd1352338ecac1f9fde8c7c";

/// One event, frozen: its bytes never change, so every retry carries the same `$insert_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub level: Level,
    pub insert_id: Uuid,
    /// Names of the properties it carries beyond the envelope (metrics and `ext.` extensions),
    /// in order.
    pub fields: Vec<String>,
    /// The event JSON, pure ASCII (see [`ascii_json`]).
    pub json: String,
}

/// Builds the event for `snapshot` under `policy`: exactly the known fields the policy allows,
/// and nothing that identifies the cluster unless `cluster_id` is allowed — `distinct_id` is the
/// cluster id then, else the event's own `$insert_id` (a fresh random UUID per event, tied to
/// no cluster; Mixpanel and both receivers need a non-empty `distinct_id`). `None` when the
/// policy allows no field at all: nothing is sent.
///
/// `time` is the snapshot's collection time, so the same inputs always give the same bytes.
pub fn build_event(
    snapshot: &Snapshot,
    policy: &Policy,
    token: &str,
    insert_id: Uuid,
) -> Option<Event> {
    let level = policy.level;
    // In the snapshot's row order (by level, table order within), as every view shows them.
    let values: Vec<(String, Value)> = snapshot
        .rows(level)
        .into_iter()
        .filter(|row| policy.allows(&row.name, row.level))
        .filter_map(|row| match row.reading {
            Reading::Known(value) => Some((row.name, value)),
            Reading::Unknown(_) => None,
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    let cluster_id = values
        .iter()
        .find(|(name, _)| name == MetricId::ClusterId.name())
        .and_then(|(_, value)| match value {
            Value::Text(id) => Some(id.clone()),
            _ => None,
        });
    let distinct_id = cluster_id.unwrap_or_else(|| insert_id.to_string());
    let time = crate::clock::unix_seconds(snapshot.collected_at);

    let mut properties = Map::new();
    properties.insert("token".into(), token.into());
    properties.insert("distinct_id".into(), distinct_id.into());
    properties.insert("time".into(), time.into());
    properties.insert("ip".into(), "0".into());
    properties.insert("$insert_id".into(), insert_id.to_string().into());
    let mut fields = Vec::new();
    for (name, value) in values {
        properties.insert(name.clone(), value.to_json());
        fields.push(name);
    }
    let mut event = Map::new();
    event.insert("event".into(), EVENT_NAME.into());
    event.insert("properties".into(), Json::Object(properties));

    Some(Event {
        level,
        insert_id,
        fields,
        json: ascii_json(&Json::Object(event).to_string()),
    })
}

/// Rewrites compact JSON so that it is pure ASCII with `>`, `?`, `~` and DEL `\u`-escaped.
///
/// Those are exactly the bytes whose position can put `+` or `/` into standard base64, so the
/// event's base64 reads the same under the standard and the URL-safe alphabet, and survives a
/// `+`-to-space form decoder. Outside strings JSON never contains these characters, so escaping
/// them wherever they occur is safe; the result is still valid JSON with the same meaning.
pub fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '>' | '?' | '~' | '\u{7f}' => push_escape(&mut out, c as u16),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_escape(&mut out, *unit);
                }
            }
        }
    }
    out
}

fn push_escape(out: &mut String, unit: u16) {
    out.push_str(&format!("\\u{unit:04x}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{METRICS, MetricId};

    fn snapshot_with_everything_known() -> Snapshot {
        let mut s = Snapshot::unknown("unused");
        for m in METRICS {
            let value = match m.value_type {
                crate::metrics::ValueType::Uuid => {
                    Value::Text("6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11".into())
                }
                crate::metrics::ValueType::Text => Value::Text(format!("{}-value", m.name)),
                crate::metrics::ValueType::Bool => Value::Bool(true),
                crate::metrics::ValueType::Integer => Value::Integer(7),
                crate::metrics::ValueType::Float => Value::Float(1.5),
            };
            s.set(m.id, Reading::Known(value));
        }
        s
    }

    #[test]
    fn event_has_the_mixpanel_envelope() {
        let s = snapshot_with_everything_known();
        let id = Uuid::new_v4();
        let event =
            build_event(&s, &Policy::level(Level::Cluster), "tok", id).expect("cluster shares");
        let v: Json = serde_json::from_str(&event.json).expect("valid JSON");
        assert_eq!(v["event"], "collect metrics");
        let p = &v["properties"];
        assert_eq!(p["token"], "tok");
        assert_eq!(p["distinct_id"], "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11");
        assert_eq!(p["ip"], "0");
        assert_eq!(p["$insert_id"], id.to_string());
        assert!(p["time"].is_u64());
        assert_eq!(p["metrics_level"], "cluster");
        assert!(
            p.get("model_count").is_none(),
            "resource metric leaked at cluster level"
        );
    }

    #[test]
    fn unknown_metrics_are_omitted_not_zero() {
        let mut s = snapshot_with_everything_known();
        s.set(MetricId::ModelCount, Reading::unknown("stream cut"));
        let event =
            build_event(&s, &Policy::level(Level::Feature), "tok", Uuid::new_v4()).expect("event");
        let v: Json = serde_json::from_str(&event.json).expect("valid JSON");
        assert!(v["properties"].get("model_count").is_none());
        assert_eq!(v["properties"]["pipeline_count"], 7);
        assert!(!event.fields.iter().any(|f| f == "model_count"));
    }

    #[test]
    fn a_non_finite_float_is_omitted_never_null() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = snapshot_with_everything_known();
            s.set(MetricId::ServerMemoryGbSum, Reading::Known(Value::Float(x)));
            let event = build_event(&s, &Policy::level(Level::Feature), "tok", Uuid::new_v4())
                .expect("event");
            let v: Json = serde_json::from_str(&event.json).expect("valid JSON");
            assert!(
                v["properties"].get("server_memory_gb_sum").is_none(),
                "{x} sent as {}",
                event.json
            );
            assert!(!event.json.contains("null"), "{}", event.json);
            assert!(!event.fields.iter().any(|f| f == "server_memory_gb_sum"));
            assert_eq!(v["properties"]["server_cpu_cores_sum"], 1.5);
        }
    }

    #[test]
    fn extensions_are_flat_strings_gated_by_their_level_and_ascii_escaped() {
        let mut s = snapshot_with_everything_known();
        let ext = |key: &str, level, value: &str| crate::metrics::Extension {
            key: key.into(),
            level,
            value: value.into(),
            source: crate::metrics::ExtensionSource::Flag,
            suspicions: vec![],
        };
        s.extensions = vec![
            ext("team", Level::Cluster, "café > tea?"),
            ext("tier", Level::Feature, "gold"),
        ];
        let cluster =
            build_event(&s, &Policy::level(Level::Cluster), "tok", Uuid::new_v4()).expect("event");
        assert!(cluster.json.is_ascii(), "{}", cluster.json);
        let v: Json = serde_json::from_str(&cluster.json).expect("valid JSON");
        assert_eq!(v["properties"]["ext.team"], "café > tea?");
        assert!(v["properties"].get("ext.tier").is_none());
        assert!(cluster.fields.iter().any(|f| f == "ext.team"));
        let feature =
            build_event(&s, &Policy::level(Level::Feature), "tok", Uuid::new_v4()).expect("event");
        let v: Json = serde_json::from_str(&feature.json).expect("valid JSON");
        assert_eq!(v["properties"]["ext.tier"], "gold");
    }

    #[test]
    fn off_builds_no_event() {
        let s = snapshot_with_everything_known();
        assert!(build_event(&s, &Policy::level(Level::Off), "tok", Uuid::new_v4()).is_none());
    }

    fn under_consent(fields: &[&str]) -> Policy {
        let consent = crate::consent::Consent {
            level: Level::Feature,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            approved_by: None,
            approved_at: None,
            note: None,
        };
        let found = crate::policy::ConsentFound::Valid {
            consent,
            version: "1".into(),
        };
        crate::policy::decide(
            false,
            Level::Cluster,
            &crate::policy::ConsentRead::Found(found),
            &Default::default(),
        )
    }

    #[test]
    fn the_cluster_is_identified_only_when_cluster_id_is_approved() {
        let s = snapshot_with_everything_known();
        let cluster = "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11";
        let id = Uuid::new_v4();
        let withheld = build_event(
            &s,
            &under_consent(&["node_count", "model_count"]),
            "tok",
            id,
        )
        .expect("approved fields");
        assert!(!withheld.json.contains(cluster), "{}", withheld.json);
        let v: Json = serde_json::from_str(&withheld.json).expect("JSON");
        assert!(v["properties"].get("cluster_id").is_none());
        assert_eq!(
            v["properties"]["distinct_id"],
            id.to_string(),
            "tied to no cluster"
        );
        assert_eq!(withheld.fields, ["node_count", "model_count"]);
        let approved = build_event(&s, &under_consent(&["cluster_id", "node_count"]), "tok", id)
            .expect("approved fields");
        let v: Json = serde_json::from_str(&approved.json).expect("JSON");
        assert_eq!(v["properties"]["distinct_id"], cluster);
        assert_eq!(v["properties"]["cluster_id"], cluster);
        // Environment rules: the cluster id is shared at every level, as the original.
        let env = build_event(&s, &Policy::level(Level::Cluster), "tok", id).expect("event");
        assert!(env.json.contains(&format!("\"distinct_id\":\"{cluster}\"")));
    }

    #[test]
    fn nothing_approved_builds_no_event() {
        let s = snapshot_with_everything_known();
        assert!(build_event(&s, &under_consent(&[]), "tok", Uuid::new_v4()).is_none());
        // Approved, but above the consent's level is still withheld.
        let mut policy = under_consent(&["gpu_enabled_count"]);
        policy = policy.at_most(Level::Resource);
        assert!(build_event(&s, &policy, "tok", Uuid::new_v4()).is_none());
    }

    #[test]
    fn same_inputs_give_the_same_bytes() {
        let s = snapshot_with_everything_known();
        let id = Uuid::new_v4();
        let a = build_event(&s, &Policy::level(Level::Feature), "tok", id).expect("event");
        let b = build_event(&s, &Policy::level(Level::Feature), "tok", id).expect("event");
        assert_eq!(a.json, b.json);
    }

    #[test]
    fn ascii_json_escapes_base64_hazards_and_non_ascii() {
        let raw = serde_json::json!({"k": "a>b?c~d\u{7f}é😀"}).to_string();
        let escaped = ascii_json(&raw);
        assert!(escaped.is_ascii());
        for hazard in ['>', '?', '~', '\u{7f}'] {
            assert!(
                !escaped.contains(hazard),
                "{hazard:?} left unescaped in {escaped}"
            );
        }
        let back: Json = serde_json::from_str(&escaped).expect("still JSON");
        assert_eq!(back["k"], "a>b?c~d\u{7f}é😀");
    }
}
