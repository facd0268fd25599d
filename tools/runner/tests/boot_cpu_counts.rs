//! End to end with the real kernel: it boots every CPU for each count QEMU
//! is given, up to 64, and its `BOOT` record agrees with the MADT.
use std::{path::Path, process::Command};

const CPU_COUNTS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

fn build_kernel() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "kernel",
            "--bin",
            "kernel",
            "--target",
            "x86_64-unknown-none",
        ])
        .arg("--target-dir")
        .arg(root.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the kernel failed");
    root.join("target/x86_64-unknown-none/debug/kernel")
}

#[test]
fn every_cpu_comes_up_for_each_cpu_count() {
    let kernel = build_kernel();
    for cpus in CPU_COUNTS {
        let output = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(&kernel)
            .args(["--smp", &cpus.to_string(), "--timeout", "120", "job=boot"])
            .env_remove("RUNNER_PVH_LOADER")
            .output()
            .expect("the runner runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "--smp {cpus}: runner failed:\n{stdout}");
        let record = stdout
            .lines()
            .find_map(|line| line.strip_prefix("BOOT "))
            .unwrap_or_else(|| panic!("--smp {cpus}: no BOOT line:\n{stdout}"));
        let boot: serde_json::Value = serde_json::from_str(record).expect("BOOT is JSON");
        assert_eq!(boot["cpus"], cpus, "--smp {cpus}: cpus in {record}");
        assert_eq!(boot["madt_cpus"], cpus, "--smp {cpus}: madt_cpus in {record}");
        for index in 0..cpus {
            let online = format!("cpu {index} online: lapic id ");
            assert!(
                stdout.lines().any(|l| l.starts_with(&online)),
                "--smp {cpus}: no '{online}' line"
            );
        }
    }
}
