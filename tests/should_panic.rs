//! The test framework itself: a test that must panic passes by panicking,
//! and the tests after it still run (the runner boots again from there).
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{ExitCode, boot::BootInfo, smp, testing::ShouldPanic};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

#[test_case]
const FAILED_ASSERTION_PANICS: ShouldPanic = ShouldPanic::new("failed_assertion_panics", || {
    assert_eq!(1 + 1, 3, "arithmetic is broken");
});

#[test_case]
const PANIC_ON_ANOTHER_CPU_IS_CAUGHT: ShouldPanic =
    ShouldPanic::new("panic_on_another_cpu_is_caught", || {
        smp::run_on_all_cpus(|cpu| assert!(cpu == 0, "deliberate panic on cpu {cpu}"));
        // With one CPU nothing else can panic: do it here so the test holds.
        panic!("only one cpu online");
    });

#[test_case]
fn tests_after_a_panic_still_run() {
    assert!(smp::online_cpus() >= 1);
}
