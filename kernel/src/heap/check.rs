//! Heap corruption checking in the kernel (`heapcheck=on`; the checks are
//! `slab_core`'s): each fault found is printed as one `HEAPCHECK {json}`
//! record and ends the run as a panic (`PANIC cpu=...`, exit code 0x11),
//! unless a test is recording faults on purpose ([`FaultRecorder`]).
use core::sync::atomic::{AtomicBool, Ordering};

use slab_core::{Checking, CheckingLocked, HeapFault};

use crate::{console, sync::IrqSpinLock};

/// Whether a [`FaultRecorder`] is alive.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// What it recorded (a fault may be found in an interrupt handler, hence
/// the interrupt-masking lock).
static RECORDED: IrqSpinLock<Recorded> = IrqSpinLock::new(Recorded { count: 0, last: None });

/// Faults recorded since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// How many.
    pub count: usize,
    /// The latest one.
    pub last: Option<HeapFault>,
}

/// `Platform::heap_fault`: prints the record, then records the fault or
/// panics with the one-line report. Runs with no heap lock held.
pub(super) fn on_fault(fault: &HeapFault) {
    if RECORDING.load(Ordering::SeqCst) {
        crate::println!("HEAPCHECK {}", fault.json());
        let mut recorded = RECORDED.lock();
        recorded.count += 1;
        recorded.last = Some(*fault);
        return;
    }
    // The panic path's console: the fault may have struck inside a
    // `println!` on this CPU, whose lock would never be released.
    console::write_fmt_for_panic(format_args!("HEAPCHECK {}\n", fault.json()));
    panic!("{fault}");
}

/// Switches checking on, if the heap is still empty (a test binary's first
/// step, so it checks even when booted without `heapcheck=on`).
pub fn switch_on() -> Result<(), CheckingLocked> {
    super::heap().set_checking(Checking::On)
}

/// While alive, heap faults are recorded (and still printed) instead of
/// ending the run: for tests that commit one on purpose. One at a time.
#[derive(Debug)]
pub struct FaultRecorder(());

impl FaultRecorder {
    /// Starts recording, with nothing recorded yet.
    pub fn start() -> FaultRecorder {
        *RECORDED.lock() = Recorded { count: 0, last: None };
        let already = RECORDING.swap(true, Ordering::SeqCst);
        assert!(!already, "only one FaultRecorder at a time");
        FaultRecorder(())
    }

    /// The faults recorded since the start or the last `take`, cleared.
    pub fn take(&self) -> Recorded {
        core::mem::replace(&mut *RECORDED.lock(), Recorded { count: 0, last: None })
    }

    /// The one fault recorded since the start or the last `take`; panics
    /// naming how many there were otherwise.
    #[track_caller]
    pub fn take_one(&self) -> HeapFault {
        match self.take() {
            Recorded { count: 1, last: Some(fault) } => fault,
            other => panic!("expected exactly one heap fault, recorded {other:?}"),
        }
    }
}

impl Drop for FaultRecorder {
    fn drop(&mut self) {
        RECORDING.store(false, Ordering::SeqCst);
    }
}
