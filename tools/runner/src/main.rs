//! `runner [OPTIONS] <KERNEL_ELF> [ARGS...]`: boots a kernel ELF in QEMU
//! (cargo's runner for x86_64-unknown-none, through tools/qemu-runner). See
//! docs/runner.md.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let epoch = std::time::Instant::now();
    // clap prints its own errors and exits with 2 (the runner's error code).
    let cli = runner::cli::Cli::parse();
    std::process::exit(runner::run::run(&cli, epoch));
}
