//! The kernel bench's own workloads (`kernel/src/jobs/bench.rs`), same
//! sizes and batches, on threads: `local`, `xfer` and `null`; and `pair`,
//! the single-thread alloc+free pair microbenchmark.
use core::{
    alloc::Layout,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};

use crate::harness::{CpuRun, MAX_THREADS, threads, timed_batches, wait_for_another};

/// Objects per batch in `local` (a batch is that many allocations, then as
/// many frees).
const LOCAL_BATCH_OBJECTS: usize = 32;
const LOCAL_SIZES: [usize; 8] = [16, 32, 48, 64, 96, 128, 256, 512];
/// The object `xfer` hands over, and its ring length.
const XFER_OBJECT_BYTES: usize = 64;
const RING_SLOTS: usize = 1024;
/// Operations per timing batch in `xfer`.
const XFER_BATCH_OPS: u64 = 64;
/// The object of `pair`, and the pairs per timing batch.
const PAIR_OBJECT_BYTES: usize = 64;
const PAIRS_PER_BATCH: u64 = 1024;

/// `local`: each thread allocates 32 objects (four each of 16 to 512
/// bytes, sizes constant at each call site), writes them, frees them, over
/// and over.
pub fn local(_thread: usize, ops: u64) -> CpuRun {
    let mut objects = [core::ptr::null_mut(); LOCAL_BATCH_OBJECTS];
    timed_batches(ops, || local_batch(&GlobalHeap, &mut objects))
}

/// `null`: `local`'s loop with no allocator: how the machine itself scales.
pub fn null(_thread: usize, ops: u64) -> CpuRun {
    let mut scratch = [0u8; LOCAL_SIZES[LOCAL_SIZES.len() - 1]];
    let allocator = NoAllocator { scratch: scratch.as_mut_ptr() };
    let mut objects = [core::ptr::null_mut(); LOCAL_BATCH_OBJECTS];
    timed_batches(ops, || local_batch(&allocator, &mut objects))
}

/// `pair`: a 64-byte allocation freed at once, `PAIRS_PER_BATCH` times per
/// batch: cycles per alloc+free pair with the loop (a `black_box`, one
/// byte written) included.
pub fn pair(_thread: usize, ops: u64) -> CpuRun {
    let layout = Layout::from_size_align(PAIR_OBJECT_BYTES, 8).expect("a small layout");
    timed_batches(ops, || {
        for i in 0..PAIRS_PER_BATCH {
            // SAFETY: the layout has a non-zero size.
            let ptr = core::hint::black_box(unsafe { std::alloc::alloc(layout) });
            assert!(!ptr.is_null(), "bench pair: allocation of {PAIR_OBJECT_BYTES} bytes failed");
            // SAFETY: a fresh block of PAIR_OBJECT_BYTES bytes, freed once
            // with its layout.
            unsafe {
                ptr.write(i as u8);
                std::alloc::dealloc(ptr, layout);
            }
        }
        2 * PAIRS_PER_BATCH
    })
}

/// How `local` allocates: the global allocator, or nothing.
trait PairAllocator {
    fn alloc(&self, layout: Layout) -> *mut u8;
    /// # Safety
    /// `ptr` came from `alloc` with `layout` and is freed once.
    unsafe fn free(&self, ptr: *mut u8, layout: Layout);
}

/// The global allocator, through `std::alloc` as `Box` reaches it.
struct GlobalHeap;

impl PairAllocator for GlobalHeap {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `local` uses only layouts of non-zero size.
        unsafe { std::alloc::alloc(layout) }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// No allocator: hands out the same scratch block every time.
struct NoAllocator {
    scratch: *mut u8,
}

impl PairAllocator for NoAllocator {
    #[inline(always)]
    fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::hint::black_box(self.scratch)
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        core::hint::black_box((ptr, layout));
    }
}

