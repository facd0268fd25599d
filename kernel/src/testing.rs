//! The kernel test framework (`custom_test_frameworks`), in the style of
//! "Writing an OS in Rust": each test prints
//! `Initiating test 0xNN name... [Pass] (T ms)`. A test that must panic is a
//! [`ShouldPanic`] constant, which may name the CPU and the message the
//! panic must come with; when it panics as expected the kernel reports the
//! pass and asks the runner to boot again from the next test
//! (`test_skip=N`), since a panicked kernel cannot go on. A test that must
//! exhaust the heap is a [`ShouldExhaustHeap`] constant: the kernel declares
//! it with a `TEST-EXPECT` line before running it, and the runner counts the
//! boot's heap-exhausted exit as its pass. A test that means something only
//! on some machines names what it [`Needs`]; elsewhere it is reported
//! `[Ignored]` with the reason, like libtest's `#[ignore = "..."]`, never as
//! a pass. Protocol: `docs/interface.md`.
use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicU8, AtomicUsize, Ordering},
};

use crate::{
    ExitCode, cmdline, console,
    exit::exit,
    heap::{self, Checking, Mode},
    json::JsonStr,
    smp,
    time::{self, Stopwatch},
};

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
    /// What the machine must have for the test to mean something.
    fn needs(&self) -> &'static [Needs] {
        &[]
    }
    /// For a test that panics: the CPU and the message its panic must have.
    fn expected_panic(&self) -> ExpectedPanic {
        ExpectedPanic::ANY
    }
}

/// Something a test needs to mean anything; without it the test is
/// reported `[Ignored] (reason)` and counted as ignored, not passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// At least this many CPUs online.
    Cpus(usize),
    /// The per-CPU caches in use: a slab allocator (`alloc=slab`,
    /// `slab-talc`, `slab-buddy`, `slab-rlsf`) without heap checking (which
    /// closes them).
    CpuCaches,
    /// Timestamp ticks that count instructions, one each (QEMU's
    /// `-icount shift=0`: the runner's `--accel icount`).
    InstructionCounting,
    /// A heap an interrupt handler may allocate from: the slab-core heap
    /// (every `alloc=` but the plain ones), which masks interrupts around
    /// its lock. A plain allocator's handler would spin for ever on the
    /// lock its own CPU holds.
    InterruptSafeHeap,
    /// The slab-core heap's counters, modes and checks (lock counts, cache
    /// figures, `heapcheck`): every `alloc=` but the plain ones, which keep
    /// none.
    HeapCounters,
}

impl Needs {
    /// Whether the running machine has it.
    fn met(self) -> bool {
        match self {
            Self::Cpus(cpus) => smp::online_cpus() >= cpus,
            Self::CpuCaches => {
                slab_core_heap()
                    && heap::heap().mode() == Mode::Slab
                    && heap::heap().checking() == Checking::Off
            }
            Self::InstructionCounting => (time::ticks_per_instruction() - 1.0).abs() < 1e-3,
            Self::InterruptSafeHeap | Self::HeapCounters => slab_core_heap(),
        }
    }
}

/// Why a test is ignored: the need, then what the machine has instead.
impl fmt::Display for Needs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Cpus(cpus) => {
                write!(f, "needs at least {cpus} cpus, {} online", smp::online_cpus())
            }
            Self::CpuCaches => write!(
                f,
                "needs the per-cpu caches (alloc=slab or slab-BACKEND, heapcheck=off), running alloc={} heapcheck={}",
                crate::boot::info().allocator.name,
                if heap::heap().checking() == Checking::On { "on" } else { "off" }
            ),
            Self::InstructionCounting => write!(
                f,
                "needs timestamp ticks that count instructions (--accel icount), {:.4} ticks per instruction here",
                time::ticks_per_instruction()
            ),
            Self::InterruptSafeHeap => write!(
                f,
                "needs a heap that interrupt handlers may allocate from (a slab-core allocator: alloc=slab, locked, ...), running the plain alloc={}, which does not mask interrupts",
                crate::boot::info().allocator.name
            ),
            Self::HeapCounters => write!(
                f,
                "needs the slab-core heap's counters and checks (alloc=slab, locked, ...), running the plain alloc={}, which keeps none",
                crate::boot::info().allocator.name
            ),
        }
    }
}

/// Whether the slab-core heap serves (not a plain allocator).
fn slab_core_heap() -> bool {
    !crate::boot::info().allocator.is_plain()
}

/// A test that returns and needs something of the machine:
/// `#[test_case] const T: Test = Test::new("name", body).needs(&[Needs::Cpus(2)]);`
/// (a plain `#[test_case] fn` needs nothing).
pub struct Test {
    name: &'static str,
    test: fn(),
    needs: &'static [Needs],
}

impl Test {
    pub const fn new(name: &'static str, test: fn()) -> Self {
        Self { name, test, needs: &[] }
    }

    /// Runs only on machines that have all of `needs`; ignored elsewhere.
    pub const fn needs(self, needs: &'static [Needs]) -> Self {
        Self { needs, ..self }
    }
}

impl Testable for Test {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self) {
        (self.test)()
    }

    fn needs(&self) -> &'static [Needs] {
        self.needs
    }
}

/// The panic a [`ShouldPanic`] test must end with to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedPanic {
    /// The CPU that must panic (`None`: any).
    pub cpu: Option<usize>,
    /// Text the panic message must contain (`""`: any message).
    pub message: &'static str,
}

impl ExpectedPanic {
    /// Any panic on any CPU.
    pub const ANY: Self = Self { cpu: None, message: "" };

