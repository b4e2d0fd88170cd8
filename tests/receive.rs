//! `hodometer receive`, run as the real binary and spoken to over loopback TCP. Every request is
//! written by hand, byte for byte as the sender it imitates produces it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use common::{ReceiverProcess, hodometer};
use hodometer::metrics::{
    Level, METRICS, MetricId, Reading, Snapshot, Value as SnapshotValue, ValueType,
};
use hodometer::payload::build_event;
use hodometer::policy::Policy;
use hodometer::publish::{PublishPolicy, Publisher, parse_endpoint};
use hodometer::receive::{ReceiveConfig, Receiver, Record};

const CLUSTER: &str = "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11";
const TOKEN: &str = "e943e8a2ebd1352338ecac1f9fde8c7c";
const ONE_MIB: usize = 1024 * 1024;

/// What the original Go publisher marshals: map keys sorted, non-ASCII left as UTF-8. The
/// `ÿ`, `~` and `?` put both `+` and `/` into its standard base64, and it ends in `==`.
const GO_EVENT: &str = r#"{"event":"collect metrics","properties":{"$insert_id":"1700000000123456789","distinct_id":"6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11","ip":"0","kubernetes_version":"ÿÿÿ~~~???","model_count":12,"time":1700000000,"token":"e943e8a2ebd1352338ecac1f9fde8c7c"}}"#;

