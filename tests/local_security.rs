//! A shared host, played by two users: an unprivileged attacker (`nobody`, through `setpriv`)
//! prepares traps in a shared temporary directory, then the victim (the test's user) runs the real
//! binary there. Nothing of the attacker's may run, nothing planted may be used or written
//! through, and what hodometer creates is private. Needs root to switch users (CI runs as root);
//! elsewhere each test says it was skipped.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Tmux, dead_port};

const NOBODY: &str = "65534";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `script` with `sh -c` as `nobody`, failing the test if it fails.
fn as_attacker(script: &str) {
    let status = Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv (util-linux) is installed");
    assert!(status.success(), "attacker script failed: {script}");
}

/// A world-writable sticky directory, as `/tmp` is, that both users can reach.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hodometer-shared-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    dir
}

/// A file of the victim's that the attacker would love to have written to.
fn victim_file(dir: &Path) -> PathBuf {
    let path = dir.join("victim-secret");
    std::fs::write(&path, "precious\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// Files in `dir` (one level) that belong to the victim (root).
fn victims_files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(Result::ok)
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == 0))
        .map(|e| e.path())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o777
}

/// The shell command the victim runs in tmux: a clean environment with `env`, then the binary.
fn victim_command(env: &[(&str, &Path)], args: &str) -> String {
    let vars: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{name}={}", value.display()))
        .collect();
    format!(
        "env -i PATH=/usr/bin:/bin TERM=xterm-256color {} {BIN} {args}; echo EXITED $?; sleep 60",
        vars.join(" ")
    )
}

/// The stage of a two-user test: a shared sticky directory, the victim's home and a precious
/// file in it. `None` (with a message) when this process cannot switch users.
fn two_users() -> Option<(tempfile::TempDir, tempfile::TempDir, PathBuf)> {
    if !is_root() {
        eprintln!("SKIPPED: needs root to play a second local user with setpriv");
        return None;
    }
    let home = tempfile::tempdir().expect("home");
    let secret = victim_file(home.path());
    Some((shared_dir(), home, secret))
}

