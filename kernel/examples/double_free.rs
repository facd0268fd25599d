//! A kernel test binary that frees a block twice: booted with
//! `heapcheck=on`, the runner's own tests check that the heap reports it as
//! a `HEAPCHECK` record naming the fault and the run fails like a panic.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::alloc::Layout;
use kernel::{ExitCode, boot::BootInfo, testing};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    testing::run_tests(&[&frees_a_block_twice]);
    ExitCode::Success
}

fn frees_a_block_twice() {
    let layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: a non-zero size.
    let block = unsafe { alloc::alloc::alloc(layout) };
    assert!(!block.is_null());
    // Opaque to the compiler, which may otherwise drop an allocation that
    // nothing uses, frees and all.
    let block = core::hint::black_box(block);
    // SAFETY: allocated above with `layout`; the second free is the bug.
    unsafe {
        alloc::alloc::dealloc(block, layout);
        alloc::alloc::dealloc(core::hint::black_box(block), layout);
    }
}
