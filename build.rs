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
    link_for_resident_memory();
    Ok(())
}

/// Resident memory is the code and data pages a process touches, and the kernel maps them in
/// 64 KiB windows. Cold functions (panics, error paths) go to their own `.text.unlikely`
/// section, so the code that runs is not spread among them. The image's binary also gets its
/// relative relocations packed (DT_RELR): the loader reads a few kB at start instead of ~0.4 MB
/// of entries. That needs glibc 2.36 where it runs (an older loader refuses the binary), which
/// the image has when it is built here with this machine's glibc; the full build (`tools`),
/// which may be copied anywhere, keeps the classic relocations.
fn link_for_resident_memory() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,keep-text-section-prefix");
    let image_build = std::env::var_os("CARGO_FEATURE_TOOLS").is_none();
    if image_build && host_glibc_has_dt_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this build is for the machine it runs on and that machine's glibc (whose libraries
/// scripts/image.sh copies into the image) is 2.36 or later.
fn host_glibc_has_dt_relr() -> bool {
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    if !native || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu") {
        return false;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or_default()
        .split('.')
        .map(|part| part.parse::<u32>().ok());
    matches!(
        (version.next(), version.next()),
        (Some(Some(major)), Some(Some(minor))) if (major, minor) >= (2, 36)
    )
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
