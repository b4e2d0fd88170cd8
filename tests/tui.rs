//! The inspector in a real terminal: tmux runs the real binary against the simulated scheduler
//! and Kubernetes stand-in, keys are typed with send-keys and the screen read with capture-pane.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::{
    BIN, KillOnDrop, ReceiverProcess, SimProcess, Tmux, example_scenario, http_get, listening_port,
    row,
};

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

    // A capture can catch a frame half drawn: wait for the rows too.
    let screen = tmux.wait_for("both sources connected", |s| {
        s.contains("connected, Seldon 2.9.1")
            && s.contains("connected, v1.31.2")
            && s.contains("\nmodel_count ")
            && s.contains("\nnode_count ")
    });
    assert!(row(&screen, "node_count").contains("shared"), "{screen}");
    assert!(row(&screen, "model_count").contains("withheld"), "{screen}");

    tmux.keys(&["3"]);
    // A capture can catch a frame half drawn: wait for the rows too, then look at them.
    let screen = tmux.wait_for("level feature", |s| {
        s.contains("[3 feature]") && s.contains("\"metrics_level\": \"feature\"")
    });
    assert!(row(&screen, "model_count").contains("shared"), "{screen}");
    assert!(
        row(&screen, "gpu_enabled_count").contains("shared"),
        "{screen}"
    );

    tmux.keys(&["Left", "Left"]);
    let screen = tmux.wait_for("level cluster", |s| {
        s.contains("[1 cluster]") && s.contains("\"metrics_level\": \"cluster\"")
    });
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
    tmux.wait_for("the dialog closed", |s| s.contains("s send"));
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

/// What the receiver recorded, as the JSON texts it stored.
fn received(receiver: &ReceiverProcess) -> String {
    let (_, events) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    events.trim().to_string()
}

#[test]
fn do_not_track_locks_the_level_and_no_key_sends() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let command = format!(
        "DO_NOT_TRACK=1 {BIN} inspect --no-kube --level feature --scheduler-port {} \
         --publish-url http://127.0.0.1:{} --log-file /dev/null; echo EXITED $?; sleep 60",
        sim.port, receiver.port
    );
    let tmux = Tmux::start("dnt", &command);
    let screen = tmux.wait_for("the scheduler", |s| s.contains("connected"));
    assert!(
        screen.contains("[0 off]"),
        "DO_NOT_TRACK wins over --level:\n{screen}"
    );
    assert!(
        screen.contains("DO_NOT_TRACK is set"),
        "the header says why:\n{screen}"
    );
    tmux.keys(&["3", "Right", "s", "y", "Enter"]);
    let screen = tmux.wait_for("the refusal", |s| {
        s.contains("nothing is sent from this session")
    });
    assert!(screen.contains("[0 off]"), "{screen}");
    assert!(!screen.contains("send this payload?"), "{screen}");
    assert_eq!(received(&receiver), "[]", "nothing left");
}

/// The text of the box (the send's dialog) whose content starts with `start` on the lowest
/// such line: from that line down to the box's bottom, what lies between its side borders.
fn boxed_lines_from(screen: &str, start: &str) -> Vec<String> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let first_box = |line: &Vec<char>| -> Option<(usize, String)> {
        let left = line.iter().position(|c| *c == '│')?;
        let inner: String = line[left + 1..].iter().take_while(|c| **c != '│').collect();
        Some((left, inner))
    };
    let top = lines
        .iter()
        .rposition(|l| first_box(l).is_some_and(|(_, inner)| inner.starts_with(start)))
        .expect("the box");
    let (left, _) = first_box(&lines[top]).expect("the box");
    lines[top..]
        .iter()
        .take_while(|l| l.get(left) == Some(&'│'))
        .filter_map(|l| first_box(l).map(|(_, inner)| inner))
        .collect()
}

