//! The kernel test framework (`custom_test_frameworks`), in the style of
//! "Writing an OS in Rust": each test prints
//! `Initiating test 0xNN name... [Pass] (T ms)`. A test that must panic is a
//! [`ShouldPanic`] constant; when it panics the kernel reports the pass and
//! asks the runner to boot again from the next test (`test_skip=N`), since a
//! panicked kernel cannot go on. Protocol: `docs/interface.md`.
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::{ExitCode, cmdline, console, exit::exit, time::Stopwatch};

/// A kernel test.
pub trait Testable: Sync {
    /// The test's name as printed.
    fn name(&self) -> &'static str;
    /// Runs it; a failing test panics.
    fn run(&self);
    /// Whether passing means panicking.
    fn must_panic(&self) -> bool {
        false
    }
}

impl<T: Fn() + Sync> Testable for T {
    fn name(&self) -> &'static str {
        let path = core::any::type_name::<T>();
        path.rsplit("::").next().unwrap_or(path)
    }

    fn run(&self) {
        self()
    }
}

/// A test that passes only by panicking:
/// `#[test_case] const OVERFLOW_PANICS: ShouldPanic = ShouldPanic::new("overflow_panics", overflow);`
pub struct ShouldPanic {
    name: &'static str,
    test: fn(),
}

impl ShouldPanic {
    pub const fn new(name: &'static str, test: fn()) -> Self {
        Self { name, test }
    }
}

impl Testable for ShouldPanic {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self) {
        (self.test)()
    }

    fn must_panic(&self) -> bool {
        true
    }
}

/// Index of the running test plus one (0: none), its name and expectation.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static RUNNING_NAME: spin::Mutex<&str> = spin::Mutex::new("");
static RUNNING_MUST_PANIC: AtomicBool = AtomicBool::new(false);

/// The test runner every kernel test binary names with `#![test_runner]`.
pub fn run_tests(tests: &[&dyn Testable]) {
    let first = cmdline::get().get("test_skip").and_then(|n| n.parse().ok()).unwrap_or(0);
    crate::println!("running {} tests", tests.len());
    for (index, test) in tests.iter().enumerate().skip(first) {
        *RUNNING_NAME.lock() = test.name();
        RUNNING_MUST_PANIC.store(test.must_panic(), Ordering::SeqCst);
        RUNNING.store(index + 1, Ordering::SeqCst);
        let stopwatch = Stopwatch::start();
        test.run();
        let elapsed_us = stopwatch.elapsed_ns() / 1000;
        RUNNING.store(0, Ordering::SeqCst);
        if test.must_panic() {
            crate::println!(
                "Initiating test {index:#04x} {}... [Fail] (did not panic)",
                test.name()
            );
            exit(ExitCode::Failure);
        }
        crate::println!(
            "Initiating test {index:#04x} {}... [Pass] ({}.{} ms)",
            test.name(),
            elapsed_us / 1000,
            elapsed_us % 1000 / 100
        );
    }
}

/// For the panic handler: whether the running test is one that must panic.
pub(crate) fn panic_was_expected() -> bool {
    RUNNING.load(Ordering::SeqCst) != 0 && RUNNING_MUST_PANIC.load(Ordering::SeqCst)
}

/// For the panic handler: reports the expected panic as a pass and asks the
/// runner to resume after it.
pub(crate) fn pass_expected_panic() -> ! {
    let index = RUNNING.load(Ordering::SeqCst) - 1;
    let name = running_name();
    console::write_fmt_for_panic(format_args!(
        "Initiating test {index:#04x} {name}... [Pass] (panicked as expected)\nTEST-RESUME {{\"next\":{}}}\n",
        index + 1
    ));
    exit(ExitCode::TestResume)
}

/// For the panic handler: reports the running test (if any) as failed.
pub(crate) fn report_running_test_failed() {
    let running = RUNNING.load(Ordering::SeqCst);
    if running != 0 {
        let name = running_name();
        console::write_fmt_for_panic(format_args!(
            "Initiating test {:#04x} {name}... [Fail]\n",
            running - 1
        ));
    }
}

fn running_name() -> &'static str {
    // The panic may have struck while the name was being set: don't wait.
    RUNNING_NAME.try_lock().map_or("?", |name| *name)
}
