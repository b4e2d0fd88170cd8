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
const ADMIN_TOKEN: &str = hodometer::sim::kube::SIM_ADMIN_TOKEN;
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

/// The stand-in's address, from the kubeconfig `sim` wrote.
fn kube_addr(sim: &SimProcess) -> String {
    let text = std::fs::read_to_string(sim.kubeconfig.as_ref().expect("kubeconfig"))
        .expect("read kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .expect("server line")
        .to_string()
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
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (status, body) = common::status_and_body(&response);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const CONFIGMAPS: &str = "/api/v1/namespaces/seldon-mesh/configmaps";

/// Applies the shipped, empty consent and status ConfigMaps as the administrator.
fn apply_configmaps(addr: &str) {
    for file in ["consent-configmap.yaml", "status-configmap.yaml"] {
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
    let status = wait_for("the acknowledgement", || {
        let s = status_data(&sim);
        (s["consentVersion"] == version.as_str()).then_some(s)
    });
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

#[test]
fn invalid_consent_sends_nothing_and_says_why() {
    let (sim, addr, receiver, url) = cluster(&[]);
    edit_consent(&addr, json!({"level": "everything"}));
    let daemon = Daemon::start(&sim, &url, &[("METRICS_LEVEL", "feature")]);
    let status = wait_for("the status", || {
        let s = status_data(&sim);
        (s["source"] == "invalid-consent").then_some(s)
    });
    assert_eq!(status["effectiveLevel"], "off");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("\"everything\"")),
        "{status}"
    );
    // Two more cycles: still nothing at the endpoint.
    cycles_pass(&sim, 2);
    assert!(events(&receiver).is_empty());
    assert!(
        daemon.log().contains("\\\"everything\\\""),
        "{}",
        daemon.log()
    );
}

#[test]
fn do_not_track_beats_consent() {
    let (sim, _addr, receiver, url) = cluster(&[]);
    approve(&sim, "feature");
    let _daemon = Daemon::start(&sim, &url, &[("DO_NOT_TRACK", "1")]);
    let status = wait_for("the status", || {
        let s = status_data(&sim);
        (s["source"] == "do-not-track").then_some(s)
    });
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
    let status = wait_for("the status", || {
        let s = status_data(&sim);
        (s["source"] == "consent").then_some(s)
    });
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
        hodometer::sim::kube::SIM_TOKEN
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
    let command = format!(
        "{} inspect --scheduler-port {} --kubeconfig {} --publish-url http://127.0.0.1:9 \
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
    tmux.keys(&["2"]);
    tmux.keys(&["a"]);
    let resource = metrics_at(Level::Resource);
    // Its last line too: a capture can catch the dialog half drawn.
    let dialog = tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?") && s.contains("y: approve and write")
    });
    assert!(
        dialog.contains(&format!(
            "level resource, exactly these {} fields:",
            resource.len()
        )),
        "{dialog}"
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
