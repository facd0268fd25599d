//! What the kernel learned at boot, handed to the binary's main function.
use crate::{arch::apic::ApicMode, cmdline::Cmdline, heap::AllocatorChoice};

/// A range of physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub length: u64,
}

impl MemoryRegion {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// The machine as booted.
#[derive(Debug)]
pub struct BootInfo {
    pub bootloader_name: &'static str,
    pub bootloader_version: &'static str,
    /// The Limine base revision the bootloader served (2 or 3).
    pub base_revision: u64,
    pub hhdm_offset: u64,
    /// Usable memory from the memory map, sorted.
    pub usable: &'static [MemoryRegion],
    /// The RSDP's physical address (whatever form the response gave it in).
    pub rsdp_phys: u64,
    pub kernel_physical_base: u64,
    pub kernel_virtual_base: u64,
    pub cmdline: &'static Cmdline,
    /// CPUs online (all of the MP response's).
    pub cpus: usize,
    /// Enabled CPUs in the ACPI MADT.
    pub madt_cpus: usize,
    pub apic_mode: ApicMode,
    pub bsp_lapic_id: u32,
    /// Timestamp-counter ticks per second.
    pub timestamp_hz: u64,
    /// The heap's allocator (`alloc=`).
    pub allocator: AllocatorChoice,
    /// The heap's size (`heap=`).
    pub heap_bytes: usize,
}

impl BootInfo {
    /// Total usable memory in bytes.
    pub fn usable_bytes(&self) -> u64 {
        self.usable.iter().map(|r| r.length).sum()
    }

    /// `"name version"` of the bootloader.
    pub fn bootloader(&self) -> BootloaderName<'_> {
        BootloaderName(self)
    }
}

/// Displays as `"name version"`.
pub struct BootloaderName<'a>(&'a BootInfo);

impl core::fmt::Display for BootloaderName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.0.bootloader_name, self.0.bootloader_version)
    }
}
