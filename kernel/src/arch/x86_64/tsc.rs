//! Measures the timestamp counter's frequency against the PIT, so cycle
//! counts can be turned into time. Channel 0 is counted down in mode 0 and
//! read back with latch commands: this needs only the PIT itself, not the
//! port-0x61 gate of channel 2, which QEMU's microvm machine lacks.
use ::x86_64::instructions::port::Port;

use super::cpu::read_timestamp;

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;
const PIT_CHANNEL0_DATA: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, low byte then high byte, mode 0 (count down once).
const CHANNEL0_ONE_SHOT: u8 = 0b0011_0000;
/// Latch channel 0's count for reading.
const CHANNEL0_LATCH: u8 = 0b0000_0000;
const START_COUNT: u16 = 0xffff;
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
pub fn calibrate_hz() -> Option<u64> {
    let mut pit = Pit {
        command: Port::new(PIT_COMMAND),
        channel0: Port::new(PIT_CHANNEL0_DATA),
    };
    let pit_ticks = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // SAFETY: ports 0x40 and 0x43 are the PIT's channel 0 and command
    // register; the kernel uses the local APIC timer, never the PIT, and its
    // IRQ line is masked at the PIC, so reprogramming channel 0 disturbs
    // nothing.
    unsafe {
        pit.command.write(CHANNEL0_ONE_SHOT);
        pit.channel0.write(START_COUNT as u8);
        pit.channel0.write((START_COUNT >> 8) as u8);
    }
    // Wait for the first decrement, so the measurement starts on a tick.
    let begin = read_timestamp();
    let first = pit.count();
    while pit.count() == first {
        if read_timestamp() - begin > MAX_WAIT_TICKS {
            return None;
        }
    }
    let start_count = pit.count();
    let start = read_timestamp();
    loop {
        let elapsed_pit = start_count.wrapping_sub(pit.count());
        if elapsed_pit >= pit_ticks && elapsed_pit < START_COUNT / 2 {
            let ticks = read_timestamp() - start;
            return Some(ticks * PIT_HZ / u64::from(elapsed_pit));
        }
        if read_timestamp() - start > MAX_WAIT_TICKS {
            return None;
        }
    }
}
