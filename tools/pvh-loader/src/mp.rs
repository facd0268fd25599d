//! Starting the application processors: a real-mode trampoline copied into
//! a page below 1 MiB (16-bit -> 32-bit -> 64-bit on the loader's tables),
//! INIT / start-up IPIs with short TSC-timed waits, each AP's setup in Rust
//! (PAT, MTRRs, x2APIC, its `limine_mp_info`), a `hlt` until the BSP has
//! heard from every AP (so early APs do not spin while later ones start:
//! under TCG a spinning vCPU takes a host core), then parking through the
//! HHDM on the kernel's page tables until the kernel writes `goto_address`.
//! The BSP does not wait for that last step: an AP that checked in only
//! runs deterministic loader code in bootloader-reclaimable memory before
//! it polls `goto_address`, so a `goto_address` written early is still seen.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::acpi::{Cpu, MAX_CPUS, Madt};
use crate::cpu::{self, Features};
use crate::lapic::{self, Mode};
use crate::paging::HHDM_OFFSET;
use crate::phys::{self, PAGE};
use crate::serial::say;
use crate::timer::Tsc;
use crate::{entry, handoff, idt};

/// Size of `struct limine_mp_info`.
pub const INFO_SIZE: u64 = 32;
const INFO_LAPIC_ID: u64 = 4;
const INFO_RESERVED: u64 = 8;

/// Microseconds between INIT and the first start-up IPI, and between the
/// two start-up IPIs (QEMU needs neither; kept short for real behaviour).
const INIT_WAIT_US: u64 = 1000;
const SIPI_WAIT_US: u64 = 200;
/// How long the BSP waits for all APs to check in.
const ARRIVAL_TIMEOUT_US: u64 = 2_000_000;

// Trampoline page layout (offsets patched or read by the BSP).
const T_PM32_REL: u64 = 0x04;
const T_LM64_REL: u64 = 0x08;
const T_CR3: u64 = 0x0c;
const T_EFER: u64 = 0x10;
const T_TICKET: u64 = 0x14;
const T_STACKS: u64 = 0x18;
const T_STACK_SIZE: u64 = 0x20;
const T_GDTR_BASE: u64 = 0x2a;
const T_FAR32: u64 = 0x30;
const T_FAR64: u64 = 0x38;
const T_GDT: u64 = 0x40;

unsafe extern "C" {
    safe static ap_trampoline_start: u8;
    safe static ap_trampoline_end: u8;
    safe static ap_wake_stub: u8;
}

/// Physical address of the xAPIC EOI register, or 0 in x2APIC mode.
static EOI_REGISTER: AtomicU64 = AtomicU64::new(0);

// The wake-up IPI handler (IDT vector 32) for APs sleeping in `wait_for_go`:
// acknowledge the interrupt and return. Runs on the loader's tables.
global_asm!(
    r#"
    .section .text.ap_wake, "ax"
    .code64
    .global ap_wake_stub
ap_wake_stub:
    push %rax
    push %rcx
    push %rdx
    mov {eoi}(%rip), %rax
    test %rax, %rax
    jz 1f
    movl $0, (%rax)                         /* xAPIC EOI */
    jmp 2f
1:  mov $0x80b, %ecx                        /* x2APIC EOI */
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
2:  pop %rdx
    pop %rcx
    pop %rax
    iretq
"#,
    eoi = sym EOI_REGISTER,
    options(att_syntax)
);

/// Address of the wake-up IPI handler, for the IDT.
pub fn wake_handler() -> u64 {
    &raw const ap_wake_stub as u64
}

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    jmp 16f
    .org 0x04
    .long 32f - ap_trampoline_start         /* T_PM32_REL */
    .long 64f - ap_trampoline_start         /* T_LM64_REL */
    .long 0                                 /* T_CR3 (loader PML4) */
    .long 0                                 /* T_EFER bits to set */
    .long 0                                 /* T_TICKET */
    .org 0x18
    .quad 0                                 /* T_STACKS (physical) */
    .quad 0                                 /* T_STACK_SIZE */
    .org 0x28
    .word 7 * 8 - 1                         /* GDTR: limit */
    .long 0                                 /*       base (patched) */
    .org 0x30
    .long 0                                 /* far pointer to 32-bit code */
    .word 0x18
    .org 0x38
    .long 0                                 /* far pointer to 64-bit code */
    .word 0x28
    .org 0x40                               /* T_GDT: same layout as the loader's */
    .quad 0
    .quad 0x00009b000000ffff
    .quad 0x000093000000ffff
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
    .org 0x80
