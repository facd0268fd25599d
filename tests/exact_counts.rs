//! Exact instruction counts: under `--accel icount` (one timestamp tick per
//! instruction) the ticks between two markers, less an empty pair's, are
//! exactly the instructions run between them. Checked on sequences counted
//! by hand; `job=bench workload=local` on one CPU counts the allocator the
//! same way. Ignored where ticks are not instructions.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{
    ExitCode, arch,
    boot::BootInfo,
    jobs::bench::exact,
    smp,
    testing::{Needs, Test},
};

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

/// Empty marker pairs compared.
const PAIRS: usize = 1000;

#[test_case]
const AN_EMPTY_MARKER_PAIR_COSTS_THE_SAME_EVERY_TIME: Test =
    Test::new("an_empty_marker_pair_costs_the_same_every_time", || {
        let cpu = smp::current_cpu_index();
        let first = exact::marker_ticks();
        for pair in 0..PAIRS {
            let start = arch::timestamp_marker();
            let ticks = arch::timestamp_marker() - start;
            assert_eq!(
                ticks, first,
                "cpu {cpu}: empty marker pair {pair} took {ticks} ticks, the least of 64 is {first}"
            );
        }
    })
    .needs(&[Needs::InstructionCounting]);

#[test_case]
const HAND_COUNTED_SEQUENCES_COUNT_EXACTLY: Test =
    Test::new("hand_counted_sequences_count_exactly", || {
        let cpu = smp::current_cpu_index();
        let markers = exact::marker_ticks();
        for (index, &instructions) in arch::HAND_COUNTED.iter().enumerate() {
            let counted = arch::marked_hand_counted(index) - markers;
            assert_eq!(
                counted, instructions,
                "cpu {cpu}: hand-counted sequence {index} ({instructions} instructions) counted {counted} (markers {markers})"
            );
        }
        assert_eq!(exact::check_hand_counted(markers), Ok(()), "cpu {cpu}: the bench's own check");
    })
    .needs(&[Needs::InstructionCounting]);
