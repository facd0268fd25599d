//! The console: COM1, shared by every CPU and by interrupt handlers. Each
//! `println!` writes its whole line under one lock, with interrupts masked,
//! so lines from different CPUs never interleave.
use core::fmt::{self, Write};

use crate::{arch::serial::SerialPort, sync::IrqSpinLock};

static CONSOLE: IrqSpinLock<Option<SerialPort>> = IrqSpinLock::new(None);

/// How long the panic path waits for another CPU to finish its line before
/// taking the console anyway.
const PANIC_LOCK_ATTEMPTS: usize = 1_000_000;

struct Writer<'a>(&'a mut SerialPort);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// Opens COM1. Output before this is dropped.
pub fn init() {
    let mut console = CONSOLE.lock();
    if console.is_none() {
        *console = SerialPort::com1();
    }
}

/// Writes `args` under the console lock (used by `print!`/`println!`).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(port) = CONSOLE.lock().as_mut() {
        let _ = Writer(port).write_fmt(args);
    }
}

/// Writes `args` from the panic handler: waits a while for the lock, then
/// takes it from whoever holds it (a CPU that is being stopped, or this one,
/// if it panicked while printing).
pub fn write_fmt_for_panic(args: fmt::Arguments<'_>) {
    let guard = (0..PANIC_LOCK_ATTEMPTS).find_map(|_| CONSOLE.try_lock());
    let mut guard = guard.unwrap_or_else(|| {
        // SAFETY: the holder is stopped (NMI) or is this CPU, whose
        // interrupted `println!` never resumes: the panic ends the run.
        unsafe { CONSOLE.force_unlock() };
        CONSOLE.lock()
    });
    if let Some(port) = guard.as_mut() {
        let _ = Writer(port).write_fmt(args);
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints one line to the console; the line is never split by other output.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
