//! The first serial port (COM1), through the `uart_16550` driver.
use uart_16550::{Config, Uart16550, backend::PioBackend};

const COM1_PORT: u16 = 0x3f8;

/// The serial port the console writes to.
pub struct SerialPort(Uart16550<PioBackend>);

impl SerialPort {
    /// Programs COM1 (115200 8N1). `None` when no UART answers there.
    pub fn com1() -> Option<Self> {
        // SAFETY: 0x3f8..0x3ff are the COM1 registers on every PC-compatible
        // machine QEMU models; the console owns them exclusively (only
        // `console` calls this, once, under its lock).
        let mut uart = unsafe { Uart16550::new_port(COM1_PORT) }.ok()?;
        uart.init(Config::default()).ok()?;
        Some(Self(uart))
    }

    /// Writes `bytes`, waiting for the transmitter as needed.
    pub fn write(&mut self, bytes: &[u8]) {
        self.0.send_bytes_exact(bytes);
    }
}
