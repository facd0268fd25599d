//! The rings that carry blocks between CPUs in the soak: one lock-free
//! single-producer single-consumer ring per ordered pair of CPUs, so a CPU
//! can hand a block to any other and every block is freed by exactly one
//! receiver. Each ring checks at run time that only its sender pushes and
//! only its receiver pops (the kernel never moves code between CPUs).
use alloc::{boxed::Box, vec::Vec};
use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};

use super::{CachePadded, block::Block};
use crate::smp;

/// Blocks in transit to one CPU, all its rings together, at most about
/// this many (a sender finding its ring full frees the block itself).
const SLOTS_PER_RECEIVER: usize = 1024;
/// Bounds of one ring's capacity (16 bytes a slot): up to 5 CPUs the upper
/// one, at 64 CPUs the lower one.
const MIN_RING_SLOTS: usize = 16;
const MAX_RING_SLOTS: usize = 256;
/// Low bits of a slot's packed layout: log2 of the alignment.
const ALIGN_LOG2_BITS: u32 = 8;

/// One block in transit: its address and its layout, packed.
struct Slot {
    address: AtomicUsize,
    packed_layout: AtomicUsize,
}

/// Blocks from CPU `from` to CPU `to`.
pub struct HandoffRing {
    from: usize,
    to: usize,
    slots: Box<[Slot]>,
    /// Pops so far: written by the receiver only.
    head: CachePadded<AtomicUsize>,
    /// Pushes so far: written by the sender only.
    tail: CachePadded<AtomicUsize>,
}

impl HandoffRing {
    fn new(from: usize, to: usize, capacity: usize) -> Self {
        let empty = || Slot { address: AtomicUsize::new(0), packed_layout: AtomicUsize::new(0) };
        Self {
            from,
            to,
            slots: (0..capacity).map(|_| empty()).collect(),
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
        }
    }

    /// Sender side: queues `block` for the receiver, or gives it back when
    /// the ring is full.
    pub fn push(&self, block: Block) -> Result<(), Block> {
        assert_eq!(smp::current_cpu_index(), self.from, "only cpu {} sends on its ring", self.from);
        let tail = self.tail.0.load(Ordering::Relaxed);
        if tail - self.head.0.load(Ordering::Acquire) == self.slots.len() {
            return Err(block);
        }
        let (ptr, layout) = block.into_raw_parts();
        let slot = &self.slots[tail % self.slots.len()];
        slot.address.store(ptr.as_ptr() as usize, Ordering::Relaxed);
        slot.packed_layout.store(pack(layout), Ordering::Relaxed);
        // Publishes the slot to the receiver.
        self.tail.0.store(tail + 1, Ordering::Release);
        Ok(())
    }

    /// Receiver side: the oldest block in the ring, if any.
    pub fn pop(&self) -> Option<Block> {
        assert_eq!(smp::current_cpu_index(), self.to, "only cpu {} receives on its ring", self.to);
        let head = self.head.0.load(Ordering::Relaxed);
        if head == self.tail.0.load(Ordering::Acquire) {
            return None;
        }
        let slot = &self.slots[head % self.slots.len()];
        let address = slot.address.load(Ordering::Relaxed);
        let layout = unpack(slot.packed_layout.load(Ordering::Relaxed));
        // Frees the slot for the sender, after the loads above.
        self.head.0.store(head + 1, Ordering::Release);
        let ptr = NonNull::new(address as *mut u8).expect("a pushed block is not null");
        // SAFETY: slots `head..tail` hold the parts of blocks that the one
        // sender (CPU `from`, asserted in `push`) gave up with
        // `into_raw_parts`, published by its Release store of `tail` that
        // the Acquire load above saw. This is the one receiver (asserted)
        // and it moved `head` past the slot, so these parts are used once.
        Some(unsafe { Block::from_raw_parts(ptr, layout) })
    }
}

fn pack(layout: Layout) -> usize {
    layout.size() << ALIGN_LOG2_BITS | layout.align().trailing_zeros() as usize
}

fn unpack(packed: usize) -> Layout {
    let align = 1 << (packed & ((1 << ALIGN_LOG2_BITS) - 1));
    Layout::from_size_align(packed >> ALIGN_LOG2_BITS, align).expect("a packed valid layout")
}

/// A ring for every ordered pair of CPUs.
pub struct Rings {
    cpus: usize,
    rings: Vec<HandoffRing>,
}

impl Rings {
    pub fn new(cpus: usize) -> Self {
        let capacity = (SLOTS_PER_RECEIVER / cpus.saturating_sub(1).max(1))
            .clamp(MIN_RING_SLOTS, MAX_RING_SLOTS);
        let rings = (0..cpus * cpus)
            .map(|i| {
                let (from, to) = (i / cpus, i % cpus);
                // A CPU never sends to itself: its own ring has no room.
                HandoffRing::new(from, to, if from == to { 0 } else { capacity })
            })
            .collect();
        Self { cpus, rings }
    }

    /// The ring from CPU `from` to CPU `to`.
    pub fn between(&self, from: usize, to: usize) -> &HandoffRing {
        &self.rings[from * self.cpus + to]
    }
}
