//! The panic handler: reports the CPU, the location and the message, stops
//! the other CPUs and ends the run with the failure code (or, for a
//! `should_panic` test, lets the test framework judge it: a pass if the CPU
//! and message are the ones the test expects).
use core::{
    panic::PanicInfo,
    sync::atomic::{AtomicUsize, Ordering},
};

use crate::{ExitCode, arch, console, exit::exit, smp, testing};

/// `cpu index + 1` of the first CPU that panicked or exhausted the heap; 0
/// while none has.
static FIRST_PANIC: AtomicUsize = AtomicUsize::new(0);
/// Stands for "CPU not known yet" (a panic before the per-CPU blocks exist).
const UNKNOWN_CPU: usize = usize::MAX - 1;

/// Who reports a fatal event (a panic, heap exhaustion): only the first CPU
/// to have one does; the others are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FatalReport {
    /// This CPU is the first: it reports and ends the run.
    First,
    /// This CPU is already reporting one (and had another while doing so).
    Nested,
    /// Another CPU is reporting and stopping this one.
    Another,
}

/// Claims the fatal report for the running CPU.
pub(crate) fn claim_fatal_report() -> FatalReport {
    let cpu = smp::try_current_cpu_index().unwrap_or(UNKNOWN_CPU);
    match FIRST_PANIC.compare_exchange(0, cpu + 1, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => FatalReport::First,
        Err(first) if first == cpu + 1 => FatalReport::Nested,
        Err(_) => FatalReport::Another,
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let cpu = smp::try_current_cpu_index().unwrap_or(UNKNOWN_CPU);
    match claim_fatal_report() {
        FatalReport::First => {}
        FatalReport::Nested => {
            console::write_fmt_for_panic(format_args!(
                "PANIC cpu={} (while panicking) at {}: {}\n",
                CpuName(cpu),
                Location(info),
                info.message()
            ));
            exit(ExitCode::Failure);
        }
        // Another CPU is already reporting its panic and stopping us.
        FatalReport::Another => arch::halt_forever(),
    }
    smp::stop_other_cpus();
    if testing::panic_was_expected() {
        testing::judge_expected_panic(cpu, &info.message(), &Location(info));
    }
    console::write_fmt_for_panic(format_args!(
        "PANIC cpu={} at {}: {}\n",
        CpuName(cpu),
        Location(info),
        info.message()
    ));
    testing::report_running_test_failed();
    exit(ExitCode::Failure)
}

struct CpuName(usize);

impl core::fmt::Display for CpuName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == UNKNOWN_CPU { f.write_str("?") } else { write!(f, "{}", self.0) }
    }
}

struct Location<'a>(&'a PanicInfo<'a>);

impl core::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.location() {
            Some(at) => write!(f, "{}:{}:{}", at.file(), at.line(), at.column()),
            None => f.write_str("<unknown location>"),
        }
    }
}
