//! Turning a `/track` request into validated events, without any I/O, so every encoding real
//! senders use can be tested byte for byte.
//!
//! Where the events are:
//! - `data` in the query: the original Go publisher (standard base64, *not* percent-escaped, so a
//!   `+` arrives as a space after query decoding) and hodometer itself (percent-escaped base64);
//! - `data` in a form body: the official Python SDK (plain JSON, form-encoded) and JavaScript
//!   senders (base64);
//! - the body itself, when it is JSON: one event or an array of events.
//!
//! `data` holds plain JSON when it starts with `{` or `[`, else base64 in either alphabet,
//! padded or not.
//!
//! Every event is bounded ([`MAX_PROPERTIES`] and the other limits below, in line with
//! Mixpanel's), so nothing a sender writes can blow up the labels of `/metrics` or the store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Map, Value};

use crate::metrics::{EXTENSION_PREFIX, METRICS, ValueType};

/// Most properties one event may carry (Mixpanel's limit).
pub const MAX_PROPERTIES: usize = 255;
/// Longest event name and property name, in bytes (Mixpanel's limit).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest `distinct_id`, in bytes: it becomes the `cluster_id` label of `/metrics`.
pub const MAX_DISTINCT_ID_BYTES: usize = 255;
/// Longest `$insert_id`, in bytes; like Mixpanel, only ASCII letters, digits and `-`.
pub const MAX_INSERT_ID_BYTES: usize = 36;
/// Longest string value anywhere in the properties, in bytes. Mixpanel truncates at 255;
/// hodometer's own extension values may be 256 bytes, so the receiver allows more.
pub const MAX_STRING_BYTES: usize = 1024;
/// Most items in one array value, and most events in one request (Mixpanel's limits).
pub const MAX_ARRAY_ITEMS: usize = 255;
pub const MAX_EVENTS_PER_REQUEST: usize = 2000;
/// How far in the future an event's `time` may be: clock skew, not a date years ahead that
/// would pin its cluster's gauges for good (the gauges follow the latest `time`).
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 600;

/// Why a request was refused; the text names the field that is missing or wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// An event that passed validation, with what the store needs pulled out of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEvent {
    pub insert_id: String,
    pub distinct_id: String,
    /// The event names its cluster: it carries `cluster_id` (the same as `distinct_id`). Only
    /// such events count as a cluster's reports; an event whose sender withheld the cluster id
    /// has a one-off `distinct_id` that identifies no one.
    pub identifies_cluster: bool,
    /// Unix seconds; a fractional time (the Python SDK sends one) is cut to its integer part.
    pub time: i64,
    /// The numeric usage metrics it carries (bools as 0/1), its version strings
    /// ([`INFO_METRICS`]) and its extensions (`ext.<key>` strings), by property name.
    pub metrics: Map<String, Value>,
    /// The event as JSON, with `properties.time` as the integer above.
    pub json: String,
}

/// A `/track` request as far as it could be read.
#[derive(Debug, PartialEq)]
pub struct TrackRequest {
    /// The sender asked for a JSON answer (`verbose=1`).
    pub verbose: bool,
    pub events: Result<Vec<ValidEvent>, Invalid>,
}

/// Reads the raw query string and body of a `/track` request; `now` (Unix seconds) bounds
/// how far in the future an event may be dated.
pub fn read_track(query: Option<&str>, body: &[u8], now: i64) -> TrackRequest {
    let query_params = form_params(query.unwrap_or("").as_bytes());
    let body_is_json = starts_like_json(body);
    let body_params = if body_is_json {
        Vec::new()
    } else {
        form_params(body)
    };
    let verbose = asks_verbose(&query_params) || asks_verbose(&body_params);

    let query_data = param(&query_params, "data");
    let body_data = param(&body_params, "data");
    let events = match (query_data, body_data, body_is_json) {
        (Some(_), Some(_), _) | (Some(_), None, true) => Err(Invalid(
            "events given both in the query and in the body; send them in one place".into(),
        )),
        (None, None, true) => parse_json(body).and_then(|value| validate_all(value, now)),
        (Some(data), None, false) | (None, Some(data), _) => {
            decode_data(data).and_then(|value| validate_all(value, now))
        }
        (None, None, false) if body.is_empty() => Err(Invalid(
            "no events: expected data=… in the query or the form body, or a JSON body".into(),
        )),
        (None, None, false) => Err(Invalid(
            "no events: the body is neither JSON nor a form with a data field".into(),
        )),
    };
    TrackRequest { verbose, events }
}

