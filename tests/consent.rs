//! Consent in the cluster, end to end with real binaries over loopback: `sim` with
//! its Kubernetes stand-in, a `hodometer daemon --interval 2s` governed by the consent
//! ConfigMap, a capture endpoint (`hodometer receive --record all`), and `hodometer consent`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ReceiverProcess, SimProcess, hodometer, http_get};
use hodometer::metrics::{Level, METRICS};
use serde_json::{Value, json};

/// The stand-in's administrator: applies manifests, as `kubectl apply` by a cluster admin would.
/// Long enough for a few 2 s cycles and a 2 s consent re-read on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/k8s")
        .join(name)
}

fn manifest_arg(name: &str) -> String {
    manifest(name).to_str().expect("utf-8 path").to_string()
}

/// This run's tokens of each stand-in, by its address: random per run, read from the kubeconfig.
static TOKENS: std::sync::Mutex<Vec<(String, (String, String))>> =
    std::sync::Mutex::new(Vec::new());

/// The (service account, administrator) tokens of the stand-in at `addr`.
fn tokens(addr: &str) -> (String, String) {
    let known = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
    known
        .iter()
        .find(|(a, _)| a == addr)
        .map(|(_, tokens)| tokens.clone())
        .expect("kube_addr read this stand-in's tokens")
}

/// The stand-in's address, from the kubeconfig `sim` wrote (its tokens are noted for
/// [`tokens`]).
fn kube_addr(sim: &SimProcess) -> String {
    let path = sim.kubeconfig.as_ref().expect("kubeconfig");
    let text = std::fs::read_to_string(path).expect("read kubeconfig");
    let addr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .expect("server line")
        .to_string();
    TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((addr.clone(), common::sim_tokens(path)));
    addr
}

/// One HTTP/1.1 request with the admin's token: the status and the body.
fn admin_request(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).expect("connect to the stand-in");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        tokens(addr).1,
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (status, body) = common::status_and_body(&response);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const CONFIGMAPS: &str = "/api/v1/namespaces/seldon-mesh/configmaps";

/// Applies the shipped, empty consent, status and ledger ConfigMaps as the administrator.
fn apply_configmaps(addr: &str) {
    apply_files(
        addr,
        &[
            "consent-configmap.yaml",
            "status-configmap.yaml",
            "ledger-configmap.yaml",
        ],
    );
}

fn apply_files(addr: &str, files: &[&str]) {
    for file in files {
        let text = std::fs::read_to_string(manifest(file)).expect("manifest");
        let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
        let (status, body) = admin_request(addr, "POST", CONFIGMAPS, "application/json", &doc);
        assert_eq!(status, 201, "{body}");
    }
}

/// Edits the consent by hand (a merge patch of its data), as an operator with kubectl would.
fn edit_consent(addr: &str, data: Value) {
    let path = format!("{CONFIGMAPS}/hodometer-consent");
    let patch = json!({"data": data});
    let (status, body) =
        admin_request(addr, "PATCH", &path, "application/merge-patch+json", &patch);
    assert_eq!(status, 200, "{body}");
}