    /// What is wrong with a panic on `cpu` with `message`, if anything.
    fn mismatch(&self, cpu: usize, message: &str) -> Option<&'static str> {
        if self.cpu.is_some_and(|expected| expected != cpu) {
            Some("the panic came from another cpu")
        } else if !message.contains(self.message) {
            Some("the panic message is not the expected one")
        } else {
            None
        }
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
/// and, to pass only with one CPU's panic and message,
/// `.on_cpu(1).with_message("overflow").needs(&[Needs::Cpus(2)])`.
pub struct ShouldPanic {
    name: &'static str,
    test: fn(),
    expected: ExpectedPanic,
    needs: &'static [Needs],
}

impl ShouldPanic {
    pub const fn new(name: &'static str, test: fn()) -> Self {
        Self { name, test, expected: ExpectedPanic::ANY, needs: &[] }
    }

    /// Passes only if CPU `cpu` is the one that panics.
    pub const fn on_cpu(self, cpu: usize) -> Self {
        Self { expected: ExpectedPanic { cpu: Some(cpu), ..self.expected }, ..self }
    }

    /// Passes only if the panic message contains `message`.
    pub const fn with_message(self, message: &'static str) -> Self {
        Self { expected: ExpectedPanic { message, ..self.expected }, ..self }
    }

    /// Runs only on machines that have all of `needs`; ignored elsewhere.
    pub const fn needs(self, needs: &'static [Needs]) -> Self {
        Self { needs, ..self }
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

    fn needs(&self) -> &'static [Needs] {
        self.needs
    }

    fn expected_panic(&self) -> ExpectedPanic {
        self.expected
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
static RUNNING_EXPECTED_PANIC: spin::Mutex<ExpectedPanic> = spin::Mutex::new(ExpectedPanic::ANY);

/// What every test of this binary needs, besides its own needs.
static BINARY_NEEDS: spin::Mutex<&'static [Needs]> = spin::Mutex::new(&[]);

/// Declares what every test of the binary needs (call it in `main`, before
/// `test_main`): where it is missing, each test is reported `[Ignored]`
/// with the reason. Returns whether the machine has it all.
pub fn binary_needs(needs: &'static [Needs]) -> bool {
    *BINARY_NEEDS.lock() = needs;
    needs.iter().all(|need| need.met())
}

/// The test runner every kernel test binary names with `#![test_runner]`.
pub fn run_tests(tests: &[&dyn Testable]) {
    let first = cmdline::get().get("test_skip").and_then(|n| n.parse().ok()).unwrap_or(0);
    crate::println!("running {} tests", tests.len());
    let binary_needs = *BINARY_NEEDS.lock();
    for (index, test) in tests.iter().enumerate().skip(first) {
        if let Some(unmet) = binary_needs.iter().chain(test.needs()).find(|need| !need.met()) {
            crate::println!("Initiating test {index:#04x} {}... [Ignored] ({unmet})", test.name());
            continue;
        }
        *RUNNING_NAME.lock() = test.name();
        *RUNNING_EXPECTED_PANIC.lock() = test.expected_panic();
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

/// For the panic handler, once the other CPUs are stopped, when the running
/// test must panic: a panic on `cpu` with `message` as the test expects is
/// reported as its pass, and the runner asked to resume after it; any other
/// panic is reported (`PANIC` line) with the test's failure, naming the CPU
/// and message expected, and ends the run.
pub(crate) fn judge_expected_panic(
    cpu: usize,
    message: &dyn fmt::Display,
    location: &dyn fmt::Display,
) -> ! {
    let index = RUNNING.load(Ordering::SeqCst) - 1;
    let name = running_name();
    // The panic may have struck while the expectation was being set.
    let expected = RUNNING_EXPECTED_PANIC.try_lock().map_or(ExpectedPanic::ANY, |e| *e);
    let mut text = MessageText::new();
    // Only the first `MESSAGE_TEXT_BYTES` are kept: enough to match.
    let _ = write!(text, "{message}");
    let Some(mismatch) = expected.mismatch(cpu, text.as_str()) else {
        console::write_fmt_for_panic(format_args!(
            "Initiating test {index:#04x} {name}... [Pass] (panicked as expected)\nTEST-RESUME {{\"next\":{}}}\n",
            index + 1
        ));
        exit(ExitCode::TestResume)
    };
    console::write_fmt_for_panic(format_args!(
        "PANIC cpu={cpu} at {location}: {message}\nInitiating test {index:#04x} {name}... [Fail] ({mismatch}: expected a panic on {} with a message containing \"{}\", got one on cpu {cpu} with \"{}\")\n",
        ExpectedCpu(expected.cpu),
        expected.message,
        text.as_str()
    ));
    exit(ExitCode::Failure)
}

/// How long a panic message [`MessageText`] keeps.
const MESSAGE_TEXT_BYTES: usize = 256;

/// The start of a panic message, formatted without the heap (which may be
/// what panicked).
struct MessageText {
    bytes: [u8; MESSAGE_TEXT_BYTES],
    len: usize,
}

impl MessageText {
    const fn new() -> Self {
        Self { bytes: [0; MESSAGE_TEXT_BYTES], len: 0 }
    }

    fn as_str(&self) -> &str {
        // Cut at a character boundary, so the prefix kept is valid UTF-8.
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(text) => text,
            Err(error) => {
                core::str::from_utf8(&self.bytes[..error.valid_up_to()]).unwrap_or_default()
            }
        }
    }
}

impl Write for MessageText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = MESSAGE_TEXT_BYTES - self.len;
        let taken = text.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.len += taken;
        if taken < text.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

struct ExpectedCpu(Option<usize>);

impl fmt::Display for ExpectedCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cpu) => write!(f, "cpu {cpu}"),
            None => f.write_str("any cpu"),
        }
    }
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
