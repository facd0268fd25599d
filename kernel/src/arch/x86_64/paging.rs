//! The kernel's page tables (the ones the bootloader handed over), edited
//! through the higher-half direct map (HHDM).
use ::x86_64::{
    PhysAddr, VirtAddr,
    registers::control::Cr3,
    structures::paging::{
        FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame,
        Size4KiB, Translate, mapper::TranslateResult,
    },
};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{memory::frames, sync::IrqSpinLock};

static HHDM_OFFSET: AtomicU64 = AtomicU64::new(0);
static PAGE_TABLES: IrqSpinLock<Option<OffsetPageTable<'static>>> = IrqSpinLock::new(None);

/// Takes over the active page tables, reached through the HHDM at
/// `hhdm_offset`. Called once, on the bootstrap CPU.
pub fn init(hhdm_offset: u64) {
    HHDM_OFFSET.store(hhdm_offset, Ordering::Release);
    let (level4_frame, _) = Cr3::read();
    let level4 = phys_to_virt(level4_frame.start_address()).as_mut_ptr::<PageTable>();
    // SAFETY: the bootloader maps all of physical memory it hands over at
    // `hhdm_offset` (the Limine protocol's HHDM), CR3 holds the active level-4
    // table, and from here on it is only edited through `PAGE_TABLES`'s lock,
    // so this is the one mutable reference to it.
    let table = unsafe { OffsetPageTable::new(&mut *level4, VirtAddr::new(hhdm_offset)) };
    *PAGE_TABLES.lock() = Some(table);
}

/// The CPU holding the page-table lock now, if any (for the NMI dump).
pub fn lock_holder() -> Option<usize> {
    PAGE_TABLES.holder()
}

/// The HHDM offset the bootloader chose.
pub fn hhdm_offset() -> u64 {
    HHDM_OFFSET.load(Ordering::Acquire)
}

/// The HHDM address of physical address `phys`.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(phys.as_u64() + hhdm_offset())
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No free physical frame was left (for the data or a page table).
    OutOfFrames,
    /// The address was already mapped (to something else, or by a huge page).
    AlreadyMapped(VirtAddr),
}

/// Access rights of a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-write data, never executed.
    ReadWriteData,
    /// Read-only data, never executed.
    ReadOnlyData,
    /// Device registers: read-write, uncached, never executed.
    Device,
}

impl Access {
    fn flags(self) -> PageTableFlags {
        let data = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        match self {
            Self::ReadWriteData => data,
            Self::ReadOnlyData => data - PageTableFlags::WRITABLE,
            Self::Device => data | PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH,
        }
    }
}

/// Start of the window where device registers are mapped, uncached, at
/// `DEVICE_WINDOW + physical address` (the HHDM maps them write-back).
const DEVICE_WINDOW: u64 = 0xffff_d000_0000_0000;

/// Maps device registers at `phys` (`bytes` long) uncached into the device
/// window and returns their address there.
pub fn map_device(phys: PhysAddr, bytes: u64) -> VirtAddr {
    map_physical_range(phys, bytes, DEVICE_WINDOW, Access::Device);
    VirtAddr::new(DEVICE_WINDOW + phys.as_u64())
}

/// Returns the HHDM address of firmware tables at `phys` (`bytes` long),
/// mapping read-only whatever part of them the bootloader's HHDM left out.
pub fn map_firmware_tables(phys: PhysAddr, bytes: u64) -> VirtAddr {
    map_physical_range(phys, bytes, hhdm_offset(), Access::ReadOnlyData);
    phys_to_virt(phys)
}

/// Maps every page of `phys..phys + bytes` at `window + physical address`,
/// skipping pages that are mapped already.
fn map_physical_range(phys: PhysAddr, bytes: u64, window: u64, access: Access) {
    let start = phys.align_down(4096u64);
    let end = (phys + bytes.max(1)).align_up(4096u64);
    let mut guard = PAGE_TABLES.lock();
    let tables = guard.as_mut().expect("paging::init runs first");
    let mut frame_addr = start;
    while frame_addr < end {
        let page =
            Page::<Size4KiB>::containing_address(VirtAddr::new(window + frame_addr.as_u64()));
        if matches!(tables.translate(page.start_address()), TranslateResult::NotMapped) {
            let frame = PhysFrame::containing_address(frame_addr);
            map_one(tables, page, frame, access)
                .unwrap_or_else(|e| panic!("mapping physical page {frame_addr:#x}: {e:?}"));
        }
        frame_addr += 4096u64;
    }
}

/// Maps `pages` pages starting at `start` to fresh frames with `access`
/// (the frames keep whatever they held; the heap does not care).
pub fn map_new_frames(start: VirtAddr, pages: u64, access: Access) -> Result<(), MapError> {
    let mut guard = PAGE_TABLES.lock();
    let tables = guard.as_mut().expect("paging::init runs first");
    let first = Page::<Size4KiB>::containing_address(start);
    for page in Page::range(first, first + pages) {
        let frame = frames::allocate().ok_or(MapError::OutOfFrames)?;
        map_one(tables, page, frame, access)?;
    }
    Ok(())
}

fn map_one(
    tables: &mut OffsetPageTable<'static>,
    page: Page<Size4KiB>,
    frame: PhysFrame<Size4KiB>,
    access: Access,
) -> Result<(), MapError> {
    let mut table_frames = TableFrames;
    // SAFETY: callers pass a device frame (into the device window, which
    // nothing else maps), a firmware-table frame (read-only, at its HHDM
    // address, which was unmapped) or a fresh frame from the frame allocator
    // (which hands each out once); `page` was checked unmapped or lies in a
    // range reserved for this use, so no Rust reference is invalidated.
    let flush =
        unsafe { tables.map_to(page, frame, access.flags(), &mut table_frames) }.map_err(|e| {
            match e {
                ::x86_64::structures::paging::mapper::MapToError::FrameAllocationFailed => {
                    MapError::OutOfFrames
                }
                _ => MapError::AlreadyMapped(page.start_address()),
            }
        })?;
    flush.flush();
    Ok(())
}

/// Hands page-table frames to the mapper from the kernel's frame allocator.
struct TableFrames;

// SAFETY: `frames::allocate` returns each usable frame at most once, so
// every frame handed out here is unused.
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        frames::allocate()
    }
}