// ---------------------------------------------------------------------------------------------
// HTTP by hand

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` exactly as given and reads one response.
fn exchange(port: u16, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request).expect("send request");
    read_reply(&mut stream)
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(
            read_more(stream, &mut bytes),
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse::<usize>().expect("numeric Content-Length"));
    let mut body = bytes.split_off(head_end);
    let chunked = headers.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    match length {
        None if chunked => {
            while !body.ends_with(b"0\r\n\r\n") {
                assert!(read_more(stream, &mut body), "chunked body cut short");
            }
            body = dechunk(&body);
        }
        Some(length) => {
            while body.len() < length {
                assert!(read_more(stream, &mut body), "body cut short");
            }
            body.truncate(length);
        }
        None => while read_more(stream, &mut body) {},
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// The data of a complete chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&raw[..line_end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return data;
        }
        let start = line_end + 2;
        data.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// Reads what is available; false at the end of the stream.
fn read_more(stream: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            into.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        Err(e) => panic!("read: {e}"),
    }
}

fn get(port: u16, target: &str) -> Reply {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    exchange(port, request.as_bytes())
}

/// A JSON body as curl or a Mixpanel HTTP API client sends it.
fn post_json(port: u16, target: &str, body: &[u8]) -> Reply {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(port, &request)
}

/// The original Go publisher (dukex/mixpanel v1.0 over net/http): the URL is concatenated, so
/// the standard base64 goes out unescaped.
fn go_get(port: u16, target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Accept-Encoding: gzip\r\n\r\n"
    )
    .into_bytes()
}

/// The official Python SDK (mixpanel-python over requests): a form body.
fn python_post(port: u16, form: &str) -> Vec<u8> {
    format!(
        "POST /track HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: python-requests/2.32.3\r\n\
         Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\
         Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{form}",
        form.len()
    )
    .into_bytes()
}

/// Python's `urllib.parse.quote_plus`, which `requests` uses for form bodies.
fn quote_plus(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Percent-encodes every byte that is not unreserved, as a URL query builder does.
fn percent_encode(text: &str) -> String {
    quote_plus(text).replace('+', "%20")
}

// ---------------------------------------------------------------------------------------------
// Events and what the receiver answers

/// An event with hodometer's envelope; `extra` properties are merged in.
fn event(insert_id: &str, time: i64, extra: Value) -> Value {
    let mut event = json!({
        "event": "collect metrics",
        "properties": {
            "token": TOKEN, "distinct_id": CLUSTER, "time": time, "ip": "0",
            "$insert_id": insert_id, "cluster_id": CLUSTER,
        }
    });
    if let (Some(properties), Value::Object(extra)) = (event["properties"].as_object_mut(), extra) {
        properties.extend(extra);
    }
    event
}

fn assert_verbose_success(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body, json!({"status": 1, "error": null}));
    assert_eq!(body["status"], 1, "what a sender checks");
}

/// The reason a verbose rejection gives, after checking its form.
fn verbose_rejection(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], 0, "{body}");
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
        .to_string()
}

/// `/events` with `--record all`: every page, following each `Link: <…>; rel="next"`.
fn recorded(port: u16) -> Vec<Value> {
    recorded_pages(port, "/events").concat()
}

fn recorded_pages(port: u16, first: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut target = Some(first.to_string());
    while let Some(page) = target.take() {
        let reply = get(port, &page);
        assert_eq!(reply.status, 200, "{}", reply.text());
        match reply.json() {
            Value::Array(events) => pages.push(events),
            other => panic!("/events is not an array: {other}"),
        }
        target = reply.header("link").map(|link| {
            link.strip_prefix('<')
                .and_then(|rest| rest.split_once(">; rel=\"next\""))
                .map(|(next, _)| next.to_string())
                .unwrap_or_else(|| panic!("not a next link: {link}"))
        });
    }
    pages
}

fn recorded_ids(port: u16) -> Vec<String> {
    insert_ids(&recorded(port))
}

fn insert_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["properties"]["$insert_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Each sender's encoding

#[test]
fn original_go_publisher_get_with_unescaped_standard_base64() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let data = STANDARD.encode(GO_EVENT);
    assert!(
        data.contains('+') && data.contains('/') && data.ends_with("=="),
        "the test event must exercise the repair: {data}"
    );
    let request = go_get(receiver.port, &format!("/track?data={data}&verbose=1"));
    assert!(request.contains(&b'+'), "sent unescaped");
    assert_verbose_success(&exchange(receiver.port, &request));

    let stored = recorded(receiver.port);
    let sent: Value = serde_json::from_str(GO_EVENT).expect("JSON");
    assert_eq!(stored, [sent], "recorded exactly as sent");
}

#[test]
fn newer_go_client_posts_unescaped_base64_in_a_body_without_content_type() {
    // dukex/mixpanel after v1.0: POST ?verbose=1 with body `data=<standard base64>`, no
    // Content-Type, so form decoding turns each `+` into a space here too.
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let body = format!("data={}", STANDARD.encode(GO_EVENT));
    assert!(body.contains('+'));
    let request = format!(
        "POST /track?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nAccept-Encoding: gzip\r\n\r\n{body}",
        receiver.port,
        body.len()
    );
    assert_verbose_success(&exchange(receiver.port, request.as_bytes()));
    assert_eq!(
        recorded(receiver.port)[0]["properties"]["kubernetes_version"],
        "ÿÿÿ~~~???"
    );
}

#[test]
fn hodometer_style_percent_encoded_base64_get() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let json = hodometer::payload::ascii_json(
        &event(
            "hodometer-1",
            1700000000,
            json!({"kubernetes_version": "ÿ~?"}),
        )
        .to_string(),
    );
    let data = percent_encode(&STANDARD.encode(&json));
    let request = format!(
        "GET /track?data={data}&verbose=1&ip=0 HTTP/1.1\r\naccept: */*\r\nhost: 127.0.0.1:{}\r\n\r\n",
        receiver.port
    );
    assert_verbose_success(&exchange(receiver.port, request.as_bytes()));
    assert_eq!(
        recorded(receiver.port)[0]["properties"]["kubernetes_version"],
        "ÿ~?"
    );
}

#[test]
fn url_safe_unpadded_base64_without_verbose_gets_a_bare_1() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let data = URL_SAFE_NO_PAD.encode(GO_EVENT);
    assert!(data.contains('-') && data.contains('_') && !data.ends_with('='));
    let reply = get(receiver.port, &format!("/track?data={data}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "1");
    assert_eq!(recorded_ids(receiver.port), ["1700000000123456789"]);
}

/// An event as the Python SDK builds it: float time, 32-hex `$insert_id`, library properties.
fn python_event(n: usize) -> String {
    format!(
        r#"{{"event":"collect metrics","properties":{{"token":"{TOKEN}","distinct_id":"{CLUSTER}","cluster_id":"{CLUSTER}","time":1700000000.{n:03},"$insert_id":"{n:032x}","mp_lib":"python","$lib_version":"4.10.1","model_count":{n}}}}}"#
    )
}

#[test]
fn python_sdk_form_post_of_one_event() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let form = format!("data={}&verbose=1&ip=0", quote_plus(&python_event(7)));
    assert!(form.contains("collect+metrics"), "spaces as +: {form}");
    assert_verbose_success(&exchange(receiver.port, &python_post(receiver.port, &form)));
    let stored = recorded(receiver.port);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["properties"]["time"],
        json!(1700000000),
        "whole seconds"
    );
    assert_eq!(stored[0]["properties"]["mp_lib"], "python");
}

#[test]
fn python_sdk_form_post_of_a_batch_of_50() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    // The buffered consumer joins its messages into a JSON array.
    let batch = format!(
        "[{}]",
        (0..50).map(python_event).collect::<Vec<_>>().join(",")
    );
    let form = format!("data={}&verbose=1&ip=0", quote_plus(&batch));
    assert_verbose_success(&exchange(receiver.port, &python_post(receiver.port, &form)));
    let ids = recorded_ids(receiver.port);
    let expected: Vec<String> = (0..50).map(|n| format!("{n:032x}")).collect();
    assert_eq!(ids, expected, "all 50, in order");
}

#[test]
fn plain_json_body_with_one_event_and_with_an_array() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let one = event("json-1", 1700000000, json!({}));
    assert_verbose_success(&post_json(
        receiver.port,
        "/track?verbose=1",
        one.to_string().as_bytes(),
    ));
    let many = json!([
        event("json-2", 1700000001, json!({})),
        event("json-3", 1700000002, json!({}))
    ]);
    let reply = post_json(receiver.port, "/track", many.to_string().as_bytes());
    assert_eq!((reply.status, reply.text()), (200, "1".to_string()));
    assert_eq!(recorded_ids(receiver.port), ["json-1", "json-2", "json-3"]);
}

// ---------------------------------------------------------------------------------------------
// Validation, limits, garbage

#[test]
fn every_validation_error_names_its_field() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let good = event("v", 1700000000, json!({}));
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut without = |path: &[&str], expected: &'static str| {
        let mut e = good.clone();
        let (last, parents) = path.split_last().expect("path");
        let mut at = &mut e;
        for key in parents {
            at = &mut at[*key];
        }
        at.as_object_mut().expect("object").remove(*last);
        cases.push((e, expected));
    };
    without(&["event"], "event is missing");
    without(&["properties"], "properties is missing");
    without(&["properties", "token"], "properties.token is missing");
    without(
        &["properties", "distinct_id"],
        "properties.distinct_id is missing",
    );
    without(&["properties", "time"], "properties.time is missing");
    without(
        &["properties", "$insert_id"],
        "properties.$insert_id is missing",
    );
    for (field, value, expected) in [
        ("event", json!(""), "event must not be empty"),
        ("token", json!(""), "properties.token must not be empty"),
        (
            "distinct_id",
            json!(""),
            "properties.distinct_id must not be empty",
        ),
        (
            "distinct_id",
            json!(42),
            "properties.distinct_id must be a string",
        ),
        (
            "$insert_id",
            json!(""),
            "properties.$insert_id must not be empty",
        ),
        (
            "time",
            json!("1700000000"),
            "properties.time must be a non-negative number",
        ),
        (
            "time",
            json!(-5),
            "properties.time must be a non-negative number",
        ),
    ] {
        let mut e = good.clone();
        if field == "event" {
            e[field] = value;
        } else {
            e["properties"][field] = value;
        }
        cases.push((e, expected));
    }
    let mut bad_batch = json!([good.clone(), good.clone(), good.clone()]);
    bad_batch[1]["properties"]["time"] = json!("soon");
    cases.push((bad_batch, "events[1].properties.time must be"));

    for (body, expected) in cases {
        let body = body.to_string();
        let reason = verbose_rejection(
            &post_json(receiver.port, "/track?verbose=1", body.as_bytes()),
            400,
        );
        assert!(reason.starts_with(expected), "{reason:?} for {body}");
        let plain = post_json(receiver.port, "/track", body.as_bytes());
        assert_eq!((plain.status, plain.text()), (400, "0".to_string()));
    }
    assert!(
        recorded(receiver.port).is_empty(),
        "a rejected batch records nothing"
    );
}

#[test]
fn float_time_from_the_python_sdk_is_valid() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let body = event("float", 0, json!({"time": 1700000000.123})).to_string();
    assert_verbose_success(&post_json(
        receiver.port,
        "/track?verbose=1",
        body.as_bytes(),
    ));
    assert_eq!(recorded(receiver.port)[0]["properties"]["time"], 1700000000);
}

#[test]
fn a_body_over_one_mib_is_refused_with_413_before_it_is_read() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let port = receiver.port;

    // Declared too large: refused from the headers alone, though no body byte was sent.
    let request = format!(
        "POST /track?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * ONE_MIB
    );
    let reason = verbose_rejection(&exchange(port, request.as_bytes()), 413);
    assert!(reason.contains("larger than 1048576 bytes"), "{reason}");

    // Streamed without a length: refused as soon as the bytes pass the limit. The last chunk
    // is left open, so the receiver has read everything sent when it answers.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST /track HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..ONE_MIB / chunk.len() {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("chunk size");
        stream.write_all(&chunk).expect("chunk");
        stream.write_all(b"\r\n").expect("chunk end");
    }
    stream.write_all(b"1\r\n ").expect("one byte too many");
    let reply = read_reply(&mut stream);
    assert_eq!((reply.status, reply.text()), (413, "0".to_string()));

    // Exactly the limit is fine (a batch padded with whitespace is still JSON).
    let body = event("at-limit", 1700000000, json!({})).to_string();
    let mut padded = body.into_bytes();
    padded.resize(ONE_MIB, b' ');
    assert_verbose_success(&post_json(port, "/track?verbose=1", &padded));

    let metrics = get(port, "/metrics").text();
    assert!(
        metrics.contains("hodometer_receiver_requests_rejected_total{reason=\"too_large\"} 2\n"),
        "{metrics}"
    );
}

#[test]
fn garbage_gets_400_and_never_stops_the_receiver() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let port = receiver.port;
    let mut rng = fastrand::Rng::with_seed(5);
    for size in [1, 7, 100, 4096, 65536] {
        let junk: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
        for content_type in [
            "application/json",
            "application/x-www-form-urlencoded",
            "application/octet-stream",
        ] {
            let mut request = format!(
                "POST /track?verbose=1 HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {size}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes();
            request.extend_from_slice(&junk);
            verbose_rejection(&exchange(port, &request), 400);
        }
    }
    for (target, expected) in [
        (
            "/track?data=%%%%&verbose=1",
            "data is neither JSON nor base64",
        ),
        (
            "/track?data=!!!!&verbose=1",
            "data is neither JSON nor base64",
        ),
        ("/track?verbose=1", "no events"),
        (
            "/track?data=NDI&verbose=1",
            "expected an event (a JSON object)",
        ),
        ("/track?data=%7B%22event%22&verbose=1", "not valid JSON"),
        (
            "/track?data=%5B%5D&verbose=1",
            "the array of events is empty",
        ),
        (
            "/track?data=%5B%22x%22%5D&verbose=1",
            "events[0] must be an event",
        ),
    ] {
        let reason = verbose_rejection(&get(port, target), 400);
        assert!(reason.starts_with(expected), "{target}: {reason}");
    }
    // Not HTTP at all.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let junk: Vec<u8> = (0..512).map(|_| rng.u8(..)).collect();
    stream.write_all(&junk).expect("send junk");
    let mut answer = Vec::new();
    while read_more(&mut stream, &mut answer) {}
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    assert_eq!(get(port, "/healthz").status, 200, "still serving");
    assert!(recorded(port).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Recording

#[test]
fn a_duplicate_is_accepted_but_recorded_once() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let port = receiver.port;
    let retry = event("retried", 1700000000, json!({})).to_string();
    for _ in 0..3 {
        assert_verbose_success(&post_json(port, "/track?verbose=1", retry.as_bytes()));
    }
    // The same event in another encoding is still the same event.
    let data = STANDARD.encode(&retry);
    assert_verbose_success(&exchange(
        port,
        &go_get(port, &format!("/track?data={data}&verbose=1")),
    ));
    assert_eq!(recorded_ids(port), ["retried"]);
    let samples = prometheus_samples(&get(port, "/metrics").text());
    assert_eq!(
        sample(&samples, "hodometer_receiver_events_received_total", &[]),
        4.0
    );
    assert_eq!(
        sample(&samples, "hodometer_receiver_events_duplicate_total", &[]),
        3.0
    );
}

#[test]
fn a_store_keeps_events_and_dedup_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let store = store.to_str().expect("utf-8 path");

    let first = ReceiverProcess::start(&["--record", "all", "--store", store]);
    for id in ["p1", "p2"] {
        let body = event(id, 1700000000, json!({"model_count": 3})).to_string();
        assert_verbose_success(&post_json(first.port, "/track?verbose=1", body.as_bytes()));
    }
    let status = first.terminate();
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");

    let second = ReceiverProcess::start(&["--record", "all", "--store", store]);
    assert_eq!(recorded_ids(second.port), ["p1", "p2"]);
    let again = event("p2", 1700000000, json!({})).to_string();
    assert_verbose_success(&post_json(
        second.port,
        "/track?verbose=1",
        again.as_bytes(),
    ));
    assert_eq!(
        recorded_ids(second.port),
        ["p1", "p2"],
        "still deduplicated"
    );
    let samples = prometheus_samples(&get(second.port, "/metrics").text());
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_metric",
            &[("cluster_id", CLUSTER), ("metric", "model_count")]
        ),
        3.0,
        "gauges come back from the store"
    );
    assert_eq!(
        sample(&samples, "hodometer_receiver_store_syncs_total", &[]),
        1.0,
        "the one request since the restart was answered after one disk sync"
    );
    assert_eq!(
        sample(&samples, "hodometer_receiver_store_commits_total", &[]),
        1.0,
        "and one commit"
    );
    for timed in [
        "hodometer_receiver_store_sync_seconds_total",
        "hodometer_receiver_store_commit_seconds_total",
    ] {
        let seconds = sample(&samples, timed, &[]);
        assert!(seconds > 0.0 && seconds < 60.0, "{timed} {seconds}");
    }
    drop(second);

    // The same file in summary mode reads the same counts.
    let summary = ReceiverProcess::start(&["--store", store]);
    let counts = get(summary.port, "/events").json();
    assert_eq!(counts["events"], 2);
}

#[test]
fn sigterm_stops_the_receiver_even_with_a_client_stalled_mid_request() {
    let receiver = ReceiverProcess::start(&[]);
    let mut stalled = TcpStream::connect(("127.0.0.1", receiver.port)).expect("connect");
    stalled
        .write_all(b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .expect("send a partial request");
    // Connections are accepted in order: once a later one is answered, the stalled one is open.
    assert_eq!(get(receiver.port, "/healthz").status, 200);
    let status = receiver.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn summary_mode_keeps_counts_and_latest_metrics_not_events() {
    let receiver = ReceiverProcess::start(&[]);
    let port = receiver.port;
    for (id, time, models) in [
        ("s1", 1700000100, 5),
        ("s2", 1700000300, 9),
        ("s3", 1700000200, 7),
    ] {
        let body = event(id, time, json!({"model_count": models})).to_string();
        assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    }
    let other = json!({
        "event": "collect metrics",
        "properties": {"token": TOKEN, "distinct_id": "other", "cluster_id": "other", "time": 5, "$insert_id": "o1"}
    });
    assert_verbose_success(&post_json(
        port,
        "/track?verbose=1",
        other.to_string().as_bytes(),
    ));

    let summary = get(port, "/events").json();
    assert_eq!(
        summary,
        json!({
            "events": 4,
            "clusters_tracked": 2,
            "clusters": [
                {"cluster_id": CLUSTER, "events": 3, "first_time": 1700000100,
                 "last_time": 1700000300, "metrics": {"model_count": 9}},
                {"cluster_id": "other", "events": 1, "first_time": 5, "last_time": 5,
                 "metrics": {}},
            ]
        }),
        "metrics from the latest event time, not the last to arrive"
    );
}

#[test]
fn record_none_validates_and_answers_but_keeps_nothing() {
    let receiver = ReceiverProcess::start(&["--record", "none"]);
    let port = receiver.port;
    let body = event("n1", 1700000000, json!({"model_count": 1})).to_string();
    assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    verbose_rejection(&post_json(port, "/track?verbose=1", b"{}"), 400);
    assert_eq!(get(port, "/events").status, 404);
    let samples = prometheus_samples(&get(port, "/metrics").text());
    assert_eq!(received_and_invalid(&samples), (1.0, 1.0));
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "hodometer_receiver_metric")
    );
}

#[test]
fn concurrent_senders_are_all_recorded() {
    let receiver = ReceiverProcess::start(&[]);
    let port = receiver.port;
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            std::thread::spawn(move || {
                for n in 0..25 {
                    let body = event(&format!("c{sender}-{n}"), 1700000000 + n, json!({}));
                    let reply = post_json(port, "/track?verbose=1", body.to_string().as_bytes());
                    assert_verbose_success(&reply);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender thread");
    }
    assert_eq!(get(port, "/events").json()["events"], 200);
}

// ---------------------------------------------------------------------------------------------
// /metrics

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text format: every sample line is `name{labels} value`
/// with a float value and correctly escaped labels, and follows a `# TYPE` for its name; a
/// metric's lines form one group.
fn prometheus_samples(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "must end with a line feed");
    let mut typed = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_string()), "second TYPE for {name}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line);
        assert!(typed.contains(&sample.name), "no # TYPE before {line}");
        if sample.name != current {
            assert!(!finished.contains(&sample.name), "{} is split", sample.name);
            finished.insert(std::mem::replace(&mut current, sample.name.clone()));
        }
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad name in {line:?}"
    );
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        loop {
            let start = chars.clone().next().map(|(i, _)| i).expect("label");
            let (eq, _) = chars.find(|(_, c)| *c == '=').expect("label=");
            let label = &inner[start..eq];
            assert!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {label:?} in {line:?}"
            );
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            labels.insert(label.to_string(), value);
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    rest = &inner[i + 1..];
                    break;
                }
                other => panic!("expected , or }} after a label, got {other:?} in {line:?}"),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("value is not a float in {line:?}")),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {samples:?}"))
        .value
}

