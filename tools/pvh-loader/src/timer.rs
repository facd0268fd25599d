//! Short waits: the TSC, calibrated once against PIT channel 0 (CPUID's
//! frequency leaves or a conservative guess when there is no PIT).

use crate::cpu;

const PIT_HZ: u64 = 1_193_182;
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL0: u16 = 0x40;
/// Used only without a PIT or CPUID frequency: high, so waits err long.
const GUESS_TSC_PER_MS: u64 = 4_000_000;

/// TSC ticks per millisecond.
#[derive(Clone, Copy)]
pub struct Tsc {
    per_ms: u64,
}

fn pit_count() -> u16 {
    // SAFETY: latching and reading PIT channel 0 only affects the PIT,
    // whose IRQ is masked while the loader runs.
    unsafe {
        cpu::outb(PIT_COMMAND, 0x00);
        let lo = cpu::inb(PIT_CHANNEL0);
        let hi = cpu::inb(PIT_CHANNEL0);
        u16::from_le_bytes([lo, hi])
    }
}

fn from_cpuid() -> Option<u64> {
    if cpu::cpuid(0, 0).eax >= 0x15 {
        let l = cpu::cpuid(0x15, 0);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax) / 1000);
        }
    }
    None
}

fn from_pit() -> Option<u64> {
    // Channel 0, lobyte/hibyte, mode 2 (rate generator), reload 65536.
    // SAFETY: reprogramming PIT channel 0 only changes the PIT's own counter;
    // its IRQ is masked and the kernel reprograms it anyway.
    unsafe {
        cpu::outb(PIT_COMMAND, 0x34);
        cpu::outb(PIT_CHANNEL0, 0);
        cpu::outb(PIT_CHANNEL0, 0);
    }
    let target = PIT_HZ / 1000; // ~1 ms
    let mut prev = pit_count();
    // Wait for the first tick so the measurement starts on an edge.
    let mut spins = 0u32;
    loop {
        let now = pit_count();
        if now != prev {
            prev = now;
            break;
        }
        spins += 1;
        if spins > 100_000 {
            return None; // the counter does not move: no PIT
        }
        cpu::pause();
    }
    let start = cpu::rdtsc();
    let mut elapsed = 0u64;
    while elapsed < target {
        let now = pit_count();
        elapsed += u64::from(prev.wrapping_sub(now));
        prev = now;
        cpu::pause();
    }
    let ticks = cpu::rdtsc() - start;
    Some((ticks * PIT_HZ / (elapsed * 1000)).max(1))
}

impl Tsc {
    pub fn calibrate() -> Tsc {
        let per_ms = from_cpuid().or_else(from_pit).unwrap_or(GUESS_TSC_PER_MS);
        Tsc { per_ms }
    }

    /// TSC ticks in `us` microseconds.
    pub fn ticks_us(self, us: u64) -> u64 {
        self.per_ms * us / 1000
    }

    /// Spins until the TSC reaches `deadline`.
    pub fn wait_until(self, deadline: u64) {
        while cpu::rdtsc() < deadline {
            cpu::pause();
        }
    }
}
