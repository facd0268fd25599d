//! The first serial port (COM1), through the `uart_16550` driver.
use uart_16550::{Config, Uart16550, backend::PioBackend};

const COM1_PORT: u16 = 0x3f8;

/// The serial port the console writes to.
pub struct SerialPort(Uart16550<PioBackend>);

impl SerialPort {
    /// Programs COM1 (115200 8N1). `None` when no UART answers there.
    pub fn com1() -> Option<Self> {
        // SAFETY: 0x3f8..0x3ff are the COM1 registers on every PC-compatible
        // machine QEMU models; the console owns them (only `console` calls
        // this, once, under its lock, and `com1_programmed` for its dump).
        let mut uart = unsafe { Uart16550::new_port(COM1_PORT) }.ok()?;
        uart.init(Config::default()).ok()?;
        Some(Self(uart))
    }

    /// A second handle on COM1 as [`Self::com1`] programmed it, touching no
    /// register: for the NMI dump, which writes while the console's own
    /// handle may be held by a CPU frozen in the middle of a line.
    ///
    /// # Safety
    /// [`Self::com1`] has programmed COM1. (Writing through two handles at
    /// once interleaves bytes on the line but touches no memory: the caller
    /// keeps that rare, see `console::with_nmi_writer`.)
    pub unsafe fn com1_programmed() -> Option<Self> {
        // SAFETY: as in `com1`, 0x3f8..0x3ff are COM1's registers, and the
        // caller guarantees `com1` programmed them; `new_port` touches no
        // register and assumes the default `Config`, the one `com1` sets.
        let uart = unsafe { Uart16550::new_port(COM1_PORT) }.ok()?;
        Some(Self(uart))
    }

    /// Writes `bytes`, waiting for the transmitter as needed.
    pub fn write(&mut self, bytes: &[u8]) {
        self.0.send_bytes_exact(bytes);
    }
}
