//! What the core needs from the machine it runs on: which CPU is running,
//! masking interrupts, a cycle counter and asking other CPUs to drain their
//! caches; and being told of heap corruption. The kernel implements it with
//! GS, `cli`/`sti`, the TSC and an IPI; host tests implement it with threads.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::check::HeapFault;
use crate::cpu_cache::{BUSY_CPU_WORD, initial_cpu_word};

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
/// - none of the methods allocates from or frees to this heap;
/// - a platform that keeps the CPUs' slot words itself (overriding
///   [`take_this_cpu_word`](Self::take_this_cpu_word),
///   [`set_this_cpu_word`](Self::set_this_cpu_word) and
///   [`set_cpu_word`](Self::set_cpu_word) together) keeps one word per CPU,
///   starting as [`initial_cpu_word`]`(cpu)`, for one heap only; the first
///   two read and write the running CPU's own, each read and each write one
///   access an interrupt on this CPU cannot split, and a handler sees what
///   the code it interrupted last wrote.
pub unsafe trait Platform: Sync {
    /// Proof that local interrupts (host: nothing) stay masked until dropped.
    /// Dropping it restores the previous state, so guards nest.
    type IrqGuard;

    /// Masks local interrupts until the returned guard is dropped.
    fn mask_irqs(&self) -> Self::IrqGuard;

    /// The running CPU's index, `0..MAX_CPUS` (the kernel reads it from GS).
    fn current_cpu(&self) -> usize;

    /// Returns the running CPU's slot word (what the heap last set for it;
    /// see `cpu_cache`) and sets it to [`BUSY_CPU_WORD`]: a read, then a
    /// write. By default in the heap's own `words`; the kernel keeps the
    /// words in its per-CPU blocks, two `mov`s with GS, which is what makes
    /// the fast paths cheap.
    #[inline(always)]
    fn take_this_cpu_word(&self, words: &CpuWords) -> usize {
        let cpu = self.current_cpu();
        let word = words.get(cpu);
        words.set(cpu, BUSY_CPU_WORD);
        word
    }

    /// Sets the running CPU's slot word.
    #[inline(always)]
    fn set_this_cpu_word(&self, words: &CpuWords, word: usize) {
        words.set(self.current_cpu(), word);
    }

    /// Sets CPU `cpu`'s slot word (the heap does it for every CPU when it
    /// switches modes, which only happens while no other CPU uses it).
    fn set_cpu_word(&self, words: &CpuWords, cpu: usize, word: usize) {
        words.set(cpu, word);
    }

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

/// Every CPU's slot word, kept by the heap for platforms that keep none
/// themselves (the defaults of [`Platform::take_this_cpu_word`] and its
/// siblings). CPU `cpu`'s starts as [`initial_cpu_word`]`(cpu)`.
///
/// Each word has a line of its own: every heap call stores its CPU's word
/// twice, and with 8 words to a line two threads on neighbouring slots made
/// each other's lines bounce between cores (`HostHeap`'s `pair` at 2
/// threads: 12.8 TSC ticks per operation against 2.3 at 1 thread). 128
/// bytes, as x86 CPUs fetch lines in adjacent pairs.
pub struct CpuWords([LineWord; MAX_CPUS]);

/// One slot word on its own pair of cache lines.
#[repr(align(128))]
struct LineWord(AtomicUsize);

impl CpuWords {
    /// Every CPU's word at its start value.
    pub const fn new() -> Self {
        let mut words = [const { LineWord(AtomicUsize::new(0)) }; MAX_CPUS];
        let mut cpu = 0;
        while cpu < MAX_CPUS {
            words[cpu] = LineWord(AtomicUsize::new(initial_cpu_word(cpu)));
            cpu += 1;
        }
        Self(words)
    }

    /// CPU `cpu`'s word.
    #[inline(always)]
    pub fn get(&self, cpu: usize) -> usize {
        self.0[cpu].0.load(Relaxed)
    }

    /// Sets CPU `cpu`'s word.
    #[inline(always)]
    pub fn set(&self, cpu: usize, word: usize) {
        self.0[cpu].0.store(word, Relaxed);
    }
}

impl Default for CpuWords {
    fn default() -> Self {
        Self::new()
    }
}
