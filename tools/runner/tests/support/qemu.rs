//! The end-to-end tests' one requirement on the host: QEMU. They fail, never
//! pass silently, without it: `tools/setup` installs it, and a run that
//! skipped them would report coverage it did not have.

/// The QEMU binary the runner starts.
const QEMU: &str = "qemu-system-x86_64";

/// Panics, naming what is missing and how to get it, unless QEMU is on
/// `PATH`. Call it first in every test that boots QEMU.
pub fn require_qemu() {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(QEMU).is_file()));
    assert!(
        found,
        "{QEMU} is not on PATH: this end-to-end test boots QEMU; install it with tools/setup \
         (Debian: apt-get install qemu-system-x86)"
    );
}
