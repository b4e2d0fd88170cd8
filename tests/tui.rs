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
    tmux.keys(&["3", "Right", "s", "y"]);
    let screen = tmux.wait_for("the refusal", |s| {
        s.contains("nothing is sent from this session")
    });
    assert!(screen.contains("[0 off]"), "{screen}");
    assert!(!screen.contains("send this payload?"), "{screen}");
    // Enter describes the selected row; it sends nothing either.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the row described", |s| s.contains("Esc: close"));
    assert!(!screen.contains("send this payload?"), "{screen}");
    assert_eq!(received(&receiver), "[]", "nothing left");
}

/// The text of the box (the send's dialog) whose content starts with `start` on the lowest
/// such line: from that line down to the first blank row (the dialog's key line follows it),
/// what lies between its side borders.
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
        .take_while(|inner| !inner.trim().is_empty())
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
    // Wide enough that the approval's line (with the approver) is not wrapped.
    let tmux = Tmux::start_sized("demo-consent", &command, (180, 48));
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
    // Approved as the person whose kubeconfig the inspector uses, not the reporter's account.
    assert!(screen.contains("by demo-operator@example.com"), "{screen}");
    // Its next event, at the approved level, in its pane.
    tmux.keys(&["e"]);
    tmux.wait_for("the reporter's event at the approved level", |s| {
        s.contains("in-cluster reporter's last event")
            && s.contains("\"metrics_level\": \"resource\"")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn the_demo_filters_describes_a_row_and_diffs_an_approval_before_writing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} demo --refresh 1s; echo EXITED $?; sleep 60",
        dir.path().display()
    );
    let tmux = Tmux::start_sized("demo-describe", &command, (100, 30));
    // The screen opens on the reporter's level, and the sharing column is the reporter's.
    let screen = tmux.wait_for("the demo's reporter", |s| {
        s.contains("in-cluster reporter ◆: level cluster (environment)")
            && s.contains("\nnode_count ")
            && s.contains("\nmodel_count ")
            && row(s, "node_count").contains("◆ shared")
            && row(s, "model_count").contains("withheld")
    });
    assert!(screen.contains("[1 cluster]◆"), "{screen}");
    assert!(row(&screen, "node_count").contains("◆ shared"), "{screen}");
    assert!(row(&screen, "model_count").contains("withheld"), "{screen}");

    // `/` filters by name; Enter keeps the filter; Enter again describes the row selected.
    tmux.keys(&["/", "g", "p", "u"]);
    let screen = tmux.wait_for("the filter", |s| s.contains("filter /gpu"));
    assert!(screen.contains("1 of 21 rows"), "{screen}");
    assert!(!screen.contains("\nmodel_count "), "{screen}");
    tmux.keys(&["Enter", "Enter"]);
    let screen = tmux.wait_for("the description", |s| {
        s.contains("┌ gpu_enabled_count ") && s.contains("Esc: close")
    });
    let said = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains("Servers whose inference container requests or limits any"),
        "the meaning from the metrics table:\n{screen}"
    );
    assert!(said.contains("level feature"), "{screen}");
    assert!(said.contains("source Kubernetes"), "{screen}");
    assert!(said.contains("reporter withholds it"), "{screen}");
    // One Esc at a time: two at once read as Alt-Esc, as in any terminal.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the description closed", |s| {
        !s.contains("┌ gpu_enabled_count")
    });
    tmux.keys(&["Escape"]);
    let screen = tmux.wait_for("the filter cleared", |s| {
        !s.contains("filter /") && s.contains("\nmodel_count ")
    });
    assert!(!screen.contains("┌ gpu_enabled_count"), "{screen}");

    // A proposal marked against the reporter, and the approve dialog's diff.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("the proposal", |s| {
        s.contains("[2 resource]") && s.contains("\nmodel_count ") && s.contains("proposal: ")
    });
    assert!(
        row(&screen, "model_count").contains("withheld  +"),
        "{screen}"
    );
    assert!(screen.contains("proposal: +5 −0"), "{screen}");
    tmux.keys(&["a"]);
    let screen = tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?") && s.contains("y: approve and write")
    });
    for added in ["model_count", "pipeline_count", "server_replica_count"] {
        assert!(screen.contains(&format!("+ {added}")), "{added}:\n{screen}");
    }
    assert!(
        !screen.contains("+ node_count"),
        "already shared:\n{screen}"
    );
    assert!(!screen.contains("− "), "nothing removed:\n{screen}");
    tmux.keys(&["y"]);
    tmux.wait_for("the reporter at the approved level", |s| {
        s.contains("acknowledged by the reporter") && s.contains("[2 resource]◆")
    });

    // Stopping is said as what it is, with what it removes.
    tmux.keys(&["0", "a"]);
    let screen = tmux.wait_for("the approve dialog at off", |s| {
        s.contains("approve for the in-cluster reporter?") && s.contains("y: approve and write")
    });
    let said = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(
            "stop sharing: the reporter sends nothing from now on, including an event it is still retrying"
        ),
        "{screen}"
    );
    assert!(screen.contains("− model_count"), "{screen}");
    assert!(!said.contains("publishes to"), "{screen}");
    tmux.keys(&["n", "q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn without_colour_a_row_that_becomes_shared_is_bold_at_once() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let command = format!(
        "NO_COLOR=1 {BIN} inspect --no-kube --scheduler-port {} --publish-url http://127.0.0.1:9 \
         --log-file /dev/null; sleep 60",
        sim.port
    );
    let tmux = Tmux::start_sized("no-color", &command, (80, 24));
    tmux.wait_for("the scheduler", |s| {
        s.contains("connected") && s.contains("\nmodel_count ") && s.contains("q quit")
    });
    // The screen with its attributes, as the terminal holds them.
    let styled = || {
        let out = tmux
            .cmd(&["capture-pane", "-p", "-e", "-t", "inspect"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = styled();
    assert!(
        sgr_params(&before).iter().all(|p| !is_colour(*p)),
        "a colour under NO_COLOR:\n{before:?}"
    );
    assert!(!bold_at(&before, "model_count"), "withheld is not bold");
    tmux.keys(&["2"]);
    tmux.wait_for("model_count shared", |s| {
        s.contains("\nmodel_count ") && row(s, "model_count").contains("● shared")
    });
    let after = styled();
    assert!(
        bold_at(&after, "model_count"),
        "the newly shared row is bold without a resize: {after:?}"
    );
}

/// Every SGR parameter in `capture` (`tmux capture-pane -e` output).
fn sgr_params(capture: &str) -> Vec<u32> {
    capture
        .split("\u{1b}[")
        .skip(1)
        .filter_map(|rest| rest.split_once('m'))
        .filter(|(params, _)| params.chars().all(|c| c.is_ascii_digit() || c == ';'))
        .flat_map(|(params, _)| {
            params
                .split(';')
                .map(|p| p.parse().unwrap_or(0))
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A foreground or background colour parameter (30-38, 40-48, 90-97, 100-107; 39 and 49 are
/// the defaults).
fn is_colour(param: u32) -> bool {
    matches!(param, 30..=38 | 40..=48 | 90..=97 | 100..=107)
}

/// Whether the line starting with `name` starts bold, following the attributes of the capture
/// from its beginning (tmux writes an attribute only where it changes).
fn bold_at(capture: &str, name: &str) -> bool {
    let mut bold = false;
    for line in capture.lines() {
        let mut text = String::new();
        let mut bold_at_start = None;
        let mut rest = line;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("\u{1b}[") {
                let (params, tail) = after.split_once('m').unwrap_or((after, ""));
                for p in params.split(';') {
                    match p {
                        "" | "0" | "22" => bold = false,
                        "1" => bold = true,
                        _ => {}
                    }
                }
                rest = tail;
            } else {
                let c = rest.chars().next().unwrap_or(' ');
                if text.is_empty() {
                    bold_at_start = Some(bold);
                }
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if text.starts_with(&format!("{name} ")) {
            return bold_at_start.unwrap_or(false);
        }
    }
    panic!("no line starts with {name}:\n{capture:?}")
}

/// The demo's in-process reporter keeps its history in the stand-in's ledger; `H` shows it:
/// the chain verified, the approval made here with its approver, and the sends around it.
#[test]
fn the_demo_shows_its_reporter_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} demo --refresh 1s; echo EXITED $?; sleep 60",
        dir.path().display()
    );
    let tmux = Tmux::start_sized("demo-history", &command, (120, 40));
    tmux.wait_for("the demo's reporter under the environment", |s| {
        s.contains("in-cluster reporter ◆: level cluster (environment)") && s.contains("; last ")
    });
    tmux.keys(&["2"]);
    tmux.keys(&["a"]);
    tmux.wait_for("the approve dialog", |s| {
        s.contains("approve for the in-cluster reporter?")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the reporter's acknowledgement", |s| {
        s.contains("acknowledged by the reporter")
    });
    // Wait for a send under the approval, then open the history.
    tmux.wait_for("a send at the approved level", |s| {
        s.contains("in-cluster reporter ◆: level resource (consent)") && s.contains("; last ")
    });
    tmux.keys(&["H"]);
    let screen = tmux.wait_for("the history pane", |s| {
        s.contains("history of the in-cluster reporter (hodometer-ledger)")
            && s.contains("chain verified:")
    });
    assert!(
        screen.contains("consent  approved resource"),
        "the approval is in the history:\n{screen}"
    );
    assert!(
        screen.contains(hodometer::sim::kube::SIM_PERSON_USER),
        "with its approver, the person who approved (not the reporter):\n{screen}"
    );
    assert!(screen.contains("send     cluster"), "{screen}");
    assert!(screen.contains("1 ok / 0 failed"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the history closed", |s| {
        !s.contains("history of the in-cluster reporter")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
}

/// The inspector's own sends are kept (a private file in the state directory), so `v` lists
/// them after a restart, with their outcomes.
#[test]
fn the_inspector_s_sends_are_listed_after_a_restart() {
    let scenario = example_scenario();
    let sim = SimProcess::start(&["--scenario", scenario.to_str().expect("utf-8")]);
    let receiver = ReceiverProcess::start(&["--record", "all"]);
    let state = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} inspect --no-kube --scheduler-port {} --publish-url http://127.0.0.1:{} \
         --refresh 2s; echo EXITED $?; sleep 60",
        state.path().display(),
        sim.port,
        receiver.port,
    );
    let tmux = Tmux::start("kept-send", &command);
    tmux.wait_for("the scheduler connected", |s| {
        s.contains("): connected") && s.contains("\nmodel_count ")
    });
    tmux.keys(&["s"]);
    tmux.wait_for("the confirmation dialog", |s| {
        s.contains("send this payload?")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the endpoint's outcome", |s| s.contains("ok (HTTP 200"));
    let (_, events) = http_get(&format!("127.0.0.1:{}", receiver.port), "/events");
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).expect("events JSON");
    assert_eq!(events.len(), 1);
    let insert_id = events[0]["properties"]["$insert_id"]
        .as_str()
        .expect("$insert_id")
        .to_string();
    tmux.keys(&["Escape"]);
    // An Escape followed at once by `q` reads as Alt-q: wait for the dialog to close.
    tmux.wait_for("the dialog closed", |s| s.contains("s send"));
    tmux.keys(&["q"]);
    tmux.wait_for("the first session's end", |s| s.contains("EXITED 0"));
    let kept = state.path().join("hodometer/sends.jsonl");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&kept).expect("kept sends").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let tmux = Tmux::start("kept-send-again", &command);
    tmux.wait_for("the scheduler connected", |s| s.contains("): connected"));
    tmux.keys(&["v"]);
    let screen = tmux.wait_for("the earlier send listed", |s| {
        s.contains("sends from this inspector (kept across sessions)")
    });
    assert!(screen.contains(&insert_id[..8]), "{screen}");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the earlier send opened", |s| s.contains("ok (HTTP 200"));
    assert!(
        screen.contains(&format!("http://127.0.0.1:{}/", receiver.port)),
        "{screen}"
    );
    tmux.keys(&["Escape"]);
    // An Escape followed at once by `q` reads as Alt-q: wait for the dialog to close.
    tmux.wait_for("the dialog closed", |s| s.contains("s send"));
    tmux.keys(&["q"]);
    tmux.wait_for("the second session's end", |s| s.contains("EXITED 0"));
}

/// The kubeconfig path the demo shows in its header.
fn demo_kubeconfig(screen: &str) -> std::path::PathBuf {
    let line = screen
        .lines()
        .find(|l| l.starts_with("Kubernetes context hodometer-demo of "))
        .unwrap_or_else(|| panic!("no Kubernetes line naming the kubeconfig:\n{screen}"));
    let path = line
        .trim_start_matches("Kubernetes context hodometer-demo of ")
        .split_whitespace()
        .next()
        .expect("a path");
    std::path::PathBuf::from(path)
}

/// kubectl with the demo's kubeconfig and a home of its own (its discovery cache goes there).
fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new("kubectl");
    command.env("KUBECONFIG", kubeconfig).env("HOME", home);
    command
}

#[test]
fn the_demo_is_a_sandbox_for_kubectl_and_hodometer_as_the_person() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        std::process::Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "kubectl is needed (.ci/run installs Debian's kubernetes-client)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} demo --refresh 1s; echo EXITED $?; sleep 60",
        dir.path().display()
    );
    let tmux = Tmux::start_sized("demo-sandbox", &command, (200, 50));
    let screen = tmux.wait_for("the demo's Kubernetes line", |s| {
        s.contains("Kubernetes context hodometer-demo of ") && s.contains("connected, v1.")
    });
    let kubeconfig = demo_kubeconfig(&screen);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&kubeconfig), 0o600, "the kubeconfig is private");
    let sandbox = kubeconfig.parent().expect("its directory").to_path_buf();
    assert_eq!(mode(&sandbox), 0o700, "in a private directory");

    // hodometer beside the demo, as the person: approvals are theirs, not the reporter's.
    let hodometer = |args: &[&str]| {
        common::hodometer(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .expect("run hodometer")
    };
    let set = hodometer(&["consent", "set", "--level", "cluster", "--yes"]);
    let said = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(
        said.contains("approved by demo-operator@example.com"),
        "{said}"
    );

    // The GitOps path: hodometer writes the manifest, kubectl applies it to the stand-in.
    let manifest = hodometer(&[
        "consent",
        "set",
        "--level",
        "resource",
        "--dry-run",
        "-o",
        "yaml",
    ]);
    assert!(manifest.status.success());
    let applied = piped_into(
        kubectl(&kubeconfig, &home).args(["apply", "--validate=false", "-f", "-"]),
        &manifest.stdout,
    );
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(
        String::from_utf8_lossy(&applied.stdout).contains("configmap/hodometer-consent configured"),
        "{}",
        String::from_utf8_lossy(&applied.stdout)
    );
    let got = kubectl(&kubeconfig, &home)
        .args(["get", "configmap", "hodometer-consent", "-o", "json"])
        .output()
        .expect("kubectl get");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let object: serde_json::Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(object["data"]["level"], "resource");
    let show = hodometer(&["consent", "show", "-o", "yaml"]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let shown: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&show.stdout)).expect("YAML");
    assert_eq!(shown["consent"]["data"]["level"], "resource");
    assert_eq!(
        shown["consent"]["resourceVersion"], object["metadata"]["resourceVersion"],
        "the same object"
    );

    // kubectl 1.27 and later validate on the server when its OpenAPI v3 says it takes
    // `fieldValidation`, which the stand-in's does: `apply` without --validate=false works too.
    // (1.20, Debian's, validates against an OpenAPI v2 schema the stand-in does not serve.)
    let version = kubectl(&kubeconfig, &home)
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("kubectl version");
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap_or_default();
    let minor: u32 = version["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .unwrap_or(0);
    if minor >= 27 {
        let manifest = hodometer(&[
            "consent",
            "set",
            "--level",
            "feature",
            "--dry-run",
            "-o",
            "yaml",
        ]);
        let applied = piped_into(
            kubectl(&kubeconfig, &home).args(["apply", "-f", "-"]),
            &manifest.stdout,
        );
        assert!(
            applied.status.success(),
            "kubectl 1.{minor} apply with validation: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }

    // The shipped RBAC is enforced: the person may not list every ConfigMap or write the status.
    let list = kubectl(&kubeconfig, &home)
        .args(["get", "configmaps"])
        .output()
        .expect("kubectl get");
    assert!(!list.status.success());
    assert!(
        String::from_utf8_lossy(&list.stderr)
            .contains("User \"demo-operator@example.com\" cannot list resource \"configmaps\""),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let patch = kubectl(&kubeconfig, &home)
        .args([
            "patch",
            "configmap",
            "hodometer-status",
            "-p",
            r#"{"data":{"x":"y"}}"#,
        ])
        .output()
        .expect("kubectl patch");
    assert!(
        !patch.status.success(),
        "the status is the reporter's alone"
    );

    // The header and the help name the kubeconfig; quitting removes it and says how to use the
    // next one.
    tmux.keys(&["?"]);
    tmux.wait_for("the help naming the kubeconfig", |s| {
        s.contains(&format!("kubeconfig: {}", kubeconfig.display()))
    });
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
    assert!(
        screen.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{screen}"
    );
    assert!(screen.contains("hodometer consent show"), "{screen}");
    assert!(!sandbox.exists(), "the sandbox is removed on exit");
}

/// Runs `command` with `input` on its standard input (`kubectl apply -f -`), and its output.
fn piped_into(command: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write the input");
    child.wait_with_output().expect("wait")
}
