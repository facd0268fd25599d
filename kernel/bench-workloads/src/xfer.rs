//! `xfer`: CPU i allocates 64-byte objects, writes them and hands them
//! through a lock-free ring to CPU i+1, which frees them (larson /
//! xmalloc-test-like); on one CPU the ring leads back to itself.
use core::{
    alloc::Layout,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};

use crate::{CpuRun, MAX_CPUS, Machine, timing::timed_batches};

/// The object `xfer` hands over, and the ring length.
const XFER_OBJECT_BYTES: usize = 64;
const RING_SLOTS: usize = 1024;
/// Operations per timing batch in `xfer`.
const XFER_BATCH_OPS: u64 = 64;

/// A single-producer single-consumer ring of object pointers.
#[repr(align(64))]
struct Ring {
    slots: [AtomicPtr<u8>; RING_SLOTS],
    head: AtomicUsize,
    tail: AtomicUsize,
}

impl Ring {
    const fn new() -> Self {
        Self {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; RING_SLOTS],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Producer side: whether a push would find no room.
    fn is_full(&self) -> bool {
        self.tail.load(Ordering::Relaxed) - self.head.load(Ordering::Acquire) == RING_SLOTS
    }

    /// Producer side; the ring must not be full.
    fn push(&self, object: *mut u8) {
        let tail = self.tail.load(Ordering::Relaxed);
        assert!(tail - self.head.load(Ordering::Acquire) < RING_SLOTS, "push on a full ring");
        self.slots[tail % RING_SLOTS].store(object, Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
    }

    /// Consumer side.
    fn pop(&self) -> Option<*mut u8> {
        let head = self.head.load(Ordering::Relaxed);
        if head == self.tail.load(Ordering::Acquire) {
            return None;
        }
        let object = self.slots[head % RING_SLOTS].load(Ordering::Relaxed);
        self.head.store(head + 1, Ordering::Release);
        Some(object)
    }
}

/// Ring `i` carries objects from CPU i to CPU i+1.
static RINGS: [Ring; MAX_CPUS] = [const { Ring::new() }; MAX_CPUS];

pub fn xfer<M: Machine>(cpu: usize, ops: u64) -> CpuRun {
    let cpus = M::cpus();
    let outgoing = &RINGS[cpu];
    let incoming = &RINGS[(cpu + cpus - 1) % cpus];
    let layout = Layout::from_size_align(XFER_OBJECT_BYTES, 8).expect("small layout");
    let target = ops / 2;
    let (mut produced, mut consumed) = (0u64, 0u64);
    let mut spins = 0;
    timed_batches::<M>(2 * target, || {
        let mut done = 0;
        while done < XFER_BATCH_OPS && (produced < target || consumed < target) {
            // Allocate only when the ring has room, so every allocation is
            // handed over and freed by the neighbour.
            if produced < target && !outgoing.is_full() {
                // SAFETY: the layout has a non-zero size.
                let object = unsafe { alloc::alloc::alloc(layout) };
                assert!(!object.is_null(), "bench xfer: {}: allocation failed", M::current());
                // SAFETY: a fresh block of XFER_OBJECT_BYTES bytes.
                unsafe { object.write_bytes(cpu as u8, XFER_OBJECT_BYTES) };
                outgoing.push(object);
                produced += 1;
                done += 1;
            }
            let mut progressed = false;
            if let Some(object) = incoming.pop() {
                // SAFETY: the neighbour allocated it with `layout` and gave it
                // up when it pushed it; it is freed once, here.
                unsafe { alloc::alloc::dealloc(object, layout) };
                consumed += 1;
                done += 1;
                progressed = true;
                spins = 0;
            }
            if !progressed && (produced == target || outgoing.is_full()) {
                M::wait_for_another(&mut spins);
            }
        }
        done
    })
}
