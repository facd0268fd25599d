//! `HostPlatform`: the `Platform` of `HostHeap`, where a "CPU" is a slot
//! that a thread owns for its whole life, or leases for one heap call.
//!
//! # The host's side of the `Platform` contract
//! The core's per-CPU caches are unsynchronised; the kernel protects them
//! by running each CPU's heap calls on that CPU, where the only code that
//! can run in the middle of a heap call is an interrupt handler that runs
//! to its end first. A host thread can be preempted and migrated at any
//! instruction, so the host does not use the physical CPU at all: the
//! heap's slots (`0..slots`) are handed to *threads*, and a thread plays
//! the kernel's CPU. The slots are split in two ranges:
//! - **owned** slots, `0..owned`: a thread takes one at its first call of
//!   the heap and keeps it until it exits (`try_own`, `give_back_owned`);
//! - **shared** slots, `owned..slots`: threads that own none (all owned
//!   slots taken, or the thread is exiting) lease one per heap call
//!   (`lease`), as every call did before. There is always at least one, so
//!   correctness never depends on how many threads there are.
//!
//! Each promise of the contract, for both kinds:
//! - *One user per slot at a time* (`current_cpu`: "no two CPUs running at
//!   the same time get the same index"). Each slot has a `leased` flag; a
//!   thread takes a slot by a compare-and-swap of it from false to true
//!   (Acquire) and gives it back by storing false (Release): for one call
//!   (shared), or from its first call to its exit (owned). So each holder
//!   sees every write of the previous one, and the slot's caches and
//!   counters move between threads only through that handoff: a new thread
//!   reusing an exited thread's slot continues its counters, and the sums in
//!   `HostHeap::stats` stay exact.
//! - *The caller stays on its CPU* (`mask_irqs`). A thread is its own CPU:
//!   `current_cpu` is a thread-local (one `fs`-relative load), so
//!   preemption and migration change nothing. The only code that can run
//!   in the middle of a thread's heap call on that thread is a signal
//!   handler, which returns before the interrupted code goes on: the
//!   kernel's interrupt handler exactly. The slot words (the default
//!   `take_this_cpu_word`/`set_this_cpu_word`, over the heap's `CpuWords`)
//!   are each read and written by single relaxed atomic accesses that a
//!   signal cannot split, and only by the slot's holder or a handler on
//!   its thread, which sees what the thread last wrote (`cpu_cache`'s
//!   compiler fences). So a handler that allocates on a thread that owns a
//!   slot is as sound as a kernel interrupt handler that allocates: in the
//!   middle of a heap call it finds the slot busy and takes the global-lock
//!   path. What it can do is *deadlock*: if the code it interrupted holds
//!   the global lock, the handler waits for ever (a host cannot mask
//!   signals for the lock's holds as the kernel masks interrupts). A
//!   handler interrupting a per-call lease leases a second shared slot, and
//!   waits for ever if there is none. `malloc` is not async-signal-safe in
//!   glibc either (its arena locks deadlock the same way): signal handlers
//!   must not allocate.
//! - *Nothing here allocates from the heap*: the thread-locals are `const`
//!   `Cell`s (no destructor, no registration, no lazy initialisation); the
//!   exit hook is a POSIX thread-specific key, whose `pthread_setspecific`
//!   allocates (if ever, for keys past the first 32) with glibc's
//!   `calloc`, not with this heap.
//!
//! # Thread exit, and allocations after it
//! A thread that takes an owned slot sets the heap's thread-specific key
//! (`pthread_key_create` with a destructor, once per process). When the
//! thread exits, glibc first runs the thread's `thread_local!` destructors
//! (`__call_tls_dtors`, still on the owned slot: they may allocate and
//! free as usual), then the keys' destructors; ours drains the slot's
//! caches back to the slabs (`SlabHeap::drain_local_cpu`: nothing of a dead
//! thread stays cached) and gives the slot back. From then on the thread
//! never owns a slot again: anything it still allocates (another key's
//! destructor, say) leases a shared slot per call. The process's main
//! thread runs no key destructors at `exit`: its slot stays owned to the
//! end. A thread that found no owned slot free tries again once another
//! thread gave one back (a counter of slots given back, read on its
//! per-call path).
//!
//! # One heap owns threads
//! Only the first `HostHeap` to start (in practice the
//! `#[global_allocator]`) gives threads owned slots; other heaps lease per
//! call. So a thread's owned slot is one thread-local word, the heap's
//! address plus the slot (`OWNED_SLOT`), and a heap recognises its own
//! owned slot by that address. Dropping that heap (possible only if it is
//! not a `static`) while another thread still owns one of its slots stops
//! the program: the slot's thread-local would name a dead heap.
//!
//! # fork
//! The child of a `fork` has only the forking thread, so anything another
//! thread held at the fork would stay held in the child for ever. The
//! first `HostHeap` to start (in practice the `#[global_allocator]`)
//! registers `pthread_atfork` handlers (`host/heap.rs`): before the fork,
//! the forking thread leases every shared slot (waiting for each call on
//! one to end) and then takes the global lock, in the order every heap
//! call takes them (slot, then lock); after it, the parent and the child each give all of them back,
//! the child as the continuation of the thread that took them. Owned
//! slots of the parent's other threads stay taken in the child: one of
//! them may be in the middle of a call on its slot at the fork, so the
//! child cannot use or drain it (their cached objects are lost to the
//! child, nothing is unsound). The forking thread keeps its own owned
//! slot, whose caches it was not using at the fork.
//!
//! Restartable sequences (rseq, the CPU id as index) would also avoid the
//! per-call compare-and-swap, but need every cache update to be
//! restartable, which the core's fast path is not written for
//! (`docs/host.md`).

