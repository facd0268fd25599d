//! End to end with the real kernel and the real Limine (the release
//! vendored in third_party/limine): a Limine boot gives the same `BOOT`
//! record as the PVH loader but for what the bootloader decides, and a
//! broken `limine.conf` ends the run within seconds with Limine's message.
mod real_kernel;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use real_kernel::{Run, build_kernel, repo_root, run_runner, run_runner_with_env};

/// The `BOOT` keys whose values belong to the bootloader.
const BOOTLOADER_KEYS: [&str; 4] = ["bootloader", "base_revision", "usable_bytes", "timestamp_hz"];

/// What an ISO boot under Limine needs besides QEMU (tools/setup installs it).
fn require_iso_tools() {
    real_kernel::require_qemu();
    real_kernel::qemu::require_tool("xorriso", "xorriso");
}

/// The vendored release with its host tool built (what tools/setup does).
fn vendored_limine() -> std::path::PathBuf {
    let dir = repo_root().join("third_party/limine");
    let status = Command::new("make")
        .args(["--no-print-directory", "-s", "-C"])
        .arg(&dir)
        .arg("limine")
        .status()
        .expect("make runs");
    assert!(status.success(), "building {}/limine failed", dir.display());
    dir
}

fn boot_record(run: &Run, what: &str) -> serde_json::Map<String, serde_json::Value> {
    let record = run
        .stdout
        .lines()
        .find_map(|line| line.split_once("BOOT {").map(|(_, json)| format!("{{{json}")))
        .unwrap_or_else(|| panic!("{what}: no BOOT line"));
    match serde_json::from_str(&record) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("{what}: BOOT is not a JSON object: {record} ({other:?})"),
    }
}

#[test]
fn a_limine_bios_boot_record_differs_from_pvh_only_in_what_the_bootloader_decides() {
    require_iso_tools();
    let limine = vendored_limine();
    let kernel = build_kernel(&["--bin", "kernel"]).join("kernel");
    let args = ["--smp", "2", "--timeout", "120", "job=boot"];
    let pvh = run_runner(&kernel, &args);
    assert_eq!(pvh.code, Some(0), "PVH boot failed");
    let iso_args = [&args[..], &["--boot", "limine-bios"]].concat();
    let bios = run_runner_with_env(&kernel, &iso_args, &[("LIMINE_DIR", &limine)]);
    assert_eq!(bios.code, Some(0), "limine-bios boot failed");

    let (mut pvh, mut bios) = (boot_record(&pvh, "pvh"), boot_record(&bios, "limine-bios"));
    assert_eq!(pvh["base_revision"], 3, "the PVH loader serves base revision 3");
    assert_eq!(bios["base_revision"], 2, "Limine 8.2.0 serves base revision 2");
    assert_eq!(bios["bootloader"], "Limine 8.2.0");
    for key in BOOTLOADER_KEYS {
        assert!(pvh.remove(key).is_some(), "PVH BOOT has no {key}");
        assert!(bios.remove(key).is_some(), "limine-bios BOOT has no {key}");
    }
    assert_eq!(bios, pvh, "BOOT records differ beyond {BOOTLOADER_KEYS:?}");
}

#[test]
fn a_broken_limine_conf_fails_fast_with_limines_own_message() {
    require_iso_tools();
    let limine = vendored_limine();
    let kernel = build_kernel(&["--bin", "kernel"]).join("kernel");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("limine.conf");
    // `kernal_path` is misspelt: Limine 8.x panics with "KERNEL_PATH not specified".
    std::fs::write(
        &conf,
        "timeout: 0\nserial: yes\n\n/k\n    protocol: limine\n    kernal_path: boot():/boot/kernel\n    cmdline:\n",
    )
    .unwrap();
    let started = Instant::now();
    let env: [(&str, &Path); 2] = [("LIMINE_DIR", &limine), ("RUNNER_LIMINE_CONF", &conf)];
    let run = run_runner_with_env(&kernel, &["--smp", "2", "--boot", "limine-bios"], &env);
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "a Limine panic is a failure");
    let reason = run.line_containing("runner: Limine stopped with an error").unwrap_or_else(|| {
        panic!("no 'runner: Limine stopped with an error' line in:\n{}", run.stdout)
    });
    assert!(reason.contains("limine: KERNEL_PATH not specified"), "{reason}");
    assert!(took < Duration::from_secs(15), "took {took:?} (the test binary timeout is 120 s)");
}