/// The events-received counter and the count of requests rejected as invalid.
fn received_and_invalid(samples: &[Sample]) -> (f64, f64) {
    (
        sample(samples, "hodometer_receiver_events_received_total", &[]),
        sample(
            samples,
            "hodometer_receiver_requests_rejected_total",
            &[("reason", "invalid")],
        ),
    )
}

#[test]
fn metrics_are_prometheus_text_with_a_gauge_per_numeric_metric() {
    let receiver = ReceiverProcess::start(&[]);
    let port = receiver.port;
    // Every metric of the table, with a value of its type.
    let mut all = serde_json::Map::new();
    for def in METRICS {
        let value = match def.value_type {
            ValueType::Integer => json!(def.name.len()),
            ValueType::Float => json!(def.name.len() as f64 + 0.5),
            ValueType::Bool => json!(true),
            ValueType::Uuid | ValueType::Text => json!("text"),
        };
        all.insert(def.name.to_string(), value);
    }
    let awkward = "quote\" backslash\\ newline\n end";
    let mut body = event("m1", 1700000000, Value::Object(all));
    body["properties"]["distinct_id"] = json!(awkward);
    body["properties"]["cluster_id"] = json!(awkward);
    assert_verbose_success(&post_json(
        port,
        "/track?verbose=1",
        body.to_string().as_bytes(),
    ));
    verbose_rejection(&post_json(port, "/track?verbose=1", b"[1]"), 400);

    let reply = get(port, "/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    let samples = prometheus_samples(&reply.text());
    assert_eq!(received_and_invalid(&samples), (1.0, 1.0));

    let numeric: BTreeSet<&str> = METRICS
        .iter()
        .filter(|d| {
            matches!(
                d.value_type,
                ValueType::Integer | ValueType::Float | ValueType::Bool
            )
        })
        .map(|d| d.name)
        .collect();
    let gauges: BTreeMap<&str, f64> = samples
        .iter()
        .filter(|s| s.name == "hodometer_receiver_metric")
        .map(|s| {
            assert_eq!(
                s.labels["cluster_id"], awkward,
                "label escaped and read back"
            );
            (s.labels["metric"].as_str(), s.value)
        })
        .collect();
    assert_eq!(gauges.keys().copied().collect::<BTreeSet<_>>(), numeric);
    assert_eq!(gauges["model_count"], "model_count".len() as f64);
    assert_eq!(
        gauges["server_memory_gb_sum"],
        "server_memory_gb_sum".len() as f64 + 0.5
    );
    assert_eq!(gauges["is_kubernetes"], 1.0);
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_cluster_last_event_timestamp_seconds",
            &[("cluster_id", awkward)]
        ),
        1700000000.0
    );
}