use core::cell::Cell;
use core::ffi::c_void;
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

/// `OWNED_SLOT` is the owning heap's `HostPlatform` address plus the slot:
/// the platform's alignment leaves the low bits for the slot.
const SLOT_BITS: usize = MAX_CPUS.trailing_zeros() as usize;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;
const _: () = assert!(MAX_CPUS.is_power_of_two() && align_of::<HostPlatform>() > SLOT_MASK);

/// `OWNERSHIP`: where this thread stands with the owning heap's slots.
/// Never asked (or asked and found none free: then `RELEASES_SEEN` says when).
const NOT_OWNING: u8 = 0;
/// Taking a slot now (a signal handler that allocates meanwhile leases).
const TAKING: u8 = 1;
/// `OWNED_SLOT` names the slot it owns.
const OWNING: u8 = 2;
/// Gave its slot back at exit: leases for good.
const EXITED: u8 = 3;

std::thread_local! {
    /// The owning heap's platform address plus this thread's owned slot,
    /// or 0.
    static OWNED_SLOT: Cell<usize> = const { Cell::new(0) };
    /// `NOT_OWNING`, `TAKING`, `OWNING` or `EXITED`.
    static OWNERSHIP: Cell<u8> = const { Cell::new(NOT_OWNING) };
    /// `HostPlatform::releases` when this thread last found no owned slot
    /// free; `usize::MAX` if it never looked.
    static RELEASES_SEEN: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The shared slot this thread leased last: the one it asks for first.
    static LAST_SHARED: Cell<usize> = const { Cell::new(NO_SLOT) };
    /// The shared slot this thread leases for the heap call running now,
    /// or `NO_SLOT`.
    static LEASED_SLOT: Cell<usize> = const { Cell::new(NO_SLOT) };
}

/// One slot's lease flag, alone on its cache line so threads leasing
/// different slots do not slow each other down.
#[repr(align(64))]
struct Lease(AtomicBool);

/// The heap's slots, owned by threads or leased per call (see the
/// module's doc). Aligned so that its address leaves `SLOT_BITS` free.
#[repr(align(128))]
pub(crate) struct HostPlatform {
    /// How many slots are in use, `1..=MAX_CPUS`, set once at start.
    slots: AtomicUsize,
    /// Slots `0..owned` go to threads for their life; `owned..slots` are
    /// leased per call (at least one). 0 for a heap that is not the
    /// owning one.
    owned: AtomicUsize,
    leases: [Lease; MAX_CPUS],
    /// Owned slots given back so far (threads that exited).
    releases: AtomicUsize,
    /// Where the next thread's first lease starts looking.
    next_first_slot: AtomicUsize,
    /// `LockWait` as a number (0 yield, 1 spin).
    lock_wait: AtomicU8,
}

/// The process's thread-specific key whose destructor gives a thread's
/// owned slot back; created by the owning heap as it starts.
static EXIT_KEY: AtomicUsize = AtomicUsize::new(NO_KEY);
const NO_KEY: usize = usize::MAX;

/// Which heap owns threads (`HostPlatform` address), 0 before one starts.
static OWNING_PLATFORM: AtomicUsize = AtomicUsize::new(0);

impl HostPlatform {
    pub(crate) const fn new() -> Self {
        Self {
            slots: AtomicUsize::new(1),
            owned: AtomicUsize::new(0),
            leases: [const { Lease(AtomicBool::new(false)) }; MAX_CPUS],
            releases: AtomicUsize::new(0),
            next_first_slot: AtomicUsize::new(0),
            lock_wait: AtomicU8::new(0),
        }
    }

