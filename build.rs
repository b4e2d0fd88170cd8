//! Compiles the scheduler API with the pure-Rust `protox` (no system `protoc`) and records the
//! git commit the binary is built from, when there is one.
//!
//! Two contracts, two generated modules in the same protobuf package (so the RPC paths match):
//! `proto/scheduler.proto` is what the client reads (client code only, `$OUT_DIR/client`), and
//! `proto/sim/scheduler.proto` is the real layout the simulator sends (server code only,
//! `$OUT_DIR/sim`). Keeping them apart is what lets tests catch a client that misreads a real
//! scheduler.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    compile(
        "proto/scheduler.proto",
        "proto",
        &out_dir.join("client"),
        true,
    )?;
    compile(
        "proto/sim/scheduler.proto",
        "proto/sim",
        &out_dir.join("sim"),
        false,
    )?;

    record_git_commit();
    // Resident memory is the code and data pages a process touches, and the kernel maps them in
    // 64 KiB windows. Relative relocations packed (DT_RELR, glibc 2.36+): the loader reads a few
    // kB at start instead of ~0.4 MB of entries. Cold functions (panics, error paths) kept in
    // their own `.text.unlikely` section: the code that runs is not spread among them.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        println!("cargo:rustc-link-arg-bins=-Wl,-z,keep-text-section-prefix");
    }
    Ok(())
}

/// Generates `out/seldon.mlops.scheduler.rs`: client stubs for the client, server stubs otherwise.
fn compile(
    proto: &str,
    include: &str,
    out: &Path,
    client: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={proto}");
    std::fs::create_dir_all(out)?;
    let descriptors = protox::compile([proto], [include])?;
    tonic_prost_build::configure()
        .build_client(client)
        .build_server(!client)
        .out_dir(out)
        .compile_fds(descriptors)?;
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
