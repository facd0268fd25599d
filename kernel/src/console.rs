//! The console: COM1, shared by every CPU and by interrupt handlers. Each
//! `println!` writes its whole line under one lock, with interrupts masked,
//! so lines from different CPUs never interleave.
use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::{
    arch::serial::SerialPort,
    smp,
    sync::{IrqSpinLock, IrqSpinLockGuard},
};

static CONSOLE: IrqSpinLock<Option<SerialPort>> = IrqSpinLock::new(None);
/// Set once COM1 is programmed (the NMI dump may write around the lock then).
static OPEN: AtomicBool = AtomicBool::new(false);

/// How long the panic path waits for another CPU to finish its line before
/// taking the console anyway.
const PANIC_LOCK_ATTEMPTS: usize = 1_000_000;
/// How long the NMI dump waits for another CPU's line before writing around
/// the lock.
const NMI_LOCK_ATTEMPTS: usize = 100_000;

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
        OPEN.store(console.is_some(), Ordering::Release);
    }
}

/// The CPU holding the console lock now, if any (lock-free: for the NMI dump).
pub fn lock_holder() -> Option<usize> {
    CONSOLE.holder()
}

/// Runs `f` with a writer to COM1 for the NMI dump, which must never wait
/// for ever and never allocate: takes the console lock if it comes free
/// soon, else writes around it, starting on a new line. The holder then is
/// this CPU (its interrupted line resumes after the dump) or another one
/// parked in its NMI handler until the dump ends.
pub fn with_nmi_writer(f: impl FnOnce(&mut dyn Write)) {
    let held_here = smp::try_current_cpu_index().is_some_and(|me| CONSOLE.holder() == Some(me));
    let attempts = if held_here { 0 } else { NMI_LOCK_ATTEMPTS };
    if let Some(mut guard) = try_lock_within(attempts) {
        if let Some(port) = guard.as_mut() {
            f(&mut Writer(port));
        }
        return;
    }
    if !OPEN.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: `com1` has programmed COM1 (OPEN). The lock's holder does
    // not write meanwhile: it is this CPU, interrupted, or a CPU parked in
    // its NMI handler (at worst one that did not answer, whose bytes would
    // interleave with the dump's).
    if let Some(mut port) = unsafe { SerialPort::com1_programmed() } {
        port.write(b"\n");
        f(&mut Writer(&mut port));
    }
}

/// The console lock, if it comes free within `attempts` tries (a spin-wait:
/// `pause` between tries).
fn try_lock_within(attempts: usize) -> Option<IrqSpinLockGuard<'static, Option<SerialPort>>> {
    (0..attempts).find_map(|_| {
        let guard = CONSOLE.try_lock();
        if guard.is_none() {
            core::hint::spin_loop();
        }
        guard
    })
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
    let guard = try_lock_within(PANIC_LOCK_ATTEMPTS);
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
