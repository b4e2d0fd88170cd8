//! The metrics endpoints checked by the real tools: Debian's `promtool` lints the daemon's and
//! the receiver's `/metrics`, and a real `prometheus` scrapes a receiver that has ingested
//! events from a real daemon, then answers every query of the Grafana dashboard with data.
//!
//! Needs the `prometheus` package (CI installs it); without it these tests fail, saying so.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::{ReceiverProcess, SimProcess, dead_port, example_scenario, hodometer, http_get};

/// A command from the `prometheus` package, or a clear failure naming the package.
fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: `apt-get install prometheus` (CI does, in .ci/run)"
    );
    Command::new(name)
}

type Running = common::KillOnDrop;

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(60), || ready().then_some(()));
}

fn promtool_accepts(what: &str, metrics: &str) {
    let mut check = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool rejects the {what}'s /metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon on `listen`, collecting from `sim` and publishing to `publish_url`.
fn daemon(sim: &SimProcess, publish_url: &str, listen: &str) -> Running {
    let child = hodometer(&[
        "daemon",
        "--no-kube",
        "--listen",
        listen,
        "--interval",
        "1h",
    ])
    .env("METRICS_LEVEL", "feature")
    .env("SCHEDULER_HOST", "127.0.0.1")
    .env("SCHEDULER_PLAINTXT_PORT", sim.port_arg())
    .env("PUBLISH_URL", publish_url)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the daemon");
    Running::new(child)
}

/// Events from two more clusters, with versions, so the version panels have a spread.
fn post_other_clusters(port: u16) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (n, version) in ["2.8.0", "2.9.1"].iter().enumerate() {
        // A cluster counts only when its event names it (`cluster_id`, the same as `distinct_id`).
        let cluster = format!("00000000-0000-4000-8000-00000000000{n}");
        let event = json!({
            "event": "collect metrics",
            "properties": {
                "token": "t", "distinct_id": cluster, "cluster_id": cluster,
                "time": now, "$insert_id": format!("other-{n}"),
                "model_count": 3 + n, "pipeline_count": 1, "server_count": 2,
                "seldon_core_version": version, "collector_version": "0.1.0",
            }
        })
        .to_string();
        let request = format!(
            "POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{event}",
            event.len()
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

fn start_prometheus(dir: &Path, receiver_port: u16) -> (Running, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: hodometer-receiver\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{receiver_port}']\n"
        ),
    )
    .expect("write the config");
    let listen = format!("127.0.0.1:{}", dead_port());
    let data = dir.join("data");
    let child = tool("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (Running::new(child), listen)
}

/// An instant query through Prometheus's HTTP API: its result vector.
fn query(prometheus: &str, expr: &str) -> Vec<Value> {
    let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}"));
    assert_eq!(status, 200, "{expr}: {body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/grafana/hodometer-usage.json")
}

/// Every panel's title with each of its queries.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboard_path()).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let queries: Vec<(String, String)> = panels
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().expect("a title").to_string();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "panel {title} has no query");
            targets.into_iter().map(move |target| {
                let expr = target["expr"].as_str().expect("a PromQL expr").to_string();
                (title.clone(), expr)
            })
        })
        .collect();
    assert!(queries.len() >= 8, "{queries:?}");
    queries
}

#[test]
fn promtool_accepts_the_daemons_and_the_receivers_metrics_and_prometheus_answers_every_dashboard_query()
 {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&[]);
    let receiver_addr = format!("127.0.0.1:{}", receiver.port);
    let daemon_addr = format!("127.0.0.1:{}", dead_port());
    let _daemon = daemon(&sim, &format!("http://{receiver_addr}"), &daemon_addr);
    wait_for("the daemon's event reaches the receiver", || {
        http_get(&receiver_addr, "/metrics")
            .1
            .contains("hodometer_receiver_clusters_tracked 1\n")
    });
    post_other_clusters(receiver.port);
    // A refusal and a dropped event are counted too, so every counter has moved.
    let _ = http_get(&receiver_addr, "/track?data=garbage");

    wait_for("the daemon's /metrics", || {
        std::net::TcpStream::connect(&daemon_addr).is_ok()
            && http_get(&daemon_addr, "/metrics").0 == 200
    });
    promtool_accepts("daemon", &http_get(&daemon_addr, "/metrics").1);
    promtool_accepts("receiver", &http_get(&receiver_addr, "/metrics").1);

    let dir = tempfile::tempdir().expect("tempdir");
    let (_prometheus, prometheus) = start_prometheus(dir.path(), receiver.port);
    // Rates need a few scrapes.
    wait_for("prometheus has scraped the receiver a few times", || {
        std::net::TcpStream::connect(&prometheus).is_ok()
            && http_get(&prometheus, "/-/ready").0 == 200
            && query(
                &prometheus,
                "count_over_time(hodometer_receiver_events_received_total[1m]) >= 4",
            )
            .len()
                == 1
    });

    let empty: Vec<String> = dashboard_queries()
        .into_iter()
        .filter(|(_, expr)| query(&prometheus, expr).is_empty())
        .map(|(title, expr)| format!("{title}: {expr}"))
        .collect();
    assert!(empty.is_empty(), "panels without data: {empty:#?}");

    // The panels show what was ingested, not just anything.
    let spread = query(
        &prometheus,
        "count by (seldon_core_version) (hodometer_receiver_cluster_info)",
    );
    let versions: Vec<&str> = spread
        .iter()
        .filter_map(|series| series["metric"]["seldon_core_version"].as_str())
        .collect();
    assert!(
        versions.contains(&"2.8.0") && versions.contains(&"2.9.1"),
        "{spread:?}"
    );
    let reporting = query(
        &prometheus,
        "count(time() - hodometer_receiver_cluster_last_event_timestamp_seconds < 86400)",
    );
    assert_eq!(reporting[0]["value"][1], "3", "{reporting:?}");
}