// ---------------------------------------------------------------------------------------------
// hodometer's own publisher, end to end

fn published_event() -> hodometer::payload::Event {
    let mut snapshot = Snapshot::unknown("not collected in this test");
    snapshot.set(
        MetricId::ClusterId,
        Reading::Known(SnapshotValue::Text(CLUSTER.into())),
    );
    snapshot.set(
        MetricId::ModelCount,
        Reading::Known(SnapshotValue::Integer(24)),
    );
    // Characters that must survive JSON escaping, base64 and percent-encoding.
    snapshot.set(
        MetricId::CollectorVersion,
        Reading::Known(SnapshotValue::Text("1.0 ~ é > ? + /".into())),
    );
    build_event(
        &snapshot,
        &Policy::level(Level::Resource),
        TOKEN,
        uuid::Uuid::new_v4(),
    )
    .expect("shared")
}

fn loopback_publisher() -> Publisher {
    Publisher::new(PublishPolicy {
        max_attempts: 1,
        env_proxy: false,
        ..PublishPolicy::default()
    })
    .expect("publisher")
}

#[tokio::test]
async fn hodometer_publisher_delivers_to_the_receiver_binary() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let endpoint = parse_endpoint(&format!("http://127.0.0.1:{}", receiver.port)).expect("url");
    let event = published_event();
    let outcomes = loopback_publisher()
        .publish(&event, std::slice::from_ref(&endpoint))
        .await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);

    let port = receiver.port;
    let stored = tokio::task::spawn_blocking(move || recorded(port))
        .await
        .expect("read /events");
    let sent: Value = serde_json::from_str(&event.json).expect("JSON");
    assert_eq!(stored, [sent], "recorded exactly as published");
}