/// One `local` batch; returns the operations done.
#[inline(always)]
fn local_batch<A: PairAllocator>(
    allocator: &A,
    objects: &mut [*mut u8; LOCAL_BATCH_OBJECTS],
) -> u64 {
    const PER_SIZE: usize = LOCAL_BATCH_OBJECTS / LOCAL_SIZES.len();
    let [s0, s1, s2, s3, s4, s5, s6, s7] = objects.as_chunks_mut::<PER_SIZE>().0 else {
        unreachable!("LOCAL_SIZES has 8 sizes")
    };
    alloc_sized::<A, { LOCAL_SIZES[0] }>(allocator, s0);
    alloc_sized::<A, { LOCAL_SIZES[1] }>(allocator, s1);
    alloc_sized::<A, { LOCAL_SIZES[2] }>(allocator, s2);
    alloc_sized::<A, { LOCAL_SIZES[3] }>(allocator, s3);
    alloc_sized::<A, { LOCAL_SIZES[4] }>(allocator, s4);
    alloc_sized::<A, { LOCAL_SIZES[5] }>(allocator, s5);
    alloc_sized::<A, { LOCAL_SIZES[6] }>(allocator, s6);
    alloc_sized::<A, { LOCAL_SIZES[7] }>(allocator, s7);
    free_sized::<A, { LOCAL_SIZES[0] }>(allocator, s0);
    free_sized::<A, { LOCAL_SIZES[1] }>(allocator, s1);
    free_sized::<A, { LOCAL_SIZES[2] }>(allocator, s2);
    free_sized::<A, { LOCAL_SIZES[3] }>(allocator, s3);
    free_sized::<A, { LOCAL_SIZES[4] }>(allocator, s4);
    free_sized::<A, { LOCAL_SIZES[5] }>(allocator, s5);
    free_sized::<A, { LOCAL_SIZES[6] }>(allocator, s6);
    free_sized::<A, { LOCAL_SIZES[7] }>(allocator, s7);
    2 * LOCAL_BATCH_OBJECTS as u64
}

const fn local_layout(size: usize) -> Layout {
    match Layout::from_size_align(size, 8) {
        Ok(layout) => layout,
        Err(_) => panic!("LOCAL_SIZES are small"),
    }
}

#[inline(always)]
fn alloc_sized<A: PairAllocator, const SIZE: usize>(allocator: &A, slots: &mut [*mut u8]) {
    for (i, slot) in slots.iter_mut().enumerate() {
        let ptr = core::hint::black_box(allocator.alloc(const { local_layout(SIZE) }));
        assert!(!ptr.is_null(), "bench local: allocation of {SIZE} bytes failed");
        // SAFETY: `ptr` is a block of `SIZE` >= 1 bytes (or the scratch).
        unsafe { ptr.write(i as u8) };
        *slot = ptr;
    }
}

#[inline(always)]
fn free_sized<A: PairAllocator, const SIZE: usize>(allocator: &A, slots: &[*mut u8]) {
    for &ptr in slots {
        // SAFETY: allocated by `alloc_sized` with this layout, freed once.
        unsafe { allocator.free(ptr, const { local_layout(SIZE) }) };
    }
}

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

    fn is_full(&self) -> bool {
        self.tail.load(Ordering::Relaxed) - self.head.load(Ordering::Acquire) == RING_SLOTS
    }

    fn push(&self, object: *mut u8) {
        let tail = self.tail.load(Ordering::Relaxed);
        assert!(tail - self.head.load(Ordering::Acquire) < RING_SLOTS, "push on a full ring");
        self.slots[tail % RING_SLOTS].store(object, Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
    }

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

/// Ring `i` carries objects from thread i to thread i+1.
static RINGS: [Ring; MAX_THREADS] = [const { Ring::new() }; MAX_THREADS];

/// `xfer`: thread i allocates 64-byte objects, writes them and hands them
/// through a lock-free ring to thread i+1, which frees them (with one
/// thread the ring leads back to itself).
pub fn xfer(thread: usize, ops: u64) -> CpuRun {
    let count = threads();
    let outgoing = &RINGS[thread];
    let incoming = &RINGS[(thread + count - 1) % count];
    let layout = Layout::from_size_align(XFER_OBJECT_BYTES, 8).expect("small layout");
    let target = ops / 2;
    let (mut produced, mut consumed) = (0u64, 0u64);
    let mut spins = 0;
    timed_batches(2 * target, || {
        let mut done = 0;
        while done < XFER_BATCH_OPS && (produced < target || consumed < target) {
            if produced < target && !outgoing.is_full() {
                // SAFETY: the layout has a non-zero size.
                let object = unsafe { std::alloc::alloc(layout) };
                assert!(!object.is_null(), "bench xfer: allocation failed on thread {thread}");
                // SAFETY: a fresh block of XFER_OBJECT_BYTES bytes.
                unsafe { object.write_bytes(thread as u8, XFER_OBJECT_BYTES) };
                outgoing.push(object);
                produced += 1;
                done += 1;
            }
            let mut progressed = false;
            if let Some(object) = incoming.pop() {
                // SAFETY: the neighbour allocated it with `layout` and gave
                // it up when it pushed it; it is freed once, here.
                unsafe { std::alloc::dealloc(object, layout) };
                consumed += 1;
                done += 1;
                progressed = true;
                spins = 0;
            }
            if !progressed && (produced == target || outgoing.is_full()) {
                wait_for_another(&mut spins);
            }
        }
        done
    })
}