/// `hodometer consent ARGS --kubeconfig KC`.
fn consent(sim: &SimProcess, args: &[&str]) -> Output {
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let mut all = vec!["consent"];
    all.extend_from_slice(args);
    all.extend(["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    hodometer(&all).output().expect("run hodometer consent")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn approve(sim: &SimProcess, level: &str) {
    let out = consent(sim, &["set", "--level", level, "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `consent show --output json`.
fn show(sim: &SimProcess) -> Value {
    let out = consent(sim, &["show", "--output", "json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

fn status_data(sim: &SimProcess) -> Value {
    show(sim)["status"]["data"].clone()
}

/// The status once its `key` reads `value`.
fn status_when(sim: &SimProcess, key: &str, value: &str) -> Value {
    wait_for(&format!("the status's {key} to be {value:?}"), || {
        let status = status_data(sim);
        (status[key] == value).then_some(status)
    })
}

/// The status once its `lastEvent` is an event the endpoint received at `level`; fails if the
/// bytes there are not that event. (The daemon keeps collecting, so the status holds its latest
/// event, which need not be the first one a test saw arrive.)
fn status_holding(sim: &SimProcess, receiver: &ReceiverProcess, level: &str) -> Value {
    let (status, last, received) = wait_for("the status naming a received event", || {
        let status = status_data(sim);
        let last: Value = serde_json::from_str(status["lastEvent"].as_str()?).ok()?;
        if last["properties"]["metrics_level"] != level {
            return None;
        }
        let id = &last["properties"]["$insert_id"];
        let received = events(receiver)
            .into_iter()
            .find(|e| &e["properties"]["$insert_id"] == id)?;
        Some((status, last, received))
    });
    assert_eq!(
        last, received,
        "status lastEvent differs from what was received"
    );
    status
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_until(what, PATIENCE, check)
}

/// Waits until the daemon has written its status `cycles` more times (each cycle sets a new
/// `nextSendAt`): the positive sign that it ran, where a test proves that nothing was sent.
fn cycles_pass(sim: &SimProcess, cycles: usize) {
    let mut seen = status_data(sim)["nextSendAt"].clone();
    for n in 0..cycles {
        seen = wait_for(&format!("cycle {} of {cycles}", n + 1), || {
            let next = status_data(sim)["nextSendAt"].clone();
            (next.is_string() && next != seen).then_some(next)
        });
    }
}

fn events(receiver: &ReceiverProcess) -> Vec<Value> {
    let (status, body) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("events JSON")
}

/// The property names of an event beyond the envelope.
fn fields(event: &Value) -> BTreeSet<String> {
    let envelope = ["token", "distinct_id", "time", "ip", "$insert_id"];
    event["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .filter(|k| !envelope.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn metrics_at(level: Level) -> BTreeSet<String> {
    METRICS
        .iter()
        .filter(|m| level.shares(m.level))
        .map(|m| m.name.to_string())
        .collect()
}

/// `hodometer daemon --interval 2s` against the sim, killed when dropped; its log in a file.
struct Daemon {
    _child: common::KillOnDrop,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    fn start(sim: &SimProcess, publish_url: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_every("2s", sim, publish_url, env)
    }

    /// The same with another `--interval`.
    fn start_every(
        interval: &str,
        sim: &SimProcess,
        publish_url: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
        let port = sim.port_arg();
        let mut command = hodometer(&[
            "daemon",
            "--interval",
            interval,
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            &port,
            "--publish-url",
            publish_url,
            "--log-format",
            "json",
        ]);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = common::KillOnDrop::spawn(
            command
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("log file")),
        );
        Daemon { _child: child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).expect("read the daemon log")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test shows what the daemon said.
        if std::thread::panicking() {
            eprintln!("the daemon's log:\n{}", self.log());
        }
    }
}

/// A sim with the stand-in and the shipped ConfigMaps applied, a receiver, and its URL.
fn cluster(sim_args: &[&str]) -> (SimProcess, String, ReceiverProcess, String) {
    let sim = SimProcess::start_with_kube(sim_args);
    let addr = kube_addr(&sim);
    apply_configmaps(&addr);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let url = format!("http://127.0.0.1:{}", receiver.port);
    (sim, addr, receiver, url)
}

#[test]
fn consent_set_by_the_cli_governs_the_daemon_within_a_cycle() {
    let (sim, _addr, receiver, url) = cluster(&[]);
    let _daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "resource")]);

    // The manifests ship the consent empty: METRICS_LEVEL rules, as the original.
    let first = wait_for("an event under METRICS_LEVEL", || events(&receiver).pop());
    assert_eq!(first["properties"]["metrics_level"], "resource");
    assert_eq!(status_data(&sim)["source"], "environment");

    let before = events(&receiver).len();
    approve(&sim, "cluster");
    let (governed, old_level) = wait_for("an event at the approved level", || {
        let since: Vec<Value> = events(&receiver).split_off(before);
        let at = since
            .iter()
            .position(|e| e["properties"]["metrics_level"] == "cluster")?;
        Some((since[at].clone(), at))
    });
    // Within one cycle: at most the event already in flight at the approval is at the old level.
    assert!(
        old_level <= 1,
        "{old_level} events at the old level after approval"
    );
    assert_eq!(fields(&governed), metrics_at(Level::Cluster));

    // The status holds the event the endpoint received, and who approved.
    let status = status_holding(&sim, &receiver, "cluster");
    assert_eq!(status["effectiveLevel"], "cluster");
    assert_eq!(status["source"], "consent");
    assert_eq!(status["pendingFields"], "");
    assert!(
        status["lastOutcomes"]
            .as_str()
            .is_some_and(|o| o.contains(" ok (HTTP 200")),
        "{}",
        status
    );
    assert!(status["nextSendAt"].as_str().is_some_and(|t| !t.is_empty()));
    let consent = show(&sim)["consent"]["data"].clone();
    assert_eq!(
        consent["approvedBy"],
        hodometer::sim::kube::SIM_USER,
        "approvedBy comes from SelfSubjectReview"
    );
}

/// The daemon watches its consent, under exactly the shipped Role: an approval is read when it
/// is made, not at the next periodic read (every 10 s, or at the next collection, an hour away).
#[test]
fn the_daemon_reads_a_new_consent_through_its_watch() {
    let role = manifest_arg("role.yaml");
    let cluster_role = manifest_arg("clusterrole.yaml");
    let (sim, addr, _receiver, url) =
        cluster(&["--kube-rbac", &role, "--kube-rbac", &cluster_role]);
    let env = [("METRICS_LEVEL", "resource"), ("LOG_LEVEL", "debug")];
    let daemon = Daemon::start_every("1h", &sim, &url, &env);
    wait_for("the first status", || {
        (status_data(&sim)["source"] == "environment").then_some(())
    });
    const WOKEN: &str = "the consent changed: reading it now";
    assert!(!daemon.log().contains(WOKEN), "{}", daemon.log());

    edit_consent(&addr, json!({"level": "cluster", "approvedBy": "admin"}));
    let version = show(&sim)["consent"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    let status = status_when(&sim, "consentVersion", version.as_str());
    assert_eq!(status["source"], "consent");
    assert_eq!(status["effectiveLevel"], "cluster");
    assert!(
        daemon.log().contains(WOKEN),
        "the watch, not the periodic read, brought it: {}",
        daemon.log()
    );
}

#[test]
fn a_field_not_listed_is_withheld_and_reported_pending() {
    let (sim, addr, receiver, url) = cluster(&[]);
    approve(&sim, "cluster");
    // Someone edits the list by hand, commas and newlines mixed, leaving node_count out.
    let mut listed: Vec<String> = metrics_at(Level::Cluster).into_iter().collect();
    listed.retain(|f| f != "node_count");
    edit_consent(&addr, json!({"fields": listed.join(",\n")}));
    let _daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "feature")]);

    let event = wait_for("an event", || events(&receiver).pop());
    let expected: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(fields(&event), expected);
    assert!(!fields(&event).contains("node_count"));
    let status = wait_for("the status", || {
        let s = status_data(&sim);
        s["lastEvent"].is_string().then_some(s)
    });
    assert_eq!(status["pendingFields"], "node_count");
}

/// Under `data` as the consent (and METRICS_LEVEL=feature), the daemon sends nothing over two
/// more cycles, and its status and log name `offence`; the sim, receiver and URL for more.
fn fails_closed(data: Value, offence: &str) -> (SimProcess, ReceiverProcess, String) {
    let (sim, addr, receiver, url) = cluster(&[]);
    edit_consent(&addr, data);
    let daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "feature")]);
    let status = status_when(&sim, "source", "invalid-consent");
    assert_eq!(status["effectiveLevel"], "off");
    assert_eq!(status["consentState"], "invalid");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains(offence)),
        "{status}"
    );
    // Two more cycles: still nothing at the endpoint.
    cycles_pass(&sim, 2);
    assert!(events(&receiver).is_empty());
    // The log is JSON: its quotes are escaped.
    let logged = offence.replace('"', "\\\"");
    assert!(daemon.log().contains(&logged), "{}", daemon.log());
    (sim, receiver, url)
}

#[test]
fn invalid_consent_sends_nothing_and_says_why() {
    fails_closed(json!({"level": "everything"}), "\"everything\"");
}

#[test]
fn do_not_track_beats_consent() {
    let (sim, _addr, receiver, url) = cluster(&[]);
    approve(&sim, "feature");
    let _daemon = Daemon::start(&sim, &url, &[("DO_NOT_TRACK", "1")]);
    let status = status_when(&sim, "source", "do-not-track");
    assert_eq!(status["effectiveLevel"], "off");
    cycles_pass(&sim, 2);
    assert!(events(&receiver).is_empty());
}

/// An endpoint that answers every request 500, counting them.
fn failing_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            // Read the request head, then answer.
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, count)
}