#[tokio::test]
async fn the_receiver_runs_in_process_and_stops_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::bind(ReceiveConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        record: Record::Summary,
        store: Some(dir.path().join("events.db")),
        limits: Default::default(),
    })
    .await
    .expect("bind");
    let addr = receiver.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(receiver.serve(async {
        let _ = stopped.await;
    }));

    let endpoint = parse_endpoint(&format!("http://{addr}")).expect("url");
    let outcomes = loopback_publisher()
        .publish(&published_event(), &[endpoint])
        .await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let summary = tokio::task::spawn_blocking(move || get(addr.port(), "/events").json())
        .await
        .expect("read /events");
    assert_eq!(
        summary["clusters"][0]["metrics"],
        json!({"collector_version": "1.0 ~ é > ? + /", "metrics_level": "resource", "model_count": 24})
    );

    stop.send(()).expect("still serving");
    serving.await.expect("join").expect("served without error");
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn invalid_configuration_exits_2_naming_every_bad_flag() {
    let output = hodometer(&[
        "receive",
        "--listen",
        "localhost",
        "--record",
        "everything",
        "--store",
        "/no/such/directory/events.db",
    ])
    .output()
    .expect("run receive");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "nothing listens");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "--listen",
        "\"localhost\"",
        "--record",
        "\"everything\"",
        "--store",
        "/no/such/directory",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from {stderr}");
    }
}

/// Runs the receiver on a store it is expected to refuse, to its end.
fn receive_with_store(path: &std::path::Path) -> std::process::Output {
    let store = path.to_str().expect("utf-8");
    hodometer(&["receive", "--listen", "127.0.0.1:0", "--store", store])
        .output()
        .expect("run receive")
}

#[test]
fn a_file_that_is_not_a_store_stops_the_receiver_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-sqlite.db");
    std::fs::write(&path, vec![b'#'; 8192]).expect("write");
    let output = receive_with_store(&path);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing listens");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-sqlite.db"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Under abuse: deadlines, the connection cap, limits and caps

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Reads until the server closes the connection (or resets it); what it sent meanwhile.
/// Panics when it stays open for `patience`, the sign of a missing deadline.
fn read_until_closed(stream: &mut TcpStream, patience: std::time::Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(patience))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "still open after {patience:?} ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Sends `bytes` one at a time, `every` apart, until the server closes the connection or
/// they run out; true when the server closed it.
fn trickle(stream: &mut TcpStream, bytes: &[u8], every: std::time::Duration) -> bool {
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

#[test]
fn slow_headers_slow_bodies_and_idle_connections_are_closed_while_others_are_served() {
    let receiver = ReceiverProcess::start(&[
        "--header-timeout",
        "1s",
        "--body-timeout",
        "1s",
        "--write-timeout",
        "1s",
    ]);
    let port = receiver.port;
    let patience = std::time::Duration::from_secs(10);
    let every = std::time::Duration::from_millis(200);

    // A slowloris: headers one byte at a time, for far longer than the deadline.
    let slow_headers = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let endless =
            "POST /track HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_string() + &"a".repeat(200);
        assert!(
            trickle(&mut stream, endless.as_bytes(), every),
            "the server never closed a connection sending its headers for 40 s"
        );
    });
    // A body that never finishes: answered 408 and closed.
    let slow_body = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .write_all(
                b"POST /track?verbose=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
            )
            .expect("send headers");
        let answer =
            String::from_utf8_lossy(&read_until_closed(&mut stream, patience)).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    });
    // An idle kept-alive connection after one request.
    let idle = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 200);
        assert!(read_until_closed(&mut stream, patience).is_empty());
    });
    // Meanwhile a normal client is served.
    for n in 0..5 {
        let body = event(&format!("ok{n}"), unix_now(), json!({})).to_string();
        assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
        std::thread::sleep(every);
    }
    for client in [slow_headers, slow_body, idle] {
        client.join().expect("client thread");
    }
    let samples = prometheus_samples(&get(port, "/metrics").text());
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_requests_rejected_total",
            &[("reason", "body_timeout")]
        ),
        1.0
    );
}

#[test]
fn a_client_that_never_reads_its_answer_is_disconnected() {
    let receiver = ReceiverProcess::start(&["--record", "all", "--write-timeout", "1s"]);
    let port = receiver.port;
    post_big_events(port, 40);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A small receive buffer, so the answer (8 MB) backs up into the receiver at once.
    set_receive_buffer(&stream, 4096);
    stream
        .write_all(b"GET /events?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let open = |port| {
        let samples = prometheus_samples(&get(port, "/metrics").text());
        sample(&samples, "hodometer_receiver_connections_open", &[])
    };
    // The reader and this request (the last post's connection may take a moment to close).
    common::wait_until("the reader and this request open", common::PATIENCE, || {
        (open(port) == 2.0).then_some(())
    });
    // The deadline is 1 s without progress; give it ample time to act.
    let cut = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        open(port) == 1.0
    });
    assert!(
        cut,
        "the receiver still holds a connection that takes no data"
    );
    drop(stream);
}