16: cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %ax, %bx
    shl $4, %ebx                            /* ebx = this page's address */
    lgdtl 0x28
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *0x30

    .code32
32: mov $0x20, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $0x20, %eax                         /* CR4: PAE */
    mov %eax, %cr4
    mov 0x0c(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx                   /* EFER: LME (+ NXE) */
    rdmsr
    or 0x10(%ebx), %eax
    wrmsr
    mov $0x80010033, %eax                   /* CR0: PG WP NE ET MP PE */
    mov %eax, %cr0
    ljmpl *0x38(%ebx)

    .code64
64: mov $0x30, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov %ebx, %ebx                          /* upper half undefined after the mode switch */
    mov $1, %eax
    lock xadd %eax, 0x14(%rbx)              /* ticket: which stack is ours */
    mov %eax, %edi
    inc %eax
    imul 0x20(%rbx), %rax
    add 0x18(%rbx), %rax
    mov %rax, %rsp
    xor %ebp, %ebp
    movabs ${entry}, %rax
    call *%rax
    ud2
    .global ap_trampoline_end
ap_trampoline_end:
"#,
    entry = sym ap_entry,
    options(att_syntax)
);

// State the BSP publishes for the APs (read after they start).
static USE_X2APIC: AtomicBool = AtomicBool::new(false);
static USE_PAT: AtomicBool = AtomicBool::new(false);
static KERNEL_CR3: AtomicU64 = AtomicU64::new(0);
static INFOS: AtomicU64 = AtomicU64::new(0);
static INFO_COUNT: AtomicUsize = AtomicUsize::new(0);
static STACKS: AtomicU64 = AtomicU64::new(0);
static STACK_SIZE: AtomicU64 = AtomicU64::new(0);
static STACK_COUNT: AtomicU64 = AtomicU64::new(0);
/// Per `limine_mp_info` index: set by the AP when it has checked in (and is
/// about to sleep until `GO`).
static READY: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Set by the BSP (before the wake-up IPIs) once every AP checked in.
static GO: AtomicBool = AtomicBool::new(false);
/// Per index: the BSP gave up on this AP (decided before its INIT, so an AP
/// that checks in at the last moment is still consistently left out).
static ABANDONED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The CPUs the loader hands over, in MADT order, the BSP always included.
pub struct CpuList {
    cpus: [Cpu; MAX_CPUS],
    len: usize,
}

impl CpuList {
    /// Enabled MADT processors; without a usable MADT, the BSP alone. In
    /// xAPIC mode, CPUs with APIC IDs above 254 cannot be addressed.
    pub fn from_madt(madt: &Result<Madt, &str>, bsp_apic_id: u32, x2apic: bool) -> CpuList {
        let mut list = CpuList { cpus: [Cpu::default(); MAX_CPUS], len: 0 };
        match madt {
            Ok(m) => {
                if m.dropped > 0 {
                    say!("{} CPUs beyond the first {MAX_CPUS} are left out", m.dropped);
                }
                for c in m.cpus() {
                    if c.apic_id > 254 && !x2apic {
                        say!("CPU with APIC ID {} needs x2APIC; it is left out", c.apic_id);
                    } else {
                        list.cpus[list.len] = *c;
                        list.len += 1;
                    }
                }
            }
            Err(why) => say!("cannot read the MADT ({why}); starting the BSP only"),
        }
        if !list.as_slice().iter().any(|c| c.apic_id == bsp_apic_id) {
            list.len = list.len.min(MAX_CPUS - 1);
            list.cpus.copy_within(0..list.len, 1);
            list.cpus[0] = Cpu { uid: 0, apic_id: bsp_apic_id };
            list.len += 1;
        }
        list
    }

    pub fn as_slice(&self) -> &[Cpu] {
        &self.cpus[..self.len]
    }
}

/// Indices (into the `limine_mp_info` array) of the CPUs the MP response lists.
pub struct Listed {
    indices: [u16; MAX_CPUS],
    len: usize,
}

impl Listed {
    pub fn as_slice(&self) -> &[u16] {
        &self.indices[..self.len]
    }
}