#[test]
fn off_stops_an_event_that_is_being_retried() {
    let (sim, _addr, _receiver, _url) = cluster(&[]);
    approve(&sim, "cluster");
    let (url, requests) = failing_endpoint();
    let daemon = Daemon::start(&sim, &url, &[]);
    wait_for("a retried publish", || {
        (requests.load(Ordering::SeqCst) >= 2).then_some(())
    });
    approve(&sim, "off");
    let status = wait_for("the daemon dropping the event", || {
        let s = status_data(&sim);
        s["lastOutcomes"]
            .as_str()
            .is_some_and(|o| o.starts_with("dropped"))
            .then_some(s)
    });
    assert_eq!(status["effectiveLevel"], "off");
    assert!(daemon.log().contains("event dropped while being published"));
    // Nothing more reaches the endpoint: the retries are cancelled and no new cycle publishes.
    let after = requests.load(Ordering::SeqCst);
    cycles_pass(&sim, 2);
    assert_eq!(requests.load(Ordering::SeqCst), after);
}

#[test]
fn the_daemon_works_under_exactly_the_shipped_rbac() {
    let role = manifest_arg("role.yaml");
    let cluster_role = manifest_arg("clusterrole.yaml");
    let (sim, addr, receiver, url) = cluster(&["--kube-rbac", &role, "--kube-rbac", &cluster_role]);
    let mut cluster_fields: Vec<String> = metrics_at(Level::Cluster).into_iter().collect();
    cluster_fields.sort();
    edit_consent(
        &addr,
        json!({"level": "cluster", "fields": cluster_fields.join("\n"), "approvedBy": "admin"}),
    );
    let _daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "feature")]);
    let event = wait_for("an event", || events(&receiver).pop());
    assert_eq!(fields(&event), metrics_at(Level::Cluster));
    // Every Kubernetes-fed metric was readable with the shipped Role and ClusterRole.
    assert_eq!(event["properties"]["node_count"], 3, "{event}");
    let status = status_when(&sim, "source", "consent");
    assert_eq!(status["effectiveLevel"], "cluster");

    // The daemon's service account is no consent editor: the CLI names what is missing.
    let out = consent(&sim, &["set", "--level", "feature", "--yes"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("forbidden: update configmaps hodometer-consent"),
        "{stderr}"
    );
}

#[test]
fn the_editor_role_may_approve_and_a_racing_write_gets_the_conflict() {
    let editor = manifest_arg("consent-editor-role.yaml");
    let (sim, _addr, _receiver, _url) = cluster(&["--kube-rbac", &editor]);
    let before = show(&sim)["consent"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    approve(&sim, "resource");
    // A write based on what was read before the approval above: refused, not overwritten.
    let out = consent(
        &sim,
        &[
            "set",
            "--level",
            "feature",
            "--yes",
            "--if-version",
            &before,
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("conflict: configmaps hodometer-consent"),
        "{stderr}"
    );
    assert_eq!(show(&sim)["consent"]["data"]["level"], "resource");
}

#[test]
fn a_missing_consent_is_created_when_allowed_else_the_manifests_are_named() {
    let sim = SimProcess::start_with_kube(&[]);
    approve(&sim, "cluster");
    assert_eq!(show(&sim)["consent"]["data"]["level"], "cluster");

    let editor = manifest_arg("consent-editor-role.yaml");
    let restricted = SimProcess::start_with_kube(&["--kube-rbac", &editor]);
    let out = consent(&restricted, &["set", "--level", "cluster", "--yes"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("manifests (assets/k8s/) have not been applied"),
        "{stderr}"
    );
    assert!(stderr.contains("forbidden: create configmaps"), "{stderr}");
}

#[test]
fn dry_run_prints_the_manifest_for_gitops() {
    let out = hodometer(&[
        "consent",
        "set",
        "--level",
        "cluster",
        "--dry-run",
        "--output",
        "yaml",
        "--namespace",
        "seldon",
        "--note",
        "reviewed in PR 42",
    ])
    .output()
    .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_saphyr::from_str(&text(&out.stdout)).expect("YAML");
    assert_eq!(doc["kind"], "ConfigMap");
    assert_eq!(doc["metadata"]["name"], "hodometer-consent");
    assert_eq!(doc["metadata"]["namespace"], "seldon");
    assert_eq!(doc["data"]["level"], "cluster");
    assert_eq!(doc["data"]["note"], "reviewed in PR 42");
    let listed: BTreeSet<String> = doc["data"]["fields"]
        .as_str()
        .expect("fields")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, metrics_at(Level::Cluster));
}

/// One request with the daemon's service-account token (the kubeconfig's): its status, then
/// (for a watch) each event handed to `events` as it arrives, until `lines` of them.
fn service_account_stream(
    addr: &str,
    path: &str,
    lines: usize,
    events: Option<std::sync::mpsc::Sender<Value>>,
) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        tokens(addr).0
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).expect("status line");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        chunked |= header
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
        if header == "\r\n" {
            break;
        }
    }
    let Some(events) = events.filter(|_| status == 200 && chunked) else {
        return status;
    };
    // Each watch event arrives as its own chunk: size line, JSON line, blank line.
    for _ in 0..lines {
        let mut size = String::new();
        reader.read_line(&mut size).expect("chunk size");
        let mut line = String::new();
        reader.read_line(&mut line).expect("chunk");
        let mut end = String::new();
        reader.read_line(&mut end).expect("chunk end");
        let event = serde_json::from_str(line.trim()).expect("a JSON watch event");
        if events.send(event).is_err() {
            break;
        }
    }
    status
}

#[test]
fn the_stand_in_watches_one_named_configmap_as_the_role_allows() {
    let role = manifest_arg("role.yaml");
    let sim = SimProcess::start_with_kube(&["--kube-rbac", &role]);
    let addr = kube_addr(&sim);
    apply_configmaps(&addr);
    let consent = "fieldSelector=metadata.name%3Dhodometer-consent";

    // Listing every ConfigMap is not what the Role grants; the named one is.
    assert_eq!(service_account_stream(&addr, CONFIGMAPS, 0, None), 403);
    let named = format!("{CONFIGMAPS}?{consent}");
    assert_eq!(service_account_stream(&addr, &named, 0, None), 200);
    let status_watch =
        format!("{CONFIGMAPS}?fieldSelector=metadata.name%3Dhodometer-status&watch=true");
    assert_eq!(
        service_account_stream(&addr, &status_watch, 0, None),
        403,
        "the Role allows no watch on hodometer-status"
    );

    let (sender, received) = std::sync::mpsc::channel();
    let watcher = {
        let addr = addr.clone();
        let path = format!("{CONFIGMAPS}?{consent}&watch=true&timeoutSeconds=30");
        std::thread::spawn(move || service_account_stream(&addr, &path, 2, Some(sender)))
    };
    let next = || received.recv_timeout(PATIENCE).expect("a watch event");
    // The watch first replays the object as ADDED; then an edit arrives as MODIFIED.
    let added = next();
    edit_consent(&addr, json!({"level": "cluster"}));
    let modified = next();
    assert_eq!(watcher.join().expect("watcher"), 200);
    let events = [added, modified];
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "hodometer-consent");
    assert_eq!(events[1]["type"], "MODIFIED");
    assert_eq!(events[1]["object"]["data"]["level"], "cluster");
    assert_ne!(
        events[0]["object"]["metadata"]["resourceVersion"],
        events[1]["object"]["metadata"]["resourceVersion"]
    );
}

