//! Helpers for tests that run the real `hodometer` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hodometer");

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// Spawns `command` and guards the child.
    pub fn spawn(command: &mut Command) -> KillOnDrop {
        KillOnDrop::new(command.spawn().expect("start the process"))
    }

    /// The child, no longer killed on drop (to stop it another way and read its exit).
    pub fn into_inner(mut self) -> Child {
        self.0
            .take()
            .expect("the child is guarded until into_inner")
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0
            .as_ref()
            .expect("the child is guarded until into_inner")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        self.0
            .as_mut()
            .expect("the child is guarded until into_inner")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a test waits for a sign that the system did what it claims, on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` every 100 ms until it gives a value; fails naming `what` after `patience`.
pub fn wait_until<T>(what: &str, patience: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(start.elapsed() < patience, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn example_scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/scenarios/example.json")
}

/// A `hodometer` command with a clean environment, so the developer's variables cannot leak in.
pub fn hodometer(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().args(args);
    command
}

/// `hodometer sim` on a free loopback port, killed when dropped.
pub struct SimProcess {
    pub port: u16,
    /// The kubeconfig of its Kubernetes stand-in, when started with one.
    pub kubeconfig: Option<PathBuf>,
    /// The mutual-TLS port, when started with `start_with_tls`.
    pub tls_port: Option<u16>,
    _child: KillOnDrop,
    _dir: Option<tempfile::TempDir>,
}

impl SimProcess {
    pub fn start(extra: &[&str]) -> SimProcess {
        Self::spawn(extra, false, None)
    }

    /// Also starts the Kubernetes stand-in and writes a kubeconfig for it.
    pub fn start_with_kube(extra: &[&str]) -> SimProcess {
        Self::spawn(extra, true, None)
    }

    /// Also serves mutual TLS, with certificates generated into `tls_dir`.
    pub fn start_with_tls(extra: &[&str], tls_dir: &std::path::Path) -> SimProcess {
        Self::spawn(extra, false, Some(tls_dir))
    }

    fn spawn(extra: &[&str], kube: bool, tls_dir: Option<&std::path::Path>) -> SimProcess {
        let dir = kube.then(|| tempfile::tempdir().expect("tempdir"));
        let kubeconfig = dir.as_ref().map(|d| d.path().join("kubeconfig"));
        let mut args = vec!["sim".to_string(), "--listen".into(), "127.0.0.1:0".into()];
        if let Some(path) = &kubeconfig {
            args.extend([
                "--kube-listen".into(),
                "127.0.0.1:0".into(),
                "--kubeconfig-out".into(),
            ]);
            args.push(path.to_str().expect("utf-8 path").into());
        }
        if let Some(dir) = tls_dir {
            args.extend([
                "--tls-listen".into(),
                "127.0.0.1:0".into(),
                "--tls-dir".into(),
            ]);
            args.push(dir.to_str().expect("utf-8 path").into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = hodometer(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hodometer sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let mut lines = BufReader::new(stdout);
        let mut read_port = || listening_port(&mut lines, "hodometer sim: ");
        // The sim prints the scheduler, then the TLS, then the Kubernetes address.
        let port = read_port();
        let tls_port = tls_dir.map(|_| read_port());
        if kube {
            read_port();
        }
        SimProcess {
            port,
            tls_port,
            kubeconfig,
            _child: KillOnDrop::new(child),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self._child.id()
    }

    pub fn port_arg(&self) -> String {
        self.port.to_string()
    }

    /// A generated population (and the Kubernetes stand-in when `kube`), with the same scenario
    /// rebuilt in the test so it can compute what to expect.
    pub fn generated(
        counts: hodometer::sim::population::Counts,
        seed: u64,
        kube: bool,
    ) -> (SimProcess, hodometer::sim::population::Scenario) {
        let args: Vec<String> = [
            ("--models", counts.models),
            ("--servers", counts.servers),
            ("--pipelines", counts.pipelines),
            ("--experiments", counts.experiments),
            ("--seed", seed),
        ]
        .iter()
        .flat_map(|(flag, n)| [flag.to_string(), n.to_string()])
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sim = Self::spawn(&args, kube, None);
        (
            sim,
            hodometer::sim::population::Scenario::generate(counts, seed),
        )
    }
}

/// Runs `hodometer collect` against `port` with extra arguments and environment.
pub fn collect(port: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["collect", "--scheduler-port", port, "--no-kube"];
    all.extend_from_slice(args);
    let mut command = hodometer(&all);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run hodometer collect")
}

/// Runs `command`, which must succeed, and returns its stdout.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command.output().expect("run hodometer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The event printed by `collect --output json`.
pub fn event(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "collect failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON event ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A port nothing listens on. It is taken from just below the kernel's ephemeral range, so no
/// `127.0.0.1:0` bind elsewhere in the suite (a simulator, a receiver) can be given it while a
/// test relies on it being dead.
pub fn dead_port() -> String {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let start = ephemeral_low.saturating_sub(2000).max(1024);
    (start..ephemeral_low)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
        .to_string()
}

/// `hodometer receive` on a free loopback port, killed when dropped.
pub struct ReceiverProcess {
    pub port: u16,
    child: KillOnDrop,
}

impl ReceiverProcess {
    pub fn start(extra: &[&str]) -> ReceiverProcess {
        let mut command = Self::command(extra);
        command.stderr(Stdio::null());
        Self::spawn(command)
    }

    /// `hodometer receive --listen 127.0.0.1:0 EXTRA…`, for a test to add to before
    /// [`ReceiverProcess::spawn`].
    pub fn command(extra: &[&str]) -> Command {
        let mut args = vec!["receive", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        hodometer(&args)
    }

    /// Starts `command` (a receive command) and waits until it listens.
    pub fn spawn(mut command: Command) -> ReceiverProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hodometer receive");
        let mut lines = BufReader::new(child.stdout.take().expect("receive stdout"));
        let port = listening_port(&mut lines, "hodometer receive: listening on ");
        ReceiverProcess {
            port,
            child: KillOnDrop::new(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        let mut child = self.child.into_inner();
        sigterm(&child);
        child.wait().expect("wait for receive")
    }
}

/// Reads the next stdout line, `PREFIX… ADDR:PORT`, that a command prints when it listens.
pub fn listening_port(lines: &mut impl BufRead, prefix: &str) -> u16 {
    let mut line = String::new();
    lines.read_line(&mut line).expect("read the listening line");
    line.trim()
        .strip_prefix(prefix)
        .and_then(|rest| rest.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("expected {prefix:?}… ADDR:PORT, got {line:?}"))
}

/// Sends SIGTERM, as Kubernetes does to stop a pod.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// A GET over a fresh connection: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (status, body) = status_and_body(&response);
    (status, body.to_string())
}

/// The status code and body of a whole HTTP/1.1 response read from a `Connection: close` socket.
pub fn status_and_body(response: &str) -> (u16, &str) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

/// The line of a table or screen whose first word is `metric` (leading blanks ignored).
pub fn row<'a>(text: &'a str, metric: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{metric} ")))
        .unwrap_or_else(|| panic!("no {metric} row in\n{text}"))
}

/// A tmux server of its own, killed when the test ends however it ends.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `name` keeps tests that run at once on servers of their own.
    pub fn start(name: &str, command: &str) -> Tmux {
        Tmux::start_sized(name, command, (120, 40))
    }

    /// As [`Tmux::start`] in a terminal of `(columns, rows)`.
    pub fn start_sized(name: &str, command: &str, (columns, rows): (u16, u16)) -> Tmux {
        let (columns, rows) = (columns.to_string(), rows.to_string());
        let tmux = Tmux {
            socket: format!("hodometer-test-{}-{name}", std::process::id()),
        };
        let status = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "inspect",
                "-x",
                &columns,
                "-y",
                &rows,
                command,
            ])
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]).args(args);
        command
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "inspect"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().expect("send-keys").success());
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "inspect"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `check`; fails with the last screen if it never does.
    pub fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(start.elapsed() < PATIENCE, "never saw {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

/// The stand-in's tokens for this run, from the kubeconfig `sim --kubeconfig-out` wrote: the
/// service account's (current context) and the administrator's (`hodometer-sim-admin`).
pub fn sim_tokens(kubeconfig: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let token_of = |user: &str| {
        let mut lines = text
            .lines()
            .skip_while(|l| l.trim() != "users:")
            .skip_while(|l| l.trim() != format!("- name: {user}"));
        lines
            .find_map(|l| l.trim().strip_prefix("token: "))
            .unwrap_or_else(|| panic!("no token for {user} in the kubeconfig"))
            .to_string()
    };
    (token_of("hodometer-sim"), token_of("hodometer-sim-admin"))
}

/// Waits until the file at `path` holds at least `count` lines containing `needle` (a log the
/// process under test writes, e.g. one line per refresh or per cycle).
pub fn wait_for_lines(path: &std::path::Path, needle: &str, count: usize) {
    wait_until(
        &format!("{count} lines with {needle:?} in {}", path.display()),
        PATIENCE,
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            (text.lines().filter(|l| l.contains(needle)).count() >= count).then_some(())
        },
    )
}
