//! What an NMI does. Either another CPU panicked and is stopping this one
//! (`smp::stop_other_cpus`), or someone (the runner, on a timeout) asks for
//! the NMI dump: where each CPU is and which locks it holds, printed as
//! `NMIDUMP {json}` lines (`docs/interface.md`). An NMI arrives even on a
//! CPU spinning with interrupts masked, and nothing here allocates or waits
//! without a bound, so a CPU stuck in the heap or holding the console lock
//! still gets reported.
//!
//! ```text
//!  QEMU inject-nmi: an NMI on every CPU at once (local APIC LINT1)
//!
//!  first CPU to arrive (the reporter)     every other CPU
//!    PHASE even -> odd: round R             PHASE is odd: round R
//!    its slot := RIP, RSP, IF, R            its slot := RIP, RSP, IF, R
//!    wait <= 100 ms for every online        spin while PHASE == R
//!      CPU's slot to show R                   (<= 2 s)
//!    print one NMIDUMP line per CPU,
//!      then the "done" line
//!    PHASE := R + 1 (even)  --------------> back to the interrupted code
//! ```
//!
//! The slots are per-CPU (`smp::NmiSlot`, in each CPU's block). The reporter
//! reads each lock's holder without taking the lock; it writes through
//! `console::with_nmi_writer`, which goes around the console lock if a
//! parked CPU (or the reporter itself) holds it.
use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{arch, console, memory, smp, smp::Interrupted, time};

/// Odd while a dump round runs (the value is the round), even between rounds.
static PHASE: AtomicU64 = AtomicU64::new(0);

/// How long the reporter waits for the other CPUs to record their state.
const ANSWER_WAIT_MS: u64 = 100;
/// How long the other CPUs wait for the reporter to finish printing.
const PRINT_WAIT_MS: u64 = 2_000;

/// A lock-free look-up of the CPU holding a lock.
type HolderFn = fn() -> Option<usize>;

/// The locks the dump names, each with its holder's look-up.
const LOCKS: [(&str, HolderFn); 4] = [
    ("heap", heap_lock_holder),
    ("console", console::lock_holder),
    ("page_tables", arch::paging::lock_holder),
    ("frames", memory::frames::lock_holder),
];

fn heap_lock_holder() -> Option<usize> {
    crate::heap::heap().lock_holder()
}

/// The NMI handler's work; `at` is what the NMI interrupted.
pub fn on_nmi(at: &Interrupted) {
    // Halts for good if a panicking CPU is stopping this one.
    smp::on_nmi();
    // Before this CPU's block is installed there is nothing to report with.
    let Some(me) = smp::try_current_cpu_index() else {
        return;
    };
    let (round, role) = join_round();
    smp::record_nmi_on_this_cpu(round, at);
    match role {
        Role::Reporter => {
            wait_for_answers(round);
            // Before the reporter takes the console lock to print.
            let holders = LOCKS.map(|(_, holder)| holder());
            console::with_nmi_writer(|out| {
                let _ = print_dump(out, round, me, &holders);
            });
            PHASE.store(round + 1, Ordering::Release);
        }
        Role::Parked => {
            let deadline = time::deadline_after_ms(PRINT_WAIT_MS);
            while PHASE.load(Ordering::Acquire) == round && !time::passed(deadline) {
                arch::pause();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The first CPU of the round: collects and prints.
    Reporter,
    /// Records its state and waits until the dump is printed.
    Parked,
}

/// The running round (odd), starting one if none runs.
fn join_round() -> (u64, Role) {
    loop {
        let phase = PHASE.load(Ordering::Acquire);
        if phase % 2 == 1 {
            return (phase, Role::Parked);
        }
        let started = PHASE.compare_exchange(phase, phase + 1, Ordering::AcqRel, Ordering::Acquire);
        if started.is_ok() {
            return (phase + 1, Role::Reporter);
        }
    }
}

/// Spins until every online CPU has recorded `round`, or the wait runs out.
fn wait_for_answers(round: u64) {
    let deadline = time::deadline_after_ms(ANSWER_WAIT_MS);
    let answered = || {
        (0..smp::MAX_CPUS)
            .all(|i| !smp::cpu(i).is_online() || smp::cpu(i).nmi_slot().round() == round)
    };
    while !answered() && !time::passed(deadline) {
        arch::pause();
    }
}

/// One line per CPU that is online or answered `round`, then the end marker;
/// `holders` are the holders of [`LOCKS`], in order.
fn print_dump(
    out: &mut dyn Write,
    round: u64,
    reporter: usize,
    holders: &[Option<usize>; LOCKS.len()],
) -> fmt::Result {
    let mut cpus = 0;
    let mut answered = 0;
    for index in 0..smp::MAX_CPUS {
        let cpu = smp::cpu(index);
        let state = cpu.nmi_slot().get(round);
        if !cpu.is_online() && state.is_none() {
            continue;
        }
        cpus += 1;
        write!(out, "NMIDUMP {{\"cpu\":{index},\"answered\":{}", state.is_some())?;
        if let Some(at) = state {
            answered += 1;
            write!(
                out,
                ",\"rip\":\"{:#x}\",\"rsp\":\"{:#x}\",\"if\":{}",
                at.instruction_pointer, at.stack_pointer, at.interrupts_enabled
            )?;
        }
        out.write_str(",\"holds\":[")?;
        let held = LOCKS.iter().zip(holders).filter(|(_, holder)| **holder == Some(index));
        for (n, ((name, _), _)) in held.enumerate() {
            write!(out, "{}\"{name}\"", if n == 0 { "" } else { "," })?;
        }
        out.write_str("]}\n")?;
    }
    writeln!(
        out,
        "NMIDUMP {{\"done\":true,\"cpus\":{cpus},\"answered\":{answered},\"reporter\":{reporter}}}"
    )
}
