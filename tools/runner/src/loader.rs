//! The workspace root and the PVH loader, which the runner builds before a
//! PVH boot (a quiet no-op when it is up to date).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// Overrides the PVH loader: a prebuilt ELF to use instead of building one.
pub const LOADER_ENV: &str = "RUNNER_PVH_LOADER";

/// The workspace root (tools/runner is two levels down).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where `cargo build -p pvh-loader` puts the loader.
pub fn loader_path(root: &Path) -> PathBuf {
    root.join("target/tools/x86_64-unknown-none/release/pvh-loader")
}

/// The cargo command that builds the loader.
pub fn build_command(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--quiet", "-p", "pvh-loader", "--release"]).args([
        "--target",
        "x86_64-unknown-none",
        "--target-dir",
    ]);
    command.arg(root.join("target/tools"));
    command
}

/// The PVH loader ELF: `$RUNNER_PVH_LOADER` if set, else built in `root`.
pub fn pvh_loader(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(LOADER_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{LOADER_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let output =
        build_command(root).output().context("cannot run cargo to build the PVH loader")?;
    if !output.status.success() {
        bail!(
            "building the PVH loader failed (cargo build -p pvh-loader --release --target x86_64-unknown-none):\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let path = loader_path(root);
    if !path.is_file() {
        bail!("cargo built the PVH loader but {} is missing", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
        assert!(root.join("tools/runner").is_dir());
    }

    #[test]
    fn build_command_targets_the_tools_dir() {
        let command = build_command(Path::new("/r"));
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "build",
                "--quiet",
                "-p",
                "pvh-loader",
                "--release",
                "--target",
                "x86_64-unknown-none",
                "--target-dir",
                "/r/target/tools"
            ]
        );
        assert_eq!(command.get_current_dir(), Some(Path::new("/r")));
        assert_eq!(
            loader_path(Path::new("/r")),
            Path::new("/r/target/tools/x86_64-unknown-none/release/pvh-loader")
        );
    }
}