/// Whether the query alone asks for a JSON answer: all there is to go on when the body is
/// refused unread.
pub fn query_asks_verbose(query: Option<&str>) -> bool {
    asks_verbose(&form_params(query.unwrap_or("").as_bytes()))
}

fn asks_verbose(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(key, value)| key == "verbose" && matches!(value.as_str(), "1" | "true"))
}

fn form_params(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn starts_like_json(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// Decodes the value of a `data` parameter: plain JSON, or base64 of JSON.
fn decode_data(data: &str) -> Result<Value, Invalid> {
    if starts_like_json(data.as_bytes()) {
        return parse_json(data.as_bytes());
    }
    // Base64 never contains a space, so a space can only be a `+` that query or form decoding
    // turned into one (the original Go publisher does not escape its standard base64). Mapping
    // the URL-safe alphabet onto the standard one lets one decoder take either; line breaks
    // (some encoders wrap at 76 columns) and padding carry no data.
    let standard: String = data
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| match c {
            ' ' | '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let bytes = STANDARD_NO_PAD
        .decode(standard.trim_end_matches('='))
        .map_err(|e| {
            Invalid(format!(
                "data is neither JSON nor base64 (standard or URL-safe): {e}"
            ))
        })?;
    parse_json(&bytes)
        .map_err(|Invalid(reason)| Invalid(format!("data, decoded from base64: {reason}")))
}

fn parse_json(bytes: &[u8]) -> Result<Value, Invalid> {
    serde_json::from_slice(bytes).map_err(|e| Invalid(format!("not valid JSON: {e}")))
}

/// One event (an object) or a batch (an array of objects), each validated; the first invalid
/// event rejects the whole request, so a batch is never half recorded.
fn validate_all(value: Value, now: i64) -> Result<Vec<ValidEvent>, Invalid> {
    match value {
        Value::Object(event) => Ok(vec![validate(event, "", now)?]),
        Value::Array(items) if items.is_empty() => {
            Err(Invalid("the array of events is empty".into()))
        }
        Value::Array(items) if items.len() > MAX_EVENTS_PER_REQUEST => Err(Invalid(format!(
            "{} events in one request; at most {MAX_EVENTS_PER_REQUEST} are accepted",
            items.len()
        ))),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let path = format!("events[{index}].");
                match item {
                    Value::Object(event) => validate(event, &path, now),
                    other => Err(Invalid(format!(
                        "events[{index}] must be an event (a JSON object), got {}",
                        kind(&other)
                    ))),
                }
            })
            .collect(),
        other => Err(Invalid(format!(
            "expected an event (a JSON object) or an array of events, got {}",
            kind(&other)
        ))),
    }
}

/// Checks one event; `path` prefixes field names in errors (`events[3].` in a batch).
fn validate(mut event: Map<String, Value>, path: &str, now: i64) -> Result<ValidEvent, Invalid> {
    let name = non_empty_string(event.get("event"), path, "event")?;
    at_most(name.len(), MAX_NAME_BYTES, || format!("{path}event"))?;
    let properties = match event.get_mut("properties") {
        Some(Value::Object(properties)) => properties,
        Some(other) => {
            return Err(Invalid(format!(
                "{path}properties must be an object, got {}",
                kind(other)
            )));
        }
        None => return Err(Invalid(format!("{path}properties is missing"))),
    };
    let props = format!("{path}properties.");
    non_empty_string(properties.get("token"), &props, "token")?;
    let distinct_id = non_empty_string(properties.get("distinct_id"), &props, "distinct_id")?;
    at_most(distinct_id.len(), MAX_DISTINCT_ID_BYTES, || {
        format!("{props}distinct_id")
    })?;
    let insert_id = non_empty_string(properties.get("$insert_id"), &props, "$insert_id")?;
    check_insert_id(&insert_id, &props)?;
    check_bounds(properties, &props)?;
    let time = unix_seconds(properties.get("time"), &props)?;
    if time > now.saturating_add(MAX_FUTURE_SKEW_SECONDS) {
        return Err(Invalid(format!(
            "{props}time is {} s in the future; events may be dated at most \
             {MAX_FUTURE_SKEW_SECONDS} s ahead of the receiver's clock",
            time - now
        )));
    }
    properties.insert("time".into(), time.into());

    let identifies_cluster =
        properties.get("cluster_id").and_then(Value::as_str) == Some(distinct_id.as_str());
    let metrics = tracked_metrics(properties);
    Ok(ValidEvent {
        insert_id,
        identifies_cluster,
        distinct_id,
        time,
        metrics,
        json: Value::Object(event).to_string(),
    })
}

/// A length over `limit` refuses the event; `what` names the field.
fn at_most(length: usize, limit: usize, what: impl FnOnce() -> String) -> Result<(), Invalid> {
    if length > limit {
        return Err(Invalid(format!(
            "{} is {length} bytes long; at most {limit} are accepted",
            what()
        )));
    }
    Ok(())
}

fn check_insert_id(insert_id: &str, props: &str) -> Result<(), Invalid> {
    at_most(insert_id.len(), MAX_INSERT_ID_BYTES, || {
        format!("{props}$insert_id")
    })?;
    if !insert_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Invalid(format!(
            "{props}$insert_id may hold only ASCII letters, digits and -"
        )));
    }
    Ok(())
}

