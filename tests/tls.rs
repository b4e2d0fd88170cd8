//! Mutual TLS to the scheduler with the original's CONTROL_PLANE_* variables, end to end against
//! the simulator's TLS listener and certificates it generates.

mod common;

use std::path::Path;

use common::{SimProcess, event, example_scenario, hodometer, row};

fn tls_sim(dir: &Path) -> SimProcess {
    let scenario = example_scenario();
    SimProcess::start_with_tls(&["--scenario", scenario.to_str().expect("utf-8")], dir)
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().expect("utf-8").to_string()
}

/// `collect` configured only by the original's environment variables.
fn collect_tls(
    sim: &SimProcess,
    certs: &Path,
    server_ca: Option<String>,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "collect",
        "--no-kube",
        "--level",
        "resource",
        "--rpc-timeout",
        "3s",
    ];
    args.extend_from_slice(extra);
    let mut command = hodometer(&args);
    command
        .env("SCHEDULER_HOST", "localhost")
        .env("SCHEDULER_PLAINTXT_PORT", "1")
        .env(
            "SCHEDULER_TLS_PORT",
            sim.tls_port.expect("tls port").to_string(),
        )
        .env("CONTROL_PLANE_SECURITY_PROTOCOL", "SSL")
        .env(
            "CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION",
            path(certs, "client.key"),
        )
        .env(
            "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
            path(certs, "client.crt"),
        )
        .env(
            "CONTROL_PLANE_CLIENT_TLS_CA_LOCATION",
            path(certs, "ca.crt"),
        );
    if let Some(ca) = server_ca {
        command.env("CONTROL_PLANE_SERVER_TLS_CA_LOCATION", ca);
    }
    command.output().expect("run collect")
}

#[test]
fn mutual_tls_with_the_original_variables_reads_the_scheduler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = tls_sim(dir.path());
    let e = event(&collect_tls(&sim, dir.path(), None, &[]));
    assert_eq!(e["properties"]["model_count"], 3);
    assert_eq!(e["properties"]["server_count"], 3);
    // The server CA may also be given separately.
    let e = event(&collect_tls(
        &sim,
        dir.path(),
        Some(path(dir.path(), "ca.crt")),
        &[],
    ));
    assert_eq!(e["properties"]["pipeline_count"], 3);
}

/// The event `collect` printed when the scheduler could not be read at all, which exits 1.
fn unread_event(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("hodometer: scheduler: "));
    serde_json::from_slice(&out.stdout).expect("the event is still printed")
}

#[test]
fn a_scheduler_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let (ours, theirs) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let sim = tls_sim(ours.path());
    // Generate an unrelated CA by starting (and stopping) a second TLS sim.
    drop(tls_sim(theirs.path()));
    let wrong_ca = Some(path(theirs.path(), "ca.crt"));
    let e = unread_event(&collect_tls(&sim, ours.path(), wrong_ca.clone(), &[]));
    assert!(
        e["properties"].get("model_count").is_none(),
        "read over an unverified connection"
    );

    let out = collect_tls(&sim, ours.path(), wrong_ca, &["--output", "table"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = row(&table, "model_count");
    assert!(
        row.contains("certificate"),
        "the reason names the certificate problem: {row}"
    );
    assert!(
        !row.contains("no complete answer"),
        "a certificate error is not retried until the deadline: {row}"
    );
}

#[test]
fn a_client_certificate_the_scheduler_does_not_trust_is_refused() {
    let (ours, theirs) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let sim = tls_sim(ours.path());
    drop(tls_sim(theirs.path()));
    // Our server CA (so the scheduler verifies), but a client identity from elsewhere.
    let run = |output: &str| {
        hodometer(&[
            "collect",
            "--no-kube",
            "--level",
            "resource",
            "--rpc-timeout",
            "2s",
            "--tls",
            "--output",
            output,
        ])
        .env(
            "SCHEDULER_TLS_PORT",
            sim.tls_port.expect("tls port").to_string(),
        )
        .env(
            "CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION",
            path(theirs.path(), "client.key"),
        )
        .env(
            "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
            path(theirs.path(), "client.crt"),
        )
        .env(
            "CONTROL_PLANE_CLIENT_TLS_CA_LOCATION",
            path(ours.path(), "ca.crt"),
        )
        .output()
        .expect("run collect")
    };
    let e = unread_event(&run("json"));
    assert!(e["properties"].get("model_count").is_none());
    // The client only sees the connection close; the reason says what that usually means.
    let table = String::from_utf8_lossy(&run("table").stdout).into_owned();
    let row = row(&table, "model_count");
    assert!(row.contains("rejects the client certificate"), "{row}");
}

#[test]
fn tls_without_its_files_names_each_missing_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hodometer(&["collect"])
        .env("CONTROL_PLANE_SECURITY_PROTOCOL", "SSL")
        .env(
            "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
            path(dir.path(), "missing.crt"),
        )
        .output()
        .expect("run collect");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION",
        "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
        "missing.crt",
        "CONTROL_PLANE_CLIENT_TLS_CA_LOCATION",
    ] {
        assert!(err.contains(needle), "{needle} not reported:\n{err}");
    }
    let bad = hodometer(&["collect"])
        .env("CONTROL_PLANE_SECURITY_PROTOCOL", "TLS1.3")
        .output()
        .expect("run collect");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CONTROL_PLANE_SECURITY_PROTOCOL"));
}
