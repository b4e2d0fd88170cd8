//! The inspector in a real terminal: tmux runs the real binary against the simulated scheduler
//! and Kubernetes stand-in, keys are typed with send-keys and the screen read with capture-pane.

mod common;

use common::{BIN, ReceiverProcess, SimProcess, Tmux, example_scenario, http_get, row};

#[test]
fn inspect_flips_sharing_with_the_level_sends_after_confirmation_and_quits_cleanly() {
    let scenario = example_scenario();
    let sim = SimProcess::start_with_kube(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "{BIN} inspect --scheduler-port {} --kubeconfig {} --publish-url http://127.0.0.1:{} \
         --refresh 2s --log-file {}; echo EXITED $?; sleep 60",
        sim.port,
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        receiver.port,
        dir.path().join("inspect.log").display(),
    );
    let tmux = Tmux::start("send", &command);

    let screen = tmux.wait_for("both sources connected", |s| {
        s.contains("connected, Seldon 2.9.1") && s.contains("connected, v1.31.2")
    });
    assert!(row(&screen, "node_count").contains("shared"), "{screen}");
    assert!(row(&screen, "model_count").contains("withheld"), "{screen}");

    tmux.keys(&["3"]);
    let screen = tmux.wait_for("level feature", |s| s.contains("[3 feature]"));
    assert!(row(&screen, "model_count").contains("shared"), "{screen}");
    assert!(
        row(&screen, "gpu_enabled_count").contains("shared"),
        "{screen}"
    );

    tmux.keys(&["Left", "Left"]);
    let screen = tmux.wait_for("level cluster", |s| s.contains("[1 cluster]"));
    assert!(row(&screen, "model_count").contains("withheld"), "{screen}");

    tmux.keys(&["s"]);
    let screen = tmux.wait_for("the confirmation dialog", |s| {
        s.contains("send this payload?")
    });
    assert!(
        screen.contains(&format!("http://127.0.0.1:{}/", receiver.port)),
        "{screen}"
    );
    let (_, before) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    assert_eq!(before.trim(), "[]", "nothing is sent before confirmation");

    tmux.keys(&["y"]);
    tmux.wait_for("the endpoint's outcome", |s| s.contains("ok (HTTP 200"));
    let (_, events) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).expect("events JSON");
    assert_eq!(events.len(), 1);
    let sent = events[0].to_string();
    assert!(sent.contains("\"metrics_level\":\"cluster\""), "{sent}");
    assert!(
        !sent.contains("model_count"),
        "a withheld metric was sent: {sent}"
    );

    tmux.keys(&["Escape"]);
    tmux.wait_for("the dialog closed", |s| !s.contains("Esc: close"));
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("a clean exit", |s| s.contains("EXITED"));
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(
        !screen.contains("cluster id"),
        "the screen was not restored:\n{screen}"
    );
}

#[test]
fn ctrl_c_quits_even_from_the_send_dialog() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let command = format!(
        "{BIN} inspect --no-kube --scheduler-port {} --publish-url http://127.0.0.1:9 --log-file /dev/null; \
         echo EXITED $?; sleep 60",
        sim.port
    );
    let tmux = Tmux::start("ctrl-c", &command);
    tmux.wait_for("the scheduler", |s| s.contains("connected"));
    tmux.keys(&["s"]);
    tmux.wait_for("the dialog", |s| s.contains("send this payload?"));
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("an exit", |s| s.contains("EXITED"));
    assert!(screen.contains("EXITED 0"), "{screen}");
}

#[test]
fn without_a_terminal_it_says_so_and_suggests_collect() {
    let out = common::hodometer(&["inspect"])
        .output()
        .expect("run inspect");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hodometer collect"));
    let bare = common::hodometer(&[]).output().expect("run hodometer");
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("needs a terminal"));
}