#[test]
fn the_connection_cap_refuses_at_once_and_frees_slots_as_connections_close() {
    let receiver = ReceiverProcess::start(&["--max-connections", "3", "--header-timeout", "60s"]);
    let port = receiver.port;
    // The first three connections take every slot (accepted in order, nothing else is open).
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();

    let mut refused = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = read_until_closed(&mut refused, std::time::Duration::from_secs(10));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    for stream in &mut held {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let still_open = matches!(
            stream.read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        assert!(still_open, "a held connection was refused or closed");
    }

    drop(held.pop());
    // The server notices the close when it next polls that connection: retry until it has.
    let served = (0..100).any(|_| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = read_until_closed(&mut stream, std::time::Duration::from_secs(10));
        if answer.starts_with(b"HTTP/1.1 200") {
            let text = String::from_utf8_lossy(&answer);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let refusals = sample(
                &prometheus_samples(body),
                "hodometer_receiver_connections_refused_total",
                &[],
            );
            assert!(refusals >= 1.0, "{body}");
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(served, "a slot never came free after a connection closed");
}

#[test]
fn oversized_labels_and_future_times_are_refused_and_never_reach_metrics() {
    let receiver = ReceiverProcess::start(&[]);
    let port = receiver.port;
    let mut long_id = event("l1", unix_now(), json!({"model_count": 1}));
    long_id["properties"]["distinct_id"] = json!("x".repeat(1_000_000 / 2));
    let reason = verbose_rejection(
        &post_json(port, "/track?verbose=1", long_id.to_string().as_bytes()),
        400,
    );
    assert_eq!(
        reason,
        "properties.distinct_id is 500000 bytes long; at most 255 are accepted"
    );
    let future = event("f1", 4_102_444_800, json!({"model_count": 99}));
    let reason = verbose_rejection(
        &post_json(port, "/track?verbose=1", future.to_string().as_bytes()),
        400,
    );
    assert!(reason.contains("in the future"), "{reason}");
    let now = event("n1", unix_now(), json!({"model_count": 5}));
    assert_verbose_success(&post_json(
        port,
        "/track?verbose=1",
        now.to_string().as_bytes(),
    ));

    let text = get(port, "/metrics").text();
    assert!(!text.contains("xxxx"), "a refused label was exported");
    let samples = prometheus_samples(&text);
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_metric",
            &[("cluster_id", CLUSTER), ("metric", "model_count")]
        ),
        5.0,
        "the current event sets the gauge; the one dated 2100 did not pin it"
    );
}

#[test]
fn the_cluster_cap_holds_and_counts_what_it_drops() {
    let receiver = ReceiverProcess::start(&["--max-clusters", "3"]);
    let port = receiver.port;
    let batch: Vec<Value> = (0..5)
        .map(|n| {
            let mut e = event(&format!("k{n}"), unix_now(), json!({"model_count": n}));
            e["properties"]["distinct_id"] = json!(format!("cluster-{n}"));
            e["properties"]["cluster_id"] = json!(format!("cluster-{n}"));
            e
        })
        .collect();
    assert_verbose_success(&post_json(
        port,
        "/track?verbose=1",
        Value::Array(batch).to_string().as_bytes(),
    ));
    let samples = prometheus_samples(&get(port, "/metrics").text());
    let exported = samples
        .iter()
        .filter(|s| s.name == "hodometer_receiver_cluster_last_event_timestamp_seconds")
        .count();
    assert_eq!(exported, 3);
    assert_eq!(
        sample(&samples, "hodometer_receiver_clusters_tracked", &[]),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_cluster_events_dropped_total",
            &[]
        ),
        2.0
    );
}

/// Posts `count` events of about 200 kB each (200 properties of 1000 bytes), four a request.
fn post_big_events(port: u16, count: usize) {
    let mut padding = serde_json::Map::new();
    for p in 0..200 {
        padding.insert(format!("pad{p}"), json!("p".repeat(1000)));
    }
    let events: Vec<Value> = (0..count)
        .map(|n| {
            event(
                &format!("big{n}"),
                unix_now(),
                Value::Object(padding.clone()),
            )
        })
        .collect();
    for batch in events.chunks(4) {
        let body = Value::Array(batch.to_vec()).to_string();
        assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn events_pages_return_every_event_exactly_once() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let port = receiver.port;
    let ids: Vec<String> = (0..250).map(|n| format!("page-{n}")).collect();
    for chunk in ids.chunks(40) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|id| event(id, unix_now(), json!({})))
            .collect();
        assert_verbose_success(&post_json(
            port,
            "/track?verbose=1",
            Value::Array(batch).to_string().as_bytes(),
        ));
    }
    let pages = recorded_pages(port, "/events?limit=100");
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let got = insert_ids(&pages.concat());
    assert_eq!(got, ids, "each once, oldest first");
    assert_eq!(get(port, "/events?limit=0").status, 400);
    assert_eq!(get(port, "/events?after=x").status, 400);
}

#[test]
fn readers_that_never_read_do_not_grow_the_receiver() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let port = receiver.port;
    post_big_events(port, 60); // 12 MB of events
    let before = rss_kib(receiver.pid());
    let stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .write_all(b"GET /events?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            stream
        })
        .collect();
    // Let every answer back up as far as it goes: each reader has bytes waiting that it does
    // not read, and their number has stopped growing.
    let mut last = Vec::new();
    common::wait_until("every stalled answer to back up", common::PATIENCE, || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let waiting: Vec<libc::c_int> = stalled.iter().map(bytes_waiting).collect();
        let settled = waiting.iter().all(|&n| n > 0) && waiting == last;
        last = waiting;
        settled.then_some(())
    });
    let growth_mib = rss_kib(receiver.pid()).saturating_sub(before) / 1024;
    // A whole copy per reader would be 120 MB; streaming holds a few pieces each.
    assert!(
        growth_mib < 48,
        "RSS grew {growth_mib} MiB for 10 stalled readers"
    );
    assert_eq!(get(port, "/healthz").status, 200);
    drop(stalled);
}

/// The bytes received on `stream` that it has not read yet.
fn bytes_waiting(stream: &TcpStream) -> libc::c_int {
    use std::os::fd::AsRawFd;
    let mut waiting: libc::c_int = 0;
    // SAFETY: a valid socket, and FIONREAD writes one c_int.
    let done = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut waiting) };
    assert_eq!(done, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    waiting
}

fn set_receive_buffer(stream: &TcpStream, size: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0, "setsockopt SO_RCVBUF");
}

// ---------------------------------------------------------------------------------------------
// Durability and the store file