/// `hodometer inspect` in tmux against the sim, with its kubeconfig.
fn inspect_in_tmux(name: &str, sim: &SimProcess, dir: &Path) -> common::Tmux {
    inspect_in_tmux_with(name, sim, dir, "")
}

/// The same with `extra` arguments.
fn inspect_in_tmux_with(name: &str, sim: &SimProcess, dir: &Path, extra: &str) -> common::Tmux {
    let command = format!(
        "{} inspect {extra} --scheduler-port {} --kubeconfig {} --publish-url http://127.0.0.1:9 \
         --refresh 2s --log-file {}; sleep 60",
        common::BIN,
        sim.port,
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        dir.join("inspect.log").display(),
    );
    common::Tmux::start_sized(name, &command, (200, 40))
}

#[test]
fn the_inspector_header_shows_the_in_cluster_reporter() {
    let (sim, _addr, _receiver, url) = cluster(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = inspect_in_tmux("reporter-none", &sim, dir.path());
    tmux.wait_for("a deployed reporter without a report", |s| {
        s.contains("in-cluster reporter ◆: deployed, no report yet")
    });
    approve(&sim, "cluster");
    let _daemon = Daemon::start(&sim, &url, &[]);
    let screen = tmux.wait_for("the reporter's level, source and last send", |s| {
        s.contains("in-cluster reporter ◆: level cluster (consent); last ")
    });
    assert!(screen.contains(" ok (HTTP 200"), "{screen}");
    assert!(screen.contains("next in "), "{screen}");

    // Where the inspector's user may not read the status, the header names the permission.
    let editor = manifest_arg("consent-editor-role.yaml");
    let restricted = SimProcess::start_with_kube(&["--kube-rbac", &editor]);
    let other = inspect_in_tmux("reporter-forbidden", &restricted, dir.path());
    other.wait_for("the missing permission", |s| {
        s.contains("in-cluster reporter ◆: forbidden: get configmaps hodometer-status")
    });
}

/// Chooses a level with `level_key` and opens the approve dialog: its screen.
fn approve_dialog_at(tmux: &common::Tmux, level_key: &str) -> String {
    tmux.keys(&[level_key]);
    tmux.keys(&["a"]);
    // Its last line too: a capture can catch the dialog half drawn.
    tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?") && s.contains("y: approve and write")
    })
}

/// The right-hand pane's text at 200 columns (between its borders), joined line by line: the
/// bytes it shows when it shows them raw.
fn right_pane(screen: &str) -> String {
    screen
        .lines()
        .filter_map(|line| {
            let start = line.find('│')?;
            let end = line.rfind('│')?;
            (end > start).then(|| line[start + '│'.len_utf8()..end].trim_end().to_string())
        })
        .collect()
}

#[test]
fn approving_in_the_inspector_governs_the_daemon_and_its_status_holds_the_bytes() {
    let (sim, _addr, receiver, url) = cluster(&[]);
    let _daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "cluster")]);
    wait_for("an event under METRICS_LEVEL", || events(&receiver).pop());
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = inspect_in_tmux("approve", &sim, dir.path());
    tmux.wait_for("the reporter at the environment's level", |s| {
        s.contains("in-cluster reporter ◆: level cluster (environment)")
    });

    // The dialog shows the level, exactly the fields, where the reporter publishes and how often.
    let resource = metrics_at(Level::Resource);
    let dialog = approve_dialog_at(&tmux, "2");
    // Its diff against what the reporter shares now (the environment's cluster level).
    let said = dialog.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(&format!(
            "level resource (the reporter now: cluster), exactly {} fields; against the current consent:",
            resource.len()
        )),
        "{dialog}"
    );
    for added in ["model_count", "pipeline_count", "experiment_count"] {
        assert!(dialog.contains(&format!("+ {added}")), "{dialog}");
    }
    assert!(
        !dialog.contains("+ node_count"),
        "already shared:\n{dialog}"
    );
    assert!(
        dialog.contains("the reporter publishes to (every 2s):"),
        "{dialog}"
    );
    assert!(dialog.contains(&format!("{url}/")), "{dialog}");
    assert!(
        dialog.contains("writes configmaps hodometer-consent in seldon-mesh over resourceVersion"),
        "{dialog}"
    );
    assert!(
        dialog.contains("replaces: an empty consent (METRICS_LEVEL rules)"),
        "{dialog}"
    );

    let before = events(&receiver).len();
    tmux.keys(&["y"]);
    tmux.wait_for("the reporter's acknowledgement", |s| {
        s.contains("acknowledged by the reporter")
    });
    let governed = wait_for("an event at the approved level", || {
        events(&receiver)
            .split_off(before)
            .into_iter()
            .find(|e| e["properties"]["metrics_level"] == "resource")
    });
    assert_eq!(fields(&governed), resource);
    let status = status_holding(&sim, &receiver, "resource");
    let size: usize = status
        .as_object()
        .expect("status data")
        .iter()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum();
    assert!(
        size < 4096,
        "the status is {size} bytes, more than a few KB"
    );
    let consent = show(&sim)["consent"]["data"].clone();
    let listed: BTreeSet<String> = consent["fields"]
        .as_str()
        .expect("fields")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, resource,
        "the consent lists exactly the fields shown"
    );
    assert_eq!(consent["approvedBy"], hodometer::sim::kube::SIM_USER);

    // The level bar marks the reporter's level; its pane shows its last event byte for byte.
    let screen = tmux.wait_for("the reporter's level marked", |s| {
        s.contains("[2 resource]◆")
    });
    assert!(!screen.contains("1 cluster ◆"), "{screen}");
    tmux.keys(&["e"]);
    tmux.keys(&["b"]);
    wait_for("the pane to show the status's lastEvent exactly", || {
        let shown = right_pane(&tmux.screen());
        let last = status_data(&sim)["lastEvent"].as_str()?.to_string();
        (shown == last).then_some(())
    });
}

