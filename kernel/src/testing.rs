//! The kernel test framework (`custom_test_frameworks`), in the style of
//! "Writing an OS in Rust": each test prints
//! `Initiating test 0xNN name... [Pass] (T ms)`. A test that must panic is a
//! [`ShouldPanic`] constant; when it panics the kernel reports the pass and
//! asks the runner to boot again from the next test (`test_skip=N`), since a
//! panicked kernel cannot go on. A test that must exhaust the heap is a
//! [`ShouldExhaustHeap`] constant: the kernel declares it with a
//! `TEST-EXPECT` line before running it, and the runner counts the boot's
//! heap-exhausted exit as its pass. Protocol: `docs/interface.md`.
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::{ExitCode, cmdline, console, exit::exit, json::JsonStr, time::Stopwatch};

/// How a test passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// It returns.
    Returns = 0,
    /// It panics (on any CPU).
    Panics = 1,
    /// The heap cannot serve one of its allocations: the allocation error
    /// handler ends the boot with `ExitCode::HeapExhausted`.
    ExhaustsHeap = 2,
}

/// A kernel test.
pub trait Testable: Sync {
    /// The test's name as printed.
    fn name(&self) -> &'static str;
    /// Runs it; a failing test panics.
    fn run(&self);
    /// How it passes.
    fn outcome(&self) -> Outcome {
        Outcome::Returns
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

    fn outcome(&self) -> Outcome {
        Outcome::Panics
    }
}

/// A test that passes only by exhausting the heap:
/// `#[test_case] const FILLS_THE_HEAP: ShouldExhaustHeap = ShouldExhaustHeap::new("fills_the_heap", fill);`
pub struct ShouldExhaustHeap {
    name: &'static str,
    test: fn(),
}

impl ShouldExhaustHeap {
    pub const fn new(name: &'static str, test: fn()) -> Self {
        Self { name, test }
    }
}

impl Testable for ShouldExhaustHeap {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self) {
        (self.test)()
    }

    fn outcome(&self) -> Outcome {
        Outcome::ExhaustsHeap
    }
}

/// Index of the running test plus one (0: none), its name and outcome.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static RUNNING_NAME: spin::Mutex<&str> = spin::Mutex::new("");
static RUNNING_OUTCOME: AtomicU8 = AtomicU8::new(Outcome::Returns as u8);

/// The test runner every kernel test binary names with `#![test_runner]`.
pub fn run_tests(tests: &[&dyn Testable]) {
    let first = cmdline::get().get("test_skip").and_then(|n| n.parse().ok()).unwrap_or(0);
    crate::println!("running {} tests", tests.len());
    for (index, test) in tests.iter().enumerate().skip(first) {
        *RUNNING_NAME.lock() = test.name();
        RUNNING_OUTCOME.store(test.outcome() as u8, Ordering::SeqCst);
        RUNNING.store(index + 1, Ordering::SeqCst);
        if test.outcome() == Outcome::ExhaustsHeap {
            crate::println!(
                "TEST-EXPECT {{\"test\":{index},\"name\":{},\"exit\":\"heap-exhausted\"}}",
                JsonStr(test.name())
            );
        }
        let stopwatch = Stopwatch::start();
        test.run();
        let elapsed_us = stopwatch.elapsed_ns() / 1000;
        RUNNING.store(0, Ordering::SeqCst);
        let missing = match test.outcome() {
            Outcome::Returns => None,
            Outcome::Panics => Some("did not panic"),
            Outcome::ExhaustsHeap => Some("did not exhaust the heap"),
        };
        if let Some(missing) = missing {
            crate::println!("Initiating test {index:#04x} {}... [Fail] ({missing})", test.name());
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
    running_outcome() == Some(Outcome::Panics)
}

/// For the allocation error handler: whether the running test declared
/// that it exhausts the heap (the runner then counts the exit as its pass).
pub(crate) fn heap_exhaustion_was_expected() -> bool {
    running_outcome() == Some(Outcome::ExhaustsHeap)
}

fn running_outcome() -> Option<Outcome> {
    if RUNNING.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let raw = RUNNING_OUTCOME.load(Ordering::SeqCst);
    [Outcome::Returns, Outcome::Panics, Outcome::ExhaustsHeap]
        .into_iter()
        .find(|outcome| *outcome as u8 == raw)
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
