//! How a run ends: the verdicts the kernel reports to QEMU (see
//! `docs/interface.md`, a public interface).

/// The value written to QEMU's `isa-debug-exit` device; QEMU then exits with
/// status `(code << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// The job or every test passed (QEMU status 33).
    Success = 0x10,
    /// A test or check failed, a CPU panicked, or boot failed (QEMU status 35).
    Failure = 0x11,
    /// The heap could not satisfy an allocation (QEMU status 37).
    HeapExhausted = 0x12,
    /// A `should_panic` test panicked as expected; the runner boots the
    /// binary again to run the tests after it (QEMU status 39).
    TestResume = 0x13,
}

/// Ends the run with `code`: exits QEMU, or halts every CPU on a machine
/// without the exit device.
pub fn exit(code: ExitCode) -> ! {
    crate::arch::qemu_exit(code as u32);
    crate::arch::halt_forever()
}
