//! Thin wrappers over the x86_64 instructions the loader uses: port I/O, MSRs,
//! CPUID, control registers and the time-stamp counter.

use core::arch::asm;

pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_MTRR_CAP: u32 = 0xfe;
pub const MSR_PAT: u32 = 0x277;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device the loader is entitled to drive and the
/// write must not break memory safety (e.g. start DMA into memory in use).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading the port must have no side effect that breaks memory safety.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (otherwise `rdmsr` raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; `rdmsr` touches no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist, accept `value`, and the change must keep the loader's
/// execution environment (paging, caching, APIC) valid.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid for this CPU state.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Result of one CPUID leaf.
#[derive(Clone, Copy)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx);
    // SAFETY: CPUID only writes the four registers named here (rbx is saved
    // and restored around it because LLVM reserves it); long mode guarantees
    // the instruction exists.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    CpuidResult { eax, ebx, ecx, edx }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC only writes edx:eax (CR4.TSD is clear in ring 0 anyway).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Spin-loop hint.
pub fn pause() {
    core::hint::spin_loop();
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Loads CR3 (flushes non-global TLB entries).
///
/// # Safety
/// `value` must point to page tables that map the running code, stack and
/// every object the loader still touches at the same addresses.
pub unsafe fn write_cr3(value: u64) {
    // SAFETY: the caller guarantees the new tables keep the loader mapped.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Stops this CPU for good with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU; nothing else depends on it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Feature bits the loader cares about, read once on the BSP.
#[derive(Clone, Copy)]
pub struct Features {
    pub nx: bool,
    pub huge_1g: bool,
    pub pat: bool,
    pub mtrr: bool,
    pub x2apic: bool,
}

impl Features {
    pub fn detect() -> Self {
        let leaf1 = cpuid(1, 0);
        let max_ext = cpuid(0x8000_0000, 0).eax;
        let ext = if max_ext >= 0x8000_0001 {
            cpuid(0x8000_0001, 0)
        } else {
            CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 }
        };
        Features {
            nx: ext.edx & (1 << 20) != 0,
            huge_1g: ext.edx & (1 << 26) != 0,
            pat: leaf1.edx & (1 << 16) != 0,
            mtrr: leaf1.edx & (1 << 12) != 0,
            x2apic: leaf1.ecx & (1 << 21) != 0,
        }
    }
}
