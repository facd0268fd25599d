//! Handing the machine to the kernel: the protocol's CPU state (PAT layout,
//! MTRRs copied from the BSP to APs), masking the legacy PICs and I/O APIC
//! entries, the A20 gate, and the two position-independent stubs that run
//! through the HHDM alias of the loader image: the BSP's final jump to the
//! kernel entry and the AP parking loop on `goto_address`. Both switch to the
//! kernel's page tables, which have no lower-half mapping at all.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::cpu::{self, Features, MSR_MTRR_CAP, MSR_MTRR_DEF_TYPE, MSR_PAT};
use crate::paging::HHDM_OFFSET;
use crate::phys;

/// PAT0 WB, PAT1 WT, PAT2 UC-, PAT3 UC, PAT4 WP, PAT5 WC, PAT6 UC-, PAT7 UC.
const PAT_LAYOUT: u64 = 0x0007_0105_0007_0406;

/// Fixed-range MTRR MSRs.
const FIXED_MTRRS: [u32; 11] =
    [0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f];
const MAX_VARIABLE_MTRRS: usize = 16;
const MTRR_SLOTS: usize = 1 + FIXED_MTRRS.len() + 2 * MAX_VARIABLE_MTRRS;

/// The BSP's MTRRs, as parallel arrays of MSR numbers and values.
static MTRR_MSRS: [AtomicU64; MTRR_SLOTS] = [const { AtomicU64::new(0) }; MTRR_SLOTS];
static MTRR_VALUES: [AtomicU64; MTRR_SLOTS] = [const { AtomicU64::new(0) }; MTRR_SLOTS];
static MTRR_COUNT: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    safe static handoff_bsp_stub: u8;
    safe static handoff_ap_park_stub: u8;
}

global_asm!(
    r#"
    .section .rodata.handoff, "a"
    .balign 16
handoff_gdtr:                       /* the loader GDT through the HHDM */
    .word {gdt_size} - 1
    .quad loader_gdt + {hhdm}
    .balign 16
handoff_null_idtr:                  /* IDT undefined for the kernel: limit 0 */
    .word 0
    .quad 0

    .section .text.handoff, "ax"
    .code64

/* Reloads GDTR (HHDM), IDTR (null), CS = 0x28, DS..GS = 0x30. */
.macro reload_segments
    lgdt handoff_gdtr(%rip)
    lidt handoff_null_idtr(%rip)
    lea 77f(%rip), %rax
    push $0x28
    push %rax
    lretq
77: mov $0x30, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
.endm

/* Jump to %rax with rsp = %rsp - 8 holding 0, RFLAGS = 2, other GPRs 0
   except rdi (kept). */
.macro enter_kernel
    push $0
    push %rax
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    push $2
    popfq
    ret
.endm

/* BSP, entered through the HHDM: rdi = kernel CR3, rsi = stack top (HHDM),
   rdx = kernel entry. */
    .global handoff_bsp_stub
handoff_bsp_stub:
    reload_segments
    mov %rdi, %cr3
    mov %rsi, %rsp
    mov %rdx, %rax
    xor %edi, %edi
    enter_kernel

/* AP, entered through the HHDM: rdi = its limine_mp_info (HHDM), rsi =
   stack top (HHDM), rdx = kernel CR3. */
    .global handoff_ap_park_stub
handoff_ap_park_stub:
    reload_segments
    mov %rdx, %cr3
    mov %rsi, %rsp
1:  pause
    mov 16(%rdi), %rax              /* goto_address */
    test %rax, %rax
    jz 1b
    enter_kernel
"#,
    gdt_size = const crate::entry::GDT_SIZE,
    hhdm = const HHDM_OFFSET,
    options(att_syntax)
);

/// Programs the PAT as the protocol lays it out (on every CPU).
pub fn program_pat(supported: bool) {
    if supported {
        // SAFETY: the PAT MSR exists (CPUID said so) and entry 0 stays WB,
        // so every current mapping (PAT bit and PCD/PWT combinations used by
        // the loader: WB and UC) keeps its caching type.
        unsafe { cpu::wrmsr(MSR_PAT, PAT_LAYOUT) };
    }
}

/// Records the BSP's MTRRs so APs can copy them.
pub fn snapshot_mtrrs(features: Features) {
    if !features.mtrr {
        return;
    }
    // SAFETY: MTRRs exist (CPUID.1:EDX.MTRR), so MTRRcap and def-type exist.
    let cap = unsafe { cpu::rdmsr(MSR_MTRR_CAP) };
    let variable = ((cap & 0xff) as usize).min(MAX_VARIABLE_MTRRS);
    let mut n = 0;
    let mut save = |msr: u32| {
        // SAFETY: only MSRs MTRRcap advertises are read.
        let value = unsafe { cpu::rdmsr(msr) };
        MTRR_MSRS[n].store(u64::from(msr), Ordering::Relaxed);
        MTRR_VALUES[n].store(value, Ordering::Relaxed);
        n += 1;
    };
    if cap & (1 << 8) != 0 {
        FIXED_MTRRS.iter().for_each(|&m| save(m));
    }
    for i in 0..variable as u32 {
        save(0x200 + 2 * i);
        save(0x201 + 2 * i);
    }
    save(MSR_MTRR_DEF_TYPE); // last: re-enables MTRRs on the AP
    MTRR_COUNT.store(n, Ordering::Release);
}

