//! The publisher against loopback HTTP servers started by each test. Nothing here may reach beyond
//! loopback: the default public `PUBLISH_URL` is never used.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use hodometer::metrics::{Level, MetricId, Reading, Snapshot, Value};
use hodometer::payload::{Event, build_event};
use hodometer::policy::Policy;
use hodometer::publish::{
    Endpoint, EndpointOutcome, OutcomeKind, PublishError, PublishPolicy, Publisher, parse_endpoint,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

const CLUSTER_ID: &str = "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11";
const TOKEN: &str = "test-token";
const OK_VERBOSE: &str = r#"{"status":1,"error":null}"#;

/// A guard against hanging forever if a bound is broken; generous, so it never measures speed.
const LIVENESS: Duration = Duration::from_secs(60);

fn event() -> Event {
    let mut snapshot = Snapshot::unknown("not collected in this test");
    snapshot.set(
        MetricId::ClusterId,
        Reading::Known(Value::Text(CLUSTER_ID.into())),
    );
    // Characters that must arrive intact through JSON escaping, base64 and percent-encoding.
    snapshot.set(
        MetricId::CollectorVersion,
        Reading::Known(Value::Text("1.0 ~ é > ? + /".into())),
    );
    build_event(
        &snapshot,
        &Policy::level(Level::Cluster),
        TOKEN,
        Uuid::new_v4(),
    )
    .expect("cluster level shares")
}

/// Quick retries for tests; no proxy, so a developer's proxy variables cannot interfere.
fn fast_policy() -> PublishPolicy {
    PublishPolicy {
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_attempts: 5,
        deadline: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        env_proxy: false,
    }
}

fn publisher(policy: PublishPolicy) -> Publisher {
    Publisher::new(policy).expect("publisher")
}

fn endpoint(text: &str) -> Endpoint {
    parse_endpoint(text).expect("valid endpoint")
}

/// One request as a test server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: String,
    /// As sent: absolute-form (`http://host/track?…`) when it came through a proxy.
    uri: String,
    path: String,
    query: String,
    authorization: Option<String>,
}

/// A scripted reply; the last one in a script repeats.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

fn reply_with(status: u16, header: (&'static str, &'static str), body: &'static str) -> Reply {
    Reply {
        status,
        headers: vec![header],
        body,
    }
}

