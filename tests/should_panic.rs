//! The test framework itself: a test that must panic passes by panicking
//! (with the CPU and message it names, if it names them), and the tests
//! after it still run (the runner boots again from there).
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{
    ExitCode,
    boot::BootInfo,
    smp,
    testing::{Needs, ShouldPanic},
};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

/// The application processor that panics on purpose (CPU 0 is the
/// bootstrap processor, which runs the tests).
const PANICKING_AP: usize = 1;

#[test_case]
const FAILED_ASSERTION_PANICS: ShouldPanic = ShouldPanic::new("failed_assertion_panics", || {
    assert_eq!(1 + 1, 3, "arithmetic is broken");
})
.on_cpu(0)
.with_message("arithmetic is broken");

/// The panic must be caught from the AP itself: its CPU index and its
/// message (which names the CPU the closure ran on), not a panic of CPU 0,
/// which runs the test, standing in for it.
#[test_case]
const PANIC_ON_ANOTHER_CPU_IS_CAUGHT: ShouldPanic =
    ShouldPanic::new("panic_on_another_cpu_is_caught", || {
        smp::run_on_all_cpus(|cpu| {
            if cpu == PANICKING_AP {
                panic!("deliberate panic on application processor {cpu}");
            }
        });
    })
    .on_cpu(PANICKING_AP)
    .with_message("deliberate panic on application processor 1")
    .needs(&[Needs::Cpus(PANICKING_AP + 1)]);

#[test_case]
fn tests_after_a_panic_still_run() {
    assert!(smp::online_cpus() >= 1);
}