/// The BSP and every AP that checked in, in MADT order.
pub fn listed(cpus: &[Cpu], bsp_apic_id: u32) -> Listed {
    let mut out = Listed { indices: [0; MAX_CPUS], len: 0 };
    for (i, c) in cpus.iter().enumerate() {
        if c.apic_id == bsp_apic_id || checked_in(i) {
            out.indices[out.len] = i as u16;
            out.len += 1;
        }
    }
    out
}

/// Everything `start_aps` needs.
pub struct Plan<'a> {
    /// All CPUs in MADT order (the BSP included); `limine_mp_info` i is cpus[i].
    pub cpus: &'a [Cpu],
    pub bsp_apic_id: u32,
    pub mode: Mode,
    pub features: Features,
    /// Physical page below 1 MiB for the trampoline.
    pub trampoline: u64,
    /// Physical address of the `limine_mp_info` array.
    pub infos: u64,
    /// Physical base of the AP stacks (one per AP, `stack_size` each).
    pub stacks: u64,
    pub stack_size: u64,
    pub kernel_cr3: u64,
}

/// Whether the AP with `limine_mp_info` `index` checked in (in time).
fn checked_in(index: usize) -> bool {
    READY[index].load(Ordering::Acquire) != 0 && !ABANDONED[index].load(Ordering::Relaxed)
}

/// Starts every AP in `plan.cpus`, waits (bounded) for each to check in,
/// then releases them all to park. APs that do not check in are reported,
/// sent INIT again and left out.
pub fn start_aps(plan: &Plan) {
    let aps = plan.cpus.iter().filter(|c| c.apic_id != plan.bsp_apic_id).count() as u64;
    if aps == 0 {
        return;
    }
    install_trampoline(plan);
    USE_X2APIC.store(plan.mode.is_x2apic(), Ordering::Relaxed);
    USE_PAT.store(plan.features.pat, Ordering::Relaxed);
    KERNEL_CR3.store(plan.kernel_cr3, Ordering::Relaxed);
    INFOS.store(plan.infos, Ordering::Relaxed);
    INFO_COUNT.store(plan.cpus.len(), Ordering::Relaxed);
    STACKS.store(plan.stacks, Ordering::Relaxed);
    STACK_SIZE.store(plan.stack_size, Ordering::Relaxed);
    EOI_REGISTER.store(lapic::eoi_register(plan.mode).unwrap_or(0), Ordering::Relaxed);
    STACK_COUNT.store(aps, Ordering::Release);

    let others = || plan.cpus.iter().enumerate().filter(|(_, c)| c.apic_id != plan.bsp_apic_id);
    for (_, c) in others() {
        lapic::send_init(plan.mode, c.apic_id);
    }
    // Calibrating the TSC (about 1 ms against the PIT) doubles as the wait
    // between INIT and the first start-up IPI.
    let init_sent = cpu::rdtsc();
    let tsc = Tsc::calibrate();
    tsc.wait_until(init_sent + tsc.ticks_us(INIT_WAIT_US));
    for (_, c) in others() {
        lapic::send_startup(plan.mode, c.apic_id, plan.trampoline);
    }
    tsc.wait_until(cpu::rdtsc() + tsc.ticks_us(SIPI_WAIT_US));
    // A second start-up IPI for APs not yet checked in; one that already
    // started ignores it (it is no longer waiting for a SIPI).
    let ready = |i: usize| READY[i].load(Ordering::Acquire) != 0;
    for (_, c) in others().filter(|(i, _)| !ready(*i)) {
        lapic::send_startup(plan.mode, c.apic_id, plan.trampoline);
    }
    let deadline = cpu::rdtsc() + tsc.ticks_us(ARRIVAL_TIMEOUT_US);
    while others().any(|(i, _)| !ready(i)) && cpu::rdtsc() < deadline {
        cpu::pause();
    }
    for (i, c) in others().filter(|(i, _)| !ready(*i)) {
        abandon(plan.mode, i, c.apic_id, "did not start");
    }
    // Every AP that checked in sleeps in `hlt`; one wake-up IPI each.
    GO.store(true, Ordering::Release);
    for (_, c) in others().filter(|(i, _)| checked_in(*i)) {
        lapic::send_fixed(plan.mode, c.apic_id, idt::WAKE_VECTOR);
    }
}

/// Leaves an AP out for good: recorded before its INIT, so an AP that checks
/// in at the last moment is still consistently left out.
fn abandon(mode: Mode, index: usize, apic_id: u32, what: &str) {
    ABANDONED[index].store(true, Ordering::Relaxed);
    say!("CPU with APIC ID {apic_id} {what}; it is left out of the MP response");
    lapic::send_init(mode, apic_id);
}

