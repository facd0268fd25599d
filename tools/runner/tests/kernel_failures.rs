//! End to end with the real kernel: test kernels that fail on purpose
//! (`kernel/examples`) must make the runner exit non-zero with a clear
//! reason. Each is booted as a test binary (copied into a `deps` folder) so
//! the libtest summary line is checked too. Bad kernel command lines must be
//! boot errors that name what was wrong. A hang must end with the kernel's
//! NMI dump: every CPU's state and the locks it holds.
mod real_kernel;

use std::{path::PathBuf, process::Command, sync::OnceLock};

use serde_json::{Value, json};

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

/// The NMI dump's per-CPU records (by CPU index) and its end marker, as
/// printed by the kernel (not the runner's repeat of the last lines).
fn nmi_dump(run: &Run) -> (Vec<Value>, Option<Value>) {
    let records: Vec<Value> = run
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("NMIDUMP "))
        .map(|json| serde_json::from_str(json).expect("NMIDUMP lines are JSON"))
        .collect();
    let (ends, mut cpus): (Vec<Value>, Vec<Value>) =
        records.into_iter().partition(|record| record.get("done").is_some());
    cpus.sort_by_key(|record| record["cpu"].as_u64());
    (cpus, ends.into_iter().next())
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
fn heapcheck_on_with_a_plain_allocator_is_a_boot_error_naming_both() {
    let run = boot_kernel(&["--smp", "1", "alloc=lockedheap", "heapcheck=on"]);
    assert_eq!(run.code, Some(1));
    let line = run
        .line_containing("boot error: heap: heapcheck=on needs the slab-core heap's checks")
        .expect("the boot error names heapcheck=on");
    assert!(line.contains("alloc=lockedheap is a plain allocator"), "boot error: {line}");
}

#[test]
fn a_hanging_kernel_test_times_out_with_an_nmi_dump_of_every_cpu() {
    let run = boot_as_test("hanging_test", &["--smp", "2", "--timeout", "5"]);
    assert_eq!(run.code, Some(124), "exit code of a timeout");
    let timeout =
        run.line_containing("runner: timeout after 5 s").expect("the runner says timeout");
    assert!(
        timeout.contains("(NMI dump requested and printed: 2 of 2 CPUs answered)"),
        "timeout line: {timeout}"
    );
    assert!(run.line_containing("test result: FAILED.").is_some());
    let (cpus, end) = nmi_dump(&run);
    assert_eq!(end.expect("the dump's end marker")["cpus"], 2);
    assert_eq!(cpus.len(), 2, "one NMIDUMP line per CPU: {cpus:?}");
    for (index, cpu) in cpus.iter().enumerate() {
        assert_eq!(cpu["cpu"], index, "{cpu}");
        assert_eq!(cpu["answered"], true, "CPU {index} answered the NMI: {cpu}");
        for key in ["rip", "rsp"] {
            let value = cpu[key].as_str().unwrap_or_default();
            assert!(value.starts_with("0xffff"), "CPU {index}: {key} is a kernel address: {cpu}");
        }
        assert!(cpu["if"].is_boolean() && cpu["holds"].is_array(), "CPU {index}: {cpu}");
    }
    // The test spins with interrupts enabled and holds no lock.
    assert_eq!(cpus[0]["if"], true, "{}", cpus[0]);
    assert_eq!(cpus[0]["holds"], json!([]), "{}", cpus[0]);
}

#[test]
fn an_nmi_dump_names_the_cpus_stuck_holding_the_heap_and_console_locks() {
    // CPU 1 holds the heap lock for ever, CPU 0 waits for it to allocate,
    // CPU 2 holds the console lock in the middle of a line.
    let run = boot_as_test("heap_lock_hang", &["--smp", "3", "--timeout", "5"]);
    assert_eq!(run.code, Some(124), "exit code of a timeout");
    let (cpus, end) = nmi_dump(&run);
    assert_eq!(end.expect("the dump's end marker")["answered"], 3);
    let [waiter, heap_holder, console_holder] = &cpus[..] else {
        panic!("one NMIDUMP line per CPU: {cpus:?}")
    };
    assert_eq!(heap_holder["cpu"], 1);
    assert_eq!(heap_holder["holds"], json!(["heap"]), "CPU 1 holds the heap lock: {heap_holder}");
    assert_eq!(heap_holder["if"], false, "with interrupts masked: {heap_holder}");
    assert_eq!(waiter["cpu"], 0);
    assert_eq!(waiter["answered"], true, "CPU 0, stuck allocating, answered: {waiter}");
    assert_eq!(waiter["holds"], json!([]), "{waiter}");
    assert_eq!(console_holder["cpu"], 2);
    assert_eq!(console_holder["holds"], json!(["console"]), "{console_holder}");
    // The dump went around the held console lock, on a line of its own.
    assert!(run.line_containing("cpu 2 never finishes this line: ").is_some());
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

/// The comma-separated names in `text` between `opening` and the next `)`,
/// sorted.
fn names_between<'a>(text: &'a str, opening: &str) -> Vec<&'a str> {
    let start = text.find(opening).unwrap_or_else(|| panic!("no '{opening}' in: {text}"));
    let rest = &text[start + opening.len()..];
    let end = rest.find(')').unwrap_or_else(|| panic!("no ')' after '{opening}' in: {text}"));
    let mut names: Vec<&str> = rest[..end].split(", ").collect();
    names.sort_unstable();
    names
}

/// The runner checks `bench --workload` against its own list before it
/// boots anything; that list must be the kernel's `job=bench` list, which
/// both print when given a name they do not know.
#[test]
fn the_runner_knows_exactly_the_workloads_the_kernel_knows() {
    let run = boot_kernel(&["--smp", "1", "job=bench", "workload=no-such-workload"]);
    assert_eq!(run.code, Some(1), "exit code of an unknown workload");
    let kernel_line = run
        .line_containing("bench: unknown workload 'no-such-workload' (known: ")
        .expect("the kernel names the workloads it knows");
    let kernel_names = names_between(kernel_line, "(known: ");

    let kernel = build_kernel(&["--bin", "kernel"]).join("kernel");
    let output = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg(&kernel)
        .args(["bench", "--workload", "no-such-workload"])
        .output()
        .expect("the runner runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "runner exit code; stderr: {stderr}");
    let runner_names = names_between(&stderr, "(one of ");
    assert_eq!(
        runner_names, kernel_names,
        "the runner's WORKLOADS (left) against the kernel's (right)"
    );
}
