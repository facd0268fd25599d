//! A kernel test binary in which one application processor panics inside
//! `run_on_all_cpus`: the runner's own tests boot it to check that the
//! panic fails the run and names that CPU.
#![no_std]
#![no_main]

use kernel::{ExitCode, boot::BootInfo, smp, testing};

kernel::entry_point!(main);

/// The CPU that panics (needs at least two CPUs).
const PANICKING_CPU: usize = 1;

fn main(_boot: &'static BootInfo) -> ExitCode {
    testing::run_tests(&[&application_processor_panics]);
    ExitCode::Success
}

fn application_processor_panics() {
    smp::run_on_all_cpus(|cpu| {
        if cpu == PANICKING_CPU {
            panic!("deliberate panic on an application processor");
        }
    });
}