#[test]
fn the_inspector_shows_a_missing_permission_and_a_conflict_instead_of_writing() {
    // The daemon's own service account under the shipped Role: it may read consent, not write it.
    let role = manifest_arg("role.yaml");
    let (sim, _addr, _receiver, _url) = cluster(&["--kube-rbac", &role]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = inspect_in_tmux("approve-forbidden", &sim, dir.path());
    tmux.wait_for("the reporter read", |s| {
        s.contains("in-cluster reporter ◆: ")
    });
    tmux.keys(&["a"]);
    tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the named missing permission", |s| {
        s.contains("not written: forbidden: update configmaps hodometer-consent")
    });

    // An editor whose dialog was opened before someone else's change gets the conflict.
    let editor = manifest_arg("consent-editor-role.yaml");
    let (sim, addr, _receiver, _url) = cluster(&["--kube-rbac", &editor]);
    let tmux = inspect_in_tmux("approve-conflict", &sim, dir.path());
    tmux.wait_for("the reporter read", |s| {
        s.contains("in-cluster reporter ◆: ")
    });
    tmux.keys(&["3"]);
    tmux.keys(&["a"]);
    tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?")
    });
    edit_consent(&addr, json!({"level": "off", "approvedBy": "someone else"}));
    tmux.keys(&["y"]);
    tmux.wait_for("the conflict", |s| {
        s.contains(
            "not written: conflict: configmaps hodometer-consent was changed by someone else",
        )
    });
    assert_eq!(
        show(&sim)["consent"]["data"]["level"],
        "off",
        "someone else's change stands"
    );
}

// History (SPEC 16): the ledger the daemon appends to, read with `hodometer history`.
// ---------------------------------------------------------------------------------------------

