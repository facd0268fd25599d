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

/// The timestamp counter as a marker around code whose instructions are
/// counted (`jobs::bench::exact`): like [`read_timestamp`], but the value is
/// complete when the block ends (`rdtsc; shl; or`), and the block is a
/// compiler barrier, so no memory access or call moves across it. Under
/// QEMU's `-icount shift=0` the difference of two markers is the number of
/// instructions between them plus a constant, the markers' own.
#[inline(always)]
pub fn timestamp_marker() -> u64 {
    let ticks: u64;
    // SAFETY: `rdtsc` only reads the timestamp counter (CR4.TSD is clear);
    // `shl` and `or` combine its halves in registers the block declares. It
    // reads no memory; it is not `nomem` only so that the compiler treats it
    // as a barrier for memory and calls.
    unsafe {
        core::arch::asm!(
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            out("rax") ticks,
            out("rdx") _,
            options(nostack),
        );
    }
    ticks
}

/// Instructions of the hand-counted sequences [`marked_hand_counted`] runs.
pub const HAND_COUNTED: [u64; 3] = [2, 3, 12];

/// The markers' difference around hand-counted sequence `index` (of
/// [`HAND_COUNTED`]): a `call` to a function of `nop`s and its `ret`, whose
/// instructions are known without measuring. The known sequences the exact
/// instruction counts are checked against.
pub fn marked_hand_counted(index: usize) -> u64 {
    macro_rules! marked_call {
        ($function:path) => {{
            let start = timestamp_marker();
            // SAFETY: the callee is a naked function of `nop`s and `ret`
            // that touches no register, flag or memory; the call's return
            // address goes below the stack pointer (the block is not
            // `nostack`).
            unsafe { core::arch::asm!("call {f}", f = sym $function, options(preserves_flags)) };
            timestamp_marker() - start
        }};
    }
    match index {
        0 => marked_call!(hand_counted::ret_only),
        1 => marked_call!(hand_counted::one_nop),
        2 => marked_call!(hand_counted::ten_nops),
        _ => panic!("marked_hand_counted: no sequence {index} (there are {})", HAND_COUNTED.len()),
    }
}

/// Functions of a known number of instructions (the `call` adds one).
mod hand_counted {
    /// `ret`: with its call, 2 instructions.
    #[unsafe(naked)]
    pub extern "C" fn ret_only() {
        core::arch::naked_asm!("ret")
    }

    /// `nop; ret`: with its call, 3 instructions.
    #[unsafe(naked)]
    pub extern "C" fn one_nop() {
        core::arch::naked_asm!("nop", "ret")
    }

    /// Ten `nop`s and `ret`: with its call, 12 instructions.
    #[unsafe(naked)]
    pub extern "C" fn ten_nops() {
        core::arch::naked_asm!(
            "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop", "ret"
        )
    }
}
