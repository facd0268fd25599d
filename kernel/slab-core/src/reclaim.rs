//! The reclaim handshake a `Platform::reclaim_remote` implementation uses:
//! a requester opens a numbered round and interrupts the other CPUs; each
//! drains its own caches and acknowledges the newest round it saw; the
//! requester waits until every other CPU acknowledged its round, draining
//! itself whenever someone asks it meanwhile (so two CPUs reclaiming at once
//! do not wait for each other forever).
//!
//! Nothing here is on the allocation fast path: it runs only when the
//! backend is out of memory.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::platform::MAX_CPUS;
use crate::sync::{AtomicU64, spin_loop};

/// Spins of a waiting requester between two notifications.
const RENOTIFY_SPINS: u32 = 1 << 14;

/// One CPU's acknowledgement, on its own cache line.
#[repr(align(64))]
struct Acknowledged(AtomicU64);

/// The shared state of reclaim rounds for up to `CPUS` CPUs.
pub struct ReclaimBroadcast<const CPUS: usize = MAX_CPUS> {
    /// The newest round requested (rounds count from 1).
    requested: AtomicU64,
    /// Per CPU, the newest round it drained for.
    acknowledged: [Acknowledged; CPUS],
}

impl<const CPUS: usize> ReclaimBroadcast<CPUS> {
    /// No round requested yet.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            requested: AtomicU64::new(0),
            acknowledged: [const { Acknowledged(AtomicU64::new(0)) }; CPUS],
        }
    }

    /// No round requested yet (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            requested: AtomicU64::new(0),
            acknowledged: core::array::from_fn(|_| Acknowledged(AtomicU64::new(0))),
        }
    }

    /// Opens a new round; returns its number for [`Self::wait`].
    pub fn request(&self) -> u64 {
        self.requested.fetch_add(1, AcqRel) + 1
    }

    /// Whether `cpu` has a round it has not drained for yet.
    pub fn is_pending(&self, cpu: usize) -> bool {
        self.acknowledged[cpu].0.load(Relaxed) < self.requested.load(Acquire)
    }

    /// Handler side, run by `cpu` on itself (the kernel: in the reclaim IPI
    /// handler, interrupts masked): if a round is pending, runs `drain`
    /// (`SlabHeap::drain_local_cpu`) and, if that drained, acknowledges
    /// every round up to the newest one seen before draining. Returns
    /// whether it drained. A drain that could not (it interrupted a heap
    /// operation) leaves the round pending; the requester asks again.
    pub fn serve(&self, cpu: usize, drain: impl FnOnce() -> bool) -> bool {
        let round = self.requested.load(Acquire);
        if self.acknowledged[cpu].0.load(Relaxed) >= round {
            return false;
        }
        if !drain() {
            return false;
        }
        // `fetch_max` keeps acknowledgements monotonic even if a nested
        // serve (an IPI during a serve from the wait loop) acked a newer
        // round first. Release: the drain happens-before the requester's
        // observation of the acknowledgement.
        self.acknowledged[cpu].0.fetch_max(round, Release);
        true
    }

    /// Whether every CPU in `0..cpu_count` except `me` drained for `round`.
    pub fn is_complete(&self, round: u64, me: usize, cpu_count: usize) -> bool {
        self.acknowledged[..cpu_count.min(CPUS)]
            .iter()
            .enumerate()
            .all(|(cpu, ack)| cpu == me || ack.0.load(Acquire) >= round)
    }

    /// Requester side: spins until `round` is complete, serving rounds aimed
    /// at `me` with `drain_this_cpu` meanwhile, and once more at the end;
    /// every `RENOTIFY_SPINS` spins it calls `notify_again` (the kernel
    /// re-sends its IPI) for CPUs whose drain could not run yet.
    ///
    /// A round another CPU opens after this returns is served by `me`'s
    /// interrupt handler as usual: the kernel's IPI stays pending until
    /// `me` enables interrupts again (loom found that a requester which
    /// stops serving when its own round completes can leave a concurrent
    /// requester waiting forever).
    pub fn wait(
        &self,
        round: u64,
        me: usize,
        cpu_count: usize,
        drain_this_cpu: &dyn Fn() -> bool,
        notify_again: &dyn Fn(),
    ) {
        let mut spins = 0u32;
        loop {
            self.serve(me, drain_this_cpu);
            if self.is_complete(round, me, cpu_count) {
                self.serve(me, drain_this_cpu);
                return;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(RENOTIFY_SPINS) {
                notify_again();
            }
            spin_loop();
        }
    }

    /// A whole `Platform::reclaim_remote`: opens a round, calls `notify`
    /// (the kernel: send the reclaim IPI to every other CPU), and waits,
    /// calling `notify_again` now and then (see [`Self::wait`]).
    pub fn request_and_wait(
        &self,
        me: usize,
        cpu_count: usize,
        notify: impl FnOnce(),
        notify_again: &dyn Fn(),
        drain_this_cpu: &dyn Fn() -> bool,
    ) {
        let round = self.request();
        notify();
        self.wait(round, me, cpu_count, drain_this_cpu, notify_again);
    }
}

impl<const CPUS: usize> Default for ReclaimBroadcast<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn a_round_is_complete_once_every_other_cpu_served_it() {
        let broadcast = ReclaimBroadcast::<3>::new();
        assert!(!broadcast.is_pending(1));
        let round = broadcast.request();
        assert!(broadcast.is_pending(1) && broadcast.is_pending(2));
        assert!(!broadcast.is_complete(round, 0, 3));
        let drains = Cell::new(0);
        let drain = || {
            drains.set(drains.get() + 1);
            true
        };
        assert!(broadcast.serve(1, drain));
        assert!(!broadcast.serve(1, drain), "served once");
        assert!(!broadcast.is_complete(round, 0, 3));
        assert!(!broadcast.serve(2, || false), "a drain that could not run");
        assert!(!broadcast.is_complete(round, 0, 3), "leaves the round pending");
        assert!(broadcast.serve(2, drain), "until it is served again");
        assert!(broadcast.is_complete(round, 0, 3));
        assert_eq!(drains.get(), 2);
        // The requester itself was asked too; waiting serves it.
        broadcast.wait(round, 0, 3, &drain, &|| {});
        assert_eq!(drains.get(), 3);
    }
}
