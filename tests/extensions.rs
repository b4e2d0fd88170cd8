//! Extensions through the real binary: the three sources and their order, a mounted-ConfigMap
//! directory, validation, levels, the event, the table, the inspector, the daemon's log and the
//! privacy guard.

mod common;

use std::path::Path;

use common::{
    BIN, ReceiverProcess, SimProcess, Tmux, collect, dead_port, event, example_scenario, hodometer,
    http_get, row,
};
use hodometer::sim::population::Scenario;
use hodometer::sim::service::SIM_NAMESPACE;

/// Lays out `files` as kubelet mounts a ConfigMap: the data in a timestamped directory, `..data`
/// linking to it, and each key a link through `..data`.
fn configmap_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let stamped = "..2026_11_30_14_00_00.123456789";
    std::fs::create_dir(dir.path().join(stamped)).expect("mkdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(stamped).join(name), content).expect("write");
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name))
            .expect("symlink");
    }
    std::os::unix::fs::symlink(stamped, dir.path().join("..data")).expect("symlink ..data");
    std::fs::write(dir.path().join(".hidden"), "not an extension").expect("write");
    dir
}

/// A simulated scheduler, so a collection ends at once (a dead one is retried until the deadline).
fn scheduler() -> SimProcess {
    SimProcess::start(&["--scenario", path_arg(&example_scenario())])
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn properties(event: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    event["properties"].as_object().expect("properties")
}

/// The extension properties of an event, sorted by name.
fn ext_properties(event: &serde_json::Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = properties(event)
        .iter()
        .filter(|(name, _)| name.starts_with("ext."))
        .map(|(name, value)| {
            let value = value.as_str().expect("extensions are strings");
            (name.clone(), value.to_string())
        })
        .collect();
    found.sort();
    found
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_mounted_configmap_the_variable_and_flags_merge_later_winning() {
    let dir = configmap_dir(&[
        ("team", "platform\n"),
        ("flavour", "from-dir\n"),
        ("stage@resource", "canary"),
        ("region", "from-dir"),
    ]);
    let sim = scheduler();
    let port = sim.port_arg();
    let env = [
        ("HODOMETER_EXTENSIONS_DIR", path_arg(dir.path())),
        (
            "HODOMETER_EXTENSIONS",
            "flavour=from-env,region=from-env,note=café ~ ok?",
        ),
    ];
    let args = ["--level", "resource", "--extension", "region=from-flag"];
    let out = collect(&port, &args, &env);
    let event = event(&out);
    assert_eq!(
        ext_properties(&event),
        owned(&[
            ("ext.flavour", "from-env"),
            ("ext.note", "café ~ ok?"),
            ("ext.region", "from-flag"),
            ("ext.stage", "canary"),
            ("ext.team", "platform"),
        ])
    );
    // Still the pure-ASCII, escaped JSON every event is.
    assert!(
        out.stdout.is_ascii(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for skipped in ["ext.hidden", "ext...data", "not an extension"] {
        assert!(!event.to_string().contains(skipped), "{event}");
    }

    // The table says where each one came from.
    let table_args = [&args[..], &["--output", "table"]].concat();
    let out = collect(&port, &table_args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, source) in [
        ("ext.team", "from --extensions-dir"),
        ("ext.stage", "from --extensions-dir"),
        ("ext.flavour", "from HODOMETER_EXTENSIONS"),
        ("ext.region", "from --extension"),
    ] {
        let line = row(&text, name);
        assert!(line.contains("shared"), "{line}");
        assert!(
            line.contains(&format!("operator-supplied, {source}")),
            "{line}"
        );
    }
}

#[test]
fn the_extensions_dir_flag_reads_the_same_layout() {
    let dir = configmap_dir(&[("team", "ml")]);
    let out = collect(
        &scheduler().port_arg(),
        &["--extensions-dir", path_arg(dir.path())],
        &[],
    );
    assert_eq!(ext_properties(&event(&out)), owned(&[("ext.team", "ml")]));
}

#[test]
fn levels_gate_extensions_like_metrics() {
    let sim = scheduler();
    let port = sim.port_arg();
    let extensions = [
        "--extension",
        "a=1",
        "--extension",
        "b@resource=2",
        "--extension",
        "c@Feature=3",
    ];
    let at = |level: &str| {
        let args = [&extensions[..], &["--level", level]].concat();
        collect(&port, &args, &[])
    };
    assert_eq!(
        ext_properties(&event(&at("cluster"))),
        owned(&[("ext.a", "1")])
    );
    assert_eq!(
        ext_properties(&event(&at("resource"))),
        owned(&[("ext.a", "1"), ("ext.b", "2")])
    );
    assert_eq!(
        ext_properties(&event(&at("feature"))),
        owned(&[("ext.a", "1"), ("ext.b", "2"), ("ext.c", "3")])
    );
    let off = at("off");
    assert!(off.status.success() && off.stdout.is_empty(), "{off:?}");

    let args = [&extensions[..], &["--output", "table"]].concat();
    let out = collect(&port, &args, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(row(&text, "ext.a").contains("shared"), "{text}");
    assert!(row(&text, "ext.b").contains("withheld"), "{text}");
    assert!(row(&text, "ext.c").contains("feature"), "{text}");
}

#[test]
fn every_problem_is_reported_at_once_with_exit_2() {
    let dir = configmap_dir(&[("Team", "x"), ("empty", "\n")]);
    let out = hodometer(&[
        "collect",
        "--no-kube",
        "--level",
        "loud",
        "--extensions-dir",
        path_arg(dir.path()),
        "--extension",
        "cluster_id=mine",
        "--extension",
        "bell=a\u{7}b",
        "--extension",
        &format!("long={}", "x".repeat(257)),
        "--extension",
        "never@off=x",
    ])
    .env("HODOMETER_EXTENSIONS", "ok=1,noequals")
    .output()
    .expect("run collect");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    for needle in [
        "METRICS_LEVEL",
        "\"Team\" is not valid",
        "the value is empty",
        "\"cluster_id\" is the name of a metric",
        "control character",
        "longer than 256 bytes",
        "level off would never share it",
        "HODOMETER_EXTENSIONS = \"noequals\": expected key=value",
        "invalid configuration (8 problems)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    assert!(out.stdout.is_empty(), "nothing is collected");
}

#[test]
fn more_than_32_extensions_are_refused() {
    let list: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let out = hodometer(&["collect", "--no-kube"])
        .env("HODOMETER_EXTENSIONS", list.join(","))
        .output()
        .expect("run collect");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at most 32 extensions"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_privacy_guard_warns_for_each_kind_but_sends_what_the_operator_chose() {
    let cases = [
        ("ipv4", "10.1.2.3", "looks like an IPv4 address"),
        ("ipv6", "fd00::17", "looks like an IPv6 address"),
        ("mail", "ops@acme.com", "looks like an e-mail address"),
        ("host", "db.internal.acme.io", "looks like a host name"),
        // With --no-kube the namespace is Seldon's default.
        ("ns", "seldon-mesh", "is the namespace's name"),
    ];
    let mut args = vec!["--log-format".to_string(), "text".to_string()];
    for (key, value, _) in cases {
        args.extend(["--extension".into(), format!("{key}={value}")]);
    }
    args.extend(["--extension".into(), "tier=gold".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = collect(&scheduler().port_arg(), &args, &[]);
    let event = event(&out);
    let logs = stderr(&out);
    for (key, value, warning) in cases {
        assert_eq!(properties(&event)[&format!("ext.{key}")], value);
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("extension ext.{key} ")))
            .unwrap_or_else(|| panic!("no warning for {key} in\n{logs}"));
        assert!(line.contains("WARN") && line.contains(warning), "{line}");
        assert!(!line.contains(value), "a warning repeats the value: {line}");
    }
    assert!(
        !logs.contains("ext.tier"),
        "a harmless value is not flagged:\n{logs}"
    );
}

#[test]
fn the_guard_knows_the_namespace_kubernetes_was_read_in() {
    let scenario = example_scenario();
    let sim = SimProcess::start_with_kube(&["--scenario", path_arg(&scenario)]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    let out = hodometer(&[
        "collect",
        "--scheduler-port",
        &sim.port_arg(),
        "--kubeconfig",
        path_arg(&kubeconfig),
        "--extension",
        &format!("where={SIM_NAMESPACE}"),
        "--log-format",
        "text",
    ])
    .output()
    .expect("run collect");
    let event = event(&out);
    assert_eq!(properties(&event)["is_kubernetes"], true);
    let logs = stderr(&out);
    assert!(
        logs.lines()
            .any(|l| l.contains("extension ext.where ") && l.contains("is the namespace's name")),
        "{logs}"
    );
}

#[test]
fn names_leave_only_in_an_extension_an_operator_put_there() {
    let path = example_scenario();
    let scenario = Scenario::load(&path).expect("example scenario");
    let sim = SimProcess::start(&["--scenario", path_arg(&path)]);
    let model = scenario.models[0].name.clone();
    let out = collect(
        &sim.port_arg(),
        &[
            "--level",
            "feature",
            "--extension",
            &format!("owner={model}"),
        ],
        &[],
    );
    let mut event = event(&out);
    assert_eq!(properties(&event)["ext.owner"], model.as_str());
    // Without the operator's own extension, no workload name and no namespace is left.
    event["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("ext.owner");
    let rest = event.to_string();
    let mut names: Vec<&str> = scenario.models.iter().map(|m| m.name.as_str()).collect();
    names.extend(scenario.servers.iter().map(|s| s.name.as_str()));
    names.push(SIM_NAMESPACE);
    for name in names {
        assert!(!rest.contains(name), "{name} in {rest}");
    }
}

#[test]
fn the_daemon_logs_the_warning_and_publishes_the_extensions() {
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let summary = ReceiverProcess::start(&["--record", "summary"]);
    let sim = scheduler();
    let out = hodometer(&["daemon", "--once", "--no-kube"])
        .env("SCHEDULER_HOST", "127.0.0.1")
        .env("SCHEDULER_PLAINTXT_PORT", sim.port_arg())
        .env("PUBLISH_URL", format!("http://127.0.0.1:{}", receiver.port))
        .env(
            "EXTRA_PUBLISH_URLS",
            format!("http://127.0.0.1:{}", summary.port),
        )
        .env("HODOMETER_EXTENSIONS", "team=ml,contact=ops@acme.com")
        .env("LOG_FORMAT", "json")
        .output()
        .expect("run daemon");
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    let message = warnings[0]["message"].as_str().expect("message");
    assert!(
        message.contains("ext.contact") && message.contains("e-mail"),
        "{message}"
    );

    let (_, events) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).expect("events JSON");
    assert_eq!(events.len(), 1, "{events:?}");
    let sent = events[0].to_string();
    assert!(sent.contains("\"ext.team\":\"ml\""), "{sent}");
    assert!(sent.contains("\"ext.contact\":\"ops@acme.com\""), "{sent}");

    // The summary keeps each cluster's latest extensions beside its metrics, never as gauges.
    let (_, text) = http_get(&format!("127.0.0.1:{}", summary.port), "/events");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("summary JSON");
    let cluster = &summary["clusters"][0];
    assert_eq!(
        cluster["extensions"],
        serde_json::json!({"team": "ml", "contact": "ops@acme.com"}),
        "{text}"
    );
    assert!(cluster["metrics"].get("ext.team").is_none(), "{text}");
    let (_, metrics) = http_get(&format!("127.0.0.1:{}", receiver.port), "/metrics");
    assert!(!metrics.contains("ops@acme.com"), "{metrics}");
}

#[test]
fn the_inspector_marks_extensions_with_their_source_and_warnings() {
    let sim = scheduler();
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "HODOMETER_EXTENSIONS=team=ml {BIN} inspect --no-kube --scheduler-port {} \
         --extension owner@feature=ops@acme.com --publish-url http://127.0.0.1:{} \
         --log-file {}; sleep 60",
        sim.port,
        dead_port(),
        dir.path().join("inspect.log").display(),
    );
    // Wide enough that the table beside the payload has room for the marker and the warning.
    let tmux = Tmux::start_sized("extensions", &command, (240, 40));
    let screen = tmux.wait_for("the extension rows", |s| {
        s.contains("ext.team") && s.contains("ext.owner")
    });
    let team = row(&screen, "ext.team");
    assert!(team.contains("shared"), "{screen}");
    assert!(
        team.contains("ml") && team.contains("operator-supplied, from HODOMETER_EXTENSIONS"),
        "{screen}"
    );
    let owner = row(&screen, "ext.owner");
    assert!(owner.contains("withheld"), "{screen}");
    assert!(owner.contains("looks like an e-mail address"), "{screen}");

    tmux.keys(&["3"]);
    // A capture can catch the level bar redrawn before the table: wait for the row itself.
    let screen = tmux.wait_for("level feature", |s| {
        s.contains("[3 feature]")
            && s.lines()
                .any(|l| l.starts_with("ext.owner ") && l.contains("● shared"))
    });
    assert!(row(&screen, "ext.owner").contains("shared"), "{screen}");
}
