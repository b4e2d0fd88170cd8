//! The command line behaves like kubectl's: `--version`, completions and the manual page, the
//! shared flags (`-n`, `--context`, `-o`), exit codes, and errors a person can act on. Each
//! against the real binary.

mod common;

use std::process::{Command, Output, Stdio};

use common::{SimProcess, example_scenario, hodometer};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run hodometer")
}

#[test]
fn version_names_the_commit_and_the_build_features() {
    let out = run(&mut hodometer(&["--version"]));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("hodometer {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .expect("a commit line");
    // This test runs from a git checkout, so the commit is known and is this checkout's.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    if head.status.success() {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(
            head.starts_with(commit.trim()) && commit.len() >= 7,
            "commit {commit:?}, HEAD {head}"
        );
    }
    assert!(text.contains("\nfeatures: tools"), "{text}");
}

#[test]
fn completion_scripts_parse_in_their_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&mut hodometer(&["completion", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("hodometer"), "{shell}");
        for flag in ["request-timeout", "context", "output"] {
            assert!(script.contains(flag), "{shell} completes --{flag}");
        }
    }
    // bash is always here; the others are checked where installed.
    let script = run(&mut hodometer(&["completion", "bash"])).stdout;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hodometer.bash");
    std::fs::write(&path, script).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    // Loading it defines the completion function and registers it.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p hodometer",
            path.display()
        ))
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("hodometer"),
        "{}",
        stderr(&loaded)
    );
    for (shell, flag) in [("zsh", "-n"), ("fish", "--no-execute")] {
        if Command::new(shell).arg("--version").output().is_err() {
            continue;
        }
        let script = run(&mut hodometer(&["completion", shell])).stdout;
        let path = dir.path().join(format!("hodometer.{shell}"));
        std::fs::write(&path, script).expect("write");
        let check = Command::new(shell)
            .arg(flag)
            .arg(&path)
            .output()
            .expect(shell);
        assert!(check.status.success(), "{shell}: {}", stderr(&check));
    }
}

#[test]
fn the_manual_page_covers_every_command() {
    let out = run(&mut hodometer(&["man"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH hodometer 1"),
        "{page:.200}"
    );
    for section in ["HODOMETER COLLECT", "HODOMETER CONSENT", "HODOMETER DAEMON"] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(
        page.contains("Exit codes"),
        "the exit codes are in the page"
    );
    // Only one line of title: `--version`'s extra lines would break the roff.
    let title = page.lines().find(|l| l.starts_with(".TH")).expect(".TH");
    assert!(
        title.ends_with('"') || title.contains(env!("CARGO_PKG_VERSION")),
        "{title}"
    );
    if Command::new("man").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hodometer.1");
        std::fs::write(&path, page.as_bytes()).expect("write");
        let rendered = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&path)
            .env("MANWIDTH", "100")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("--request-timeout"), "{}", stderr(&rendered));
    }
}

#[test]
fn every_help_ends_with_the_exit_codes() {
    for args in [
        vec!["--help"],
        vec!["collect", "--help"],
        vec!["consent", "set", "--help"],
        vec!["daemon", "--help"],
    ] {
        let out = run(&mut hodometer(&args));
        let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        assert!(
            help.contains("Exit codes: 0 done; 1 a runtime failure")
                && help.contains("2 usage or configuration"),
            "{args:?}: {help}"
        );
    }
}

fn scenario_sim() -> SimProcess {
    let scenario = example_scenario();
    SimProcess::start_with_kube(&["--scenario", scenario.to_str().expect("utf-8")])
}

/// `collect` against the simulator and its stand-in, with the kubectl spellings, in `context`.
fn collect_in(sim: &SimProcess, context: &str, args: &[&str]) -> Output {
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let port = sim.port_arg();
    let mut all = vec![
        "collect",
        "--scheduler-port",
        &port,
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--context",
        context,
        "-n",
        "seldon-mesh",
        "--level",
        "feature",
    ];
    all.extend_from_slice(args);
    run(&mut hodometer(&all))
}

fn collect(sim: &SimProcess, args: &[&str]) -> Output {
    collect_in(sim, "hodometer-sim", args)
}

#[test]
fn collect_speaks_kubectl_flags_and_its_yaml_is_a_view_of_the_json() {
    let sim = scenario_sim();
    let json = collect(
        &sim,
        &[
            "-o",
            "json",
            "--cluster-id",
            "4b8f1c2d-6e3a-4f50-9a71-2c3d4e5f6a7b",
        ],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let event: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let p = &event["properties"];
    assert_eq!(p["is_kubernetes"], true, "read through --context and -n");
    assert_eq!(p["model_count"], 3);

    let yaml = collect(
        &sim,
        &[
            "-o",
            "yaml",
            "--cluster-id",
            "4b8f1c2d-6e3a-4f50-9a71-2c3d4e5f6a7b",
        ],
    );
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let from_yaml: Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout)).expect("YAML");
    // Every metric agrees; only the per-event id and time differ between two runs.
    for (key, value) in p.as_object().expect("properties") {
        if key == "$insert_id" || key == "time" {
            continue;
        }
        assert_eq!(&from_yaml["properties"][key], value, "{key}");
    }
    assert_eq!(
        from_yaml["properties"]["ip"], "0",
        "a string stays a string"
    );

    let table = collect(&sim, &["-o", "table"]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(String::from_utf8_lossy(&table.stdout).contains("model_count"));
}

