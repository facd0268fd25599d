//! `HostPlatform`: the `Platform` of `HostHeap`, where a "CPU" is a slot a
//! thread leases for one heap call.
//!
//! # The host's side of the `Platform` contract
//! The core's per-CPU caches are unsynchronised; the kernel protects them
//! by running each CPU's heap calls on that CPU with interrupts masked. A
//! host thread can be preempted and migrated at any instruction, so the
//! host does not use the physical CPU at all: each `HostHeap` call first
//! *leases* one of the heap's slots (`0..slots`), runs the core's call on
//! it, and gives it back.
//! - A lease is a compare-and-swap of the slot's `leased` flag from false
//!   to true (Acquire) and a store of false when the call ends (Release).
//!   So at most one thread holds a slot at a time, and each holder sees
//!   every write of the previous one: a slot's caches move between threads
//!   only through that handoff. This is `current_cpu`'s promise ("no two
//!   CPUs running at the same time get the same index") with threads.
//! - `current_cpu` returns the calling thread's leased slot (a
//!   thread-local set by the lease), and a thread keeps it for the whole
//!   core call: `mask_irqs`'s promise that the caller "stays on its CPU".
//!   Preemption does no harm: a preempted holder keeps its slot, and other
//!   threads lease other slots (or wait, if every slot is leased).
//! - No interrupt handler runs heap code in the middle of a call: signal
//!   handlers must not allocate (as with any `malloc`, which is not
//!   async-signal-safe). A nested lease (a handler that does) takes another
//!   slot, so the caches stay sound, but it may wait for ever on the global
//!   lock its own thread holds.
//! - Nothing here allocates: the thread-locals are `const`-initialised
//!   `Cell<usize>`s, which have no destructor and need no registration.
//!
//! A thread remembers the slot it last leased and asks for it first, so a
//! thread that runs alone on a CPU keeps hitting the same slot (and its
//! warm caches) with one uncontended compare-and-swap per call.
//!
//! Restartable sequences (rseq, the CPU id as index) would save that
//! compare-and-swap but need every cache update to be restartable, which
//! the core's fast path is not written for; the lease needs nothing of the
//! core (`docs/host.md`).

use core::cell::Cell;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};

use crate::check::HeapFault;
use crate::host::settings::LockWait;
use crate::host::stderr::{Stderr, fatal};
use crate::platform::{MAX_CPUS, Platform};

/// Rounds of `spin_loop` before a waiter for the global lock starts to
/// yield (`LockWait::Yield`).
const SPINS_BEFORE_YIELD: u32 = 64;

/// No slot (a thread-local that was never set).
const NO_SLOT: usize = usize::MAX;

std::thread_local! {
    /// The slot this thread leased last: the one it asks for first.
    static LAST_SLOT: Cell<usize> = const { Cell::new(NO_SLOT) };
    /// The slot this thread holds right now (`current_cpu`), or `NO_SLOT`.
    static HELD_SLOT: Cell<usize> = const { Cell::new(NO_SLOT) };
}

/// One slot's lease flag, alone on its cache line so threads leasing
/// different slots do not slow each other down.
#[repr(align(64))]
struct Lease(AtomicBool);

/// Slots leased per call (see the module's doc).
pub(crate) struct HostPlatform {
    /// How many slots are in use, `1..=MAX_CPUS`, set once at start.
    slots: AtomicUsize,
    leases: [Lease; MAX_CPUS],
    /// Where the next thread's first lease starts looking.
    next_first_slot: AtomicUsize,
    /// `LockWait` as a number (0 yield, 1 spin).
    lock_wait: AtomicU8,
}

impl HostPlatform {
    pub(crate) const fn new() -> Self {
        Self {
            slots: AtomicUsize::new(1),
            leases: [const { Lease(AtomicBool::new(false)) }; MAX_CPUS],
            next_first_slot: AtomicUsize::new(0),
            lock_wait: AtomicU8::new(0),
        }
    }

    /// Sets the number of slots and the lock wait; before any lease.
    pub(crate) fn configure(&self, slots: usize, lock_wait: LockWait) {
        self.slots.store(slots.clamp(1, MAX_CPUS), Relaxed);
        self.lock_wait.store(lock_wait as u8, Relaxed);
    }

    fn slots(&self) -> usize {
        self.slots.load(Relaxed)
    }

