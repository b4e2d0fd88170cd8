//! Helpers for tests that run the real `hodometer` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_hodometer");

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
    child: Child,
}

impl SimProcess {
    pub fn start(extra: &[&str]) -> SimProcess {
        let mut args = vec!["sim", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = hodometer(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hodometer sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read sim address");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("sim did not print its address: {line:?}"));
        SimProcess { port, child }
    }

    pub fn port_arg(&self) -> String {
        self.port.to_string()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A port nothing listens on: bound, then released.
pub fn dead_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port.to_string()
}
