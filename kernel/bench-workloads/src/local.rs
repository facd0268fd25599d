//! `local`: each CPU allocates a batch of small objects of mixed sizes,
//! writes them and frees them, over and over (threadtest-like); no object
//! crosses CPUs. `null`: the same loop with no allocator, for the
//! machine's own scaling (no allocator can scale better) and the loop's own
//! cost. The loop is generic over a [`PairAllocator`], so the kernel's
//! exact instruction counts (`kernel/src/jobs/bench/exact.rs`) run it with
//! markers around each call.
use core::alloc::Layout;

use crate::{CpuRun, Machine, timing::timed_batches};

/// Objects per batch in `local` (a batch is that many allocations, then as
/// many frees).
pub const LOCAL_BATCH_OBJECTS: usize = 32;
const LOCAL_SIZES: [usize; 8] = [16, 32, 48, 64, 96, 128, 256, 512];

/// `local`: 32 objects per batch (four each of 16 to 512 bytes, sizes
/// constant at each call site), allocated, written, freed.
pub fn local<M: Machine>(_cpu: usize, ops: u64) -> CpuRun {
    let mut objects = [core::ptr::null_mut(); LOCAL_BATCH_OBJECTS];
    timed_batches::<M>(ops, || local_batch(&GlobalHeap, &mut objects))
}

/// `null`: `local`'s loop with no allocator at all, on every CPU: how the
/// machine itself scales (the ceiling for any allocator's scaling), and,
/// on one CPU, what the kernel bench's `harness_cycles_per_pair` subtracts.
pub fn null<M: Machine>(_cpu: usize, ops: u64) -> CpuRun {
    let mut scratch = [0u8; LOCAL_SIZES[LOCAL_SIZES.len() - 1]];
    let allocator = NoAllocator { scratch: scratch.as_mut_ptr() };
    let mut objects = [core::ptr::null_mut(); LOCAL_BATCH_OBJECTS];
    timed_batches::<M>(ops, || local_batch(&allocator, &mut objects))
}

/// How `local` allocates: the global allocator, nothing (its harness cost),
/// or the global allocator between markers.
pub trait PairAllocator {
    fn alloc(&self, layout: Layout) -> *mut u8;
    /// # Safety
    /// `ptr` came from `alloc` with `layout` and is freed once.
    unsafe fn free(&self, ptr: *mut u8, layout: Layout);
}

/// The global allocator, through `alloc::alloc` as `Box` reaches it.
pub struct GlobalHeap;

impl PairAllocator for GlobalHeap {
    #[inline(always)]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `local` uses only layouts of non-zero size.
        unsafe { alloc::alloc::alloc(layout) }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { alloc::alloc::dealloc(ptr, layout) }
    }
}

/// No allocator: hands out the same scratch block every time, frees
/// nothing; `black_box` keeps the compiler from dropping the loop.
struct NoAllocator {
    /// The CPU's own block, big enough for `local`'s largest size.
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

/// One `local` batch: `LOCAL_BATCH_OBJECTS` objects, an equal share of each
/// of `LOCAL_SIZES`, allocated, written, then freed. Each size is a
/// compile-time constant at its call site, as for `Box<T>` and most kernel
/// allocations. Returns the operations done.
#[inline(always)]
pub fn local_batch<A: PairAllocator>(
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
        // `black_box`: the block escapes, as real objects do, so the
        // compiler cannot elide the allocation and the free.
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