#[derive(Clone)]
struct ServerState {
    script: Arc<Vec<Reply>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A loopback HTTP receiver that answers every request from `script` and records what it saw.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = ServerState {
            script: Arc::new(script),
            seen: Arc::default(),
        };
        let seen = state.seen.clone();
        let app = axum::Router::new().fallback(answer).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn endpoint(&self) -> Endpoint {
        endpoint(&self.url("/"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

async fn answer(State(state): State<ServerState>, request: Request) -> Response<Body> {
    let uri = request.uri();
    let seen = Seen {
        at: Instant::now(),
        method: request.method().to_string(),
        uri: uri.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let reply = {
        let mut all = state.seen.lock().expect("seen");
        all.push(seen);
        let index = (all.len() - 1).min(state.script.len() - 1);
        state.script[index].clone()
    };
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).expect("response")
}

/// Strict percent-decoding: a literal `+` (which a form decoder would turn into a space) or a
/// malformed escape fails the test.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("escape");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => panic!("unescaped + in {text}"),
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The event JSON carried by a request's `data` parameter, after checking the query's shape.
fn sent_event(seen: &Seen) -> Vec<u8> {
    let params: Vec<&str> = seen.query.split('&').collect();
    assert_eq!(params.len(), 3, "query: {}", seen.query);
    assert_eq!(&params[1..], ["verbose=1", "ip=0"]);
    let data = params[0].strip_prefix("data=").expect("data first");
    assert!(
        data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'%'),
        "data is not percent-encoded: {data}"
    );
    STANDARD
        .decode(percent_decode(data))
        .expect("standard base64")
}

/// Publishes a fresh event with `policy` to a receiver answering from `script`; returns the
/// outcome and the requests the receiver saw.
async fn publish_to(policy: PublishPolicy, script: Vec<Reply>) -> (EndpointOutcome, Vec<Seen>) {
    let receiver = Receiver::start(script).await;
    let outcome = publisher(policy)
        .publish_one(&event(), &receiver.endpoint())
        .await;
    (outcome, receiver.seen())
}

#[tokio::test]
async fn the_request_is_get_track_with_the_event_as_percent_encoded_standard_base64() {
    let receiver = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    let event = event();
    let endpoints = [
        endpoint(&receiver.url("")),
        endpoint(&receiver.url("/prefix/")),
        endpoint(&receiver.url("/a/b")),
    ];
    let outcomes = publisher(fast_policy()).publish(&event, &endpoints).await;

    let indexes: Vec<usize> = outcomes.iter().map(|o| o.index).collect();
    assert_eq!(indexes, [0, 1, 2], "outcomes in endpoint order");
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(outcome.attempts, 1);
        assert_eq!(outcome.last_status, Some(200));
        assert_eq!(outcome.outcome_label(), "ok");
    }

    let seen = receiver.seen();
    let mut paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/a/b/track", "/prefix/track", "/track"]);
    for request in &seen {
        assert_eq!(request.method, "GET");
        let sent = sent_event(request);
        assert_eq!(
            sent,
            event.json.as_bytes(),
            "the bytes sent are the event's"
        );

        let sent: serde_json::Value = serde_json::from_slice(&sent).expect("JSON");
        assert_eq!(sent["event"], "collect metrics");
        let properties = &sent["properties"];
        assert_eq!(properties["token"], TOKEN);
        assert_eq!(properties["distinct_id"], CLUSTER_ID);
        assert!(
            properties["time"].is_u64(),
            "integer seconds: {}",
            properties["time"]
        );
        assert_eq!(properties["ip"], "0");
        assert_eq!(properties["collector_version"], "1.0 ~ é > ? + /");
        let insert_id = properties["$insert_id"].as_str().expect("$insert_id");
        assert!(
            !insert_id.is_empty()
                && insert_id.len() <= 36
                && insert_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "not a Mixpanel-valid $insert_id: {insert_id:?}"
        );
        assert_eq!(insert_id, event.insert_id.to_string());
    }
}

#[tokio::test]
async fn a_503_then_200_succeeds_on_the_second_attempt_with_the_same_bytes() {
    let script = vec![reply(503, "busy"), reply(200, OK_VERBOSE)];
    let (outcome, seen) = publish_to(fast_policy(), script).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.last_status, Some(200));
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].query, seen[1].query,
        "a retry resends the same event"
    );
}

