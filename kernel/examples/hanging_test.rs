//! A kernel test binary whose test never ends: the runner's own tests boot
//! it with a short `--timeout` to check that a hang gives a non-zero exit
//! that says "timeout".
#![no_std]
#![no_main]

use kernel::{ExitCode, arch, boot::BootInfo, testing};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    testing::run_tests(&[&hangs_for_ever]);
    ExitCode::Success
}

fn hangs_for_ever() {
    loop {
        arch::pause();
    }
}
