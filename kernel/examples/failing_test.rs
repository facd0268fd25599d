//! A kernel test binary whose second test fails: the runner's own tests boot
//! it to check that a failing kernel test gives a non-zero exit naming it.
#![no_std]
#![no_main]

use kernel::{ExitCode, boot::BootInfo, testing};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    testing::run_tests(&[&passes, &fails_on_purpose, &never_reached]);
    ExitCode::Success
}

fn passes() {}

fn fails_on_purpose() {
    let expected = 4;
    assert_eq!(2 + 1, expected, "deliberate failure");
}

fn never_reached() {}
