//! The Xen/QEMU PVH `hvm_start_info` structure handed over in EBX: magic,
//! E820 memory map, module list (module 0 is the kernel ELF), command line
//! and RSDP address.

use crate::phys;
use crate::serial::fail;

const MAGIC: u32 = 0x336e_c578;
const MAX_E820: usize = 128;
/// Longest command line or module string accepted.
pub const MAX_STRING: u64 = 64 * 1024;

/// One E820 entry as PVH reports it (`hvm_memmap_table_entry`).
#[derive(Clone, Copy, Default)]
pub struct E820 {
    pub base: u64,
    pub size: u64,
    pub kind: u32,
}

pub const E820_RAM: u32 = 1;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;
pub const E820_UNUSABLE: u32 = 5;

/// The first module (`hvm_modlist_entry`).
#[derive(Clone, Copy)]
pub struct Module {
    pub base: u64,
    pub size: u64,
    /// The module's own string, if QEMU gave one (NUL not included).
    pub string: &'static [u8],
    pub string_phys: u64,
}

/// What the loader keeps from `hvm_start_info`.
pub struct StartInfo {
    /// Physical address and size of the structure itself.
    pub info: (u64, u64),
    /// The command line (empty if none), NUL not included.
    pub cmdline: &'static [u8],
    pub cmdline_phys: u64,
    pub rsdp: u64,
    pub e820: [E820; MAX_E820],
    pub e820_count: usize,
    pub e820_table: (u64, u64),
    pub module_table: (u64, u64),
    pub module: Option<Module>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawModule {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawE820 {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Reads and checks the start info at `phys` (from EBX).
pub fn parse(phys: u64) -> StartInfo {
    let size = size_of::<RawStartInfo>() as u64;
    if !phys::reachable(phys, size) {
        fail!("no PVH start info (EBX = {phys:#x}); boot with QEMU -kernel");
    }
    // SAFETY: reachable was checked; the firmware's structure is plain data
    // that nothing modifies while the loader runs.
    let raw: RawStartInfo = unsafe { phys::read(phys) };
    if raw.magic != MAGIC {
        fail!("bad PVH start info magic {:#x} at {phys:#x}", raw.magic);
    }
    if raw.version < 1 || raw.memmap_entries == 0 {
        fail!("PVH start info version {} has no memory map", raw.version);
    }

    let mut info = StartInfo {
        info: (phys, size),
        cmdline: &[],
        cmdline_phys: 0,
        rsdp: raw.rsdp_paddr,
        e820: [E820::default(); MAX_E820],
        e820_count: 0,
        e820_table: (0, 0),
        module_table: (0, 0),
        module: None,
    };

    let count = raw.memmap_entries as usize;
    if count > MAX_E820 {
        fail!("PVH memory map has {count} entries (at most {MAX_E820} supported)");
    }
    let table_len = (count * size_of::<RawE820>()) as u64;
    if !phys::reachable(raw.memmap_paddr, table_len) {
        fail!("PVH memory map at {:#x} is out of reach", raw.memmap_paddr);
    }
    info.e820_table = (raw.memmap_paddr, table_len);
    for i in 0..count {
        let at = raw.memmap_paddr + (i * size_of::<RawE820>()) as u64;
        // SAFETY: the whole table was checked reachable above; it is firmware data.
        let entry: RawE820 = unsafe { phys::read(at) };
        info.e820[i] = E820 { base: entry.addr, size: entry.size, kind: entry.kind };
    }
    info.e820_count = count;

    if raw.cmdline_paddr != 0 {
        // SAFETY: the command line is firmware-provided memory, not written meanwhile.
        match unsafe { phys::c_str(raw.cmdline_paddr, MAX_STRING) } {
            Some(s) => {
                info.cmdline = s;
                info.cmdline_phys = raw.cmdline_paddr;
            }
            None => fail!("PVH command line at {:#x} is unreadable or too long", raw.cmdline_paddr),
        }
    }

    if raw.nr_modules > 0 {
        let len = u64::from(raw.nr_modules) * size_of::<RawModule>() as u64;
        if !phys::reachable(raw.modlist_paddr, len) {
            fail!("PVH module list at {:#x} is out of reach", raw.modlist_paddr);
        }
        info.module_table = (raw.modlist_paddr, len);
        // SAFETY: checked reachable above; firmware data.
        let m: RawModule = unsafe { phys::read(raw.modlist_paddr) };
        let string = if m.cmdline_paddr == 0 {
            &[][..]
        } else {
            // SAFETY: firmware-provided string memory, not written meanwhile.
            unsafe { phys::c_str(m.cmdline_paddr, MAX_STRING) }.unwrap_or(&[])
        };
        info.module =
            Some(Module { base: m.paddr, size: m.size, string, string_phys: m.cmdline_paddr });
    }
    info
}
