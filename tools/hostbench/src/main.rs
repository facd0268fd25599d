//! `hostbench`: builds one worker per allocator and runs the host bench
//! (docs/host-bench.md).
use clap::Parser;

fn main() {
    let args = hostbench::driver::args::Args::parse();
    std::process::exit(hostbench::driver::run(&args));
}
