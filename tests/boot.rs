//! Boot: every CPU the bootloader reported is online, with its own per-CPU
//! block, and runs code when asked.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{ExitCode, boot::BootInfo, smp};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

#[test_case]
fn every_cpu_runs_the_job_with_its_own_index() {
    let results = smp::run_on_all_cpus(|_| smp::current_cpu_index());
    assert_eq!(results.len(), smp::online_cpus());
    for (cpu, index) in results.iter() {
        assert_eq!(*index, cpu, "cpu {cpu} reported index {index}");
    }
}

#[test_case]
fn cpu_count_matches_the_madt() {
    let boot = kernel::boot::info();
    assert_eq!(boot.cpus, boot.madt_cpus, "MP response and MADT disagree");
}

#[test_case]
fn lapic_ids_are_distinct() {
    let cpus = smp::online_cpus();
    for a in 0..cpus {
        for b in a + 1..cpus {
            let (ia, ib) = (smp::cpu(a).lapic_id(), smp::cpu(b).lapic_id());
            assert_ne!(ia, ib, "cpu {a} and cpu {b} share lapic id {ia}");
        }
    }
}
