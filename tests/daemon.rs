//! `hodometer daemon` and `collect --publish` as the real binary, configured by the original's
//! environment variables, publishing to endpoints on loopback that these tests run.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    KillOnDrop, ReceiverProcess, SimProcess, dead_port, example_scenario, hodometer, http_get,
    sigterm,
};

/// What a capture endpoint does with `/track`.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    /// Takes the request and never answers.
    Hang,
}

/// A loopback publish endpoint that records every event it is sent (decoded from `data`).
struct Capture {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Capture {
    fn start(mode: Mode) -> Capture {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let seen = Arc::clone(&events);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind capture endpoint");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            "/track",
            axum::routing::get(
                move |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let data = q.get("data").cloned().unwrap_or_default();
                        let json = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .expect("standard base64");
                        seen.lock()
                            .expect("lock")
                            .push(serde_json::from_slice(&json).expect("event JSON"));
                        if mode == Mode::Hang {
                            std::future::pending::<()>().await;
                        }
                        r#"{"status":1,"error":null}"#
                    }
                },
            ),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Capture {
            addr,
            events,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("lock").clone()
    }
}

fn sim() -> SimProcess {
    let scenario = example_scenario();
    SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")])
}

/// The daemon with the Helm chart's variables; PUBLISH_URL always points at loopback here.
fn daemon(sim: &SimProcess, publish_url: &str, args: &[&str]) -> Command {
    let mut all = vec!["daemon", "--no-kube"];
    all.extend_from_slice(args);
    let mut command = hodometer(&all);
    command
        .env("METRICS_LEVEL", "feature")
        .env("SCHEDULER_HOST", "127.0.0.1")
        .env("SCHEDULER_PLAINTXT_PORT", sim.port_arg())
        .env("CONTROL_PLANE_SECURITY_PROTOCOL", "PLAINTEXT")
        .env("PUBLISH_URL", publish_url)
        .env("LOG_LEVEL", "info")
        .env("POD_NAMESPACE", "seldon-mesh");
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running daemon, killed if a test fails before it stops it.
struct Running(KillOnDrop);

impl Running {
    fn spawn(mut command: Command) -> Running {
        Running(KillOnDrop::spawn(
            command.stdout(Stdio::null()).stderr(Stdio::null()),
        ))
    }

    /// SIGTERM, then the exit status.
    fn stop(self) -> std::process::ExitStatus {
        let child = self.0.into_inner();
        sigterm(&child);
        wait_exit(child, Duration::from_secs(30))
    }
}

/// Waits for the process to exit; a daemon that ignores SIGTERM fails here instead of hanging.
fn wait_exit(mut child: Child, bound: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("the daemon did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn once_publishes_one_event_to_every_endpoint_configured_by_environment() {
    let sim = sim();
    let (main, extra) = (Capture::start(Mode::Accept), Capture::start(Mode::Accept));
    let id = "4b8f1c2d-6e3a-4f50-9a71-2c3d4e5f6a7b";
    let out = daemon(&sim, &main.url(), &["--once"])
        .env("EXTRA_PUBLISH_URLS", format!(" {} ,", extra.url()))
        .env("CLUSTER_ID", id)
        .output()
        .expect("run daemon");
    assert!(out.status.success(), "{}", stderr(&out));
    let (sent_main, sent_extra) = (main.events(), extra.events());
    assert_eq!(sent_main.len(), 1);
    assert_eq!(sent_main, sent_extra, "every endpoint gets the same event");
    let p = &sent_main[0]["properties"];
    assert_eq!(p["distinct_id"], id);
    assert_eq!(p["metrics_level"], "feature");
    assert_eq!(p["model_count"], 3);

    // Off a terminal the logs are JSON, one summary line for the cycle.
    let logs = stderr(&out);
    let summary: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "collected and published")
        .collect();
    assert_eq!(summary.len(), 1, "{logs}");
    assert_eq!(summary[0]["ok"], true);
    assert!(
        summary[0]["sent"]
            .as_str()
            .expect("sent")
            .contains("model_count")
    );
}

#[test]
fn once_exits_non_zero_when_an_endpoint_fails_and_the_others_still_get_it() {
    let sim = sim();
    let good = Capture::start(Mode::Accept);
    let out = daemon(
        &sim,
        &format!("http://127.0.0.1:{}", dead_port()),
        &["--once", "--publish-deadline", "2s"],
    )
    .env("EXTRA_PUBLISH_URLS", good.url())
    .output()
    .expect("run daemon");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(good.events().len(), 1);
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    // The summary line's message itself tells the truth, not only its `ok` field.
    assert!(
        stderr(&out).contains(r#""message":"collected and partly published""#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_during_a_hung_publish_stops_the_daemon() {
    let sim = sim();
    let hung = Capture::start(Mode::Hang);
    let running = Running::spawn(daemon(&sim, &hung.url(), &[]));
    let start = Instant::now();
    while hung.events().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon never published"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = running.stop();
    assert!(
        status.success(),
        "a signal is a clean stop for the loop: {status}"
    );
}

#[test]
fn do_not_track_and_level_off_publish_nothing_and_say_why() {
    let sim = sim();
    let endpoint = Capture::start(Mode::Accept);
    let out = daemon(&sim, &endpoint.url(), &["--once"])
        .env("DO_NOT_TRACK", "1")
        .output()
        .expect("run daemon");
    assert!(out.status.success());
    assert!(stderr(&out).contains("DO_NOT_TRACK"));
    let out = daemon(&sim, &endpoint.url(), &["--once"])
        .env("METRICS_LEVEL", "off")
        .output()
        .expect("run daemon");
    assert!(out.status.success());
    assert!(stderr(&out).contains("level is off"));
    assert!(
        endpoint.events().is_empty(),
        "something was published: {:?}",
        endpoint.events()
    );
}

#[test]
fn health_readiness_and_prometheus_metrics_are_served() {
    let sim = sim();
    let endpoint = Capture::start(Mode::Accept);
    let listen = format!("127.0.0.1:{}", dead_port());
    let running = Running::spawn(daemon(
        &sim,
        &endpoint.url(),
        &["--listen", &listen, "--interval", "1h"],
    ));
    let start = Instant::now();
    loop {
        let ready =
            std::net::TcpStream::connect(&listen).is_ok() && http_get(&listen, "/readyz").0 == 200;
        if ready {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(&listen, "/healthz").0, 200);
    let (status, metrics) = http_get(&listen, "/metrics");
    assert_eq!(status, 200);
    // --no-kube leaves the Kubernetes metrics unknown, so the collection counts as partial.
    assert!(
        metrics.contains("hodometer_collections_total{outcome=\"partial\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hodometer_collections_total{outcome=\"complete\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hodometer_publishes_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("hodometer_last_success_timestamp_seconds 0\n"),
        "{metrics}"
    );
    assert_eq!(endpoint.events().len(), 1);
    assert!(running.stop().success());
}

#[test]
fn invalid_publish_settings_and_levels_are_all_reported_with_exit_2() {
    let out = hodometer(&["daemon", "--once"])
        .env("PUBLISH_URL", "ftp://example.invalid")
        .env("EXTRA_PUBLISH_URLS", "http://127.0.0.1:9,not a url")
        .env("METRICS_LEVEL", "everything")
        .env("HODOMETER_INTERVAL", "often")
        .output()
        .expect("run daemon");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for needle in [
        "PUBLISH_URL",
        "ftp://example.invalid",
        "EXTRA_PUBLISH_URLS",
        "not a url",
        "METRICS_LEVEL",
        "HODOMETER_INTERVAL",
    ] {
        assert!(err.contains(needle), "{needle} not reported:\n{err}");
    }
}

#[test]
fn collect_publish_sends_exactly_the_printed_event() {
    let sim = sim();
    let endpoint = Capture::start(Mode::Accept);
    let out = hodometer(&[
        "collect",
        "--no-kube",
        "--scheduler-port",
        &sim.port_arg(),
        "--level",
        "resource",
        "--publish",
        "--publish-url",
        &endpoint.url(),
    ])
    .output()
    .expect("run collect");
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("printed event");
    assert_eq!(endpoint.events(), vec![printed]);
    assert!(stderr(&out).contains("published:"), "{}", stderr(&out));
}

#[test]
fn daemon_delivers_every_metric_to_the_real_receiver_end_to_end() {
    let scenario = example_scenario();
    let sim = SimProcess::start_with_kube(&["--scenario", scenario.to_str().expect("utf-8")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("events.db");
    let receiver =
        ReceiverProcess::start(&["--record", "all", "--store", store.to_str().expect("utf-8")]);
    let receiver_url = format!("http://127.0.0.1:{}", receiver.port);
    let mut command = hodometer(&["daemon", "--once"]);
    command
        .env("METRICS_LEVEL", "feature")
        .env("SCHEDULER_HOST", "127.0.0.1")
        .env("SCHEDULER_PLAINTXT_PORT", sim.port_arg())
        .env("PUBLISH_URL", &receiver_url)
        .env("KUBECONFIG", sim.kubeconfig.as_ref().expect("kubeconfig"));
    let out = command.output().expect("run daemon");
    assert!(out.status.success(), "{}", stderr(&out));

    let (status, body) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    assert_eq!(status, 200);
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).expect("events JSON");
    assert_eq!(events.len(), 1, "{body}");
    let text = events[0].to_string();
    for metric in hodometer::metrics::METRICS {
        assert!(
            text.contains(&format!("\"{}\"", metric.name)),
            "{} missing from {text}",
            metric.name
        );
    }
}

#[test]
fn the_daemon_is_patient_with_a_scheduler_that_starts_late() {
    // `collect` gives up on a scheduler nobody listens for within seconds; the daemon keeps
    // trying until its request timeout, so a scheduler that restarts or starts late is read.
    let port = dead_port();
    let endpoint = Capture::start(Mode::Accept);
    let mut command = hodometer(&["daemon", "--no-kube", "--once", "--request-timeout", "20s"]);
    command
        .env("METRICS_LEVEL", "resource")
        .env("SCHEDULER_HOST", "127.0.0.1")
        .env("SCHEDULER_PLAINTXT_PORT", &port)
        .env("PUBLISH_URL", endpoint.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let daemon = command.spawn().expect("start daemon");
    std::thread::sleep(Duration::from_millis(700));
    let scenario = example_scenario();
    let mut late = hodometer(&[
        "sim",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--scenario",
        scenario.to_str().expect("utf-8"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start sim");
    let out = daemon.wait_with_output().expect("daemon finishes");
    let _ = late.kill();
    let _ = late.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(endpoint.events()[0]["properties"]["model_count"], 3);
}

#[test]
fn collect_publish_to_a_dead_endpoint_gives_up_within_its_short_deadline() {
    let sim = sim();
    let started = Instant::now();
    let out = hodometer(&[
        "collect",
        "--no-kube",
        "--scheduler-port",
        &sim.port_arg(),
        "--publish",
        "--publish-url",
        &format!("http://127.0.0.1:{}", dead_port()),
    ])
    .output()
    .expect("run collect");
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("published:"), "{}", stderr(&out));
    // The default deadline of `collect --publish` is 20 s, not the daemon's 10 minutes; the
    // bound is generous so a loaded machine cannot fail it.
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
}