/// Sets or clears CR0.CD (cache disable), flushing caches around it as the
/// MTRR update procedure requires.
fn set_cache_disable(disable: bool) {
    const CD: u64 = 1 << 30;
    // SAFETY: toggling CR0.CD only changes caching (never correctness of
    // memory contents, which WBINVD writes back); no other CR0 bit changes.
    unsafe {
        asm!(
            "wbinvd",
            "mov {t}, cr0",
            "and {t}, {keep}",
            "or {t}, {set}",
            "mov cr0, {t}",
            "wbinvd",
            t = out(reg) _,
            keep = in(reg) !CD,
            set = in(reg) if disable { CD } else { 0 },
            options(nostack),
        );
    }
}

/// Copies the BSP's MTRRs to this AP (Intel SDM vol. 3A, "MTRR
/// considerations in MP systems"): caches off, MTRRs disabled, every MTRR
/// rewritten (def-type last, which re-enables them), caches on.
pub fn apply_mtrrs() {
    let n = MTRR_COUNT.load(Ordering::Acquire);
    if n == 0 {
        return;
    }
    set_cache_disable(true);
    // SAFETY: MTRRs exist (the BSP read them; all CPUs are alike); turning
    // them off while caches are disabled is the SDM's procedure.
    unsafe { cpu::wrmsr(MSR_MTRR_DEF_TYPE, 0) };
    for i in 0..n {
        let msr = MTRR_MSRS[i].load(Ordering::Relaxed) as u32;
        // SAFETY: an MTRR MSR the BSP read, written with the BSP's value.
        unsafe { cpu::wrmsr(msr, MTRR_VALUES[i].load(Ordering::Relaxed)) };
    }
    set_cache_disable(false);
}

/// Masks both legacy PICs' IRQs.
pub fn mask_legacy_pics() {
    // SAFETY: writing the PICs' interrupt mask registers only masks IRQs.
    unsafe {
        cpu::outb(0x21, 0xff);
        cpu::outb(0xa1, 0xff);
    }
}

/// Masks every I/O APIC redirection entry with fixed (0b000) or
/// lowest-priority (0b001) delivery mode.
pub fn mask_ioapic(base: u64) {
    if !phys::reachable(base, 0x20) {
        return;
    }
    let select = base as usize as *mut u32;
    let window = (base + 0x10) as usize as *mut u32;
    let read = |reg: u32| {
        // SAFETY: base comes from the MADT's I/O APIC entry and is identity
        // mapped uncached; IOREGSEL/IOWIN accesses touch no RAM.
        unsafe {
            select.write_volatile(reg);
            window.read_volatile()
        }
    };
    let write = |reg: u32, value: u32| {
        // SAFETY: as for `read`.
        unsafe {
            select.write_volatile(reg);
            window.write_volatile(value);
        }
    };
    let max = (read(1) >> 16) & 0xff;
    for i in 0..=max {
        let reg = 0x10 + 2 * i;
        let low = read(reg);
        if (low >> 8) & 0b111 <= 0b001 && low & (1 << 16) == 0 {
            write(reg, low | (1 << 16));
        }
    }
}

/// Opens the A20 gate through port 0x92 if it looks present and closed.
pub fn open_a20() {
    // SAFETY: reading the system control port has no side effect.
    let v = unsafe { cpu::inb(0x92) };
    if v != 0xff && v & 0b10 == 0 {
        // SAFETY: sets the A20 bit only; bit 0 (fast reset) stays clear.
        unsafe { cpu::outb(0x92, (v | 0b10) & !0b1) };
    }
}

fn hhdm_alias(symbol: &u8) -> u64 {
    HHDM_OFFSET + core::ptr::from_ref(symbol) as u64
}

/// Final jump of the BSP, through the HHDM alias of the stub: loads the
/// protocol GDT (HHDM), a null IDT, the kernel's CR3, the stack, RFLAGS = 2
/// and zeroed registers, with a 0 return address pushed.
///
/// # Safety
/// The loader's page tables must map the upper half exactly as `kernel_cr3`
/// does, `kernel_cr3` must map the HHDM of the loader image and the stack,
/// and `entry` must be the loaded kernel's entry point.
pub unsafe fn enter_bsp(kernel_cr3: u64, stack_top: u64, entry: u64) -> ! {
    let stub = hhdm_alias(&handoff_bsp_stub);
    // SAFETY: per the caller's guarantee the stub is mapped at `stub` in
    // both the current and the kernel's tables; it never returns.
    unsafe {
        asm!("jmp {stub}", stub = in(reg) stub, in("rdi") kernel_cr3, in("rsi") stack_top,
             in("rdx") entry, options(noreturn))
    }
}

/// Parks this AP on `info.goto_address` (through the HHDM alias of the
/// stub), after switching to the kernel's tables.
///
/// # Safety
/// As for [`enter_bsp`]; `info` is the HHDM address of this CPU's
/// `limine_mp_info`, `stack_top` the HHDM address of its stack's top.
pub unsafe fn park_ap(info: u64, stack_top: u64, kernel_cr3: u64) -> ! {
    let stub = hhdm_alias(&handoff_ap_park_stub);
    // SAFETY: see `enter_bsp`; the stub never returns.
    unsafe {
        asm!("jmp {stub}", stub = in(reg) stub, in("rdi") info, in("rsi") stack_top,
             in("rdx") kernel_cr3, options(noreturn))
    }
}
