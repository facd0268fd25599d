//! The end-to-end tests' requirements on the host: QEMU, and for the Limine
//! ISO tests xorriso. They fail, never pass silently, without them:
//! `tools/setup` installs both, and a run that skipped them would report
//! coverage it did not have.

/// Panics, naming what is missing and how to get it, unless `tool` is on
/// `PATH`; `package` is the Debian package that has it.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not on PATH: this end-to-end test needs it; install it with tools/setup \
         (Debian: apt-get install {package})"
    );
}

/// [`require_tool`] for the QEMU binary the runner starts. Call it first in
/// every test that boots QEMU.
pub fn require_qemu() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
}