    /// Sets the number of slots, how many of them are shared (the rest go
    /// to threads, if this is the first heap to start and the exit hook
    /// could be set up; `on_exit` is the hook, called with `hook_arg`) and
    /// the lock wait; before any lease.
    pub(crate) fn configure(
        &self,
        slots: usize,
        shared: usize,
        lock_wait: LockWait,
        on_exit: unsafe extern "C" fn(*mut c_void),
    ) {
        let slots = slots.clamp(1, MAX_CPUS);
        let shared = shared.clamp(1, slots);
        self.slots.store(slots, Relaxed);
        self.lock_wait.store(lock_wait as u8, Relaxed);
        let this = self.address();
        if slots > shared
            && OWNING_PLATFORM.compare_exchange(0, this, Relaxed, Relaxed).is_ok()
            && create_exit_key(on_exit)
        {
            self.owned.store(slots - shared, Relaxed);
        }
    }

    #[inline(always)]
    fn address(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    #[inline(always)]
    fn slots(&self) -> usize {
        self.slots.load(Relaxed)
    }

    /// The slot this thread owns in this heap, if any.
    #[inline(always)]
    pub(crate) fn owned_slot(&self) -> Option<usize> {
        let owned = OWNED_SLOT.get();
        (owned & !SLOT_MASK == self.address()).then_some(owned & SLOT_MASK)
    }

    /// Makes one of the owned slots this thread's for the rest of its life
    /// (module doc): `true` if it now owns one. `false` if this heap gives
    /// none, the thread exited or is taking one now (we are a signal
    /// handler), or none is free (then it looks again only after one was
    /// given back). `hook_arg` is what the exit hook will be called with.
    #[cold]
    pub(crate) fn try_own(&self, hook_arg: *const c_void) -> bool {
        let owned = self.owned.load(Relaxed);
        if owned == 0 || OWNERSHIP.get() != NOT_OWNING {
            return false;
        }
        let releases = self.releases.load(Acquire);
        if RELEASES_SEEN.get() == releases {
            return false;
        }
        OWNERSHIP.set(TAKING);
        let Some(slot) = (0..owned).find(|&slot| self.try_claim_if_free(slot)) else {
            RELEASES_SEEN.set(releases);
            OWNERSHIP.set(NOT_OWNING);
            return false;
        };
        let key = EXIT_KEY.load(Relaxed) as libc::pthread_key_t;
        // SAFETY: `key` is a key `create_exit_key` created (`owned` is not
        // 0 only then) and never deleted; the value is only passed back to
        // the hook.
        if unsafe { libc::pthread_setspecific(key, hook_arg) } != 0 {
            // No exit hook, so no owned slot (it would never come back).
            self.leases[slot].0.store(false, Release);
            OWNERSHIP.set(EXITED);
            return false;
        }
        OWNED_SLOT.set(self.address() | slot);
        OWNERSHIP.set(OWNING);
        true
    }

    /// At this thread's exit (the exit hook, after `drain` emptied the
    /// slot's caches as the slot's user): gives its owned slot back.
    pub(crate) fn give_back_owned(&self, drain: impl FnOnce()) {
        let Some(slot) = self.owned_slot() else {
            return;
        };
        drain();
        OWNED_SLOT.set(0);
        OWNERSHIP.set(EXITED);
        self.leases[slot].0.store(false, Release);
        self.releases.fetch_add(1, Release);
    }

    /// Whether any thread other than this one owns a slot of this heap.
    pub(crate) fn others_own_slots(&self) -> bool {
        let mine = self.owned_slot();
        (0..self.owned.load(Relaxed))
            .any(|slot| Some(slot) != mine && self.leases[slot].0.load(Relaxed))
    }

    /// Leases a shared slot for the calling thread until the returned lease
    /// drops: the one it had last if free, else the first free one after
    /// it, waiting (spin, then yield) while every shared slot is leased.
    #[inline]
    pub(crate) fn lease(&self) -> SlotLease<'_> {
        let last = LAST_SHARED.get();
        let slot =
            if (self.owned.load(Relaxed)..self.slots()).contains(&last) && self.try_claim(last) {
                last
            } else {
                self.claim_shared(last)
            };
        SlotLease::hold(self, slot)
    }

    #[inline(always)]
    fn try_claim(&self, slot: usize) -> bool {
        self.leases[slot].0.compare_exchange(false, true, Acquire, Relaxed).is_ok()
    }

    fn try_claim_if_free(&self, slot: usize) -> bool {
        !self.leases[slot].0.load(Relaxed) && self.try_claim(slot)
    }

    /// The slow part of `lease`: a thread's first lease, or its slot taken.
    #[cold]
    fn claim_shared(&self, last: usize) -> usize {
        let (owned, slots) = (self.owned.load(Relaxed), self.slots());
        let shared = slots - owned;
        let first = if (owned..slots).contains(&last) {
            last + 1 - owned
        } else {
            self.next_first_slot.fetch_add(1, Relaxed)
        };
        let mut rounds = 0u32;
        loop {
            for offset in 0..shared {
                let slot = owned + (first + offset) % shared;
                if self.try_claim_if_free(slot) {
                    LAST_SHARED.set(slot);
                    return slot;
                }
            }
            self.wait(LockWait::Yield, rounds);
            rounds = rounds.saturating_add(1);
        }
    }

