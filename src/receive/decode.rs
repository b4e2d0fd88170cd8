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

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Map, Value};

use crate::metrics::{METRICS, ValueType};

/// Why a request was refused; the text names the field that is missing or wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// An event that passed validation, with what the store needs pulled out of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEvent {
    pub insert_id: String,
    pub distinct_id: String,
    /// Unix seconds; a fractional time (the Python SDK sends one) is cut to its integer part.
    pub time: i64,
    /// The numeric usage metrics it carries (bools as 0/1), by property name.
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

/// Reads the raw query string and body of a `/track` request.
pub fn read_track(query: Option<&str>, body: &[u8]) -> TrackRequest {
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
        (None, None, true) => parse_json(body).and_then(validate_all),
        (Some(data), None, false) | (None, Some(data), _) => {
            decode_data(data).and_then(validate_all)
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
fn validate_all(value: Value) -> Result<Vec<ValidEvent>, Invalid> {
    match value {
        Value::Object(event) => Ok(vec![validate(event, "")?]),
        Value::Array(items) if items.is_empty() => {
            Err(Invalid("the array of events is empty".into()))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let path = format!("events[{index}].");
                match item {
                    Value::Object(event) => validate(event, &path),
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
fn validate(mut event: Map<String, Value>, path: &str) -> Result<ValidEvent, Invalid> {
    non_empty_string(event.get("event"), path, "event")?;
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
    let insert_id = non_empty_string(properties.get("$insert_id"), &props, "$insert_id")?;
    let time = unix_seconds(properties.get("time"), &props)?;
    properties.insert("time".into(), time.into());

    let metrics = numeric_metrics(properties);
    Ok(ValidEvent {
        insert_id,
        distinct_id,
        time,
        metrics,
        json: Value::Object(event).to_string(),
    })
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

/// The usage metrics from the one metrics table that can be graphed: integers, floats and bools
/// (as 0/1). A property of another JSON type is left out rather than refused: the receiver
/// records what it is sent, and only the gauges need numbers.
fn numeric_metrics(properties: &Map<String, Value>) -> Map<String, Value> {
    METRICS
        .iter()
        .filter(|def| {
            matches!(
                def.value_type,
                ValueType::Integer | ValueType::Float | ValueType::Bool
            )
        })
        .filter_map(|def| {
            let value = match properties.get(def.name)? {
                Value::Number(number) => Value::Number(number.clone()),
                Value::Bool(flag) => Value::from(u8::from(*flag)),
                _ => return None,
            };
            Some((def.name.to_string(), value))
        })
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
        let request = read_track(query, body);
        request
            .events
            .unwrap_or_else(|e| panic!("rejected {query:?} / {body:?}: {e}"))
    }

    fn rejected(query: Option<&str>, body: &[u8]) -> String {
        match read_track(query, body).events {
            Ok(events) => panic!("accepted {events:?}"),
            Err(Invalid(reason)) => reason,
        }
    }

    /// Percent-encodes like a form encoder (Python's `quote_plus`).
    fn form_encode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
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
        assert!(read_track(Some(&format!("data={data}&verbose=1")), b"").verbose);
        assert!(read_track(None, format!("data={data}&verbose=1&ip=0").as_bytes()).verbose);
        assert!(read_track(Some("verbose=1"), event("v").to_string().as_bytes()).verbose);
        assert!(!read_track(Some(&format!("data={data}")), b"").verbose);
        assert!(
            read_track(Some("verbose=1"), b"").verbose,
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
}