#[test]
fn demo_uses_nothing_an_attacker_planted_and_runs_none_of_their_code() {
    let Some((shared, home, secret)) = two_users() else {
        return;
    };
    let s = shared.path().display();
    // The old attack: directories named after the next PIDs, each with a kubeconfig whose exec
    // credential plugin is the attacker's script, and a symlink where the log used to go.
    let pid = std::process::id();
    as_attacker(&format!(
        "for p in $(seq {from} {to}); do d={s}/hodometer-demo-$p; mkdir -p $d; \
         printf 'apiVersion: v1\\nkind: Config\\nclusters:\\n- name: x\\n  cluster:\\n    server: http://127.0.0.1:1\\n\
contexts:\\n- name: x\\n  context:\\n    cluster: x\\n    user: x\\ncurrent-context: x\\nusers:\\n- name: x\\n  user:\\n    \
exec:\\n      apiVersion: client.authentication.k8s.io/v1\\n      command: /bin/sh\\n      args: [\"-c\", \"touch {s}/pwned\"]\\n' \
         > $d/kubeconfig; ln -s {secret} $d/inspect.log; done; \
         ln -s {secret} {s}/hodometer-inspect.log",
        from = pid,
        to = pid + 400,
        secret = secret.display(),
    ));

    let command = victim_command(
        &[("HOME", home.path()), ("TMPDIR", shared.path())],
        "demo --refresh 1s",
    );
    let tmux = Tmux::start("demo-attack", &command);
    tmux.wait_for("the demo's own Kubernetes stand-in", |s| {
        s.contains("connected, v1.")
    });
    // Several refreshes (the old demo re-read its kubeconfig on each), counted in its log.
    let log = home.path().join(".local/state/hodometer/inspect.log");
    common::wait_for_lines(&log, "inspector refreshed", 3);
    let screen = tmux.screen();
    tmux.keys(&["q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));

    assert!(
        !shared.path().join("pwned").exists(),
        "the attacker's exec plugin ran:\n{screen}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        "precious\n"
    );
    assert_eq!(
        victims_files_in(shared.path()),
        Vec::<PathBuf>::new(),
        "the victim created files in the shared directory"
    );
    let state = home.path().join(".local/state/hodometer");
    assert_eq!(mode(&state), 0o700);
    let log = state.join("inspect.log");
    assert_eq!(mode(&log), 0o600, "the demo's log is private");
}

#[test]
fn the_inspectors_log_goes_nowhere_an_attacker_chose() {
    let Some((shared, home, secret)) = two_users() else {
        return;
    };
    let s = shared.path().display();
    // The old fixed log path, a planted state directory the victim's XDG_STATE_HOME points
    // into, and a dangling symlink where an explicit --log-file will be asked for.
    as_attacker(&format!(
        "ln -s {secret} {s}/hodometer-inspect.log; mkdir -m 0777 {s}/state {s}/state/hodometer; \
         ln -s {secret} {s}/state/hodometer/inspect.log; ln -s {s}/chosen-by-attacker {s}/planted.log",
        secret = secret.display(),
    ));

    // The state directory belongs to someone else: the inspector falls back to a fresh private
    // temporary file and still starts.
    let args = format!(
        "inspect --no-kube --scheduler-port {} --publish-url http://127.0.0.1:9",
        dead_port()
    );
    let command = victim_command(
        &[
            ("HOME", home.path()),
            ("TMPDIR", shared.path()),
            ("XDG_STATE_HOME", &shared.path().join("state")),
        ],
        &args,
    );
    let tmux = Tmux::start("log-attack", &command);
    tmux.wait_for("the inspector", |s| s.contains("scheduler"));
    tmux.keys(&["?"]);
    let screen = tmux.wait_for("the help screen naming the log", |s| s.contains("logs: "));
    // `q` closes the help, the second `q` quits (Escape then q would read as Alt-q).
    tmux.keys(&["q", "q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));

    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        "precious\n"
    );
    let mine = victims_files_in(shared.path());
    assert_eq!(mine.len(), 1, "one fresh log file, nothing else: {mine:?}");
    let log = &mine[0];
    let name = log.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with("hodometer-inspect-") && name != "hodometer-inspect.log",
        "an unpredictable name: {name}"
    );
    assert_eq!(mode(log), 0o600);
    assert!(
        screen.contains(name),
        "the help screen names {name}:\n{screen}"
    );

    // An explicit --log-file that is a planted (dangling) symlink is refused, not followed.
    let command = victim_command(
        &[("HOME", home.path())],
        &format!("{args} --log-file {s}/planted.log"),
    );
    let tmux = Tmux::start("log-explicit", &command);
    let screen = tmux.wait_for("the refusal", |s| s.contains("EXITED 1"));
    assert!(
        screen.contains("is a symlink: refusing to follow it"),
        "{screen}"
    );
    assert!(!shared.path().join("chosen-by-attacker").exists());
}

#[test]
fn without_a_home_the_log_is_a_fresh_private_file() {
    let shared = tempfile::tempdir().expect("tmp");
    let args = format!(
        "inspect --no-kube --scheduler-port {} --publish-url http://127.0.0.1:9",
        dead_port()
    );
    let tmux = Tmux::start(
        "log-nohome",
        &victim_command(&[("TMPDIR", shared.path())], &args),
    );
    tmux.wait_for("the inspector", |s| s.contains("scheduler"));
    tmux.keys(&["q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));
    let files: Vec<PathBuf> = std::fs::read_dir(shared.path())
        .expect("read_dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
}

#[test]
fn configuration_errors_never_print_secrets() {
    let output = common::hodometer(&[
        "collect",
        "--no-kube",
        "--publish",
        "--publish-url",
        "https://alice:pa://ss@example.invalid/p?api_key=k3y",
        "--extra-publish-urls",
        "https://h1/,https://bob:hun,ter2@h2/",
    ])
    .env("HODOMETER_TOKEN", "tok\u{7}en-s3cret")
    .output()
    .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in [
        "alice", "pa:", "ss@", "k3y", "api_key", "bob", "hun,ter2", "ter2", "s3cret",
    ] {
        assert!(!stderr.contains(secret), "{secret:?} printed:\n{stderr}");
    }
    for named in [
        "PUBLISH_URL",
        "EXTRA_PUBLISH_URLS",
        "HODOMETER_TOKEN",
        "example.invalid",
    ] {
        assert!(stderr.contains(named), "{named} missing:\n{stderr}");
    }
}

#[test]
fn generated_keys_and_kubeconfigs_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tmp");
    let tls = dir.path().join("tls");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {BIN} sim --listen 127.0.0.1:0 --kube-listen 127.0.0.1:0 \
             --kubeconfig-out {} --tls-listen 127.0.0.1:0 --tls-dir {}",
            kubeconfig.display(),
            tls.display()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sim");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    // Three address lines: the files are written before the last one is printed.
    for _ in 0..3 {
        common::listening_port(&mut lines, "hodometer sim: ");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&tls), 0o700);
    for key in ["server.key", "client.key", "ca.crt", "client.crt"] {
        assert_eq!(mode(&tls.join(key)), 0o600, "{key}");
    }
}

/// Runs the real binary with `args`, killed after 20 s (a hang shows as exit 124).
fn run_bounded(args: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec timeout 20 {BIN} {args}"))
        .output()
        .expect("run")
}

#[test]
fn a_planted_fifo_never_receives_a_secret_nor_hangs_the_victim() {
    let Some((shared, _home, _secret)) = two_users() else {
        return;
    };
    let s = shared.path().display();
    as_attacker(&format!(
        "mkfifo -m 0666 {s}/listened.kubeconfig {s}/idle.kubeconfig {s}/inspect.log"
    ));
    // The attacker reads one FIFO, hoping for the kubeconfig's token.
    let mut listener = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .args(["sh", "-c"])
        .arg(format!(
            "exec timeout 25 cat {s}/listened.kubeconfig > {s}/captured"
        ))
        .spawn()
        .expect("listener");
    // The attacker's reader has the FIFO open before the victim runs.
    let fifo = shared.path().join("listened.kubeconfig");
    common::wait_until(
        "the attacker's reader on the FIFO",
        common::PATIENCE,
        || fifo_has_a_reader(&fifo).then_some(()),
    );
    let sim = |out: &str| {
        run_bounded(&format!(
            "sim --listen 127.0.0.1:0 --kube-listen 127.0.0.1:0 --kubeconfig-out {s}/{out}"
        ))
    };
    for fifo in ["listened.kubeconfig", "idle.kubeconfig"] {
        let output = sim(fifo);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(124), "hung on {fifo}");
        assert!(!output.status.success(), "{fifo} accepted");
        assert!(stderr.contains("is a FIFO"), "{fifo}: {stderr}");
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let captured = std::fs::read_to_string(shared.path().join("captured")).unwrap_or_default();
    assert!(
        !captured.contains("token"),
        "the kubeconfig reached the attacker's FIFO:\n{captured}"
    );

    // A kubeconfig that is a FIFO nobody writes: refused at once, not a hang.
    let output = run_bounded(&format!(
        "collect --scheduler-port {} --rpc-timeout 1s --output table --kubeconfig {s}/idle.kubeconfig",
        dead_port()
    ));
    assert_ne!(
        output.status.code(),
        Some(124),
        "collect hung on a FIFO kubeconfig"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("is a FIFO"), "{stdout}");
    // The same FIFO named by KUBECONFIG beside a real kubeconfig, so kube-rs would read both
    // (and hang on the FIFO): refused at once too.
    let own = tempfile::tempdir().expect("tempdir");
    let real = own.path().join("config");
    std::fs::write(
        &real,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("write a kubeconfig");
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec timeout 20 {BIN} collect --scheduler-port {} --request-timeout 1s --output table",
            dead_port()
        ))
        .env(
            "KUBECONFIG",
            format!("{s}/absent.kubeconfig:{s}/idle.kubeconfig"),
        )
        .output()
        .expect("run");
    assert_ne!(
        output.status.code(),
        Some(124),
        "collect hung on a FIFO in KUBECONFIG"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("is a FIFO") || stderr.contains("is a FIFO"),
        "{stdout}\n{stderr}"
    );

    // A log file that is a FIFO nobody reads: refused at once, not a hang.
    let command = victim_command(
        &[],
        &format!(
            "inspect --no-kube --scheduler-port {} --log-file {s}/inspect.log",
            dead_port()
        ),
    );
    let tmux = Tmux::start("log-fifo", &command);
    let screen = tmux.wait_for("the refusal", |s| s.contains("EXITED"));
    assert!(screen.contains("is a FIFO"), "{screen}");
}

#[test]
fn receive_refuses_a_store_another_user_planted_and_keeps_its_own_private() {
    let Some((shared, home, _secret)) = two_users() else {
        return;
    };
    let s = shared.path().display();
    // A world-writable store, and a WAL waiting beside the victim's future store.
    as_attacker(&format!(
        "umask 000; : > {s}/store.db; chmod 0666 {s}/store.db; : > {s}/fresh.db-wal"
    ));
    for (store, named) in [("store.db", "store.db"), ("fresh.db", "fresh.db-wal")] {
        let output = run_bounded(&format!("receive --listen 127.0.0.1:0 --store {s}/{store}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{store} was adopted: {stderr}");
        for expected in [named, "uid 65534", "refusing to use another user's file"] {
            assert!(stderr.contains(expected), "{expected:?} missing: {stderr}");
        }
    }
    assert_eq!(mode(&shared.path().join("store.db")), 0o666);
    for left in ["store.db-wal", "store.db-shm"] {
        assert!(
            !shared.path().join(left).exists(),
            "{left} was created beside another user's store"
        );
    }
    assert!(
        victims_files_in(shared.path())
            .iter()
            .all(|f| f.ends_with("fresh.db")),
        "the victim wrote only the (refused) store file of its own: {:?}",
        victims_files_in(shared.path())
    );

    // The victim's own store with group bits (as a pod's fsGroup leaves it): used, made private.
    let own = home.path().join("own.db");
    std::fs::write(&own, b"").expect("create");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o660)).expect("chmod");
    let own_arg = own.display().to_string();
    let receiver = common::ReceiverProcess::start(&["--store", &own_arg]);
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{own_arg}{suffix}"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert!(receiver.terminate().success());
}

/// Characters no terminal may receive from a server as they are.
fn has_unsafe(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c != '\n' && hodometer::sanitize::is_unsafe(c))
}

