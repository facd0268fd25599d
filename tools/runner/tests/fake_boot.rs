//! End to end: the runner binary boots a fake PVH loader in QEMU (TCG or
//! KVM as `--accel auto` picks) and maps what it prints and how it exits.
mod support;

use support::{End, Setup, require_qemu};

const BOOT: &str = "BOOT {\"cpus\":1}\n";

#[test]
fn a_successful_run() {
    require_qemu();
    let setup = Setup::new(
        (&format!("{BOOT}hello from the guest\n"), End::Exit(0x10)),
        ("", End::Exit(0x11)),
        false,
    );
    let run = setup.run(&["--smp", "2", "--verbose"]);
    assert_eq!(run.code, Some(0));
    assert!(run.line_starting("runner: accel ").is_some());
    assert!(run.has_line("hello from the guest"));
    assert!(run.line_starting("runner: qemu-system-x86_64 -M microvm ").is_some());
    assert!(run.line_starting("runner: BOOT line after ").is_some());
    assert!(run.line_starting("runner: kernel exited: success (").is_some());
}

#[test]
fn kernel_arguments_reach_the_command_line() {
    require_qemu();
    // The fake prints the second text only for a non-empty command line.
    let setup =
        Setup::new(("empty\n", End::Exit(0x11)), ("got arguments\n", End::Exit(0x10)), false);
    let run = setup.run(&["heap=64M", "--smp", "1", "job=stress"]);
    assert_eq!(run.code, Some(0));
    assert!(run.has_line("got arguments"));
}

#[test]
fn a_panic_is_quoted() {
    require_qemu();
    let text = format!("{BOOT}PANIC cpu=0 at kernel/src/main.rs:9:5: boom\n");
    let setup = Setup::new((&text, End::Exit(0x11)), ("", End::Hang), false);
    let run = setup.run(&[]);
    assert_eq!(run.code, Some(1));
    let line = run.line_starting("runner: kernel reported failure: ").unwrap();
    assert!(line.starts_with(
        "runner: kernel reported failure: PANIC cpu=0 at kernel/src/main.rs:9:5: boom (after "
    ));
}

#[test]
fn heap_exhaustion_exits_3() {
    require_qemu();
    let setup = Setup::new(("out of heap\n", End::Exit(0x12)), ("", End::Hang), false);
    let run = setup.run(&[]);
    assert_eq!(run.code, Some(3));
    assert!(run.line_starting("runner: kernel heap exhausted").is_some());
    assert!(run.has_line("runner: no BOOT line"));
}

