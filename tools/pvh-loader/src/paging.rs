//! The kernel's 4-level page tables: the HHDM (large pages where alignment
//! allows) and the kernel segments (4 KiB pages, W^X from the ELF flags),
//! built in a pre-allocated bootloader-reclaimable pool.

use crate::phys::{self, PAGE, align_down, align_up};
use crate::serial::fail;

/// HHDM base Limine uses with 4-level paging.
pub const HHDM_OFFSET: u64 = 0xffff_8000_0000_0000;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;

/// Upper bound of page-table pages needed to map the HHDM ranges and a
/// kernel image of `kernel_span` bytes (sized before the memory map exists).
pub fn tables_needed(ranges: impl Iterator<Item = (u64, u64)>, kernel_span: u64) -> u64 {
    let mut pages = 1; // PML4
    for (start, end) in ranges {
        let len = end - start;
        pages += len / (512 * SIZE_1G) + 2; // PDPTs
        pages += len / SIZE_1G + 2; // PDs
        pages += 2; // PTs for an unaligned head and tail
    }
    pages += 1 + kernel_span / SIZE_1G + 2 + kernel_span / SIZE_2M + 2;
    pages
}

/// Page tables under construction; every table lives in `[next, end)`'s pool.
pub struct PageTables {
    pml4: u64,
    next: u64,
    end: u64,
    huge_1g: bool,
    nx: bool,
}

impl PageTables {
    /// `pool` is zeroed, page-aligned memory the loader owns (below 4 GiB).
    pub fn new(pool: u64, pool_len: u64, huge_1g: bool, nx: bool) -> Self {
        let mut tables = PageTables { pml4: 0, next: pool, end: pool + pool_len, huge_1g, nx };
        tables.pml4 = tables.new_table();
        tables
    }

    pub fn root(&self) -> u64 {
        self.pml4
    }

    fn new_table(&mut self) -> u64 {
        if self.next + PAGE > self.end {
            fail!("page-table pool exhausted");
        }
        let table = self.next;
        self.next += PAGE;
        table
    }

    fn entry(table: u64, index: u64) -> u64 {
        // SAFETY: `table` is a page of the loader-owned pool (identity mapped
        // below 4 GiB) and `index` < 512.
        unsafe { phys::read::<u64>(table + index * 8) }
    }

    fn set_entry(table: u64, index: u64, value: u64) {
        // SAFETY: as in `entry`; nothing else references the pool while the
        // tables are being built.
        unsafe { phys::write::<u64>(table + index * 8, value) }
    }

    /// Returns the table the entry `index` of `table` points to, creating it.
    fn next_level(&mut self, table: u64, index: u64) -> u64 {
        let e = Self::entry(table, index);
        if e & PRESENT != 0 {
            if e & HUGE != 0 {
                fail!("page-table conflict: large page where a table is needed");
            }
            return e & ADDRESS;
        }
        let child = self.new_table();
        Self::set_entry(table, index, child | PRESENT | WRITABLE);
        child
    }

    fn index(virt: u64, level: u32) -> u64 {
        (virt >> (12 + 9 * level)) & 511
    }

    /// Maps `[virt, virt + len)` to `[phys, ...)` read/write/execute, using
    /// 1 GiB and 2 MiB pages wherever both addresses are aligned.
    pub fn map_rwx(&mut self, virt: u64, phys: u64, len: u64) {
        let flags = PRESENT | WRITABLE;
        let mut off = 0;
        while off < len {
            let (v, p, left) = (virt + off, phys + off, len - off);
            let pdpt = self.next_level(self.pml4, Self::index(v, 3));
            if self.huge_1g && (v | p) % SIZE_1G == 0 && left >= SIZE_1G {
                Self::set_leaf(pdpt, Self::index(v, 2), p | flags | HUGE);
                off += SIZE_1G;
                continue;
            }
            let pd = self.next_level(pdpt, Self::index(v, 2));
            if (v | p) % SIZE_2M == 0 && left >= SIZE_2M {
                Self::set_leaf(pd, Self::index(v, 1), p | flags | HUGE);
                off += SIZE_2M;
                continue;
            }
            let pt = self.next_level(pd, Self::index(v, 1));
            Self::set_leaf(pt, Self::index(v, 0), p | flags);
            off += PAGE;
        }
    }

    fn set_leaf(table: u64, index: u64, value: u64) {
        if Self::entry(table, index) & PRESENT != 0 {
            fail!("page-table conflict: address mapped twice");
        }
        Self::set_entry(table, index, value);
    }

    /// Maps one 4 KiB kernel page. A page shared by two segments gets the
    /// union of their permissions (and must map the same frame).
    pub fn map_kernel_page(&mut self, virt: u64, phys: u64, writable: bool, executable: bool) {
        let pdpt = self.next_level(self.pml4, Self::index(virt, 3));
        let pd = self.next_level(pdpt, Self::index(virt, 2));
        let pt = self.next_level(pd, Self::index(virt, 1));
        let i = Self::index(virt, 0);
        let old = Self::entry(pt, i);
        let mut value = if old & PRESENT != 0 {
            if old & ADDRESS != phys {
                fail!("page-table conflict at {virt:#x}");
            }
            old
        } else {
            phys | PRESENT | if self.nx { NO_EXECUTE } else { 0 }
        };
        if writable {
            value |= WRITABLE;
        }
        if executable {
            value &= !NO_EXECUTE;
        }
        Self::set_entry(pt, i, value);
    }

    /// Maps `[start, end)` of physical memory (rounded out to pages) at
    /// `HHDM_OFFSET + start`.
    pub fn map_hhdm(&mut self, start: u64, end: u64) {
        let (start, end) = (align_down(start, PAGE), align_up(end, PAGE));
        self.map_rwx(HHDM_OFFSET + start, start, end - start);
    }
}
