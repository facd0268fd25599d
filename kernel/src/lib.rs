//! The kernel library: everything a kernel binary (the kernel itself or one of
//! the tests in `tests/`) links. Each binary names its main function with
//! [`entry_point!`]; [`boot::start`] brings every CPU up and then calls it.
#![no_std]
#![feature(abi_x86_interrupt)]
#![feature(alloc_error_handler)]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod console;
pub mod exit;
pub mod firmware;
pub mod heap;
pub mod jobs;
pub mod json;
pub mod memory;
pub mod nmi;
mod panic;
pub mod smp;
pub mod sync;
pub mod testing;
pub mod time;
pub mod timer;

pub use exit::ExitCode;

/// Declares the kernel binary's entry point.
///
/// `$main` is a `fn(&'static BootInfo) -> ExitCode`. It runs on the bootstrap
/// CPU once every CPU is online; its result is reported to QEMU.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        /// The address the bootloader jumps to on the bootstrap CPU.
        #[unsafe(no_mangle)]
        extern "C" fn kernel_entry() -> ! {
            let main: fn(&'static $crate::boot::BootInfo) -> $crate::ExitCode = $main;
            $crate::boot::start(main)
        }
    };
}
