//! `pair`, the host's single-thread alloc+free pair microbenchmark.
use core::alloc::Layout;

use bench_workloads::{CpuRun, timing::timed_batches};

use crate::harness::HostThread;

/// The object of `pair`, and the pairs per timing batch.
const PAIR_OBJECT_BYTES: usize = 64;
const PAIRS_PER_BATCH: u64 = 1024;

/// `pair`: a 64-byte allocation freed at once, `PAIRS_PER_BATCH` times per
/// batch: cycles per alloc+free pair with the loop (a `black_box`, one
/// byte written) included.
pub fn pair(_thread: usize, ops: u64) -> CpuRun {
    let layout = Layout::from_size_align(PAIR_OBJECT_BYTES, 8).expect("a small layout");
    timed_batches::<HostThread>(ops, || {
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
