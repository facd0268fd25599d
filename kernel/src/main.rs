//! The kernel binary: boots every CPU, then runs the job the command line
//! names (`job=stress` by default).
#![no_std]
#![no_main]

use kernel::{ExitCode, boot::BootInfo, jobs};

kernel::entry_point!(kernel_main);

fn kernel_main(boot: &'static BootInfo) -> ExitCode {
    jobs::run(boot)
}
