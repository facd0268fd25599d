//! Small CPU primitives: halting, spinning, the timestamp counter.

/// Stops this CPU for good: interrupts off, `hlt` in a loop (an NMI may
/// still arrive; the loop halts again after it).
pub fn halt_forever() -> ! {
    loop {
        ::x86_64::instructions::interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}

/// Tells the CPU it is in a spin-wait loop.
#[inline(always)]
pub fn pause() {
    core::hint::spin_loop();
}

/// The CPU's timestamp counter, in cycles (not serialising).
#[inline(always)]
pub fn read_timestamp() -> u64 {
    // SAFETY: `rdtsc` only reads the timestamp counter; CR4.TSD is left clear,
    // so it is allowed at every privilege level and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}
