//! The host-side runner: boots a kernel ELF in QEMU (through the PVH loader
//! or a Limine ISO), streams its serial console, and turns the kernel's
//! verdict (`docs/interface.md`) into an exit code. `runner` (main.rs) is a
//! thin command-line front end over [`run::run`] and the `bench` and
//! `profile` subcommands ([`bench::run`], [`profile::run`]), which call
//! [`boot::boot`] once per boot.
#![forbid(unsafe_code)]

pub mod accel;
pub mod bench;
pub mod boot;
pub mod cleanup;
pub mod cli;
pub mod iso;
pub mod loader;
pub mod loaderwatch;
pub mod nmidump;
pub mod outcome;
pub mod profile;
pub mod qemu;
pub mod run;
pub mod serial;
pub mod testsummary;

/// QEMU's binary for every boot.
pub const QEMU: &str = "qemu-system-x86_64";

/// The runner's own errors (bad option, missing file, missing tool).
pub const EXIT_RUNNER_ERROR: i32 = 2;

/// Finds `name` in the `PATH` directories, like `which`.
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
