//! Hands out 4 KiB physical frames from the memory map's usable entries,
//! lowest first, each at most once. Frames are never returned: the kernel
//! only takes them for page tables and the heap, which live for ever.
use ::x86_64::{PhysAddr, structures::paging::PhysFrame};

use crate::{boot::MemoryRegion, sync::IrqSpinLock};

const FRAME_BYTES: u64 = 4096;

struct FrameAllocator {
    regions: &'static [MemoryRegion],
    region: usize,
    next: u64,
    handed_out: u64,
}

static FRAMES: IrqSpinLock<Option<FrameAllocator>> = IrqSpinLock::new(None);

/// Starts handing out frames from `usable` (sorted, page-aligned regions).
pub fn init(usable: &'static [MemoryRegion]) {
    let next = usable.first().map_or(0, |r| r.start);
    *FRAMES.lock() = Some(FrameAllocator { regions: usable, region: 0, next, handed_out: 0 });
}

/// One unused frame, or `None` when usable memory is used up.
pub fn allocate() -> Option<PhysFrame> {
    let mut guard = FRAMES.lock();
    let frames = guard.as_mut().expect("frames::init runs first");
    while let Some(region) = frames.regions.get(frames.region) {
        let start = frames.next.max(region.start).next_multiple_of(FRAME_BYTES);
        if start + FRAME_BYTES <= region.end() {
            frames.next = start + FRAME_BYTES;
            frames.handed_out += 1;
            return Some(PhysFrame::containing_address(PhysAddr::new(start)));
        }
        frames.region += 1;
    }
    None
}

/// The CPU holding the frame allocator's lock now, if any (for the NMI dump).
pub fn lock_holder() -> Option<usize> {
    FRAMES.holder()
}

/// Bytes of usable memory not handed out yet.
pub fn free_bytes() -> u64 {
    let guard = FRAMES.lock();
    let Some(frames) = guard.as_ref() else {
        return 0;
    };
    frames.regions[frames.region.min(frames.regions.len())..]
        .iter()
        .map(|r| r.end().saturating_sub(frames.next.max(r.start)))
        .sum()
}
