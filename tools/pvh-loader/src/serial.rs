//! COM1 output (port 0x3f8, programmed I/O), the `pvh-loader: ` line prefix,
//! and the failure exit through QEMU's `isa-debug-exit` device (port 0xf4).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu;

const COM1: u16 = 0x3f8;
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Written to `isa-debug-exit`: QEMU exits with status (0x11 << 1) | 1 = 35.
const EXIT_FAILURE: u8 = 0x11;

static LOCK: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    const SETUP: [(u16, u8); 7] = [
        (1, 0x00), // IER: no interrupts
        (3, 0x80), // LCR: DLAB on
        (0, 0x01), // DLL: divisor 1 (115200 baud)
        (1, 0x00), // DLM
        (3, 0x03), // LCR: 8N1, DLAB off
        (2, 0xc7), // FCR: enable and clear FIFOs
        (4, 0x03), // MCR: DTR | RTS, OUT2 off (no IRQ)
    ];
    for (offset, value) in SETUP {
        // SAFETY: COM1's registers only configure the UART; no memory is involved.
        unsafe { cpu::outb(COM1 + offset, value) };
    }
}

fn put_byte(byte: u8) {
    // Wait (bounded) for the transmit holding register to empty. Without a
    // UART the status port reads 0xff, which also ends the wait.
    for _ in 0..100_000 {
        // SAFETY: reading the line status register has no side effect.
        if unsafe { cpu::inb(COM1 + 5) } & 0x20 != 0 {
            break;
        }
        cpu::pause();
    }
    // SAFETY: writing the transmit register only sends the byte.
    unsafe { cpu::outb(COM1, byte) };
}

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                put_byte(b'\r');
            }
            put_byte(byte);
        }
        Ok(())
    }
}

/// Prints one line `pvh-loader: <args>` atomically with respect to other CPUs.
pub fn line(args: fmt::Arguments) {
    // Bounded spin: a CPU that faulted while holding the lock must not keep
    // the failure message from being printed.
    let mut tries = 0u32;
    while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        && tries < 10_000_000
    {
        tries += 1;
        cpu::pause();
    }
    let _ = writeln!(Com1, "pvh-loader: {args}");
    LOCK.store(false, Ordering::Release);
}

/// Asks QEMU to exit with status 35 (failure), then stops this CPU.
pub fn exit_failure() -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device; without it the
    // write is ignored and we halt below.
    unsafe { cpu::outb(DEBUG_EXIT_PORT, EXIT_FAILURE) };
    cpu::halt_forever()
}

/// Prints `pvh-loader: error: <args>` and exits QEMU with failure.
pub fn fail_with(args: fmt::Arguments) -> ! {
    line(format_args!("error: {args}"));
    exit_failure()
}

/// Prints a `pvh-loader: ...` line.
macro_rules! say {
    ($($arg:tt)*) => { $crate::serial::line(format_args!($($arg)*)) };
}

/// Prints `pvh-loader: error: ...` and exits QEMU with status 35.
macro_rules! fail {
    ($($arg:tt)*) => { $crate::serial::fail_with(format_args!($($arg)*)) };
}

pub(crate) use {fail, say};