#[test]
fn the_confirmed_event_is_the_one_received_byte_for_byte_and_the_pane_stays_on_it() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("inspect.log");
    let command = format!(
        "{BIN} inspect --no-kube --level resource --refresh 1s --scheduler-port {} \
         --publish-url http://127.0.0.1:{} --log-file {}; sleep 60",
        sim.port,
        receiver.port,
        log.display()
    );
    let tmux = Tmux::start("bytes", &command);
    tmux.wait_for("the scheduler", |s| s.contains("connected"));
    tmux.keys(&["s"]);
    let asking = tmux.wait_for("the dialog", |s| s.contains("send this payload?"));
    let insert_id = asking
        .split("$insert_id ")
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .expect("the dialog names the $insert_id")
        .to_string();
    // The dialog writes it as the payload does.
    let hyphenated = uuid::Uuid::parse_str(&insert_id)
        .expect("uuid")
        .hyphenated()
        .to_string();
    assert_eq!(insert_id, hyphenated);
    assert!(
        asking.contains(&hyphenated),
        "the pane shows the event being confirmed:\n{asking}"
    );
    // Two refreshes (one a second, counted in the log) go on behind the dialog; the pane still
    // shows that event.
    let refreshed = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("inspector refreshed")
            .count()
    };
    common::wait_for_lines(&log, "inspector refreshed", refreshed(&log) + 2);
    let later = tmux.screen();
    assert!(later.contains(&hyphenated), "the pane moved on:\n{later}");
    // The pane shows one event, whose `$insert_id` is the dialog's.
    assert_eq!(later.matches("\"$insert_id\"").count(), 1, "{later}");

    tmux.keys(&["y"]);
    tmux.wait_for("the outcome", |s| s.contains("ok (HTTP 200"));
    tmux.keys(&["b"]);
    let sent = tmux.wait_for("the bytes as sent", |s| s.contains("bytes exactly as sent"));
    let lines = boxed_lines_from(&sent, "{\"event\"");
    let shown: String = lines.concat().trim_end().to_string();
    let stored = received(&receiver);
    let stored = stored
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .expect("one stored event");
    assert_eq!(shown, stored, "the screen's bytes are the bytes received");
    assert!(stored.contains(&hyphenated));
}

/// `hodometer sim` on `listen`, and the port it listens on.
fn start_sim(listen: &str) -> (KillOnDrop, u16) {
    let scenario = example_scenario();
    let mut child = common::hodometer(&[
        "sim",
        "--listen",
        listen,
        "--scenario",
        scenario.to_str().expect("utf-8"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start sim");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let port = listening_port(&mut lines, "hodometer sim: ");
    (KillOnDrop::new(child), port)
}

#[test]
fn a_killed_scheduler_is_reported_at_once_and_its_return_picked_up() {
    let (mut sim, port) = start_sim("127.0.0.1:0");
    // A refresh every minute: what the screen shows within Tmux::wait_for's 30 s cannot come
    // from the timer, only from noticing the connection drop (and come back).
    let command = format!(
        "{BIN} inspect --no-kube --refresh 60s --scheduler-port {port} \
         --publish-url http://127.0.0.1:9 --log-file /dev/null; sleep 60"
    );
    let tmux = Tmux::start("killed", &command);
    tmux.wait_for("the scheduler", |s| s.contains("connected"));
    sim.kill().expect("kill sim");
    sim.wait().expect("reap sim");
    let killed = Instant::now();
    // Whichever noticed first, the connection check ("connect: connection refused") or a call
    // under way ("… Connection refused (os error 111)"), the scheduler is down with the hint.
    // The header wraps a long reason rather than cut it: read it with the line breaks undone.
    let hint = format!("kubectl port-forward -n seldon-mesh svc/seldon-scheduler {port}:9004");
    tmux.wait_for("the scheduler down", |s| {
        let header = s.replace('\n', " ");
        header.contains(": down: ")
            && header.to_ascii_lowercase().contains("connection refused")
            && header.contains(&hint)
    });
    eprintln!("killed scheduler reported after {:?}", killed.elapsed());

    let _sim = start_sim(&format!("127.0.0.1:{port}"));
    tmux.wait_for("the scheduler back", |s| {
        s.contains("connected") && !s.contains("down: connect")
    });
}

#[test]
fn the_demo_shows_the_whole_consent_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} demo --refresh 1s; echo EXITED $?; sleep 60",
        dir.path().display()
    );
    let tmux = Tmux::start("demo-consent", &command);
    // The demo's reporter starts as a drop-in would: the consent is empty, the environment
    // rules, and the header says which of the two (empty, not absent).
    tmux.wait_for("the demo's reporter under the environment", |s| {
        s.contains(
            "in-cluster reporter ◆: level cluster (environment): the consent ConfigMap is empty: METRICS_LEVEL rules; last ",
        )
    });
    tmux.keys(&["2"]);
    tmux.keys(&["a"]);
    tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?") && s.contains("every 5s")
    });
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("the reporter's acknowledgement at the new level", |s| {
        s.contains("acknowledged by the reporter")
            && s.contains("in-cluster reporter ◆: level resource (consent)")
    });
    assert!(screen.contains("[2 resource]◆"), "{screen}");
    // Its next event, at the approved level, in its pane.
    tmux.keys(&["e"]);
    tmux.wait_for("the reporter's event at the approved level", |s| {
        s.contains("in-cluster reporter's last event")
            && s.contains("\"metrics_level\": \"resource\"")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
}
