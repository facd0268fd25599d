//! A kernel test binary that hangs on the heap's global lock: CPU 1 takes it
//! and spins for ever with interrupts masked, and CPU 0 then blocks
//! allocating a block too large for its CPU cache. With three CPUs or more,
//! CPU 2 also hangs in the middle of a `println!`, holding the console lock.
//! The runner's own tests boot it with a short `--timeout` to check that the
//! NMI dump still gets out and names each lock's holder.
#![no_std]
#![no_main]

extern crate alloc;

use core::fmt;

use kernel::{ExitCode, arch, boot::BootInfo, heap, println, smp, testing};

kernel::entry_point!(main);

/// The CPU that holds the heap's global lock for ever (needs two CPUs).
const HEAP_HOLDER_CPU: usize = 1;
/// The CPU that holds the console lock for ever (if there are three CPUs).
const CONSOLE_HOLDER_CPU: usize = 2;
/// Above the largest cache class (4 KiB): served by the backend under the
/// global lock.
const LARGE_BYTES: usize = 64 * 1024;

fn main(_boot: &'static BootInfo) -> ExitCode {
    testing::run_tests(&[&stuck_lock_holders_block_the_others]);
    ExitCode::Success
}

fn stuck_lock_holders_block_the_others() {
    smp::run_on_all_cpus(|cpu| match cpu {
        HEAP_HOLDER_CPU => heap::heap().with_backend_as_this_cpu(|_| spin_for_ever()),
        CONSOLE_HOLDER_CPU => println!("cpu {cpu} never finishes this line: {}", Endless),
        0 => {
            while heap::heap().lock_holder() != Some(HEAP_HOLDER_CPU) {
                arch::pause();
            }
            core::hint::black_box(alloc::vec![0_u8; LARGE_BYTES]);
        }
        _ => {}
    });
}

/// Formatting it never ends.
struct Endless;

impl fmt::Display for Endless {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        spin_for_ever()
    }
}

fn spin_for_ever() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
