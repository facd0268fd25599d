//! The local APIC in xAPIC (MMIO) or x2APIC (MSR) mode: enabling it, reading
//! this CPU's APIC ID, and sending INIT / start-up IPIs.

use crate::cpu::{self, MSR_APIC_BASE};
use crate::phys::{self, IDENTITY_LIMIT};

const APIC_ENABLE: u64 = 1 << 11;
const X2APIC_ENABLE: u64 = 1 << 10;

const REG_ID: u64 = 0x20;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const X2APIC_MSR_BASE: u32 = 0x800;

const ICR_INIT: u32 = 0x0000_4500; // INIT, level assert
const ICR_STARTUP: u32 = 0x0000_4600; // start-up, level assert
const ICR_FIXED: u32 = 0x0000_4000; // fixed, level assert
const ICR_PENDING: u32 = 1 << 12;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    XApic { base: u64 },
    X2Apic,
}

impl Mode {
    pub fn is_x2apic(self) -> bool {
        self == Mode::X2Apic
    }
}

/// Enables this CPU's APIC (x2APIC mode if `x2apic`) and software-enables
/// it (spurious vector 0xff) so it can send IPIs. Returns the mode in use,
/// or `None` if the xAPIC MMIO window lies outside the identity map.
pub fn enable(x2apic: bool) -> Option<Mode> {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let mut base_msr = unsafe { cpu::rdmsr(MSR_APIC_BASE) };
    if base_msr & X2APIC_ENABLE != 0 && !x2apic {
        // Firmware left x2APIC on but the kernel did not ask for it: leave
        // x2APIC the only architectural way (through the disabled state).
        base_msr &= !(X2APIC_ENABLE | APIC_ENABLE);
        // SAFETY: x2APIC -> disabled -> xAPIC is the valid transition; no
        // interrupts are in flight (IF = 0, nothing programmed the APIC).
        unsafe { cpu::wrmsr(MSR_APIC_BASE, base_msr) };
    }
    let mut wanted = base_msr | APIC_ENABLE;
    if x2apic {
        wanted |= X2APIC_ENABLE;
    }
    if wanted != base_msr {
        // SAFETY: setting EN (and EXTD when x2APIC is supported, which the
        // caller checked) is a valid transition; interrupts are off.
        unsafe { cpu::wrmsr(MSR_APIC_BASE, wanted) };
    }
    let mode = if x2apic {
        Mode::X2Apic
    } else {
        let base = wanted & 0x000f_ffff_ffff_f000;
        if !phys::reachable(base, 0x400) || base + 0x400 > IDENTITY_LIMIT {
            return None;
        }
        Mode::XApic { base }
    };
    let svr = read(mode, REG_SVR);
    write(mode, REG_SVR, svr | 0x1ff);
    Some(mode)
}

fn read(mode: Mode, reg: u64) -> u32 {
    match mode {
        // SAFETY: the register offset is a valid xAPIC register inside the
        // 4 KiB MMIO window, identity mapped (uncached) by the loader.
        Mode::XApic { base } => unsafe {
            core::ptr::read_volatile((base + reg) as usize as *const u32)
        },
        // SAFETY: x2APIC mode is enabled; reg/16 maps to an existing MSR.
        Mode::X2Apic => unsafe { cpu::rdmsr(X2APIC_MSR_BASE + (reg >> 4) as u32) as u32 },
    }
}

fn write(mode: Mode, reg: u64, value: u32) {
    match mode {
        // SAFETY: as in `read`; APIC register writes touch no RAM.
        Mode::XApic { base } => unsafe {
            core::ptr::write_volatile((base + reg) as usize as *mut u32, value)
        },
        // SAFETY: x2APIC mode is enabled; reg/16 maps to an existing MSR.
        Mode::X2Apic => unsafe {
            cpu::wrmsr(X2APIC_MSR_BASE + (reg >> 4) as u32, u64::from(value))
        },
    }
}

/// This CPU's APIC ID.
pub fn id(mode: Mode) -> u32 {
    match mode {
        Mode::XApic { .. } => read(mode, REG_ID) >> 24,
        Mode::X2Apic => read(mode, REG_ID),
    }
}

fn send(mode: Mode, apic_id: u32, command: u32) {
    match mode {
        Mode::XApic { .. } => {
            write(mode, REG_ICR_HIGH, apic_id << 24);
            write(mode, REG_ICR_LOW, command);
            for _ in 0..1_000_000 {
                if read(mode, REG_ICR_LOW) & ICR_PENDING == 0 {
                    break;
                }
                cpu::pause();
            }
        }
        // SAFETY: x2APIC mode is enabled; the ICR MSR takes the destination
        // in its high half; sending an IPI touches no memory.
        Mode::X2Apic => unsafe {
            cpu::wrmsr(X2APIC_MSR_BASE + 0x30, (u64::from(apic_id) << 32) | u64::from(command))
        },
    }
}

/// Physical address of the xAPIC EOI register (for interrupt handlers that
/// run without Rust); `None` in x2APIC mode (EOI is MSR 0x80b there).
pub fn eoi_register(mode: Mode) -> Option<u64> {
    match mode {
        Mode::XApic { base } => Some(base + REG_EOI),
        Mode::X2Apic => None,
    }
}

/// Sends a fixed interrupt with `vector` to one CPU.
pub fn send_fixed(mode: Mode, apic_id: u32, vector: u8) {
    send(mode, apic_id, ICR_FIXED | u32::from(vector));
}

/// Sends INIT to one CPU.
pub fn send_init(mode: Mode, apic_id: u32) {
    send(mode, apic_id, ICR_INIT);
}

/// Sends a start-up IPI: the CPU starts in real mode at `page` (< 1 MiB).
pub fn send_startup(mode: Mode, apic_id: u32, page: u64) {
    send(mode, apic_id, ICR_STARTUP | (page >> 12) as u32);
}
