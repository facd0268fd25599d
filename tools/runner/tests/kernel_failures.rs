//! End to end with the real kernel: test kernels that fail on purpose
//! (`kernel/examples`) must make the runner exit non-zero with a clear
//! reason. Each is booted as a test binary (copied into a `deps` folder) so
//! the libtest summary line is checked too. Bad kernel command lines must be
//! boot errors that name what was wrong.
mod real_kernel;

use std::{path::PathBuf, sync::OnceLock};

use real_kernel::{Run, build_kernel, run_runner};

/// The kernel's example binaries, built once.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_kernel(&["--examples"]).join("examples"))
}

/// Boots example `name` as a test binary with the runner and `args`.
fn boot_as_test(name: &str, args: &[&str]) -> Run {
    let deps = tempfile::tempdir().unwrap();
    let test_dir = deps.path().join("deps");
    std::fs::create_dir(&test_dir).unwrap();
    let kernel = test_dir.join(format!("{name}-0123456789abcdef"));
    std::fs::copy(examples_dir().join(name), &kernel).unwrap();
    run_runner(&kernel, args)
}

/// Boots the kernel binary itself (not a test binary) with `args`.
fn boot_kernel(args: &[&str]) -> Run {
    run_runner(&build_kernel(&["--bin", "kernel"]).join("kernel"), args)
}

#[test]
fn a_failing_kernel_test_fails_the_run_and_is_named() {
    let run = boot_as_test("failing_test", &["--smp", "2"]);
    assert_eq!(run.code, Some(1), "exit code of a failing kernel test");
    assert!(run.line_containing("Initiating test 0x01 fails_on_purpose... [Fail]").is_some());
    let panic = run.line_containing("PANIC cpu=0 at").expect("the panic is reported");
    assert!(panic.contains("deliberate failure"), "panic line: {panic}");
    let summary = run.line_containing("test result: FAILED.").expect("libtest summary line");
    assert!(summary.contains("1 passed; 2 failed"), "summary: {summary}");
}

#[test]
fn a_panicking_application_processor_fails_the_run_and_is_named() {
    let run = boot_as_test("ap_panic", &["--smp", "4"]);
    assert_eq!(run.code, Some(1), "exit code when an AP panics");
    let panic = run.line_containing("PANIC cpu=1 at").expect("the panic names CPU 1");
    assert!(panic.contains("deliberate panic on an application processor"), "panic line: {panic}");
    assert!(run.line_containing("test result: FAILED.").is_some());
}

#[test]
fn a_double_free_with_heapcheck_on_is_reported_and_fails_the_run() {
    let run = boot_as_test("double_free", &["--smp", "2", "heapcheck=on"]);
    assert_eq!(run.code, Some(1), "exit code of a heap fault");
    let record = run.line_containing("HEAPCHECK {").expect("the HEAPCHECK record is printed");
    for key in [r#""kind":"double_free""#, r#""cpu":0"#, r#""size_class":48"#, r#""size":24"#] {
        assert!(record.contains(key), "{key} in the record: {record}");
    }
    let panic = run.line_containing("PANIC cpu=0 at").expect("the fault ends the run as a panic");
    assert!(panic.contains("heap corruption: double_free of 0x"), "panic line: {panic}");
    assert!(run.line_containing("Initiating test 0x00 frees_a_block_twice... [Fail]").is_some());
    assert!(run.line_containing("test result: FAILED.").is_some());
}

#[test]
fn a_bad_heapcheck_value_is_a_boot_error_naming_it() {
    let run = boot_kernel(&["--smp", "1", "heapcheck=yes"]);
    assert_eq!(run.code, Some(1));
    assert!(run.line_containing("boot error: heap: heapcheck=yes: expected on or off").is_some());
}

#[test]
fn a_hanging_kernel_test_times_out() {
    let run = boot_as_test("hanging_test", &["--smp", "2", "--timeout", "5"]);
    assert_eq!(run.code, Some(124), "exit code of a timeout");
    assert!(run.line_containing("timeout").is_some(), "the runner says timeout");
    assert!(run.line_containing("test result: FAILED.").is_some());
}

#[test]
fn an_unknown_kernel_option_is_a_boot_error_naming_it() {
    let run = boot_kernel(&["--smp", "1", "no_such_option=1"]);
    assert_eq!(run.code, Some(1));
    let line =
        run.line_containing("boot error: kernel command line: unknown option 'no_such_option'");
    assert!(
        line.is_some_and(|l| l.contains("known options: job")),
        "the error lists the known options"
    );
}

#[test]
fn a_heap_larger_than_memory_is_a_boot_error() {
    let run = boot_kernel(&["--smp", "1", "heap=100G"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line_containing("boot error: heap: heap of 107374182400 bytes does not fit").is_some()
    );
}