fn install_trampoline(plan: &Plan) {
    let start = &raw const ap_trampoline_start as u64;
    let len = &raw const ap_trampoline_end as u64 - start;
    let t = plan.trampoline;
    debug_assert!(len <= PAGE && t + PAGE <= 0x10_0000);
    // SAFETY: the blob is in the loader's .rodata; `t` is a page below 1 MiB
    // the loader allocated (bootloader-reclaimable) and owns exclusively.
    unsafe {
        phys::bytes_mut(t, len).copy_from_slice(phys::bytes(start, len));
    }
    let efer = 1u32 << 8 | if plan.features.nx { 1 << 11 } else { 0 };
    // SAFETY: all offsets are inside the page just written, which only the
    // loader uses until the start-up IPIs go out.
    unsafe {
        let pm32: u32 = phys::read(t + T_PM32_REL);
        let lm64: u32 = phys::read(t + T_LM64_REL);
        phys::write::<u32>(t + T_CR3, &raw const entry::boot_pml4 as u64 as u32);
        phys::write::<u32>(t + T_EFER, efer);
        phys::write::<u32>(t + T_TICKET, 0);
        phys::write::<u64>(t + T_STACKS, plan.stacks);
        phys::write::<u64>(t + T_STACK_SIZE, plan.stack_size);
        phys::write::<u32>(t + T_GDTR_BASE, (t + T_GDT) as u32);
        phys::write::<u32>(t + T_FAR32, t as u32 + pm32);
        phys::write::<u32>(t + T_FAR64, t as u32 + lm64);
    }
}

/// Checks in, then sleeps until the BSP has heard from every AP and sends
/// the wake-up IPI (the only interrupt source enabled on this CPU: the PICs
/// and I/O APIC are masked, and the LVT entries are masked after INIT).
fn wait_for_go(index: usize) {
    READY[index].store(1, Ordering::Release);
    loop {
        // SAFETY: interrupts are enabled only across `hlt` (the `sti`
        // shadow makes the pair atomic, so the wake-up IPI cannot be missed
        // or left pending); the loader's IDT, valid on the loader's tables,
        // handles vector 32; `cli` restores IF = 0.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
        if GO.load(Ordering::Acquire) {
            return;
        }
    }
}

/// First Rust code on an AP, on its own stack (identity-mapped address),
/// still on the loader's page tables.
extern "C" fn ap_entry(ticket: u32) -> ! {
    idt::load();
    handoff::program_pat(USE_PAT.load(Ordering::Relaxed));
    handoff::apply_mtrrs();
    if u64::from(ticket) >= STACK_COUNT.load(Ordering::Acquire) {
        cpu::halt_forever(); // more CPUs than stacks: cannot happen
    }
    let Some(mode) = lapic::enable(USE_X2APIC.load(Ordering::Relaxed)) else {
        cpu::halt_forever();
    };
    let id = lapic::id(mode);
    let infos = INFOS.load(Ordering::Relaxed);
    let index = (0..INFO_COUNT.load(Ordering::Relaxed)).find(|&i| {
        // SAFETY: the info array was written by the BSP before the IPIs and
        // lies in loader-owned memory below 4 GiB; APs only read lapic_id.
        unsafe { phys::read::<u32>(infos + i as u64 * INFO_SIZE + INFO_LAPIC_ID) == id }
    });
    let Some(index) = index else {
        cpu::halt_forever(); // not a CPU the loader started
    };
    let stack_size = STACK_SIZE.load(Ordering::Relaxed);
    let stack_top = STACKS.load(Ordering::Relaxed) + (u64::from(ticket) + 1) * stack_size;
    let info = infos + index as u64 * INFO_SIZE;
    // SAFETY: `reserved` of this CPU's own info entry; no other CPU writes it.
    unsafe { phys::write::<u64>(info + INFO_RESERVED, HHDM_OFFSET + stack_top) };
    wait_for_go(index);
    // SAFETY: the BSP copied the kernel tables' upper half into the loader's
    // PML4 before sending IPIs, so the HHDM stub, this stack and `info` are
    // mapped the same in both; KERNEL_CR3 holds the kernel's tables.
    unsafe {
        handoff::park_ap(
            HHDM_OFFSET + info,
            HHDM_OFFSET + stack_top,
            KERNEL_CR3.load(Ordering::Relaxed),
        )
    }
}