/// `hodometer history ARGS --kubeconfig KC`.
fn history(sim: &SimProcess, args: &[&str]) -> Output {
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    all.extend(["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    hodometer(&all).output().expect("run hodometer history")
}

/// `history -o json`.
fn history_json(sim: &SimProcess) -> Value {
    let out = history(sim, &["-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

fn entries_of<'a>(history: &'a Value, kind: &str) -> Vec<&'a Value> {
    history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hodometer::ledger::sha256_hex(bytes)
}

const LEDGER: &str = "/api/v1/namespaces/seldon-mesh/configmaps/hodometer-ledger";

fn ledger_data(addr: &str) -> serde_json::Map<String, Value> {
    let (status, body) = admin_request(addr, "GET", LEDGER, "application/json", &Value::Null);
    assert_eq!(status, 200, "{body}");
    body["data"].as_object().cloned().unwrap_or_default()
}

#[test]
fn the_history_holds_every_event_received_byte_for_byte_and_each_consent_change() {
    let (sim, addr, receiver, url) = cluster(&[]);
    let daemon = Daemon::start_every("1s", &sim, &url, &[("METRICS_LEVEL", "cluster")]);
    wait_for("two events", || {
        (events(&receiver).len() >= 2).then_some(())
    });

    let out = consent(
        &sim,
        &["set", "--level", "resource", "--yes", "--note", "ticket 42"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let approved_version = show(&sim)["consent"]["resourceVersion"]
        .as_str()
        .expect("version")
        .to_string();
    wait_for("an event at the approved level", || {
        events(&receiver)
            .iter()
            .any(|e| e["properties"]["metrics_level"] == "resource")
            .then_some(())
    });
    // Deleting the consent hands the level back to METRICS_LEVEL: recorded as a deletion.
    let path = format!("{CONFIGMAPS}/hodometer-consent");
    let (status, body) = admin_request(&addr, "DELETE", &path, "application/json", &json!({}));
    assert_eq!(status, 200, "{body}");
    let before = events(&receiver).len();
    wait_for("an event under METRICS_LEVEL again", || {
        events(&receiver)[before..]
            .iter()
            .any(|e| e["properties"]["metrics_level"] == "cluster")
            .then_some(())
    });

    // Every event the endpoint received is in the history, byte for byte: its bytes hash to
    // the recorded SHA-256 and are what the sender writes for the event received.
    let received = events(&receiver);
    let recorded_history = wait_for("the history holding every received event", || {
        let current = history_json(&sim);
        let recorded: Vec<String> = entries_of(&current, "send")
            .iter()
            .map(|e| e["event"].as_str().expect("event bytes").to_string())
            .collect();
        received
            .iter()
            .all(|r| recorded.contains(&hodometer::payload::ascii_json(&r.to_string())))
            .then_some(current)
    });
    let sends = entries_of(&recorded_history, "send");
    for send in &sends {
        let bytes = send["event"].as_str().expect("event");
        assert_eq!(send["sha256"], sha256_hex(bytes.as_bytes()), "{send}");
        assert_eq!(send["outcomes"][0]["ok"], true, "{send}");
    }
    // ...and nothing recorded as accepted that the endpoint did not get.
    let received: Vec<String> = events(&receiver)
        .iter()
        .map(|r| hodometer::payload::ascii_json(&r.to_string()))
        .collect();
    for send in &sends {
        assert!(received.contains(&send["event"].as_str().unwrap_or("").to_string()));
    }

    // The consent changes, in order: as shipped (unset), the approval with its approver and
    // note, the deletion.
    let changes = entries_of(&recorded_history, "consent");
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["change"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["unset", "approved", "deleted"], "{changes:?}");
    let approval = changes[1];
    assert_eq!(approval["version"], approved_version.as_str());
    assert_eq!(approval["level"], "resource");
    assert_eq!(approval["approvedBy"], hodometer::sim::kube::SIM_USER);
    assert_eq!(approval["note"], "ticket 42");
    assert!(
        approval["added"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("model_count"))),
        "{approval}"
    );
    assert!(
        changes[2]["removed"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("model_count")))
    );
    // A send under the approval names it.
    assert!(
        sends.iter().any(|s| s["level"] == "resource"
            && s["consentVersion"] == approved_version.as_str()
            && s["approvedBy"] == hodometer::sim::kube::SIM_USER),
        "{sends:?}"
    );

    let out = history(&sim, &["verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("history verified"));
    // The status and the daemon's log carry the head.
    let status = status_data(&sim);
    assert!(
        status["history"]
            .as_str()
            .is_some_and(|h| h.starts_with("kept")),
        "{status}"
    );
    let head = status["historyHead"].as_str().expect("historyHead");
    assert!(
        daemon
            .log()
            .contains(&format!("\"history_head\":\"{head}\""))
            || {
                // The status may be one cycle behind the last log line; any logged head is in the chain.
                let current = history_json(&sim);
                current["entries"]
                    .as_array()
                    .expect("entries")
                    .iter()
                    .any(|e| {
                        daemon.log().contains(&format!(
                            "\"history_head\":\"{}\"",
                            e["hash"].as_str().unwrap_or("-")
                        ))
                    })
            }
    );

    // The table and `show` of one send: its exact bytes.
    let table = text(&history(&sim, &[]).stdout);
    assert!(table.contains("consent deleted"), "{table}");
    assert!(table.contains("1 ok / 0 failed"), "{table}");
    let seq = sends[0]["seq"].to_string();
    let raw = history(&sim, &["show", &seq, "--raw"]);
    assert_eq!(
        text(&raw.stdout),
        sends[0]["event"].as_str().expect("event")
    );
    let diff = history(
        &sim,
        &[
            "diff",
            &seq,
            &sends.last().expect("a send")["seq"].to_string(),
        ],
    );
    assert!(diff.status.success(), "{}", text(&diff.stderr));
}

#[test]
fn verify_names_an_edited_entry_and_a_pinned_head_catches_a_rewritten_chain() {
    let (sim, addr, _receiver, url) = cluster(&[]);
    {
        let _daemon = Daemon::start_every("1s", &sim, &url, &[("METRICS_LEVEL", "cluster")]);
        wait_for("four sends in the history", || {
            (entries_of(&history_json(&sim), "send").len() >= 4).then_some(())
        });
    }
    let out = history(&sim, &["verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pinned = history_json(&sim)["head"]
        .as_str()
        .expect("head")
        .to_string();
    let original = ledger_data(&addr);

    // One character of a send's event, changed through the API.
    let sends = entries_of(&history_json(&sim), "send")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    let target = &sends[1];
    let key = target["key"].as_str().expect("key").to_string();
    let stored = original[&key].as_str().expect("stored entry").to_string();
    let tampered = stored.replacen("\\\"ip\\\":\\\"0\\\"", "\\\"ip\\\":\\\"1\\\"", 1);
    assert_ne!(tampered, stored, "the event holds \"ip\":\"0\"");
    let patch = json!({"data": {key.clone(): tampered}});
    let (status, body) = admin_request(
        &addr,
        "PATCH",
        LEDGER,
        "application/merge-patch+json",
        &patch,
    );
    assert_eq!(status, 200, "{body}");
    let out = history(&sim, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("entry {} ({key})", target["seq"])),
        "{stderr}"
    );
    // Whoever may edit the ledger may plant characters a terminal obeys: the listings show them
    // escaped, never raw.
    let planted = tampered.replacen("\\\"ip\\\":\\\"1", "\\\"ip\\\":\\\"1\u{202e}\u{9b}", 1);
    assert_ne!(planted, tampered);
    let (status, body) = admin_request(
        &addr,
        "PATCH",
        LEDGER,
        "application/merge-patch+json",
        &json!({"data": {key.clone(): planted}}),
    );
    assert_eq!(status, 200, "{body}");
    for format in ["json", "yaml"] {
        let out = history(&sim, &["-o", format]);
        let shown = text(&out.stdout);
        assert!(shown.contains(&key), "{format}: {shown}");
        assert!(
            !shown.contains('\u{202e}') && !shown.contains('\u{9b}'),
            "{format} emitted the planted characters raw"
        );
    }
    assert!(text(&history(&sim, &["-o", "json"]).stdout).contains("\\u202e"));

    // A writer who rebuilds a consistent chain (and the status's head) passes a plain verify,
    // but not against the head pinned before.
    let mut rewritten = std::collections::BTreeMap::new();
    let mut records = Vec::new();
    for (key, value) in &original {
        if hodometer::ledger::entry_seq(key).is_none() {
            continue;
        }
        let mut entry: hodometer::ledger::Entry =
            serde_json::from_str(value.as_str().expect("value")).expect("entry");
        if let hodometer::ledger::Record::Send(send) = &mut entry.record {
            send.event = send.event.replacen("\"ip\":\"0\"", "\"ip\":\"1\"", 1);
            send.sha256 = sha256_hex(send.event.as_bytes());
        }
        records.push((entry.at.clone(), entry.record));
    }
    let append = hodometer::ledger::plan_append(
        &hodometer::ledger::Index::default(),
        &records,
        hodometer::ledger::DEFAULT_BUDGET,
    );
    hodometer::ledger::apply(&mut rewritten, &append);
    assert_eq!(rewritten.len(), original.len());
    let patch = json!({"data": rewritten});
    let (status, body) = admin_request(
        &addr,
        "PATCH",
        LEDGER,
        "application/merge-patch+json",
        &patch,
    );
    assert_eq!(status, 200, "{body}");
    let status_path = format!("{CONFIGMAPS}/hodometer-status");
    let patch = json!({"data": {"historyHead": append.head}});
    let (status, body) = admin_request(
        &addr,
        "PATCH",
        &status_path,
        "application/merge-patch+json",
        &patch,
    );
    assert_eq!(status, 200, "{body}");
    let out = history(&sim, &["verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = history(&sim, &["verify", "--head", &pinned]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--head") && stderr.contains(&pinned),
        "{stderr}"
    );
}

#[test]
fn the_shipped_role_keeps_the_history_and_a_refused_ledger_leaves_sending_untouched() {
    let role = manifest_arg("role.yaml");
    let cluster_role = manifest_arg("clusterrole.yaml");
    let (sim, _addr, _receiver, url) =
        cluster(&["--kube-rbac", &role, "--kube-rbac", &cluster_role]);
    let _daemon = Daemon::start_every("1s", &sim, &url, &[("METRICS_LEVEL", "cluster")]);
    wait_for("a send kept under the shipped Role", || {
        let status = status_data(&sim);
        let kept = status["history"].as_str()?.starts_with("kept");
        (kept && !entries_of(&history_json(&sim), "send").is_empty()).then_some(())
    });
    assert!(history(&sim, &["verify"]).status.success());

    // A Role from before the history: the ledger is refused. Sending goes on as before; the
    // status and the log say the history is not kept, and why.
    let dir = tempfile::tempdir().expect("tempdir");
    let older = dir.path().join("role.yaml");
    let shipped = std::fs::read_to_string(manifest("role.yaml")).expect("role");
    std::fs::write(
        &older,
        shipped.replace("\"hodometer-ledger\"", "\"not-the-ledger\""),
    )
    .expect("write");
    let (sim, addr, receiver, url) = cluster(&[
        "--kube-rbac",
        older.to_str().expect("utf-8"),
        "--kube-rbac",
        &cluster_role,
    ]);
    let daemon = Daemon::start_every("1s", &sim, &url, &[("METRICS_LEVEL", "cluster")]);
    wait_for("events sent all the same", || {
        (events(&receiver).len() >= 2).then_some(())
    });
    let status = wait_for("the status saying the history is not kept", || {
        let status = status_data(&sim);
        status["history"]
            .as_str()?
            .starts_with("not being kept")
            .then_some(status)
    });
    let said = status["history"].as_str().expect("history");
    assert!(
        said.contains("forbidden") && said.contains("hodometer-ledger"),
        "{said}"
    );
    assert_eq!(
        status["lastOutcomes"]
            .as_str()
            .map(|o| o.contains(" ok (HTTP 200")),
        Some(true)
    );
    assert!(daemon.log().contains("not being kept"), "{}", daemon.log());
    assert!(ledger_data(&addr).is_empty());

    // Older manifests without the ledger ConfigMap: the same, with the manifests named.
    let sim = SimProcess::start_with_kube(&[]);
    apply_files(
        &kube_addr(&sim),
        &["consent-configmap.yaml", "status-configmap.yaml"],
    );
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let url = format!("http://127.0.0.1:{}", receiver.port);
    let _daemon = Daemon::start_every("1s", &sim, &url, &[("METRICS_LEVEL", "cluster")]);
    wait_for("events sent without a ledger", || {
        (events(&receiver).len() >= 2).then_some(())
    });
    let status = wait_for("the status naming the missing ledger", || {
        let status = status_data(&sim);
        status["history"]
            .as_str()?
            .contains("does not exist")
            .then_some(status)
    });
    assert!(
        status["history"]
            .as_str()
            .is_some_and(|h| h.contains("assets/k8s/ledger-configmap.yaml")),
        "{status}"
    );
}

#[test]
fn a_concurrent_write_to_the_ledger_is_a_conflict_read_again_never_overwritten() {
    let (sim, addr, receiver, url) = cluster(&[]);
    let daemon = Daemon::start_every(
        "1s",
        &sim,
        &url,
        &[("METRICS_LEVEL", "cluster"), ("LOG_LEVEL", "debug")],
    );
    wait_for("two sends in the history", || {
        (entries_of(&history_json(&sim), "send").len() >= 2).then_some(())
    });
    // Someone else writes the ledger (a label) between the daemon's appends: the version the
    // daemon planned its next append on is stale.
    for round in 0..3 {
        let sends_before = entries_of(&history_json(&sim), "send").len();
        let patch = json!({"metadata": {"labels": {"touched": round.to_string()}}});
        let (status, body) = admin_request(
            &addr,
            "PATCH",
            LEDGER,
            "application/merge-patch+json",
            &patch,
        );
        assert_eq!(status, 200, "{body}");
        // The daemon appended after this write: its append went through the stale version.
        wait_for("the daemon's next append after the write", || {
            (entries_of(&history_json(&sim), "send").len() > sends_before).then_some(())
        });
    }
    wait_for("a conflict read again", || {
        daemon
            .log()
            .contains("the ledger changed while appending")
            .then_some(())
    });
    let received = events(&receiver);
    wait_for("every received event in the history", || {
        let current = history_json(&sim);
        let recorded: Vec<String> = entries_of(&current, "send")
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("").to_string())
            .collect();
        received
            .iter()
            .all(|r| recorded.contains(&hodometer::payload::ascii_json(&r.to_string())))
            .then_some(())
    });
    assert!(history(&sim, &["verify"]).status.success());
    let (_, ledger) = admin_request(&addr, "GET", LEDGER, "application/json", &Value::Null);
    assert_eq!(ledger["metadata"]["labels"]["touched"], "2", "overwritten");
}

// ---------------------------------------------------------------------------------------------
// One governance path (#20): what the policy does not allow never leaves, through any command.

/// `hodometer collect --publish` with the sim's kubeconfig: under the cluster's consent.
fn collect_publish(sim: &SimProcess, url: &str, env: &[(&str, &str)]) -> Output {
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let port = sim.port_arg();
    let mut command = hodometer(&[
        "collect",
        "--publish",
        "--level",
        "feature",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--scheduler-host",
        "127.0.0.1",
        "--scheduler-port",
        &port,
        "--publish-url",
        url,
    ]);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run collect --publish")
}

const CLUSTER_ID: &str = "0b7f7a8e-2a55-4a43-9c5a-3d5d8c0f6f11";

#[test]
fn the_cluster_id_never_leaves_unless_it_is_approved() {
    let (sim, addr, receiver, url) = cluster(&[]);
    let mut listed = metrics_at(Level::Cluster);
    listed.remove("cluster_id");
    let list: Vec<&str> = listed.iter().map(String::as_str).collect();
    edit_consent(
        &addr,
        json!({"level": "cluster", "fields": list.join("\n")}),
    );
    let _daemon = Daemon::start(
        &sim,
        &url,
        &[("METRICS_LEVEL", "feature"), ("CLUSTER_ID", CLUSTER_ID)],
    );
    let event = wait_for("an event", || events(&receiver).pop());
    assert!(!event.to_string().contains(CLUSTER_ID), "{event}");
    assert_eq!(fields(&event), listed);
    // Tied to no cluster: the event's own id, new for every event.
    assert_eq!(
        event["properties"]["distinct_id"],
        event["properties"]["$insert_id"]
    );
    let status = status_holding(&sim, &receiver, "cluster");
    assert_eq!(status["pendingFields"], "cluster_id");
    assert!(!status.to_string().contains(CLUSTER_ID), "{status}");
    // The receiver counts clusters only from events that name theirs: none here.
    let (_, metrics) = http_get(&format!("127.0.0.1:{}", receiver.port), "/metrics");
    assert!(!metrics.contains("cluster_id=\""), "{metrics}");

    // collect --publish under the same consent: no more than it approves, and it says so.
    let out = collect_publish(&sim, &url, &[("CLUSTER_ID", CLUSTER_ID)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("one event");
    assert!(!text(&out.stdout).contains(CLUSTER_ID));
    assert_eq!(fields(&printed), listed);
    assert!(
        text(&out.stderr).contains("a consent is in force"),
        "{}",
        text(&out.stderr)
    );
    let sent = wait_for("collect's event", || {
        events(&receiver)
            .into_iter()
            .find(|e| e["properties"]["$insert_id"] == printed["properties"]["$insert_id"])
    });
    assert_eq!(sent, printed, "what collect printed is what was received");

    // Approved: the cluster id leaves, as distinct_id too.
    let mut with_id = listed.clone();
    with_id.insert("cluster_id".into());
    let list: Vec<&str> = with_id.iter().map(String::as_str).collect();
    edit_consent(&addr, json!({"fields": list.join("\n")}));
    let named = wait_for("an event naming the cluster", || {
        events(&receiver)
            .into_iter()
            .find(|e| e["properties"]["cluster_id"] == CLUSTER_ID)
    });
    assert_eq!(named["properties"]["distinct_id"], CLUSTER_ID);
}

#[test]
fn a_mis_cased_key_fails_closed_for_the_daemon_and_for_collect() {
    // One wrong letter: it must not fall back to METRICS_LEVEL=feature.
    let (sim, receiver, url) = fails_closed(
        json!({"Level": "off", "note": "withdrawn"}),
        "\"Level\" is in the wrong case",
    );
    let out = collect_publish(&sim, &url, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("the consent in force is invalid: nothing is sent"),
        "{}",
        text(&out.stderr)
    );
    assert!(events(&receiver).is_empty());
}

#[test]
fn a_consent_that_was_read_and_is_gone_is_a_warning() {
    let (sim, addr, _receiver, url) = cluster(&[]);
    approve(&sim, "cluster");
    let daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "resource")]);
    wait_for("the consent followed", || {
        (status_data(&sim)["source"] == "consent").then_some(())
    });
    // Someone empties it (RFC 7386: null removes a key).
    edit_consent(
        &addr,
        json!({"level": null, "fields": null, "approvedBy": null, "approvedAt": null}),
    );
    let status = status_when(&sim, "consentState", "empty");
    assert_eq!(status["source"], "environment");
    assert_eq!(status["effectiveLevel"], "resource");
    assert!(
        status["warning"]
            .as_str()
            .is_some_and(|w| w.contains("is gone") && w.contains("empty")),
        "{status}"
    );
    assert!(daemon.log().contains("is gone"), "{}", daemon.log());
    let shown = text(&consent(&sim, &["show"]).stdout);
    assert!(
        shown.contains("warning") && shown.contains("is gone"),
        "{shown}"
    );
}

#[test]
fn consent_set_refuses_the_field_names_the_reporter_would_refuse() {
    let (sim, _addr, _receiver, _url) = cluster(&[]);
    let out = consent(
        &sim,
        &[
            "set", "--level", "cluster", "--field", "made_up", "--field", "ext.Team", "--field",
            "ext.team", "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("\"made_up\"") && stderr.contains("\"ext.Team\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"ext.team\""),
        "a valid extension name: {stderr}"
    );
    assert_eq!(show(&sim)["consent"]["data"], json!({}), "nothing written");
}

#[test]
fn the_inspector_writes_the_named_consent_and_its_approval_follows_the_cluster() {
    let (sim, addr, receiver, url) = cluster(&[]);
    // A renamed consent, as the operator configured it for every command.
    let named = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "team-consent", "namespace": "seldon-mesh"}});
    let (code, body) = admin_request(&addr, "POST", CONFIGMAPS, "application/json", &named);
    assert_eq!(code, 201, "{body}");
    let _daemon = Daemon::start(
        &sim,
        &url,
        &[
            ("METRICS_LEVEL", "cluster"),
            ("HODOMETER_CONSENT_CONFIGMAP", "team-consent"),
        ],
    );
    wait_for("an event under METRICS_LEVEL", || events(&receiver).pop());
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = inspect_in_tmux_with(
        "approve-named",
        &sim,
        dir.path(),
        "--consent-configmap team-consent",
    );
    tmux.wait_for("the reporter at the environment's level", |s| {
        s.contains("in-cluster reporter ◆: level cluster (environment)")
    });
    let dialog = approve_dialog_at(&tmux, "2");
    assert!(
        dialog.contains("writes configmaps team-consent in seldon-mesh"),
        "{dialog}"
    );
    tmux.keys(&["y"]);
    // Acknowledged: the header and the message line say so.
    let screen = tmux.wait_for("the reporter's acknowledgement", |s| {
        s.matches("acknowledged by the reporter").count() >= 2
    });
    assert!(!screen.contains("waiting for the reporter"), "{screen}");
    let team = consent_named(&addr, "team-consent");
    assert_eq!(team["data"]["level"], "resource", "{team}");
    assert_eq!(
        consent_named(&addr, "hodometer-consent")["data"],
        Value::Null,
        "the default consent is untouched"
    );
    assert_eq!(status_data(&sim)["source"], "consent");

    // Someone else replaces it: the approval reads as replaced, with their level and name.
    let path = format!("{CONFIGMAPS}/team-consent");
    let patch = json!({"data": {"level": "feature", "approvedBy": "bob", "fields": "cluster_id"}});
    let (code, body) = admin_request(
        &addr,
        "PATCH",
        &path,
        "application/merge-patch+json",
        &patch,
    );
    assert_eq!(code, 200, "{body}");
    let version = consent_named(&addr, "team-consent")["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    let replaced = format!("replaced by bob (level feature, resourceVersion {version})");
    let screen = tmux.wait_for("the approval replaced", |s| {
        s.matches(replaced.as_str()).count() >= 2
    });
    assert!(!screen.contains("acknowledged by the reporter"), "{screen}");
}

/// A ConfigMap as the stand-in's administrator reads it.
fn consent_named(addr: &str, name: &str) -> Value {
    let path = format!("{CONFIGMAPS}/{name}");
    let (code, body) = admin_request(addr, "GET", &path, "application/json", &Value::Null);
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn the_inspectors_send_is_bounded_by_the_consent_and_says_so() {
    let (sim, addr, receiver, url) = cluster(&[]);
    edit_consent(
        &addr,
        json!({"level": "cluster", "fields": "node_count\ncollector_version"}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "{} inspect --level feature --scheduler-port {} --kubeconfig {} --publish-url {url} \
         --cluster-id {CLUSTER_ID} --refresh 2s --log-file {}; sleep 60",
        common::BIN,
        sim.port,
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        dir.path().join("inspect.log").display(),
    );
    let tmux = common::Tmux::start_sized("send-bounded", &command, (200, 40));
    tmux.wait_for("the consent read", |s| s.contains("2 fields shared"));
    tmux.keys(&["s"]);
    let dialog = tmux.wait_for("the send dialog", |s| {
        s.contains("send this payload?") && s.contains("y: send exactly the payload shown")
    });
    assert!(
        dialog.contains("bounded by the consent hodometer-consent in seldon-mesh (level cluster"),
        "{dialog}"
    );
    tmux.keys(&["y"]);
    tmux.wait_for("the outcome", |s| s.contains("ok (HTTP 200"));
    let event = wait_for("the event", || events(&receiver).pop());
    let expected: BTreeSet<String> = ["collector_version", "node_count"]
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(fields(&event), expected);
    assert!(!event.to_string().contains(CLUSTER_ID), "{event}");
}
