//! `HostHeap` as this test binary's global allocator (feature `host`): the
//! allocations of the tests and of the test harness itself go through it.
//! Threads, large blocks, memory given back to the OS, the settings from
//! the environment (children of this binary with a variable set) and the
//! statistics at exit.
#![cfg(feature = "host")]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;

use slab_core::HostHeap;

#[global_allocator]
static HEAP: HostHeap = HostHeap::new();

/// Set in a child run by `run_child`: the test to run is one that does
/// something fatal on purpose.
const CHILD_VAR: &str = "SLAB_HOST_TEST_CHILD";

#[test]
fn the_global_allocator_is_the_host_heap() {
    let before = HEAP.stats().total.small_ops;
    let boxes: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
    let after = HEAP.stats().total.small_ops;
    assert!(after >= before + 1000, "small_ops went from {before} to {after} over 1000 Box::new");
    assert_eq!(boxes.iter().map(|b| **b).sum::<u64>(), 999 * 1000 / 2);
}

#[test]
fn threads_share_the_heap_without_corruption() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2000;
    let (sender, receiver) = mpsc::channel::<(usize, Vec<String>)>();
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let sender = sender.clone();
            thread::spawn(move || {
                let mut map = HashMap::new();
                for round in 0..ROUNDS {
                    let words: Vec<String> =
                        (0..round % 17).map(|i| format!("t{thread}-r{round}-w{i}")).collect();
                    map.insert(round, words.clone());
                    if round % 3 == 0 {
                        sender.send((thread, words)).unwrap();
                    }
                    if round % 5 == 0 {
                        map.remove(&(round / 2));
                    }
                }
                for (round, words) in &map {
                    for (i, word) in words.iter().enumerate() {
                        assert_eq!(*word, format!("t{thread}-r{round}-w{i}"), "thread {thread}");
                    }
                }
            })
        })
        .collect();
    drop(sender);
    let mut received = 0;
    for (thread, words) in receiver {
        for word in &words {
            assert!(word.starts_with(&format!("t{thread}-")), "{word} from thread {thread}");
        }
        received += 1;
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(received, THREADS * ROUNDS.div_ceil(3));
}

#[test]
fn large_blocks_grow_the_heap_and_are_usable() {
    // Larger than one growth step (64 MiB), so the region must grow.
    let bytes = 200 << 20;
    let mut block = vec![0u8; bytes];
    for (i, byte) in block.iter_mut().enumerate().step_by(4096) {
        *byte = i as u8;
    }
    assert!(block.iter().enumerate().step_by(4096).all(|(i, &b)| b == i as u8));
    let aligned = std::alloc::Layout::from_size_align(1 << 20, 1 << 20).unwrap();
    // SAFETY: a nonzero layout; freed below with it.
    let page = unsafe { std::alloc::alloc(aligned) };
    assert!(!page.is_null() && page.addr().is_multiple_of(1 << 20), "{page:?}");
    // SAFETY: allocated just above with `aligned`.
    unsafe { std::alloc::dealloc(page, aligned) };
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_freed_large_block_goes_back_to_the_os() {
    let bytes = 128 << 20;
    let block = vec![1u8; bytes];
    let with = resident_bytes();
    assert_eq!(block[bytes - 1], 1);
    drop(block);
    let without = resident_bytes();
    // Other tests run at the same time, so allow for their memory.
    assert!(
        without + (96 << 20) < with,
        "resident {with} bytes with the 128 MiB block, {without} after freeing it"
    );
}

/// Runs this binary's test `name` alone with `env` set, and returns what
/// it did.
fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_VAR, name);
    for (variable, value) in env {
        command.env(variable, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_setting_stops_the_program_naming_the_variable_and_the_value() {
    for (variable, value, message) in [
        (
            "SLAB_HOST_MODE",
            "buddy",
            "SLAB_HOST_MODE=\"buddy\" is not valid: expected `slab` or `locked`",
        ),
        ("SLAB_HOST_CPUS", "0", "SLAB_HOST_CPUS=\"0\" is not valid"),
        (
            "SLAB_HOST_HEAPCHECK",
            "yes",
            "SLAB_HOST_HEAPCHECK=\"yes\" is not valid: expected `on` or `off`",
        ),
    ] {
        let output = run_child("the_global_allocator_is_the_host_heap", &[(variable, value)]);
        assert!(!output.status.success(), "{variable}={value} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{variable}={value}: stderr {}",
            stderr(&output)
        );
    }
}

#[test]
fn stats_at_exit_print_a_heapstats_line_with_the_settings() {
    let output = run_child(
        "the_global_allocator_is_the_host_heap",
        &[("SLAB_HOST_STATS", "1"), ("SLAB_HOST_CPUS", "3"), ("SLAB_HOST_MODE", "locked")],
    );
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("HEAPSTATS {"))
        .unwrap_or_else(|| panic!("no HEAPSTATS: {text}"));
    assert!(line.contains("\"mode\":\"locked\",\"cpus\":3"), "{line}");
    let total_small_ops: u64 = line
        .split_once("\"cpus\":3,\"small_ops\":")
        .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total small_ops: {line}"));
    assert!(total_small_ops >= 1000, "the child's 1000 boxes were not counted: {line}");
}

/// In a child with `SLAB_HOST_HEAPCHECK=on`: frees a block twice.
#[test]
fn double_free_in_a_child() {
    if std::env::var(CHILD_VAR).as_deref() != Ok("double_free_in_a_child") {
        return;
    }
    let layout = std::alloc::Layout::from_size_align(48, 8).unwrap();
    // SAFETY: a nonzero layout; the second free is the fault under test.
    unsafe {
        // `black_box`: the compiler may not elide the pair.
        let block = std::hint::black_box(std::alloc::alloc(layout));
        std::alloc::dealloc(block, layout);
        std::alloc::dealloc(block, layout);
    }
}

#[test]
fn heapcheck_on_reports_a_double_free_and_stops() {
    let output = run_child("double_free_in_a_child", &[("SLAB_HOST_HEAPCHECK", "on")]);
    let text = stderr(&output);
    assert!(!output.status.success(), "the double free went unnoticed: {text}");
    assert!(text.contains("HEAPCHECK {"), "{text}");
    assert!(text.contains("double_free"), "{text}");
}

/// README.md's three-line example is the doctest of `HostHeap` (which
/// `cargo test --doc` compiles and runs): its Rust lines must stay the
/// doctest's, word for word.
#[test]
fn the_readme_quotes_the_doctest_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let source = include_str!("../src/host/heap.rs");
    let doctest: Vec<&str> = source
        .lines()
        .skip_while(|line| line.trim() != "/// ```")
        .skip(1)
        .take_while(|line| !line.trim().is_empty() && line.trim() != "///")
        .map(|line| line.trim().trim_start_matches("/// "))
        .collect();
    assert_eq!(doctest.len(), 2, "the doctest's first lines: {doctest:?}");
    let quoted = format!("```rust\n{}\n```", doctest.join("\n"));
    assert!(readme.contains(&quoted), "README.md does not quote the doctest:\n{quoted}");
    assert!(
        readme.contains("slab-core = { path = \"kernel/slab-core\", features = [\"host\"] }"),
        "README.md's dependency line"
    );
}