    /// Leases a slot for the calling thread until the returned lease drops:
    /// the one it had last if free, else the first free one after it,
    /// waiting (spin, then yield) while every slot is leased.
    #[inline]
    pub(crate) fn lease(&self) -> SlotLease<'_> {
        let last = LAST_SLOT.get();
        let slot =
            if last < self.slots() && self.try_claim(last) { last } else { self.claim_other(last) };
        SlotLease::hold(self, slot)
    }

    #[inline(always)]
    fn try_claim(&self, slot: usize) -> bool {
        self.leases[slot].0.compare_exchange(false, true, Acquire, Relaxed).is_ok()
    }

    /// The slow part of `lease`: a thread's first lease, or its slot taken.
    #[cold]
    fn claim_other(&self, last: usize) -> usize {
        let slots = self.slots();
        let first =
            if last < slots { last + 1 } else { self.next_first_slot.fetch_add(1, Relaxed) };
        let mut rounds = 0u32;
        loop {
            for offset in 0..slots {
                let slot = (first + offset) % slots;
                if !self.leases[slot].0.load(Relaxed) && self.try_claim(slot) {
                    LAST_SLOT.set(slot);
                    return slot;
                }
            }
            self.wait(LockWait::Yield, rounds);
            rounds = rounds.saturating_add(1);
        }
    }

    /// Leases `slot` if it is free now (reclaim drains slots nobody holds).
    fn try_lease(&self, slot: usize) -> Option<SlotLease<'_>> {
        self.try_claim(slot).then(|| SlotLease::hold(self, slot))
    }

    fn wait(&self, how: LockWait, spins: u32) {
        if how == LockWait::Spin || spins < SPINS_BEFORE_YIELD {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A slot leased by this thread; dropping it gives the slot back and makes
/// the thread's previous slot (if the lease was nested) current again.
pub(crate) struct SlotLease<'a> {
    platform: &'a HostPlatform,
    slot: usize,
    previous: usize,
}

impl<'a> SlotLease<'a> {
    /// Records `slot`, just claimed, as the thread's current one.
    #[inline(always)]
    fn hold(platform: &'a HostPlatform, slot: usize) -> Self {
        let previous = HELD_SLOT.replace(slot);
        SlotLease { platform, slot, previous }
    }
}

impl Drop for SlotLease<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        HELD_SLOT.set(self.previous);
        self.platform.leases[self.slot].0.store(false, Release);
    }
}

// SAFETY: the module's doc argues each promise: a slot is held by one
// thread at a time, from its lease to its release (Acquire/Release), and
// `current_cpu` names it while the thread's heap call runs; there are no
// interrupts to mask (signal handlers must not allocate); nothing here
// allocates (const thread-locals of `Cell<usize>`, system calls, `Stderr`).
unsafe impl Platform for HostPlatform {
    type IrqGuard = ();

    #[inline(always)]
    fn mask_irqs(&self) {}

    #[inline(always)]
    fn current_cpu(&self) -> usize {
        let slot = HELD_SLOT.get();
        if slot >= MAX_CPUS {
            no_slot_held();
        }
        slot
    }

    fn cpu_count(&self) -> usize {
        self.slots()
    }

    #[inline(always)]
    fn timestamp(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `rdtsc` has no preconditions on x86_64 user space.
            unsafe { core::arch::x86_64::_rdtsc() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            0
        }
    }

    /// Drains every other slot that no thread holds: this thread leases it
    /// (so it is that slot's only user) and drains it as that slot. A slot
    /// held by another thread is in the middle of a heap call, and that
    /// thread may itself be reclaiming (holding its slot while it waits for
    /// ours); waiting for it could deadlock, so it is tried again a few
    /// times and then left. The heap then retries its allocation; the
    /// reservation is large, so reclaim is a last resort anyway.
    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn() -> bool) {
        const ROUNDS: u32 = 100;
        let own = HELD_SLOT.get();
        let slots = self.slots();
        let mut drained = [false; MAX_CPUS];
        if own < slots {
            drained[own] = true;
        }
        for round in 0..ROUNDS {
            for (slot, done) in drained[..slots].iter_mut().enumerate() {
                if !*done && let Some(_lease) = self.try_lease(slot) {
                    *done = drain_this_cpu();
                }
            }
            if drained[..slots].iter().all(|&done| done) {
                return;
            }
            self.wait(LockWait::Yield, round + SPINS_BEFORE_YIELD);
        }
    }

    #[inline]
    fn relax(&self, spins: u32) {
        let how = if self.lock_wait.load(Relaxed) == LockWait::Spin as u8 {
            LockWait::Spin
        } else {
            LockWait::Yield
        };
        self.wait(how, spins);
    }

    /// Prints the `HEAPCHECK {json}` record (as the kernel does) and aborts.
    #[cold]
    fn heap_fault(&self, fault: &HeapFault) {
        let mut out = Stderr::new();
        let _ = core::fmt::Write::write_fmt(&mut out, format_args!("HEAPCHECK {}\n", fault.json()));
        out.flush();
        fatal(format_args!("heap corruption found: {fault}"));
    }
}

/// `current_cpu` outside a leased call: a bug of `HostHeap`.
#[cold]
#[inline(never)]
fn no_slot_held() -> ! {
    fatal(format_args!("Platform::current_cpu asked by a thread that holds no slot"))
}