/// The property count, names and every string and array, however deeply nested.
fn check_bounds(properties: &Map<String, Value>, props: &str) -> Result<(), Invalid> {
    if properties.len() > MAX_PROPERTIES {
        return Err(Invalid(format!(
            "{} has {} properties; at most {MAX_PROPERTIES} are accepted",
            props.trim_end_matches('.'),
            properties.len()
        )));
    }
    for (name, value) in properties {
        // A name too long is not echoed back: it may be anything.
        at_most(name.len(), MAX_NAME_BYTES, || {
            format!("a property name in {props}")
        })?;
        check_value(value, &PropertyPath(props, name))?;
    }
    Ok(())
}

/// Where a value sits (`properties.` prefix and property name), spelled out only in an error:
/// accepted events, the common case, allocate nothing for it.
struct PropertyPath<'a>(&'a str, &'a str);

impl std::fmt::Display for PropertyPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

fn check_value(value: &Value, path: &PropertyPath<'_>) -> Result<(), Invalid> {
    match value {
        Value::String(text) => at_most(text.len(), MAX_STRING_BYTES, || path.to_string()),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_ITEMS {
                return Err(Invalid(format!(
                    "{path} has {} items; at most {MAX_ARRAY_ITEMS} are accepted",
                    items.len()
                )));
            }
            items.iter().try_for_each(|item| check_value(item, path))
        }
        Value::Object(fields) => fields.iter().try_for_each(|(name, item)| {
            at_most(name.len(), MAX_NAME_BYTES, || {
                format!("a property name in {path}")
            })?;
            check_value(item, path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn non_empty_string(value: Option<&Value>, path: &str, field: &str) -> Result<String, Invalid> {
    match value {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(Value::String(_)) => Err(Invalid(format!("{path}{field} must not be empty"))),
        Some(other) => Err(Invalid(format!(
            "{path}{field} must be a string, got {}",
            kind(other)
        ))),
        None => Err(Invalid(format!("{path}{field} is missing"))),
    }
}

fn unix_seconds(value: Option<&Value>, path: &str) -> Result<i64, Invalid> {
    let wrong = |what: &str| {
        Err(Invalid(format!(
            "{path}time must be a non-negative number of seconds since 1970, got {what}"
        )))
    };
    match value {
        None => Err(Invalid(format!("{path}time is missing"))),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_i64() {
                if seconds < 0 {
                    return wrong("a negative number");
                }
                return Ok(seconds);
            }
            match number.as_f64() {
                // The Python SDK sends float seconds; the integer part is the time.
                Some(seconds) if seconds >= 0.0 && seconds < i64::MAX as f64 => {
                    Ok(seconds.trunc() as i64)
                }
                Some(seconds) if seconds < 0.0 => wrong("a negative number"),
                _ => wrong("a number out of range"),
            }
        }
        Some(other) => wrong(kind(other)),
    }
}

/// String metrics kept per cluster as labels of one info gauge (the version spread of a
/// fleet); a value longer than [`MAX_INFO_BYTES`] is left out, so labels stay short.
pub const INFO_METRICS: [&str; 4] = [
    "collector_version",
    "seldon_core_version",
    "kubernetes_version",
    "metrics_level",
];
pub const MAX_INFO_BYTES: usize = 64;

/// The usage metrics from the one metrics table that can be graphed: integers, floats and bools
/// (as 0/1), plus the [`INFO_METRICS`] strings. A property of another JSON type is left out
/// rather than refused: the receiver records what it is sent, and only the gauges need these.
fn tracked_metrics(properties: &Map<String, Value>) -> Map<String, Value> {
    // Extensions (`ext.<key>`, operator-supplied strings) ride along so the summary can show each
    // cluster's latest ones; they never become labels (the gauges take numbers only).
    let extensions = properties
        .iter()
        .filter(|(name, value)| name.starts_with(EXTENSION_PREFIX) && value.is_string())
        .map(|(name, value)| (name.clone(), value.clone()));
    METRICS
        .iter()
        .filter_map(|def| {
            let numeric = matches!(
                def.value_type,
                ValueType::Integer | ValueType::Float | ValueType::Bool
            );
            let value = match (numeric, properties.get(def.name)?) {
                (true, Value::Number(number)) => Value::Number(number.clone()),
                (true, Value::Bool(flag)) => Value::from(u8::from(*flag)),
                (false, Value::String(text))
                    if INFO_METRICS.contains(&def.name) && text.len() <= MAX_INFO_BYTES =>
                {
                    Value::String(text.clone())
                }
                _ => return None,
            };
            Some((def.name.to_string(), value))
        })
        .chain(extensions)
        .collect()
}

/// A JSON value's type, for error messages (never the value: errors may be logged).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use serde_json::json;

    /// The receiver's clock in these tests: a little after the events' time.
    const NOW: i64 = 1_700_000_100;

    fn event(insert_id: &str) -> Value {
        json!({
            "event": "collect metrics",
            "properties": {
                "token": "tok",
                "distinct_id": "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11",
                "time": 1700000000,
                "ip": "0",
                "$insert_id": insert_id,
                "model_count": 12,
                "server_memory_gb_sum": 1.5,
                "is_kubernetes": true,
                "inference_server_name": "mlserver",
            }
        })
    }

    fn accepted(query: Option<&str>, body: &[u8]) -> Vec<ValidEvent> {
        let request = read_track(query, body, NOW);
        request
            .events
            .unwrap_or_else(|e| panic!("rejected {query:?} / {body:?}: {e}"))
    }

    fn rejected(query: Option<&str>, body: &[u8]) -> String {
        match read_track(query, body, NOW).events {
            Ok(events) => panic!("accepted {events:?}"),
            Err(Invalid(reason)) => reason,
        }
    }

    /// Percent-encodes like a form encoder (Python's `quote_plus`).
    fn form_encode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }

    #[test]
    fn an_event_names_its_cluster_only_with_a_matching_cluster_id() {
        let event = |props: Value| {
            let json = json!({"event": "collect metrics", "properties": props}).to_string();
            match read_track(None, json.as_bytes(), 2_000_000_000).events {
                Ok(mut events) => events.remove(0),
                Err(e) => panic!("{e}"),
            }
        };
        let base = |extra: &[(&str, &str)]| {
            let mut p = json!({"token": "t", "distinct_id": "d-1", "time": 1, "$insert_id": "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11"});
            for (k, v) in extra {
                p[*k] = json!(v);
            }
            p
        };
        assert!(event(base(&[("cluster_id", "d-1")])).identifies_cluster);
        assert!(!event(base(&[])).identifies_cluster);
        assert!(!event(base(&[("cluster_id", "other")])).identifies_cluster);
    }

    #[test]
    fn unescaped_standard_base64_survives_plus_turned_space() {
        // `~` and non-ASCII bytes at these offsets put `+` and `/` into the standard base64.
        let mut value = event("a");
        value["properties"]["note"] = json!("~~~ ÿÿÿ ???");
        let b64 = STANDARD.encode(value.to_string());
        assert!(b64.contains('+') && b64.contains('/'), "{b64}");
        let events = accepted(Some(&format!("data={b64}&verbose=1")), b"");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].insert_id, "a");
    }

    #[test]
    fn every_base64_form_and_plain_json_decode_to_the_same_event() {
        let text = event("same").to_string();
        let expected = accepted(Some(&format!("data={}", form_encode(&text))), b"");
        for data in [
            form_encode(&STANDARD.encode(&text)),
            STANDARD_NO_PAD.encode(&text),
            URL_SAFE_NO_PAD.encode(&text),
            base64::engine::general_purpose::URL_SAFE.encode(&text),
        ] {
            assert_eq!(accepted(Some(&format!("data={data}")), b""), expected);
            assert_eq!(accepted(None, format!("data={data}").as_bytes()), expected);
        }
        assert_eq!(accepted(None, text.as_bytes()), expected);
    }

    #[test]
    fn verbose_is_read_from_the_query_or_the_form_body() {
        let data = form_encode(&event("v").to_string());
        assert!(read_track(Some(&format!("data={data}&verbose=1")), b"", NOW).verbose);
        assert!(read_track(None, format!("data={data}&verbose=1&ip=0").as_bytes(), NOW).verbose);
        assert!(read_track(Some("verbose=1"), event("v").to_string().as_bytes(), NOW).verbose);
        assert!(!read_track(Some(&format!("data={data}")), b"", NOW).verbose);
        assert!(
            read_track(Some("verbose=1"), b"", NOW).verbose,
            "even when rejected"
        );
    }

    #[test]
    fn a_batch_is_accepted_whole_or_rejected_naming_the_event() {
        let batch = json!([event("1"), event("2"), event("3")]);
        assert_eq!(accepted(None, batch.to_string().as_bytes()).len(), 3);

        let mut bad = batch.clone();
        bad[2]["properties"]
            .as_object_mut()
            .expect("object")
            .remove("token");
        assert_eq!(
            rejected(None, bad.to_string().as_bytes()),
            "events[2].properties.token is missing"
        );
        assert_eq!(
            rejected(None, b"[]"),
            "the array of events is empty",
            "an empty batch"
        );
        assert_eq!(
            rejected(None, b"[1]"),
            "events[0] must be an event (a JSON object), got a number"
        );
    }

    #[test]
    fn each_field_is_named_when_missing_or_wrong() {
        let cases: &[(&str, Value, &str)] = &[
            ("event", Value::Null, "event must be a string, got null"),
            ("event", json!(""), "event must not be empty"),
            (
                "properties",
                json!([]),
                "properties must be an object, got an array",
            ),
            (
                "properties.token",
                json!(""),
                "properties.token must not be empty",
            ),
            (
                "properties.distinct_id",
                json!(7),
                "properties.distinct_id must be a string, got a number",
            ),
            (
                "properties.$insert_id",
                json!(""),
                "properties.$insert_id must not be empty",
            ),
            (
                "properties.time",
                json!("1700000000"),
                "properties.time must be a non-negative number of seconds since 1970, got a string",
            ),
            (
                "properties.time",
                json!(-1),
                "properties.time must be a non-negative number of seconds since 1970, got a negative number",
            ),
            (
                "properties.time",
                json!(-0.5),
                "properties.time must be a non-negative number of seconds since 1970, got a negative number",
            ),
        ];
        for (field, value, expected) in cases {
            let mut e = event("x");
            match field.split_once('.') {
                Some((_, name)) => e["properties"][name] = value.clone(),
                None => e[*field] = value.clone(),
            }
            assert_eq!(rejected(None, e.to_string().as_bytes()), *expected);
        }
        for field in ["token", "distinct_id", "time", "$insert_id"] {
            let mut e = event("x");
            e["properties"]
                .as_object_mut()
                .expect("object")
                .remove(field);
            assert_eq!(
                rejected(None, e.to_string().as_bytes()),
                format!("properties.{field} is missing")
            );
        }
        let mut e = event("x");
        e.as_object_mut().expect("object").remove("event");
        assert_eq!(rejected(None, e.to_string().as_bytes()), "event is missing");
    }

    #[test]
    fn float_time_is_valid_and_cut_to_whole_seconds() {
        let mut e = event("f");
        e["properties"]["time"] = json!(1700000000.987);
        let events = accepted(None, e.to_string().as_bytes());
        assert_eq!(events[0].time, 1700000000);
        let stored: Value = serde_json::from_str(&events[0].json).expect("json");
        assert_eq!(stored["properties"]["time"], json!(1700000000));
    }

    #[test]
    fn numeric_metrics_come_from_the_metrics_table() {
        let events = accepted(None, event("m").to_string().as_bytes());
        let metrics = &events[0].metrics;
        assert_eq!(metrics.get("model_count"), Some(&json!(12)));
        assert_eq!(metrics.get("server_memory_gb_sum"), Some(&json!(1.5)));
        assert_eq!(metrics.get("is_kubernetes"), Some(&json!(1)));
        assert_eq!(metrics.get("inference_server_name"), None, "text");
        assert_eq!(metrics.get("time"), None, "envelope, not a metric");
        assert_eq!(metrics.len(), 3);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(rejected(None, b"").starts_with("no events"));
        assert!(rejected(None, &[0xff, 0x00, 0x13, 0x80]).starts_with("no events"));
        assert!(rejected(Some("data=%%%"), b"").starts_with("data is neither JSON nor base64"));
        assert!(
            rejected(Some("data=bm90IGpzb24"), b"")
                .starts_with("data, decoded from base64: not valid JSON")
        );
        assert!(rejected(None, b"{\"event\":").starts_with("not valid JSON"));
        assert!(rejected(None, b"data=42").starts_with("data"));
        assert_eq!(
            rejected(
                None,
                format!("data={}", STANDARD.encode("\"text\"")).as_bytes()
            ),
            "expected an event (a JSON object) or an array of events, got a string"
        );
        let both = format!("data={}", form_encode(&event("b").to_string()));
        assert!(rejected(Some(&both), both.as_bytes()).starts_with("events given both"));
    }

    #[test]
    fn events_beyond_each_limit_are_refused_naming_the_limit() {
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(&str, Value, String)> = vec![
            (
                "distinct_id",
                json!(long(MAX_DISTINCT_ID_BYTES + 1)),
                format!(
                    "properties.distinct_id is 256 bytes long; at most {MAX_DISTINCT_ID_BYTES} are accepted"
                ),
            ),
            (
                "$insert_id",
                json!(long(MAX_INSERT_ID_BYTES + 1)),
                "properties.$insert_id is 37 bytes long; at most 36 are accepted".into(),
            ),
            (
                "$insert_id",
                json!("a b"),
                "properties.$insert_id may hold only ASCII letters, digits and -".into(),
            ),
            (
                "note",
                json!(long(MAX_STRING_BYTES + 1)),
                "properties.note is 1025 bytes long; at most 1024 are accepted".into(),
            ),
            (
                "list",
                json!(vec![0; MAX_ARRAY_ITEMS + 1]),
                "properties.list has 256 items; at most 255 are accepted".into(),
            ),
            (
                "nested",
                json!({"deep": [long(MAX_STRING_BYTES + 1)]}),
                "properties.nested is 1025 bytes long; at most 1024 are accepted".into(),
            ),
        ];
        for (field, value, expected) in cases {
            let mut e = event("x");
            e["properties"][field] = value;
            assert_eq!(
                rejected(None, e.to_string().as_bytes()),
                expected,
                "{field}"
            );
        }

        let mut e = event("x");
        e["event"] = json!(long(MAX_NAME_BYTES + 1));
        assert_eq!(
            rejected(None, e.to_string().as_bytes()),
            "event is 256 bytes long; at most 255 are accepted"
        );
        let mut e = event("x");
        for i in 0..MAX_PROPERTIES {
            e["properties"][format!("p{i}")] = json!(i);
        }
        assert!(
            rejected(None, e.to_string().as_bytes())
                .starts_with("properties has 264 properties; at most 255")
        );
        let batch = Value::Array(vec![event("b"); MAX_EVENTS_PER_REQUEST + 1]);
        assert_eq!(
            rejected(None, batch.to_string().as_bytes()),
            "2001 events in one request; at most 2000 are accepted"
        );
    }

    #[test]
    fn events_at_each_limit_are_accepted() {
        let mut e = event(&"a".repeat(MAX_INSERT_ID_BYTES));
        e["properties"]["distinct_id"] = json!("d".repeat(MAX_DISTINCT_ID_BYTES));
        e["properties"]["note"] = json!("n".repeat(MAX_STRING_BYTES));
        let properties = e["properties"].as_object().expect("object").len();
        for i in properties..MAX_PROPERTIES {
            e["properties"][format!("p{i}")] = json!(i);
        }
        assert_eq!(accepted(None, e.to_string().as_bytes()).len(), 1);
    }

    #[test]
    fn a_time_beyond_the_allowed_skew_is_refused_and_one_within_it_accepted() {
        let mut e = event("t");
        e["properties"]["time"] = json!(NOW + MAX_FUTURE_SKEW_SECONDS);
        assert_eq!(accepted(None, e.to_string().as_bytes()).len(), 1);
        e["properties"]["time"] = json!(NOW + MAX_FUTURE_SKEW_SECONDS + 1);
        assert_eq!(
            rejected(None, e.to_string().as_bytes()),
            "properties.time is 601 s in the future; events may be dated at most 600 s ahead of the receiver's clock"
        );
        e["properties"]["time"] = json!(4_102_444_800_i64); // 2100-01-01
        assert!(rejected(None, e.to_string().as_bytes()).contains("in the future"));
    }

    #[test]
    fn version_strings_are_kept_for_the_info_gauge_when_short() {
        let mut e = event("v");
        e["properties"]["collector_version"] = json!("0.1.0");
        e["properties"]["seldon_core_version"] = json!("v".repeat(MAX_INFO_BYTES + 1));
        let metrics = &accepted(None, e.to_string().as_bytes())[0].metrics;
        assert_eq!(metrics.get("collector_version"), Some(&json!("0.1.0")));
        assert_eq!(
            metrics.get("seldon_core_version"),
            None,
            "too long for a label"
        );
    }
}
