//! `runner [OPTIONS] <KERNEL_ELF> [ARGS...]`: boots a kernel ELF in QEMU
//! (cargo's runner for x86_64-unknown-none, through tools/qemu-runner); also
//! `runner KERNEL bench ...` and `runner KERNEL profile ...`. See
//! docs/runner.md and docs/benchmarks-tool.md.
#![forbid(unsafe_code)]

use runner::bench::args::Invocation;

fn main() {
    let epoch = std::time::Instant::now();
    // clap prints its own errors and exits with 2 (the runner's error code).
    let invocation = Invocation::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    std::process::exit(match invocation {
        Invocation::Run(cli) => runner::run::run(&cli, epoch),
        Invocation::Bench(args) => runner::bench::run(&args),
        Invocation::Profile(args) => runner::profile::run(&args),
    });
}