/// A scenario whose scheduler and API server answer with terminal escapes (OSC 52 writes the
/// clipboard, CSI 2J clears the screen), a carriage return, bidi overrides and zero-width
/// characters.
fn hostile_scenario(dir: &Path) -> PathBuf {
    let scenario = serde_json::json!({
        "version": "2.8.0\u{1b}]52;c;cHduZWQ=\u{7}\r\u{202e}evil",
        "kubernetes": {
            "git_version": "v1.30.0\u{200b}\u{1b}[2J",
            "platform": "linux/\u{2066}amd64\u{2069}\u{9b}31m",
        },
    });
    let path = dir.join("hostile.json");
    std::fs::write(&path, scenario.to_string()).expect("scenario");
    path
}

#[test]
fn server_text_reaches_the_table_the_logs_and_errors_only_escaped() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = hostile_scenario(dir.path());
    let sim =
        common::SimProcess::start_with_kube(&["--scenario", scenario.to_str().expect("utf-8")]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    let port = sim.port_arg();
    let output = common::hodometer(&[
        "collect",
        "--scheduler-port",
        &port,
        "--output",
        "table",
        "--level",
        "feature",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--log-format",
        "text",
        "--log-level",
        "debug",
    ])
    .output()
    .expect("collect");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(has_unsafe(&stdout), None, "{stdout:?}");
    assert_eq!(has_unsafe(&stderr), None, "{stderr:?}");
    for shown in [
        "\\u{1b}]52;c;cHduZWQ=\\u{7}\\u{d}\\u{202e}evil",
        "v1.30.0\\u{200b}\\u{1b}[2J",
    ] {
        assert!(stdout.contains(shown), "{shown} missing:\n{stdout}");
    }

    // A publish endpoint that refuses with a hostile error: the error line is escaped too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(1) {
            let mut stream = stream.expect("accept");
            let mut request = [0u8; 65536];
            let _ = stream.read(&mut request);
            let body = r#"{"status":0,"error":"no\u001b]8;;http://x\u0007link\r\u202eevil"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let output = common::collect(
        &sim.port_arg(),
        &[
            "--publish",
            "--publish-url",
            &format!("http://127.0.0.1:{port}"),
            "--log-format",
            "text",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(has_unsafe(&stderr), None, "{stderr:?}");
    assert!(stderr.contains("\\u{202e}evil"), "{stderr}");
}

#[test]
fn the_inspector_shows_bidi_and_zero_width_characters_escaped() {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = hostile_scenario(dir.path());
    let sim =
        common::SimProcess::start_with_kube(&["--scenario", scenario.to_str().expect("utf-8")]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    let command = victim_command(
        &[("HOME", dir.path())],
        &format!(
            "inspect --scheduler-port {} --kubeconfig {} --publish-url http://127.0.0.1:9",
            sim.port,
            kubeconfig.display()
        ),
    );
    let tmux = Tmux::start_sized("hostile-text", &command, (160, 48));
    let screen = tmux.wait_for("the hostile versions", |s| s.contains("evil"));
    tmux.keys(&["q"]);
    assert_eq!(has_unsafe(&screen), None, "{screen:?}");
    assert!(screen.contains("\\u{202e}evil"), "{screen}");
    assert!(screen.contains("\\u{200b}"), "{screen}");
}

#[test]
fn consent_show_escapes_what_others_wrote_into_the_consent() {
    let sim = common::SimProcess::start_with_kube(&[]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("utf-8");
    let note = "ticket 42\r\u{1b}[2K\u{202e}level: off\u{200d}";
    let set = common::hodometer(&[
        "consent",
        "set",
        "--kubeconfig",
        kubeconfig,
        "--level",
        "cluster",
        "--yes",
        "--note",
        note,
    ])
    .output()
    .expect("consent set");
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    for output_format in ["text", "json"] {
        let show = common::hodometer(&[
            "consent",
            "show",
            "--kubeconfig",
            kubeconfig,
            "--output",
            output_format,
        ])
        .output()
        .expect("consent show");
        let stdout = String::from_utf8_lossy(&show.stdout);
        assert_eq!(has_unsafe(&stdout), None, "{output_format}: {stdout:?}");
        assert!(stdout.contains("202e"), "{output_format}: {stdout}");
    }
}

#[test]
fn the_inspector_never_shows_credentials_from_the_kubeconfig_server_url() {
    let dir = tempfile::tempdir().expect("tmp");
    let sim = common::SimProcess::start_with_kube(&[]);
    let original = std::fs::read_to_string(sim.kubeconfig.as_ref().expect("kubeconfig"))
        .expect("read kubeconfig");
    let kubeconfig = dir.path().join("kubeconfig");
    let with_secrets = original.replace("server: http://", "server: http://alice:hunter2@");
    let server_line = with_secrets
        .lines()
        .find(|l| l.contains("server:"))
        .expect("server line")
        .to_string();
    let with_secrets = with_secrets.replace(
        &server_line,
        &format!("{}/?access_token=s3cr3t", server_line.trim_end_matches('/')),
    );
    std::fs::write(&kubeconfig, &with_secrets).expect("write");
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let command = victim_command(
        &[("HOME", dir.path())],
        &format!(
            "inspect --scheduler-port {} --kubeconfig {} --publish-url http://127.0.0.1:9",
            sim.port,
            kubeconfig.display()
        ),
    );
    let tmux = Tmux::start_sized("kube-secrets", &command, (160, 48));
    let screen = tmux.wait_for("the Kubernetes line", |s| {
        s.lines()
            .any(|l| l.starts_with("Kubernetes") && l.contains("127.0.0.1"))
    });
    tmux.keys(&["q"]);
    for secret in ["alice", "hunter2", "s3cr3t", "access_token"] {
        assert!(!screen.contains(secret), "{secret} shown:\n{screen}");
    }
    assert!(screen.contains("REDACTED@127.0.0.1"), "{screen}");
}

#[test]
fn extensions_are_read_only_from_a_directory_no_one_else_controls() {
    let Some((shared, home, secret)) = two_users() else {
        return;
    };
    let s = shared.path().display();
    // The attacker's directory, with a link to the victim's secret.
    as_attacker(&format!(
        "mkdir -m 0755 {s}/ext && ln -s {secret} {s}/ext/team",
        secret = secret.display()
    ));
    let dead = dead_port();
    let planted = format!("{s}/ext");
    let output = common::collect(
        &dead,
        &["--rpc-timeout", "1s", "--extensions-dir", &planted],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains("precious") && !stderr.contains("precious"));
    assert!(stderr.contains("belongs to uid 65534"), "{stderr}");

    // The victim's own directory: a ConfigMap's layout is read, a link leading out is not.
    let own = home.path().join("ext");
    let data = own.join("..2026_12_04_00_00_00.000000001");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("stage"), "prod").expect("write");
    std::os::unix::fs::symlink(data.file_name().expect("name"), own.join("..data"))
        .expect("..data");
    std::os::unix::fs::symlink("..data/stage", own.join("stage")).expect("stage");
    let own_arg = own.display().to_string();
    let output = common::collect(
        &dead,
        &["--rpc-timeout", "1s", "--extensions-dir", &own_arg],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""ext.stage":"prod""#), "{stdout}");
    std::os::unix::fs::symlink(&secret, own.join("team")).expect("link out");
    let output = common::collect(
        &dead,
        &["--rpc-timeout", "1s", "--extensions-dir", &own_arg],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains("precious") && !stderr.contains("precious"));
    assert!(stderr.contains("outside the directory"), "{stderr}");
}

/// A GET to the stand-in at `addr` with `token`: the status code.
fn kube_get(addr: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    common::status_and_body(&response).0
}

#[test]
fn the_stand_ins_tokens_are_random_per_run_and_only_in_its_private_kubeconfig() {
    let runs: Vec<_> = (0..2)
        .map(|_| common::SimProcess::start_with_kube(&[]))
        .collect();
    let kubeconfigs: Vec<PathBuf> = runs
        .iter()
        .map(|sim| sim.kubeconfig.clone().expect("kubeconfig"))
        .collect();
    let (service_account, admin) = common::sim_tokens(&kubeconfigs[0]);
    assert_ne!(
        common::sim_tokens(&kubeconfigs[1]),
        (service_account.clone(), admin.clone())
    );
    assert_ne!(service_account, admin);
    assert!(service_account.len() >= 32 && admin.len() >= 32);
    assert_eq!(mode(&kubeconfigs[0]), 0o600);
    let text = std::fs::read_to_string(&kubeconfigs[0]).expect("read");
    let addr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .expect("server line");
    let consent = "/api/v1/namespaces/seldon-mesh/configmaps/hodometer-consent";
    // The tokens the stand-in used to hard-code open nothing; this run's do.
    for guessed in ["hodometer-sim-token", "hodometer-sim-admin-token", ""] {
        assert_eq!(kube_get(addr, consent, guessed), 401, "{guessed:?}");
    }
    assert_ne!(kube_get(addr, consent, &admin), 401);
    assert_ne!(kube_get(addr, "/version", &service_account), 401);
}

#[test]
fn a_world_writable_extensions_dir_is_read_only_on_a_read_only_mount() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to mount");
        return;
    }
    // A ConfigMap volume: a world-writable directory, mounted read-only.
    let dir = tempfile::tempdir().expect("tmp");
    let ext = dir.path().join("ext");
    std::fs::create_dir(&ext).expect("mkdir");
    std::fs::write(ext.join("team"), "ml").expect("write");
    std::fs::set_permissions(&ext, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let collect = format!(
        "{BIN} collect --scheduler-port {} --rpc-timeout 1s --extensions-dir {}",
        dead_port(),
        ext.display()
    );
    let writable = Command::new("sh")
        .arg("-c")
        .arg(&collect)
        .output()
        .expect("collect");
    let stderr = String::from_utf8_lossy(&writable.stderr);
    assert_eq!(writable.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mode 0777"), "{stderr}");
    let mounted = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "set -e; mount --bind {e} {e}; mount -o remount,bind,ro {e}; exec {collect}",
            e = ext.display()
        ))
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&mounted.stdout);
    assert!(
        stdout.contains(r#""ext.team":"ml""#),
        "{stdout}{}",
        String::from_utf8_lossy(&mounted.stderr)
    );
}

/// Whether some process is opening `fifo` for reading: `cat` blocks inside open(2) until a writer
/// comes (x86-64's openat is system call 257), or already holds it open.
fn fifo_has_a_reader(fifo: &Path) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    let fifo = fifo.to_string_lossy();
    processes.flatten().any(|process| {
        let Ok(cmdline) = std::fs::read(process.path().join("cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !(cmdline.starts_with("cat\0") && cmdline.contains(&*fifo)) {
            return false;
        }
        let in_open = std::fs::read_to_string(process.path().join("syscall"))
            .is_ok_and(|call| matches!(call.split(' ').next(), Some("257" | "2")));
        let holds_it = std::fs::read_dir(process.path().join("fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == fifo))
        });
        in_open || holds_it
    })
}