#[test]
fn no_acknowledged_event_is_lost_when_the_receiver_is_killed_mid_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let store = store.to_str().expect("utf-8 path").to_string();
    let receiver = ReceiverProcess::start(&["--record", "all", "--store", &store]);
    let port = receiver.port;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                for n in 0.. {
                    let id = format!("kill-{sender}-{n}");
                    let body = event(&id, unix_now(), json!({})).to_string();
                    let request = format!(
                        "POST /track?verbose=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        return;
                    };
                    if stream.write_all(request.as_bytes()).is_err() {
                        return;
                    }
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    // Acknowledged means a complete success answer reached the sender.
                    if answer.starts_with(b"HTTP/1.1 200")
                        && answer.ends_with(b"{\"status\":1,\"error\":null}")
                    {
                        acknowledged.lock().expect("lock").push(id);
                    } else {
                        return;
                    }
                }
            })
        })
        .collect();
    // Kill it mid-load, once a good number of events have been acknowledged.
    while acknowledged.lock().expect("lock").len() < 1500 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(receiver); // SIGKILL
    for sender in senders {
        sender.join().expect("sender thread");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let restarted = ReceiverProcess::start(&["--record", "all", "--store", &store]);
    let stored: BTreeSet<String> =
        insert_ids(&recorded_pages(restarted.port, "/events?limit=1000").concat())
            .into_iter()
            .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
    eprintln!(
        "{} acknowledged before SIGKILL, {} stored, none lost",
        acknowledged.len(),
        stored.len()
    );
}

/// A shared object that makes `fsync` and `fdatasync` of any `*-wal` file fail with EIO while
/// the file named by `HODOMETER_TEST_FAIL_SYNC` exists: a disk that starts failing and later
/// seems to recover, as a faulty block device does.
const FAILING_SYNC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fails(int fd) {
    const char *trigger = getenv("HODOMETER_TEST_FAIL_SYNC");
    if (trigger == NULL || access(trigger, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 4) return 0;
    path[n] = 0;
    return strcmp(path + n - 4, "-wal") == 0;
}

int fsync(int fd) {
    if (fails(fd)) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (fails(fd)) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// After a failed disk sync the kernel may have dropped the pages it could not write, and a
/// later sync can succeed without them; so the receiver must not acknowledge anything again
/// until a restart has SQLite recover what is really on disk. The fault is injected at the
/// system call (LD_PRELOAD), into the real binary.
#[test]
fn after_a_failed_disk_sync_nothing_is_acknowledged_until_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("failing_sync.c");
    let shim = dir.path().join("failing_sync.so");
    std::fs::write(&source, FAILING_SYNC).expect("write the shim's source");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run cc (the C compiler Rust links with)");
    assert!(built.success(), "cc could not build the shim: {built}");
    let trigger = dir.path().join("disk-fails");
    let store = dir.path().join("events.db");
    let store = store.to_str().expect("utf-8 path");
    let log = dir.path().join("stderr");

    let mut command = ReceiverProcess::command(&["--record", "all", "--store", store]);
    command
        .env("LD_PRELOAD", &shim)
        .env("HODOMETER_TEST_FAIL_SYNC", &trigger)
        .stderr(std::fs::File::create(&log).expect("stderr file"));
    let receiver = ReceiverProcess::spawn(command);
    let port = receiver.port;
    let send = |id: &str| {
        let body = event(id, 1700000000, json!({})).to_string();
        post_json(port, "/track?verbose=1", body.as_bytes())
    };

    assert_verbose_success(&send("before-the-fault"));
    std::fs::write(&trigger, b"").expect("make the disk fail");
    let reason = verbose_rejection(&send("during-the-fault"), 500);
    assert_eq!(reason, "the events could not be recorded; try again");
    std::fs::remove_file(&trigger).expect("let the disk recover");
    let reason = verbose_rejection(&send("after-the-fault"), 500);
    assert_eq!(
        reason, "the events could not be recorded; try again",
        "a sync that succeeds after a failed one proves nothing: still refused"
    );
    drop(receiver); // killed: its log is complete
    let logged = std::fs::read_to_string(&log).expect("read stderr");
    assert!(
        logged.contains("no event is acknowledged until the receiver restarts"),
        "the operator is told why: {logged}"
    );

    // A restart recovers the store; the senders' retries are acknowledged, each event once.
    let restarted = ReceiverProcess::start(&["--record", "all", "--store", store]);
    for id in ["during-the-fault", "after-the-fault"] {
        let body = event(id, 1700000000, json!({})).to_string();
        assert_verbose_success(&post_json(
            restarted.port,
            "/track?verbose=1",
            body.as_bytes(),
        ));
    }
    assert_eq!(
        recorded_ids(restarted.port),
        ["before-the-fault", "during-the-fault", "after-the-fault"]
    );
}

#[test]
fn the_store_and_its_companions_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let mut command = ReceiverProcess::command(&["--store", store.to_str().expect("utf-8")]);
    command.stderr(std::process::Stdio::null());
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let receiver = ReceiverProcess::spawn(command);
    let port = receiver.port;
    let body = event("perm1", unix_now(), json!({})).to_string();
    assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    for name in ["events.db", "events.db-wal", "events.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
    drop(receiver);
}

#[test]
fn a_symbolic_link_planted_by_another_user_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory another user may write in. (Not sticky: there the kernel's own
    // protected_regular check could refuse first and hide whether hodometer does.)
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    let store = dir.path().join("events.db");
    let planted = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(&victim)
        .arg(&store)
        .status()
        .expect("run setpriv");
    assert!(planted.success(), "nobody could not plant the link");

    let output = receive_with_store(&store);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    assert!(!dir.path().join("victim-wal").exists() && !dir.path().join("events.db-wal").exists());
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes manifests

fn receiver_manifest(name: &str) -> Value {
    let path = format!("{}/assets/k8s/receiver/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read the manifest");
    serde_saphyr::from_str(&text).expect("YAML")
}

#[test]
fn the_receiver_deployment_runs_as_written_and_its_service_scrapes_its_port() {
    let deployment = receiver_manifest("deployment.yaml");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    assert!(
        args.contains(&"--store=/data/events.db".to_string()),
        "{args:?}"
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"], "/data",
        "the store is on the volume"
    );
    // The same arguments, with a temporary store (and the loopback port the helper gives),
    // start the receiver.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("--store={}", dir.path().join("events.db").display());
    let local: Vec<&str> = args
        .iter()
        .skip(1)
        .filter(|arg| !arg.starts_with("--listen="))
        .map(|arg| match arg.split_once('=') {
            Some(("--store", _)) => store.as_str(),
            _ => arg.as_str(),
        })
        .collect();
    assert_eq!(args[0], "receive");
    let receiver = ReceiverProcess::start(&local);
    assert_eq!(get(receiver.port, "/healthz").status, 200);

    let service = receiver_manifest("service.yaml");
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let listen_port = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .and_then(|addr| addr.rsplit(':').next())
        .expect("--listen");
    assert_eq!(annotations["prometheus.io/port"], listen_port);
    assert_eq!(
        container["ports"][0]["containerPort"]
            .as_u64()
            .map(|p| p.to_string()),
        Some(listen_port.to_string())
    );
    let monitor = receiver_manifest("servicemonitor.yaml");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
}

/// The process's peak RSS (VmHWM) in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Starts the peak RSS over from the current RSS (`clear_refs` 5, Linux 4.0+).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
}

#[test]
fn scrapes_never_hold_the_extensions_of_every_cluster() {
    let receiver = ReceiverProcess::start(&["--record", "summary"]);
    let port = receiver.port;
    // 60 clusters, each with 240 extension strings of 1000 bytes: 14 MB of strings that
    // /metrics never prints.
    let mut extensions = serde_json::Map::new();
    for k in 0..240 {
        extensions.insert(format!("ext.key{k}"), json!("x".repeat(1000)));
    }
    extensions.insert("model_count".into(), json!(7));
    for c in 0..60 {
        let mut one = event(
            &format!("ext-{c}"),
            unix_now(),
            Value::Object(extensions.clone()),
        );
        one["properties"]["distinct_id"] = json!(format!("cluster-{c:02}"));
        one["properties"]["cluster_id"] = json!(format!("cluster-{c:02}"));
        assert_verbose_success(&post_json(
            port,
            "/track?verbose=1",
            one.to_string().as_bytes(),
        ));
    }
    reset_peak(receiver.pid());
    let before = peak_kib(receiver.pid());
    let scrapes: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || get(port, "/metrics").text()))
        .collect();
    for scrape in scrapes {
        let text = scrape.join().expect("scrape");
        let samples = prometheus_samples(&text);
        assert_eq!(
            sample(
                &samples,
                "hodometer_receiver_metric",
                &[("cluster_id", "cluster-59"), ("metric", "model_count")]
            ),
            7.0
        );
        assert!(!text.contains("xxxxxxxx"), "an extension value in /metrics");
    }
    let grown = peak_kib(receiver.pid()).saturating_sub(before);
    // Holding every cluster's extensions per scrape took hundreds of MiB.
    assert!(
        grown < 48 * 1024,
        "8 concurrent scrapes grew the receiver's peak RSS by {grown} KiB"
    );
    // The summary still shows them, streamed.
    let summary = get(port, "/events").json();
    assert_eq!(summary["clusters"].as_array().map(Vec::len), Some(60));
    assert_eq!(
        summary["clusters"][59]["extensions"]["key239"]
            .as_str()
            .map(str::len),
        Some(1000)
    );
}

