//! The container image, built by scripts/image.sh from the binary under test and run with podman
//! and runc as the original's pod runs: uid 1000, read-only root filesystem, no args, only the
//! original's environment variables. Against `sim` on the host network, one cycle completes and
//! the event reaches a loopback `hodometer receive`. Skipped, with a printed reason, where podman
//! is not installed (CI installs it: .ci/run).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, ReceiverProcess, SimProcess, example_scenario, http_get};
use serde_json::Value;

/// Storage under the test's own directory, so the host's image store is never touched; vfs, runc
/// and cgroupfs because they work in restricted sandboxes (see ../shared/NOTES.md).
fn podman_flags(root: &Path) -> Vec<String> {
    let path = |name: &str| root.join(name).to_str().expect("utf-8 path").to_string();
    vec![
        "--storage-driver".into(),
        "vfs".into(),
        "--runtime".into(),
        "runc".into(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
        "--root".into(),
        path("storage"),
        "--runroot".into(),
        path("run"),
    ]
}

fn podman(flags: &[String], args: &[&str]) -> Output {
    Command::new("podman")
        .args(flags)
        .args(args)
        .output()
        .expect("run podman")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes the container whatever happens to the test.
struct Container<'a> {
    flags: &'a [String],
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = podman(self.flags, &["rm", "-f", "-t", "0", &self.name]);
    }
}

#[test]
fn the_image_runs_the_original_pod_and_publishes() {
    if Command::new("podman").arg("--version").output().is_err() {
        println!(
            "SKIPPED the image test: podman is not installed (apt-get install podman buildah runc)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = podman_flags(dir.path());
    let tag = format!("localhost/hodometer:test-{}", uuid::Uuid::new_v4().simple());
    let archive = dir.path().join("hodometer-image.tar");
    let built = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/image.sh"))
        .arg(&tag)
        // The binary under test: no second (release) build in CI. The image ships the same
        // program built without the `tools` feature; `daemon` is the same code in both.
        .env("HODOMETER_BIN", BIN)
        .env("HODOMETER_IMAGE_TAR", &archive)
        .env("PODMAN_GLOBAL_FLAGS", flags.join(" "))
        .output()
        .expect("run scripts/image.sh");
    assert!(built.status.success(), "image.sh failed:\n{}", text(&built));
    assert!(
        std::fs::metadata(&archive).is_ok_and(|m| m.len() > 0),
        "no OCI archive at {}",
        archive.display()
    );
    let inspected = podman(
        &flags,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.User}} {{json .Config.Entrypoint}} {{.Size}}",
            &tag,
        ],
    );
    assert!(inspected.status.success(), "{}", text(&inspected));
    let inspected = String::from_utf8_lossy(&inspected.stdout).to_string();
    assert!(
        inspected.starts_with(r#""1000:1000" ["/usr/local/bin/hodometer","daemon"] "#),
        "{inspected}"
    );
    println!("image {tag}: {inspected}");

    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let name = format!("hodometer-test-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("METRICS_LEVEL", "feature".to_string()),
        // debug: the line after each cycle tells how much of the binary stayed resident.
        ("LOG_LEVEL", "debug".into()),
        ("PUBLISH_URL", format!("http://127.0.0.1:{}", receiver.port)),
        ("EXTRA_PUBLISH_URLS", String::new()),
        ("CONTROL_PLANE_SECURITY_PROTOCOL", "PLAINTEXT".into()),
        (
            "CONTROL_PLANE_CLIENT_TLS_SECRET_NAME",
            "seldon-controlplane-client".into(),
        ),
        (
            "CONTROL_PLANE_SERVER_TLS_SECRET_NAME",
            "seldon-controlplane-server".into(),
        ),
        ("SCHEDULER_HOST", "127.0.0.1".into()),
        ("SCHEDULER_PLAINTXT_PORT", sim.port_arg()),
        ("SCHEDULER_TLS_PORT", "9044".into()),
        ("POD_NAMESPACE", "seldon-mesh".into()),
    ];
    let env_args: Vec<String> = env
        .iter()
        .flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")])
        .collect();
    let mut args: Vec<&str> = vec![
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    args.extend(env_args.iter().map(String::as_str));
    // No command after the image: the entrypoint runs, as with the original's podSpec.
    args.push(&tag);
    let container = Container {
        flags: &flags,
        name: name.clone(),
    };
    let started = podman(&flags, &args);
    assert!(started.status.success(), "podman run: {}", text(&started));

    let start = Instant::now();
    let events = loop {
        let (status, body) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
        assert_eq!(status, 200, "{body}");
        let events: Vec<Value> = serde_json::from_str(&body).expect("events JSON");
        if !events.is_empty() {
            break events;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let logs = podman(&flags, &["logs", &name]);
            panic!(
                "no event from the container in 60 s; logs:\n{}",
                text(&logs)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(events.len(), 1, "{events:?}");
    let p = &events[0]["properties"];
    assert_eq!(p["model_count"], 3, "{p}");
    assert_eq!(p["metrics_level"], "feature", "{p}");

    // Between collections the daemon unmaps the code pages the cycle touched. Root owns the
    // binary in the image, and the kernel pages out a file's pages only for its owner (or a
    // writer): with that advice instead, the pages stayed resident and this failed.
    let resident = |line: &Value, field: &str| {
        line[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {line}"))
    };
    let waiting = wait_for_log_line(&flags, &name, "waiting for the next collection");
    let (before, after) = (
        resident(&waiting, "resident_file_kib_before"),
        resident(&waiting, "resident_file_kib_after"),
    );
    assert!(
        after < before,
        "the daemon's file-backed pages did not drop between collections: {before} -> {after} KiB"
    );
    println!("resident file-backed memory between collections: {before} -> {after} KiB");

    // SIGTERM, as Kubernetes stops a pod: a clean exit within the 5 s grace period.
    let stopped = podman(&flags, &["stop", "--time", "5", &name]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    let exit = podman(
        &flags,
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
    );
    assert_eq!(
        String::from_utf8_lossy(&exit.stdout).trim(),
        "0",
        "{}",
        text(&exit)
    );
    let logs = text(&podman(&flags, &["logs", &name]));
    assert!(
        logs.contains(r#""message":"collected and published""#),
        "{logs}"
    );
    drop(container);
}

/// The first JSON log line of the container whose message is `message`, waiting up to 60 s.
fn wait_for_log_line(flags: &[String], name: &str, message: &str) -> Value {
    let start = Instant::now();
    loop {
        let logs = text(&podman(flags, &["logs", name]));
        let found = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == message);
        if let Some(line) = found {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {message:?} line in 60 s; logs:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
