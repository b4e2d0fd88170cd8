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