#[tokio::test]
async fn a_429_retry_after_is_waited_out() {
    let too_many = reply_with(429, ("retry-after", "1"), "slow down");
    // The jittered backoff alone stays under 50 ms, so only Retry-After can explain the gap.
    let (outcome, seen) = publish_to(fast_policy(), vec![too_many, reply(200, OK_VERBOSE)]).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_stops_at_once() {
    let unavailable = reply_with(503, ("retry-after", "3600"), "maintenance");
    let (outcome, seen) =
        publish_to(fast_policy(), vec![unavailable, reply(200, OK_VERBOSE)]).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.kind(), OutcomeKind::Failed);
    match outcome.error() {
        Some(PublishError::RetryAfterBeyondDeadline {
            retry_after, last, ..
        }) => {
            assert_eq!(*retry_after, Duration::from_secs(3600));
            assert!(matches!(**last, PublishError::Http { status: 503, .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let (outcome, seen) = publish_to(
        fast_policy(),
        vec![reply(400, "missing data"), reply(200, OK_VERBOSE)],
    )
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.last_status, Some(400));
    assert_eq!(outcome.outcome_label(), "rejected");
    assert_eq!(
        outcome.error(),
        Some(&PublishError::Http {
            status: 400,
            excerpt: "missing data".into()
        })
    );
}

#[tokio::test]
async fn status_0_is_a_rejection_reported_with_its_error() {
    let (outcome, seen) = publish_to(
        fast_policy(),
        vec![
            reply(200, r#"{"status":0,"error":"bad token"}"#),
            reply(200, OK_VERBOSE),
        ],
    )
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.outcome_label(), "rejected");
    let error = outcome.error().expect("rejected").to_string();
    assert_eq!(error, "rejected by the receiver: bad token");
}

#[tokio::test]
async fn a_plain_1_is_success() {
    let (outcome, seen) = publish_to(fast_policy(), vec![reply(200, "1")]).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn a_persistent_500_gives_up_after_the_attempt_limit() {
    let policy = fast_policy();
    let (outcome, seen) = publish_to(policy.clone(), vec![reply(500, "oops")]).await;
    assert_eq!(seen.len(), policy.max_attempts as usize);
    assert_eq!(outcome.attempts, policy.max_attempts);
    assert_eq!(outcome.last_status, Some(500));
    assert_eq!(outcome.outcome_label(), "failed");
    let error = outcome.error().expect("failed");
    assert!(
        matches!(error, PublishError::AttemptsExhausted { attempts: 5, .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "gave up after 5 attempts; last error: HTTP 500: oops"
    );
}

#[tokio::test]
async fn a_refusing_endpoint_is_retried_then_reported() {
    // Bound, then released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let policy = PublishPolicy {
        max_attempts: 3,
        ..fast_policy()
    };
    let outcome = publisher(policy)
        .publish_one(&event(), &endpoint(&format!("http://127.0.0.1:{port}/")))
        .await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.last_status, None);
    assert_eq!(outcome.outcome_label(), "failed");
    match outcome.error() {
        Some(PublishError::AttemptsExhausted { attempts: 3, last }) => {
            assert!(matches!(**last, PublishError::Connect { .. }), "{last}");
        }
        other => panic!("{other:?}"),
    }
    let text = outcome.error().expect("failed").to_string();
    assert!(
        !text.contains("data="),
        "the request URL leaked into {text}"
    );
}

/// Accepts connections and holds them open without ever answering.
async fn hung_endpoint() -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    endpoint(&format!("http://{addr}/"))
}

#[tokio::test]
async fn a_hung_endpoint_is_bounded_by_the_deadline_and_never_delays_another() {
    let hung = hung_endpoint().await;
    let receiver = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    let policy = PublishPolicy {
        deadline: Duration::from_secs(3),
        // Far beyond the deadline: only the deadline can end the hung request.
        request_timeout: Duration::from_secs(3600),
        ..fast_policy()
    };
    let publisher = publisher(policy);
    let event = event();
    let endpoints = [hung, receiver.endpoint()];

    let outcomes: Vec<EndpointOutcome> = tokio::time::timeout(
        LIVENESS,
        publisher
            .publish_each(&event, &endpoints)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the hung endpoint is bounded by the deadline");

    let order: Vec<usize> = outcomes.iter().map(|o| o.index).collect();
    assert_eq!(
        order,
        [1, 0],
        "the healthy endpoint's outcome arrives first"
    );
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let hung = &outcomes[1];
    assert_eq!(hung.attempts, 1);
    assert_eq!(hung.last_status, None);
    assert_eq!(hung.outcome_label(), "failed");
    match hung.error() {
        Some(PublishError::DeadlineExceeded {
            deadline,
            attempts: 1,
            last,
        }) => {
            assert_eq!(*deadline, Duration::from_secs(3));
            assert!(matches!(**last, PublishError::TimedOut { .. }), "{last}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_publish_future_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (arrived_tx, arrived) = oneshot::channel();
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read request");
            assert!(n > 0, "closed before the request was complete");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = arrived_tx.send(());
        // Never answer; wait for the client to hang up (EOF, or a reset).
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(());
    });

    let publisher = publisher(PublishPolicy {
        deadline: Duration::from_secs(3600),
        request_timeout: Duration::from_secs(3600),
        ..fast_policy()
    });
    let event = event();
    let endpoints = [endpoint(&format!("http://{addr}/"))];
    let publish = publisher.publish(&event, &endpoints);
    tokio::select! {
        outcomes = publish => panic!("publish ended against a silent server: {outcomes:?}"),
        received = arrived => received.expect("the request reached the server"),
    }
    // `publish` was dropped when the select ended; the publisher itself is still alive, so
    // the connection was not closed merely by dropping the client's pool.
    tokio::time::timeout(LIVENESS, closed)
        .await
        .expect("the connection closes once the publish future is dropped")
        .expect("server task");
    drop(publisher);
}

#[tokio::test]
async fn credentials_in_the_url_become_basic_auth_and_stay_out_of_outcomes() {
    let receiver = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    let with_credentials = endpoint(&format!("http://user:s3cret@{}/", receiver.addr));
    let outcome = publisher(fast_policy())
        .publish_one(&event(), &with_credentials)
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        outcome.endpoint,
        format!("http://REDACTED@{}/", receiver.addr)
    );
    let seen = receiver.seen();
    let expected = format!("Basic {}", STANDARD.encode("user:s3cret"));
    assert_eq!(seen[0].authorization.as_deref(), Some(expected.as_str()));
}

/// Set in the child processes that tests start with a changed environment.
const DIRECT_URL: &str = "HODOMETER_TEST_DIRECT_URL";

/// Runs the ignored test `name` of this binary in a child process with `env` added (and every
/// other proxy variable removed), and fails unless it passed. Environment variables are
/// process-wide, so tests must not change them under each other.
async fn run_child(name: &str, env: &[(&str, &str)]) {
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child.args(["--exact", name, "--ignored", "--test-threads=1"]);
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        child.env_remove(variable);
    }
    child.envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .expect("join")
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
}

const PROXIED_HOST: &str = "proxied.hodometer.invalid";

/// The proxy variables are read from the process environment when a publisher is built.
#[tokio::test]
async fn proxy_variables_are_honoured() {
    let proxy = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    let direct = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    run_child(
        "proxy_child",
        &[
            ("HTTP_PROXY", &proxy.url("")),
            ("NO_PROXY", "127.0.0.1"),
            (DIRECT_URL, &direct.url("/direct/")),
        ],
    )
    .await;

    let through_proxy = proxy.seen();
    assert_eq!(through_proxy.len(), 1, "{through_proxy:?}");
    assert!(
        through_proxy[0]
            .uri
            .starts_with(&format!("http://{PROXIED_HOST}/track?data=")),
        "the proxy got {}",
        through_proxy[0].uri
    );
    // One request via NO_PROXY, one from the publisher built with `env_proxy: false`.
    let direct_paths: Vec<String> = direct.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(direct_paths, ["/direct/track", "/direct/track"]);
}

#[tokio::test]
#[ignore = "run by proxy_variables_are_honoured in a child process with proxy variables set"]
async fn proxy_child() {
    let direct = std::env::var(DIRECT_URL).expect("run by proxy_variables_are_honoured");
    let event = event();
    let with_env = publisher(PublishPolicy {
        env_proxy: true,
        ..fast_policy()
    });
    let endpoints = [
        // Resolvable only by the proxy: `.invalid` never resolves.
        endpoint(&format!("http://{PROXIED_HOST}/")),
        // Listed in NO_PROXY.
        endpoint(&direct),
    ];
    for outcome in with_env.publish(&event, &endpoints).await {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    // `localhost` is not in NO_PROXY: only `env_proxy: false` keeps it off the proxy.
    let without_env = publisher(fast_policy());
    let local = direct.replace("127.0.0.1", "localhost");
    let outcome = without_env.publish_one(&event, &endpoint(&local)).await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_at_info_carry_neither_the_event_nor_credentials() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // The test runtime is single-threaded, so the whole publish runs under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = Receiver::start(vec![reply(503, "busy"), reply(200, OK_VERBOSE)]).await;
    let event = event();
    let with_credentials = endpoint(&format!("http://user:s3cret@{}/", receiver.addr));
    let outcome = publisher(fast_policy())
        .publish_one(&event, &with_credentials)
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");

    let logs = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("UTF-8");
    assert!(
        logs.contains("retrying"),
        "the retry was not logged: {logs}"
    );
    assert!(logs.contains("REDACTED@"), "{logs}");
    let data = receiver.seen()[0]
        .query
        .split('&')
        .next()
        .expect("data")
        .to_string();
    for secret in [
        "s3cret",
        event.json.as_str(),
        data.as_str(),
        &STANDARD.encode(&event.json)[..40],
        CLUSTER_ID,
    ] {
        assert!(!logs.contains(secret), "{secret} logged at info: {logs}");
    }
}

/// Scratch images have no CA certificates; reqwest's platform verifier then refuses to build any
/// client at all. Plain-HTTP endpoints must still work (and HTTPS ones fail per endpoint).
#[tokio::test]
async fn a_system_without_ca_certificates_still_publishes_over_http() {
    let receiver = Receiver::start(vec![reply(200, OK_VERBOSE)]).await;
    let empty = tempfile::NamedTempFile::new().expect("empty certificate file");
    let empty = empty.path().to_str().expect("UTF-8 path");
    // rustls-native-certs reads only these when they are set.
    let env = [
        ("SSL_CERT_FILE", empty),
        ("SSL_CERT_DIR", ""),
        (DIRECT_URL, &receiver.url("/")),
    ];
    run_child("no_ca_child", &env).await;
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
#[ignore = "run by a_system_without_ca_certificates_still_publishes_over_http in a child process"]
async fn no_ca_child() {
    let direct = std::env::var(DIRECT_URL).expect("run by its parent test");
    let publisher = Publisher::new(fast_policy()).expect("a publisher without CA certificates");
    let outcome = publisher.publish_one(&event(), &endpoint(&direct)).await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A certificate authority and a server certificate it issued for 127.0.0.1.
struct Pki {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// A new CA named `ca_name` (names differ, so another CA's certificate is an unknown issuer).
fn pki(ca_name: &str) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        server_cert: cert.der().clone(),
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// A loopback HTTPS receiver answering every request with `OK_VERBOSE`; counts the requests that
/// got through the handshake.
fn https_receiver(pki: &Pki) -> (String, Arc<Mutex<usize>>) {
    hodometer::tls::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
        .expect("server TLS config");
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}/", listener.local_addr().expect("addr"));
    let served = Arc::new(Mutex::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            // A failed handshake shows up here as a read error: drop the connection.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut tls, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if !head.windows(4).any(|w| w == b"\r\n\r\n") {
                continue;
            }
            *count.lock().expect("count") += 1;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{OK_VERBOSE}",
                OK_VERBOSE.len()
            );
            let _ = std::io::Write::write_all(&mut tls, reply.as_bytes());
            tls.conn.send_close_notify();
            let _ = std::io::Write::flush(&mut tls);
        }
    });
    (url, served)
}

const WRONG_CA_URL: &str = "HODOMETER_TEST_WRONG_CA_URL";

/// HTTPS through rustls, trusting the CA in `SSL_CERT_FILE` (which rustls-native-certs reads
/// instead of the system store): a server from that CA is reached, one from another CA is refused
/// at once, without retries.
#[tokio::test]
async fn https_verifies_the_receiver_certificate() {
    let trusted = pki("trusted test CA");
    let (good_url, good_served) = https_receiver(&trusted);
    let (bad_url, bad_served) = https_receiver(&pki("some other CA"));
    let mut ca_file = tempfile::NamedTempFile::new().expect("CA file");
    std::io::Write::write_all(&mut ca_file, trusted.ca_pem.as_bytes()).expect("write CA");
    let ca_path = ca_file.path().to_str().expect("UTF-8 path");
    let env = [
        ("SSL_CERT_FILE", ca_path),
        (DIRECT_URL, &good_url),
        (WRONG_CA_URL, &bad_url),
    ];
    run_child("https_child", &env).await;
    assert_eq!(*good_served.lock().expect("count"), 1);
    assert_eq!(*bad_served.lock().expect("count"), 0);
}

#[tokio::test]
#[ignore = "run by https_verifies_the_receiver_certificate in a child process"]
async fn https_child() {
    let good = std::env::var(DIRECT_URL).expect("run by its parent test");
    let bad = std::env::var(WRONG_CA_URL).expect("run by its parent test");
    let endpoints = [endpoint(&good), endpoint(&bad)];
    let outcomes = publisher(fast_policy()).publish(&event(), &endpoints).await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let refused = &outcomes[1];
    assert_eq!(refused.attempts, 1, "{refused:?}");
    assert_eq!(refused.outcome_label(), "failed");
    match refused.error() {
        Some(PublishError::Certificate { reason }) => {
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
