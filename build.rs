//! Compiles `proto/scheduler.proto` with the pure-Rust `protox` (no system `protoc`) and records the
//! git commit the binary is built from, when there is one.

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/scheduler.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    record_git_commit();
    Ok(())
}

/// Sets `HODOMETER_GIT_COMMIT` for `collector_git_commit`; left unset outside a git checkout,
/// which the metric then reports as unknown rather than guessing.
fn record_git_commit() {
    println!("cargo:rerun-if-env-changed=HODOMETER_GIT_COMMIT");
    if let Ok(commit) = std::env::var("HODOMETER_GIT_COMMIT") {
        println!("cargo:rustc-env=HODOMETER_GIT_COMMIT={commit}");
        return;
    }
    let git_dir = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output();
    if let Ok(out) = &git_dir
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(out) = head
        && out.status.success()
    {
        let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !commit.is_empty() {
            println!("cargo:rustc-env=HODOMETER_GIT_COMMIT={commit}");
        }
    }
}
