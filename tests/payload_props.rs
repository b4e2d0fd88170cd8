//! Properties of the level filter and the event encoding over arbitrary snapshots.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hodometer::metrics::{Level, METRICS, MetricId, Reading, Snapshot, Value, ValueType};
use hodometer::payload::build_event;
use hodometer::policy::Policy;
use proptest::prelude::*;
use uuid::Uuid;

/// A snapshot where each metric is independently known (with an arbitrary value of its type) or
/// unknown.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    let readings: Vec<BoxedStrategy<Reading>> = METRICS
        .iter()
        .map(|m| {
            let known: BoxedStrategy<Value> = match m.value_type {
                ValueType::Uuid => any::<u128>()
                    .prop_map(|n| Value::Text(Uuid::from_u128(n).to_string()))
                    .boxed(),
                ValueType::Text => any::<String>().prop_map(Value::Text).boxed(),
                ValueType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
                ValueType::Integer => any::<u64>().prop_map(Value::Integer).boxed(),
                ValueType::Float => (0.0f64..1e7).prop_map(Value::Float).boxed(),
            };
            prop_oneof![
                known.prop_map(Reading::Known),
                "[a-z ]{0,20}".prop_map(Reading::Unknown),
            ]
            .boxed()
        })
        .collect();
    (readings, 0u64..4_000_000_000).prop_map(|(readings, secs)| {
        let mut s = Snapshot::unknown("");
        for (m, r) in METRICS.iter().zip(readings) {
            s.set(m.id, r);
        }
        // The cluster id always comes from configuration.
        s.set(
            MetricId::ClusterId,
            Reading::Known(Value::Text("3c8f2a10-5b7e-4d21-9f06-8a4e2b1c7d90".into())),
        );
        s.collected_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        s
    })
}

fn level() -> impl Strategy<Value = Level> {
    prop::sample::select(Level::ALL.to_vec())
}

fn properties(json: &str) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).expect("event is JSON");
    v["properties"].as_object().expect("properties").clone()
}

proptest! {
    #[test]
    fn a_lower_level_payload_is_a_subset_of_a_higher_one(s in snapshot(), a in level(), b in level()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let id = Uuid::new_v4();
        let low_event = build_event(&s, &Policy::level(low), "tok", id);
        let high_event = build_event(&s, &Policy::level(high), "tok", id);
        prop_assert_eq!(low_event.is_none(), low == Level::Off);
        if let (Some(low_event), Some(high_event)) = (low_event, high_event) {
            let low_props = properties(&low_event.json);
            let high_props = properties(&high_event.json);
            for (key, value) in &low_props {
                // metrics_level names the level itself, so it differs by design.
                if key == "metrics_level" {
                    prop_assert_eq!(value.as_str(), Some(low.as_str()));
                    continue;
                }
                prop_assert_eq!(Some(value), high_props.get(key), "{} differs", key);
            }
        }
    }

    #[test]
    fn a_payload_never_holds_a_withheld_or_unknown_metric(s in snapshot(), l in level()) {
        let Some(event) = build_event(&s, &Policy::level(l), "tok", Uuid::new_v4()) else {
            prop_assert_eq!(l, Level::Off);
            return Ok(());
        };
        let props = properties(&event.json);
        for m in METRICS {
            let present = props.contains_key(m.name);
            let should = l.shares(m.level)
                && (m.id == MetricId::MetricsLevel || matches!(s.get(m.id), Reading::Known(_)));
            prop_assert_eq!(present, should, "{} at {}", m.name, l);
        }
    }

    #[test]
    fn the_event_base64_is_the_same_in_both_alphabets(s in snapshot()) {
        let event = build_event(&s, &Policy::level(Level::Feature), "tok", Uuid::new_v4()).expect("feature shares");
        prop_assert!(event.json.is_ascii());
        let encoded = STANDARD.encode(event.json.as_bytes());
        prop_assert!(!encoded.contains('+') && !encoded.contains('/'), "{}", encoded);
        prop_assert_eq!(URL_SAFE.decode(&encoded).expect("url-safe decodes"), event.json.as_bytes());
    }
}
