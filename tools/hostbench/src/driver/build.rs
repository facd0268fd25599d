//! Builds one worker binary per allocator (`cargo build` of
//! `hostbench-worker` with that allocator's feature, in its own target
//! folder so it never waits on the cargo that runs the driver) and keeps
//! each as `target/hostbench/workers/hostbench-worker-<alloc>`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// The workspace root (this crate is `tools/hostbench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> anyhow::Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")
}

/// The cargo feature that makes `alloc` the worker's global allocator.
fn feature(alloc: &str) -> Option<String> {
    (alloc != "glibc").then(|| format!("alloc-{alloc}"))
}

/// Where the worker of `alloc` is kept under `folder`.
pub fn worker_path(folder: &Path, alloc: &str) -> PathBuf {
    folder.join(format!("hostbench-worker-{alloc}"))
}

/// Builds the workers of `allocs` (release profile) and returns their folder.
pub fn build_workers(allocs: &[String]) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let host = host_triple()?;
    let target_dir = root.join("target/hostbench");
    let folder = target_dir.join("workers");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    for alloc in allocs {
        println!("hostbench: building the {alloc} worker");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(&root)
            .args(["build", "--quiet", "--release", "-p", "hostbench", "--bin"])
            .arg("hostbench-worker")
            .arg("--target")
            .arg(&host)
            .arg("--target-dir")
            .arg(&target_dir);
        if let Some(feature) = feature(alloc) {
            cargo.args(["--features", &feature]);
        }
        let status = cargo.status().context("cannot run cargo")?;
        if !status.success() {
            bail!("building the {alloc} worker failed ({status}): see cargo's messages above");
        }
        let built = target_dir.join(&host).join("release/hostbench-worker");
        let kept = worker_path(&folder, alloc);
        std::fs::copy(&built, &kept)
            .with_context(|| format!("cannot copy {} to {}", built.display(), kept.display()))?;
    }
    Ok(folder)
}