#[test]
fn a_missing_context_is_named_as_kubectl_names_it() {
    let sim = scenario_sim();
    let out = collect_in(&sim, "nope", &[]);
    assert_eq!(out.status.code(), Some(1), "Kubernetes could not be used");
    let err = stderr(&out);
    assert!(err.contains("context \"nope\" does not exist"), "{err}");
    assert_eq!(err.matches("does not exist").count(), 1, "said once: {err}");
    // The event is still printed, without the Kubernetes metrics.
    let event: Value = serde_json::from_slice(&out.stdout).expect("the event");
    assert!(event["properties"].get("kubernetes_version").is_none());

    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let show = run(&mut hodometer(&[
        "consent",
        "show",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--kube-context",
        "nope",
    ]));
    assert_eq!(show.status.code(), Some(1));
    assert_eq!(
        stderr(&show).trim(),
        "hodometer: context \"nope\" does not exist"
    );
}

#[test]
fn a_missing_kubeconfig_says_where_one_is_looked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nonexistent");
    let show = run(&mut hodometer(&[
        "consent",
        "show",
        "--kubeconfig",
        missing.to_str().expect("utf-8"),
    ]));
    assert_eq!(show.status.code(), Some(1));
    let err = stderr(&show);
    assert!(
        err.contains(&format!("kubeconfig {}:", missing.display())),
        "the path, unquoted: {err}"
    );
    assert!(err.contains("No such file"), "{err}");
    assert!(err.contains("KUBECONFIG"), "{err}");

    // No kubeconfig at all: say so, and where to point.
    let show = run(hodometer(&["consent", "show"]).env("HOME", dir.path()));
    assert_eq!(show.status.code(), Some(1));
    let err = stderr(&show);
    assert!(
        err.contains("no Kubernetes configuration")
            && err.contains("--kubeconfig")
            && err.contains("KUBECONFIG"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line, no log lines: {err}");
}

#[test]
fn a_dead_api_server_is_named_with_its_url_and_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::dead_port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t0k3n\n"
        ),
    )
    .expect("write kubeconfig");
    let out = run(&mut hodometer(&[
        "consent",
        "show",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--request-timeout",
        "5s",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}")),
        "the URL: {err}"
    );
    assert!(
        err.to_lowercase().contains("connection refused"),
        "the cause: {err}"
    );
    assert_eq!(err.lines().count(), 1, "once, and no log lines: {err}");
    assert!(!err.contains("t0k3n"));
}

#[test]
fn consent_show_prints_json_and_yaml_of_the_same_document() {
    let sim = scenario_sim();
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let show = |format: &str| {
        run(&mut hodometer(&[
            "consent",
            "show",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "--context",
            "hodometer-sim",
            "-n",
            "seldon-mesh",
            "-o",
            format,
        ]))
    };
    let json = show("json");
    let yaml = show("yaml");
    // The stand-in starts with no ConfigMaps: both reads answer "not there".
    assert!(json.status.success(), "{}", stderr(&json));
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let json: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let yaml: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout)).expect("YAML");
    assert_eq!(json, yaml);
    assert_eq!(json["namespace"], "seldon-mesh");
    assert!(json.get("consent").is_some() && json.get("status").is_some());
}

#[test]
fn consent_set_without_yes_off_a_terminal_is_a_usage_error() {
    let sim = scenario_sim();
    let kubeconfig = sim.kubeconfig.as_ref().expect("kubeconfig");
    let out = run(&mut hodometer(&[
        "consent",
        "set",
        "--level",
        "cluster",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
}

#[test]
fn dry_run_takes_kubectl_s_optional_value() {
    for dry_run in ["--dry-run", "--dry-run=client"] {
        let out = run(&mut hodometer(&[
            "consent", "set", "--level", "resource", dry_run, "-o", "json", "-n", "team-a",
        ]));
        assert!(out.status.success(), "{dry_run}: {}", stderr(&out));
        let manifest: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(manifest["kind"], "ConfigMap");
        assert_eq!(manifest["metadata"]["namespace"], "team-a");
        assert_eq!(manifest["data"]["level"], "resource");
    }
    let out = run(&mut hodometer(&[
        "consent",
        "set",
        "--level",
        "resource",
        "--dry-run=server",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_error_and_its_cause_are_said_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = run(&mut hodometer(&["receive", "--listen", &addr]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "once: {err}"
    );
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn one_problem_is_one_problem() {
    let out = run(&mut hodometer(&["collect", "--no-kube", "--level", "loud"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid configuration (1 problem):"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_read_rbac_forbids_by_design_is_a_note_and_leaves_the_exit_code() {
    // The shipped Role without the optional ClusterRole: nodes cannot be listed.
    let role = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/k8s/role.yaml");
    let scenario = example_scenario();
    let sim = SimProcess::start_with_kube(&[
        "--scenario",
        scenario.to_str().expect("utf-8"),
        "--kube-rbac",
        role,
    ]);
    let out = collect(&sim, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("hodometer: note: Kubernetes: forbidden: list nodes"),
        "{err}"
    );
    assert!(err.contains("ClusterRole"), "the missing permission: {err}");
    let event: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(event["properties"].get("node_count").is_none());
    assert_eq!(event["properties"]["is_kubernetes"], true);
}
