//! Shared by the end-to-end tests that boot the real kernel: building its
//! binaries for the bare-metal target and running the runner on one.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[path = "../support/qemu.rs"]
pub mod qemu;

pub use qemu::require_qemu;

pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Builds the kernel package's binaries selected by `what` (e.g.
/// `["--bin", "kernel"]` or `["--examples"]`) into the repository's own
/// target folder; returns the folder of debug binaries.
pub fn build_kernel(what: &[&str]) -> PathBuf {
    let root = repo_root();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--quiet", "-p", "kernel", "--target", BARE_METAL_TARGET])
        .args(what)
        .arg("--target-dir")
        .arg(root.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the kernel's {what:?} failed");
    root.join("target").join(BARE_METAL_TARGET).join("debug")
}

/// What a runner invocation printed and returned.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
}

impl Run {
    pub fn line_containing(&self, needle: &str) -> Option<&str> {
        self.stdout.lines().find(|line| line.contains(needle))
    }
}

/// Runs the runner on `kernel` with `args`, with the real PVH loader.
pub fn run_runner(kernel: &Path, args: &[&str]) -> Run {
    run_runner_with_env(kernel, args, &[])
}

/// [`run_runner`] with extra environment variables.
pub fn run_runner_with_env(kernel: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    require_qemu();
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    command.arg(kernel).args(args).env_remove("RUNNER_PVH_LOADER");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the runner runs");
    let run =
        Run { code: output.status.code(), stdout: String::from_utf8_lossy(&output.stdout).into() };
    eprintln!("--- {} {args:?} {env:?} -> {:?}\n{}", kernel.display(), run.code, run.stdout);
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&output.stderr));
    run
}