#[test]
fn bodies_held_at_once_are_bounded_whatever_the_connections() {
    let receiver = ReceiverProcess::start(&["--record", "none"]);
    let port = receiver.port;
    let head = format!(
        "POST /track?verbose=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {ONE_MIB}\r\n\r\n"
    );
    // Each nearly complete body takes 1 MiB of the default 16 MiB budget until it completes.
    let partial = vec![b' '; ONE_MIB - 2];
    let idle = peak_kib(receiver.pid());
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(head.as_bytes()).expect("headers");
        stream.write_all(&partial).expect("body");
        held.push(stream);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut refused = 0;
    for _ in 0..48 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(head.as_bytes()).expect("headers");
        let _ = stream.write_all(&partial);
        let answer = read_until_closed(&mut stream, std::time::Duration::from_secs(10));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        refused += 1;
    }
    // 64 MiB of bodies were sent; the budget holds 16 of them (hyper's read buffers add a
    // little per connection).
    let grown = peak_kib(receiver.pid()).saturating_sub(idle);
    assert!(
        grown < 48 * 1024,
        "the bodies grew the peak RSS by {grown} KiB"
    );
    let samples = prometheus_samples(&get(port, "/metrics").text());
    assert_eq!(
        sample(
            &samples,
            "hodometer_receiver_requests_rejected_total",
            &[("reason", "body_memory")]
        ),
        f64::from(refused)
    );
    // The budget comes back when the held bodies go.
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let body = event("after", unix_now(), json!({})).to_string();
    assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
}

#[test]
fn the_stores_deduplication_window_is_bounded_by_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let store_arg = store.display().to_string();
    let receiver = ReceiverProcess::start(&["--store", &store_arg, "--dedup-ids", "3"]);
    let port = receiver.port;
    for n in 0..5 {
        let body = event(&format!("w{n}"), unix_now(), json!({})).to_string();
        assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    }
    // w4 is within the window, w0 was forgotten: recorded again.
    for id in ["w4", "w0"] {
        let body = event(id, unix_now(), json!({})).to_string();
        assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    }
    let samples = prometheus_samples(&get(port, "/metrics").text());
    assert_eq!(
        sample(&samples, "hodometer_receiver_events_duplicate_total", &[]),
        1.0
    );
    assert!(receiver.terminate().success());
    let ids: i64 = rusqlite::Connection::open(&store)
        .expect("open")
        .query_row("SELECT count(*) FROM seen", [], |row| row.get(0))
        .expect("count");
    assert_eq!(ids, 3, "the on-disk table holds the window only");
}

#[test]
fn a_stalled_events_reader_holds_no_snapshot_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let store_arg = store.display().to_string();
    let receiver = ReceiverProcess::start(&["--record", "all", "--store", &store_arg]);
    let port = receiver.port;
    post_big_events(port, 40);
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    set_receive_buffer(&stalled, 4096);
    stalled
        .write_all(b"GET /events?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut first = [0u8; 1024];
    let _ = stalled.read(&mut first).expect("the answer begins");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // New writes after the reader began, then a full checkpoint: it must not wait on the
    // reader (busy = 0), or the WAL could never be reset while the client stalls.
    let body = event("later", unix_now(), json!({})).to_string();
    assert_verbose_success(&post_json(port, "/track?verbose=1", body.as_bytes()));
    let connection = rusqlite::Connection::open(&store).expect("open");
    connection
        .busy_timeout(std::time::Duration::from_secs(3))
        .expect("busy timeout");
    let (busy, _, _): (i64, i64, i64) = connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .expect("checkpoint");
    assert_eq!(busy, 0, "the stalled reader still holds a read snapshot");
    drop(stalled);
}
