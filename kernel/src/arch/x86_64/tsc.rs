//! Measures the timestamp counter's frequency against the PIT, so cycle
//! counts can be turned into time. Channel 0 runs as a rate generator and is
//! read back with latch commands: this needs only the PIT itself, not the
//! port-0x61 gate of channel 2, which QEMU's microvm machine lacks.
use ::x86_64::instructions::port::Port;

use super::cpu::read_timestamp;

const PIT_HZ: u64 = 1_193_182;
/// Windows measured; the median counts.
const WINDOWS: usize = 7;
/// PIT ticks per window (about 2 ms).
const WINDOW_PIT_TICKS: u64 = PIT_HZ / 500;
const PIT_CHANNEL0_DATA: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, low byte then high byte, mode 2 (rate generator: counts
/// down to 1 and reloads, for ever).
const CHANNEL0_RATE_GENERATOR: u8 = 0b0011_0100;
/// Latch channel 0's count for reading.
const CHANNEL0_LATCH: u8 = 0b0000_0000;
const RELOAD_COUNT: u16 = 0xffff;
/// Ceiling on the wait, in timestamp ticks, in case no PIT counts.
const MAX_WAIT_TICKS: u64 = 2_000_000_000;

struct Pit {
    command: Port<u8>,
    channel0: Port<u8>,
}

impl Pit {
    /// Reads channel 0's current count.
    fn count(&mut self) -> u16 {
        // SAFETY: latching and reading channel 0 only copies its counter;
        // see `calibrate_hz` for why the kernel owns the channel.
        unsafe {
            self.command.write(CHANNEL0_LATCH);
            let low = self.channel0.read();
            let high = self.channel0.read();
            u16::from_le_bytes([low, high])
        }
    }
}

/// Timestamp ticks per second, or `None` when no PIT counts.
///
/// Measures [`WINDOWS`] short windows and takes the median, so that a window
/// spoilt by the host descheduling this vCPU (a lost counter wrap makes the
/// estimate far too high) does not count.
pub fn calibrate_hz() -> Option<u64> {
    let mut pit = Pit { command: Port::new(PIT_COMMAND), channel0: Port::new(PIT_CHANNEL0_DATA) };
    // SAFETY: ports 0x40 and 0x43 are the PIT's channel 0 and command
    // register; the kernel uses the local APIC timer, never the PIT, and its
    // IRQ line is masked at the PIC, so reprogramming channel 0 disturbs
    // nothing.
    unsafe {
        pit.command.write(CHANNEL0_RATE_GENERATOR);
        pit.channel0.write(RELOAD_COUNT as u8);
        pit.channel0.write((RELOAD_COUNT >> 8) as u8);
    }
    let mut estimates = [0u64; WINDOWS];
    for estimate in &mut estimates {
        *estimate = measure_window(&mut pit)?;
    }
    estimates.sort_unstable();
    Some(estimates[WINDOWS / 2])
}

/// One window: timestamp ticks per second over [`WINDOW_PIT_TICKS`] PIT ticks.
fn measure_window(pit: &mut Pit) -> Option<u64> {
    let begin = read_timestamp();
    let mut last = pit.count();
    // Start on a tick edge.
    loop {
        let count = pit.count();
        if count != last {
            last = count;
            break;
        }
        if read_timestamp() - begin > MAX_WAIT_TICKS {
            return None; // the counter never moves: no PIT here
        }
        core::hint::spin_loop();
    }
    let start = read_timestamp();
    let mut elapsed_pit: u64 = 0;
    while elapsed_pit < WINDOW_PIT_TICKS {
        let count = pit.count();
        // The counter runs down and reloads: the difference modulo the
        // reload value is the ticks since the last read.
        elapsed_pit += u64::from(last.wrapping_sub(count) % RELOAD_COUNT);
        last = count;
        if read_timestamp() - start > MAX_WAIT_TICKS {
            return None;
        }
        core::hint::spin_loop();
    }
    Some((read_timestamp() - start) * PIT_HZ / elapsed_pit)
}

/// Timestamp ticks per guest instruction over a loop of known length
/// (`LOOP_ITERATIONS` times `dec`+`jnz`, plus the two `rdtsc`s around it).
/// Under QEMU's `-icount shift=0` it is 1.0 by construction, which is what
/// lets the bench report ticks as instructions; elsewhere it is the CPU's
/// ticks per (fast, dependent) instruction.
pub fn ticks_per_instruction() -> f64 {
    const LOOP_ITERATIONS: u64 = 100_000;
    let start = super::read_timestamp();
    // SAFETY: a register-only countdown loop: no memory, stack or flags
    // that the compiler relies on afterwards.
    unsafe {
        core::arch::asm!(
            "2:",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) LOOP_ITERATIONS => _,
            options(nomem, nostack),
        );
    }
    let ticks = super::read_timestamp() - start;
    ticks as f64 / (2 * LOOP_ITERATIONS) as f64
}
