//! End to end: `runner KERNEL bench` and `runner KERNEL profile` boot a fake
//! PVH guest that prints fixed BENCH and LOCKTRACE lines (it cannot read its
//! command line, so it leaves out `alloc`, `workload` and `cpus`, which the
//! runner then takes from the cell), and write their output folders.
mod support;

use serde_json::Value;
use support::{End, Setup, require_qemu};

const REPORT: &str = "BOOT {\"cpus\":2}\n\
    bench: readable table line\n\
    BENCH {\"ops\":20000,\"ops_per_cpu\":[10000,10000],\"timestamp_hz\":1000000000,\
    \"elapsed_cycles\":400000,\"ops_per_sec\":5000000.0,\"cycles_per_op_median\":40.0,\
    \"cycles_per_op_p99\":95.0,\"lock_acquisitions\":250,\"lock_contended\":10,\
    \"lock_wait_cycles\":8000,\"lock_hold_cycles\":20000,\"lock_wait_share\":0.01,\
    \"small_ops\":19000,\"cache_hits\":18000,\"cache_hit_rate\":0.947,\"cross_cpu_frees\":0}\n\
    LOCKTRACE {\"cpu\":1,\"events\":[[1500,2500,3000],[6000,6000,6500]]}\n\
    LOCKTRACE {\"cpu\":0,\"events\":[[1000,1000,2500],[2600,3000,4000]]}\n";

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_bench_writes_its_folder() {
    require_qemu();
    let setup = Setup::new(("", End::Exit(0x11)), (REPORT, End::Exit(0x10)), false);
    let out = setup.dir.path().join("results");
    let run = setup.run(&[
        "bench",
        "--smp",
        "1,2",
        "--alloc",
        "locked,slab",
        "--workload",
        "local",
        "--reps",
        "2",
        "--accel",
        "tcg",
        "--timeout",
        "60",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0));
    assert!(run.line_starting("runner: accel tcg").is_some());
    assert!(
        run.line_starting(
            "runner: [1/8] alloc=locked workload=local cpus=1 rep=1: 5.00M ops/s, 40.0 cycles/op ("
        )
        .is_some()
    );
    assert!(run.has_line(
        "| local | 2 | slab | 2/2 | 5.00M | 40.0 | - | - | - | 12.50 | 1.0% | 94.7% | 1.00 |"
    ));
    assert!(run.line_starting("runner: warning: TCG timings do not reflect hardware").is_some());
    assert!(run.has_line("runner: all 8 boots gave a BENCH record"));

    let results: Vec<Value> = serde_json::from_str(&read(&out.join("results.json"))).unwrap();
    assert_eq!(results.len(), 8);
    for record in &results {
        assert_eq!(record["status"], "ok");
        assert_eq!(record["accel"], "tcg");
        assert_eq!(record["workload"], "local");
        assert_eq!(record["ops_per_sec"].as_f64(), Some(5e6));
        assert_eq!(record["instructions_per_op_median"], Value::Null);
        assert_eq!(record["cross_cpu_frees"], 0);
    }
    let cells: Vec<(String, u64, u64)> = results
        .iter()
        .map(|r| {
            (
                r["alloc"].as_str().unwrap().to_string(),
                r["cpus"].as_u64().unwrap(),
                r["rep"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(cells.contains(&("slab".into(), 2, 2)) && cells.contains(&("locked".into(), 1, 1)));

    let csv = read(&out.join("results.csv"));
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.starts_with("status,error,alloc,workload,cpus,accel,rep,"));

    let summary = read(&out.join("summary.md"));
    assert!(summary.starts_with("# Allocator benchmark\n"));
    assert!(summary.contains("TCG timings do not reflect hardware"));
    assert!(summary.contains("| local | 1 | locked | 2/2 | 5.00M |"));

    let conditions: Value = serde_json::from_str(&read(&out.join("conditions.json"))).unwrap();
    for key in
        ["date_utc", "host_cpu", "host_cores", "qemu_version", "kernel_commit", "command_line"]
    {
        assert!(!conditions[key].is_null(), "{key}");
    }
    assert_eq!(conditions["accel"], "tcg");
    assert!(conditions["command_line"].as_str().unwrap().contains(" bench --smp 1,2 "));

    for name in ["throughput_local.svg", "lock_wait_local.svg"] {
        let svg = read(&out.join(name));
        assert!(svg.contains("<svg") && svg.contains("locked") && svg.contains("slab"), "{name}");
    }
}

#[test]
fn failed_boots_are_recorded_and_the_bench_goes_on() {
    require_qemu();
    let text = "BOOT {\"cpus\":1}\nPANIC cpu=0 at kernel/src/bench.rs:1:1: boom\n";
    let setup = Setup::new(("", End::Exit(0x11)), (text, End::Exit(0x11)), false);
    let out = setup.dir.path().join("failed");
    let run = setup.run(&[
        "bench",
        "--smp",
        "1",
        "--alloc",
        "slab,talc",
        "--workload",
        "xfer",
        "--reps",
        "1",
        "--accel",
        "tcg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.line_starting(
            "runner: [1/2] FAILED alloc=slab workload=xfer cpus=1 rep=1: kernel reported failure: PANIC cpu=0 at kernel/src/bench.rs:1:1: boom ("
        )
        .is_some()
    );
    assert!(run.line_starting("runner: [2/2] FAILED alloc=talc").is_some());
    assert!(run.has_line("runner: | PANIC cpu=0 at kernel/src/bench.rs:1:1: boom"));
    assert!(run.has_line("runner: 2 of 2 boots failed (see summary.md)"));
    let results: Vec<Value> = serde_json::from_str(&read(&out.join("results.json"))).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["status"], "failed");
    assert!(results[0]["error"].as_str().unwrap().contains("boom"));
    assert!(read(&out.join("summary.md")).contains("## Failed boots (2)"));
    assert!(out.join("throughput_xfer.svg").is_file());
    let log = read(&out.join("failed/talc_xfer_1cpus_rep1.log"));
    assert!(log.contains("PANIC cpu=0 at kernel/src/bench.rs:1:1: boom"), "{log}");
}

#[test]
fn a_profile_draws_the_lock_timeline() {
    require_qemu();
    let setup = Setup::new(("", End::Exit(0x11)), (REPORT, End::Exit(0x10)), false);
    let out = setup.dir.path().join("profile");
    let run = setup.run(&[
        "profile",
        "--smp",
        "2",
        "--alloc",
        "locked",
        "--workload",
        "local",
        "--accel",
        "tcg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0));
    assert!(run.has_line(
        "runner: profile alloc=locked workload=local cpus=2: kernel command line 'job=bench workload=local alloc=locked trace=on'"
    ));
    // The kernel's report is echoed as it comes.
    assert!(run.has_line("bench: readable table line"));
    assert!(run.has_line(
        "runner: cpu 0: 2 acquisitions traced (1 waited), waiting 0.4 µs, holding 2.5 µs"
    ));
    let profile: Value = serde_json::from_str(&read(&out.join("profile.json"))).unwrap();
    assert_eq!(profile["bench"]["status"], "ok");
    assert_eq!(profile["bench"]["alloc"], "locked");
    assert_eq!(profile["locktrace"].as_array().unwrap().len(), 2);
    assert_eq!(profile["locktrace"][0]["cpu"], 0);
    let svg = read(&out.join("lock_timeline.svg"));
    for text in ["<svg", "cpu 0", "cpu 1", "alloc=locked workload=local cpus=2 accel=tcg"] {
        assert!(svg.contains(text), "{text} missing");
    }
    let trace: Value = serde_json::from_str(&read(&out.join("lock_timeline.trace.json"))).unwrap();
    let slices: Vec<(&str, u64)> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["ph"] == "X")
        .map(|event| (event["name"].as_str().unwrap(), event["tid"].as_u64().unwrap()))
        .collect();
    // REPORT's LOCKTRACE lines: each CPU waited once and held twice.
    let expected = [("hold", 0), ("wait", 0), ("hold", 0), ("wait", 1), ("hold", 1), ("hold", 1)];
    assert_eq!(slices, expected, "{trace}");
}

#[test]
fn bench_argument_errors_exit_2() {
    let setup = Setup::new(("", End::Exit(0x10)), ("", End::Exit(0x10)), false);
    let bad_list = setup.run(&["bench", "--smp", "1,x"]);
    assert_eq!(bad_list.code, Some(2));
    assert!(bad_list.stderr.contains("'x' is not a CPU count"), "{}", bad_list.stderr);
    let reserved = setup.run(&["bench", "alloc=slab"]);
    assert_eq!(reserved.code, Some(2));
    assert!(reserved.stderr.contains("use --alloc"), "{}", reserved.stderr);
}
