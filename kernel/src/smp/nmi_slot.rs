//! Each CPU's record of where an NMI found it: written by that CPU from its
//! NMI handler, read by the CPU that prints the NMI dump (`crate::nmi`).
//! Atomics only, so writing and reading never wait and never allocate.
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the NMI interrupted, as the arch code read it off the interrupt frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub instruction_pointer: u64,
    pub stack_pointer: u64,
    /// Whether the interrupted code had local interrupts enabled.
    pub interrupts_enabled: bool,
}

/// One CPU's [`Interrupted`] for one dump round.
pub struct NmiSlot {
    /// The round the fields belong to; 0 while the CPU never answered.
    round: AtomicU64,
    instruction_pointer: AtomicU64,
    stack_pointer: AtomicU64,
    interrupts_enabled: AtomicBool,
}

impl NmiSlot {
    pub(super) const fn new() -> Self {
        Self {
            round: AtomicU64::new(0),
            instruction_pointer: AtomicU64::new(0),
            stack_pointer: AtomicU64::new(0),
            interrupts_enabled: AtomicBool::new(false),
        }
    }

    /// Stores `at` for `round` (only the owning CPU calls this).
    pub(super) fn record(&self, round: u64, at: &Interrupted) {
        self.instruction_pointer.store(at.instruction_pointer, Ordering::Relaxed);
        self.stack_pointer.store(at.stack_pointer, Ordering::Relaxed);
        self.interrupts_enabled.store(at.interrupts_enabled, Ordering::Relaxed);
        // Publishes the fields above.
        self.round.store(round, Ordering::Release);
    }

    /// The last round the CPU answered (0: none).
    pub fn round(&self) -> u64 {
        self.round.load(Ordering::Acquire)
    }

    /// What the CPU recorded for `round`, if it has answered that round.
    pub fn get(&self, round: u64) -> Option<Interrupted> {
        (self.round() == round).then(|| Interrupted {
            instruction_pointer: self.instruction_pointer.load(Ordering::Relaxed),
            stack_pointer: self.stack_pointer.load(Ordering::Relaxed),
            interrupts_enabled: self.interrupts_enabled.load(Ordering::Relaxed),
        })
    }
}