#[test]
fn a_triple_fault_has_no_verdict() {
    require_qemu();
    let setup = Setup::new(("about to fault\n", End::TripleFault), ("", End::Hang), false);
    let run = setup.run(&[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line_starting(
            "runner: QEMU exited with status 0 without a verdict from the kernel (triple fault or reset?)"
        )
        .is_some()
    );
}

#[test]
fn a_hang_times_out() {
    require_qemu();
    let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
    let setup = Setup::new((&text, End::Hang), ("", End::Hang), false);
    let run = setup.run(&["--timeout", "3"]);
    assert_eq!(run.code, Some(124));
    assert!(run.has_line("runner: last 20 serial lines:"));
    assert!(run.has_line("runner: | line 11") && run.has_line("runner: | line 30"));
    assert!(!run.has_line("runner: | line 10"));
    // The fake has no NMI dump to give.
    assert!(
        run.has_line("runner: timeout after 3 s (NMI dump requested: nothing arrived within 2 s)")
    );
}

#[test]
fn test_binary_resumes_after_a_should_panic_test() {
    require_qemu();
    let first = "running 2 tests\n\
                 Initiating test 0x00 must_panic... [Pass] (panicked as expected)\n\
                 TEST-RESUME {\"next\":1}\n";
    let later = "running 2 tests\nInitiating test 0x01 after_it... [Pass] (0.1 ms)\n";
    let setup = Setup::new((first, End::Exit(0x13)), (later, End::Exit(0x10)), true);
    let run = setup.run(&["--quiet", "--test-threads=1", "--smp", "1"]);
    assert_eq!(run.code, Some(0));
    assert!(run.has_line("runner: a should_panic test passed; booting again with test_skip=1"));
    let result = run.stdout.lines().last().unwrap();
    assert!(
        result.starts_with("test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in "),
        "{result}"
    );
}

#[test]
fn test_binary_resumes_after_a_test_that_exhausts_the_heap_as_declared() {
    require_qemu();
    let first = "running 2 tests\n\
                 TEST-EXPECT {\"test\":0,\"name\":\"fills_the_heap\",\"exit\":\"heap-exhausted\"}\n\
                 heap exhausted: cpu 0 could not allocate 64 bytes aligned to 8\n\
                 HEAP-EXHAUSTED {\"cpu\":0,\"size\":64}\n";
    let later = "running 2 tests\nInitiating test 0x01 after_it... [Pass] (0.1 ms)\n";
    let setup = Setup::new((first, End::Exit(0x12)), (later, End::Exit(0x10)), true);
    let run = setup.run(&["--smp", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(run.has_line(
        "runner: test 0x00 fills_the_heap exhausted the heap as it declared; booting again with test_skip=1"
    ));
    let result = run.stdout.lines().last().unwrap();
    assert!(result.starts_with("test result: ok. 2 passed; 0 failed;"), "{result}");
}

#[test]
fn test_binary_exhausting_the_heap_undeclared_or_unreported_fails() {
    require_qemu();
    let report = "heap exhausted: cpu 0 could not allocate 64 bytes aligned to 8\n\
                  HEAP-EXHAUSTED {\"cpu\":0,\"size\":64}\n";
    let undeclared = format!("running 1 test\n{report}Initiating test 0x00 fine... [Fail]\n");
    let unreported = "running 1 test\n\
                      TEST-EXPECT {\"test\":0,\"name\":\"fills\",\"exit\":\"heap-exhausted\"}\n";
    for first in [undeclared.as_str(), unreported] {
        let setup = Setup::new((first, End::Exit(0x12)), ("", End::Exit(0x10)), true);
        let run = setup.run(&["--smp", "1"]);
        assert_eq!(run.code, Some(3), "{}", run.stdout);
        assert!(
            run.stdout
                .lines()
                .any(|line| line.starts_with("runner: ") && line.contains("kernel heap exhausted")),
            "{}",
            run.stdout
        );
        let result = run.stdout.lines().last().unwrap();
        assert!(result.starts_with("test result: FAILED. 0 passed; 1 failed;"), "{result}");
    }
}

#[test]
fn test_binary_with_a_failing_test() {
    require_qemu();
    let first = "running 3 tests\n\
                 Initiating test 0x00 fine... [Pass] (0.1 ms)\n\
                 PANIC cpu=1 at tests/boot.rs:33:13: lapic ids clash\n\
                 Initiating test 0x01 lapic_ids_are_distinct... [Fail]\n";
    let setup = Setup::new((first, End::Exit(0x11)), ("", End::Hang), true);
    let run = setup.run(&[]);
    assert_eq!(run.code, Some(1));
    assert!(run.has_line(
        "runner: test 0x01 lapic_ids_are_distinct failed: PANIC cpu=1 at tests/boot.rs:33:13: lapic ids clash"
    ));
    assert!(
        run.stdout.lines().last().unwrap().starts_with("test result: FAILED. 1 passed; 2 failed;")
    );
}

#[test]
fn test_binary_with_an_ignored_test_passes_and_counts_it_as_ignored() {
    require_qemu();
    let first = "running 2 tests\n\
                 Initiating test 0x00 needs_two_cpus... [Ignored] (needs at least 2 cpus, 1 online)\n\
                 Initiating test 0x01 fine... [Pass] (0.1 ms)\n";
    let setup = Setup::new((first, End::Exit(0x10)), ("", End::Hang), true);
    let run = setup.run(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.has_line("runner: test 0x00 needs_two_cpus ignored: needs at least 2 cpus, 1 online")
    );
    let result = run.stdout.lines().last().unwrap();
    assert!(
        result.starts_with("test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured;"),
        "{result}"
    );
}

#[test]
fn test_binary_that_hangs() {
    require_qemu();
    let first = "running 2 tests\nInitiating test 0x00 fine... [Pass] (0.1 ms)\n";
    let setup = Setup::new((first, End::Hang), ("", End::Hang), true);
    let run = setup.run(&["--timeout=2"]);
    assert_eq!(run.code, Some(124));
    assert!(run.has_line(
        "runner: timeout after 2 s (NMI dump requested: nothing arrived within 2 s); \
         test 0x01 never finished (1 of 2 tests ran)"
    ));
    assert!(
        run.stdout.lines().last().unwrap().starts_with("test result: FAILED. 1 passed; 1 failed;")
    );
}

#[test]
fn runner_errors_exit_2() {
    let setup = Setup::new(("", End::Exit(0x10)), ("", End::Exit(0x10)), false);
    let unknown = setup.run(&["--frobnicate"]);
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("--frobnicate"));

    let bare = setup.run(&["not_key_value"]);
    assert_eq!(bare.code, Some(2));
    assert!(bare.stderr.contains("'not_key_value'"));

    let missing = support::run_runner(&setup.loader, &setup.dir.path().join("no-such-kernel"), &[]);
    assert_eq!(missing.code, Some(2));
    assert!(missing.stderr.contains("no-such-kernel"));

    // The Limine ISO path is checked once QEMU is found.
    require_qemu();
    let nowhere = setup.dir.path().join("no-limine-here");
    let limine = setup.run_with_limine_dir(&["--boot", "limine-bios"], &nowhere);
    assert_eq!(limine.code, Some(2));
    assert!(
        limine.stderr.contains("LIMINE_DIR=") && limine.stderr.contains("is not a folder"),
        "{}",
        limine.stderr
    );
}
