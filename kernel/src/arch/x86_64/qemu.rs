//! QEMU's `isa-debug-exit` device at port 0xf4 (see `docs/interface.md`).
use ::x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Asks QEMU to exit with status `(code << 1) | 1`. Returns only when the
/// machine has no such device.
pub fn qemu_exit(code: u32) {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is QEMU's debug-exit device (the runner always adds
    // it); on a machine without it, writes to an unclaimed port are ignored.
    unsafe { port.write(code) };
}
