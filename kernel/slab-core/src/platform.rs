//! What the core needs from the machine it runs on: which CPU is running,
//! masking interrupts, a cycle counter and asking other CPUs to drain their
//! caches; and being told of heap corruption. The kernel implements it with
//! GS, `cli`/`sti`, the TSC and an IPI; host tests implement it with threads.

use crate::check::HeapFault;

/// The most CPUs the heap keeps per-CPU caches for. The kernel has no
/// constant of its own: `smp::MAX_CPUS` is this one (QEMU's `-smp` up to 128).
pub const MAX_CPUS: usize = 128;

/// The machine under the heap.
///
/// # Safety
/// The heap's per-CPU caches are unsynchronised memory whose only protection
/// is this trait's promises; breaking one is a data race. Implementors
/// promise:
/// - while a guard returned by [`mask_irqs`](Self::mask_irqs) is alive, the
///   calling thread stays on the CPU it was on, and no other code that can
///   use this heap runs on that CPU (no interrupt handler, no preemption;
///   NMI handlers must never allocate);
/// - [`current_cpu`](Self::current_cpu) returns, while such a guard is alive,
///   the index of the running CPU, below [`MAX_CPUS`], and no two CPUs (host:
///   threads) running at the same time get the same index;
/// - none of the methods allocates from or frees to this heap.
pub unsafe trait Platform: Sync {
    /// Proof that local interrupts (host: nothing) stay masked until dropped.
    /// Dropping it restores the previous state, so guards nest.
    type IrqGuard;

    /// Masks local interrupts until the returned guard is dropped.
    fn mask_irqs(&self) -> Self::IrqGuard;

    /// The running CPU's index, `0..MAX_CPUS` (the kernel reads it from GS).
    fn current_cpu(&self) -> usize;

    /// How many CPUs are online; their indices are `0..cpu_count()`. Only
    /// statistics read it.
    fn cpu_count(&self) -> usize;

    /// A monotonic cycle counter (the TSC in the kernel).
    fn timestamp(&self) -> u64;

    /// Asks every other online CPU to drain its caches (each calls
    /// `SlabHeap::drain_local_cpu` on itself, in the kernel from an IPI
    /// handler; a CPU whose drain returned `false`, because the IPI landed
    /// inside one of its heap operations, must be asked again) and returns
    /// once all of them did.
    ///
    /// The heap calls it, with interrupts enabled as the caller had them and
    /// no heap state borrowed, when the backend is out of memory.
    /// `drain_this_cpu` drains the calling CPU: call it whenever this CPU is
    /// itself asked to drain while it waits, or two CPUs reclaiming at the
    /// same time wait for each other forever. [`crate::ReclaimBroadcast`]
    /// implements the handshake.
    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn() -> bool);

    /// Called while waiting for the global lock, each time it is found
    /// still held; `spins` counts the earlier calls in this wait. Runs with
    /// interrupts masked and must not use the heap. The default pauses the
    /// CPU (`spin_loop`), what the kernel wants: its lock holders run with
    /// interrupts masked, so the wait is short. A host, whose lock holder
    /// can be preempted, yields the thread after a few spins instead.
    #[inline(always)]
    fn relax(&self, spins: u32) {
        let _ = spins;
        crate::sync::spin_loop();
    }

    /// Told after each release of the global lock: by which CPU, when it
    /// started waiting (`== acquired` when the first try got it), when it
    /// got the lock and when it let go (`timestamp` values). The kernel
    /// keeps the last few per CPU for its lock timeline (`trace=on`). Runs
    /// with interrupts masked; must be short and must not use the heap.
    #[inline(always)]
    fn lock_released(&self, cpu: usize, wait_start: u64, acquired: u64, released: u64) {
        let _ = (cpu, wait_start, acquired, released);
    }

    /// Told of each corruption heap checking finds (`SlabHeap::set_checking`),
    /// after the faulty operation was refused (`FaultKind` says what was
    /// done instead). Runs with no heap lock held and no CPU cache in use,
    /// interrupts as the caller of `alloc`/`dealloc` had them. The default
    /// panics with the one-line report; the kernel prints a `HEAPCHECK`
    /// record first, and tests record the fault and go on.
    #[cold]
    fn heap_fault(&self, fault: &HeapFault) {
        panic!("{fault}");
    }
}
