//! Measures the timestamp counter's frequency against the PIT (channel 2,
//! one-shot), so cycle counts can be turned into time.
use ::x86_64::instructions::port::Port;

use super::cpu::read_timestamp;

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;
const PIT_CHANNEL2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const PIT_GATE_PORT: u16 = 0x61;
const GATE_ON: u8 = 0x01;
const SPEAKER_ON: u8 = 0x02;
const OUT2_HIGH: u8 = 0x20;
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal count).
const CHANNEL2_ONE_SHOT: u8 = 0b1011_0000;
/// Ceiling on the wait, in timestamp ticks, in case no PIT answers.
const MAX_WAIT_TICKS: u64 = 50_000_000_000;

/// Timestamp ticks per second, or `None` when the PIT does not count.
pub fn calibrate_hz() -> Option<u64> {
    let mut gate = Port::<u8>::new(PIT_GATE_PORT);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut data = Port::<u8>::new(PIT_CHANNEL2_DATA);
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2 and its gate
    // on every PC-compatible machine; channel 2 drives only the PC speaker,
    // which stays off, and no other code uses it.
    unsafe {
        let old = gate.read();
        gate.write((old & !(SPEAKER_ON | GATE_ON)) & 0x0f);
        command.write(CHANNEL2_ONE_SHOT);
        data.write(count as u8);
        data.write((count >> 8) as u8);
        if gate.read() & OUT2_HIGH != 0 {
            return None; // OUT2 high before counting started: no PIT here
        }
        let start = read_timestamp();
        gate.write((old & !SPEAKER_ON & 0x0f) | GATE_ON);
        while gate.read() & OUT2_HIGH == 0 {
            if read_timestamp() - start > MAX_WAIT_TICKS {
                return None;
            }
        }
        let ticks = read_timestamp() - start;
        gate.write(old & !SPEAKER_ON & 0x0f);
        Some(ticks * 1000 / CALIBRATION_MS)
    }
}