    /// Before a `fork` (`HostHeap`'s prepare handler): leases every shared
    /// slot, waiting for each thread in the middle of a call on one to
    /// finish it, so the child finds them free.
    pub(crate) fn lease_all_shared(&self) {
        for slot in self.owned.load(Relaxed)..self.slots() {
            let mut rounds = 0u32;
            while !self.try_claim(slot) {
                self.wait(LockWait::Yield, rounds);
                rounds = rounds.saturating_add(1);
            }
        }
    }

    /// After a `fork`, in the parent and in the child: gives back the
    /// shared slots `lease_all_shared` leased.
    pub(crate) fn give_back_all_shared(&self) {
        for slot in self.owned.load(Relaxed)..self.slots() {
            self.leases[slot].0.store(false, Release);
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

/// Creates `EXIT_KEY` with `on_exit` as its destructor; `false` if the
/// system has no key left.
fn create_exit_key(on_exit: unsafe extern "C" fn(*mut c_void)) -> bool {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is writable; `on_exit` stays valid for the process.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_exit)) } != 0 {
        return false;
    }
    EXIT_KEY.store(key as usize, Relaxed);
    true
}

/// A slot leased by this thread; dropping it gives the slot back and makes
/// the thread's previous lease (if the lease was nested) current again.
pub(crate) struct SlotLease<'a> {
    platform: &'a HostPlatform,
    slot: usize,
    previous: usize,
}

impl<'a> SlotLease<'a> {
    /// Records `slot`, just claimed, as the thread's current one.
    #[inline(always)]
    fn hold(platform: &'a HostPlatform, slot: usize) -> Self {
        let previous = LEASED_SLOT.replace(slot);
        SlotLease { platform, slot, previous }
    }
}

impl Drop for SlotLease<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        LEASED_SLOT.set(self.previous);
        self.platform.leases[self.slot].0.store(false, Release);
    }
}

// SAFETY: the module's doc argues each promise: a slot is held by one
// thread at a time, owned from its first call to its exit or leased for
// one call (Acquire/Release), and `current_cpu` names it while the
// thread's heap call runs; the only code that can interrupt a heap call on
// its thread is a signal handler, which ends first (as the kernel's
// interrupt handlers), and the slot words are the heap's `CpuWords`, each
// access one instruction; nothing here allocates from the heap (const
// thread-locals of `Cell`s, system calls, `Stderr`).
unsafe impl Platform for HostPlatform {
    type IrqGuard = ();

    #[inline(always)]
    fn mask_irqs(&self) {}

    /// The thread's owned slot in this heap, else the shared slot it
    /// leased for this call.
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        if let Some(slot) = self.owned_slot() {
            return slot;
        }
        let slot = LEASED_SLOT.get();
        if slot >= MAX_CPUS {
            no_slot_held();
        }
        slot
    }

    #[inline]
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

    /// Drains every other slot that no thread holds (shared slots between
    /// calls, owned slots nobody owns): this thread leases it (so it is
    /// that slot's only user) and drains it as that slot. A slot held by
    /// another thread, owned or in the middle of a heap call, is not
    /// drained: waiting for a leased one could deadlock (its holder may
    /// itself be reclaiming, waiting for ours), so it is tried again a few
    /// times and then left, and an owned one is its thread's until it
    /// exits. The heap then retries its allocation; the reservation is
    /// large, so reclaim is a last resort anyway.
    fn reclaim_remote(&self, drain_this_cpu: &dyn Fn() -> bool) {
        const ROUNDS: u32 = 100;
        let own = self.current_cpu();
        let slots = self.slots();
        let mut drained = [false; MAX_CPUS];
        drained[own] = true;
        for round in 0..ROUNDS {
            for (slot, done) in drained[..slots].iter_mut().enumerate() {
                if !*done && let Some(_lease) = self.try_lease(slot) {
                    *done = self.drain_leased(drain_this_cpu);
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

impl HostPlatform {
    /// Runs `drain_this_cpu` as the slot just leased (`try_lease`), even if
    /// this thread owns a slot: `current_cpu` names the owned slot first,
    /// so the owned slot is set aside for the drain.
    fn drain_leased(&self, drain_this_cpu: &dyn Fn() -> bool) -> bool {
        let owned = OWNED_SLOT.replace(0);
        let drained = drain_this_cpu();
        OWNED_SLOT.set(owned);
        drained
    }
}

/// `current_cpu` outside a leased call: a bug of `HostHeap`.
#[cold]
#[inline(never)]
fn no_slot_held() -> ! {
    fatal(format_args!("Platform::current_cpu asked by a thread that holds no slot"))
}
