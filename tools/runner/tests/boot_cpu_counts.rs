//! End to end with the real kernel: it boots every CPU for each count QEMU
//! is given, up to 64, and its `BOOT` record agrees with the MADT.
mod real_kernel;

use real_kernel::{build_kernel, run_runner};

const CPU_COUNTS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

#[test]
fn every_cpu_comes_up_for_each_cpu_count() {
    let kernel = build_kernel(&["--bin", "kernel"]).join("kernel");
    for cpus in CPU_COUNTS {
        let run =
            run_runner(&kernel, &["--smp", &cpus.to_string(), "--timeout", "120", "job=boot"]);
        assert_eq!(run.code, Some(0), "--smp {cpus}: runner failed");
        let record = run
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("BOOT "))
            .unwrap_or_else(|| panic!("--smp {cpus}: no BOOT line"));
        let boot: serde_json::Value = serde_json::from_str(record).expect("BOOT is JSON");
        assert_eq!(boot["cpus"], cpus, "--smp {cpus}: cpus in {record}");
        assert_eq!(boot["madt_cpus"], cpus, "--smp {cpus}: madt_cpus in {record}");
        for index in 0..cpus {
            let online = format!("cpu {index} online: lapic id ");
            assert!(run.line_containing(&online).is_some(), "--smp {cpus}: no '{online}' line");
        }
    }
}
