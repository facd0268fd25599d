//! Picking the accelerator. Hardware KVM means `/dev/kvm` backed by
//! `kvm_intel` or `kvm_amd` (not `kvm_pvm`, a software hypervisor under which
//! guests run far slower than under TCG) and a probe boot that works. The
//! host facts and the probe are parameters so the choice can be tested.
use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::cli::AccelChoice;

/// The accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// Multi-threaded TCG.
    Tcg,
    /// Single-threaded TCG with `-icount shift=0,sleep=off`.
    Icount,
}

impl Accel {
    /// The QEMU arguments selecting this accelerator and its CPU model.
    pub fn qemu_args(self) -> Vec<&'static str> {
        match self {
            // -arch-capabilities: with KVM on AMD, `-cpu host` aborts with
            // "failed to set MSR 0x10a".
            Self::Kvm => vec!["-accel", "kvm", "-cpu", "host,-arch-capabilities"],
            Self::Tcg => vec!["-accel", "tcg,thread=multi", "-cpu", "max"],
            Self::Icount => {
                vec!["-accel", "tcg,thread=single", "-icount", "shift=0,sleep=off", "-cpu", "max"]
            }
        }
    }

    /// How the choice line names it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg (multi-threaded)",
            Self::Icount => "icount (single-threaded tcg, -icount shift=0,sleep=off)",
        }
    }
}

/// What the host tells about KVM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/dev/kvm` exists.
    pub dev_kvm: bool,
    /// The KVM modules in `/sys/module` (`kvm`, `kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub kvm_modules: BTreeSet<String>,
    /// `vmx` or `svm` appears in the flags of `/proc/cpuinfo`.
    pub hw_virt_flag: bool,
}

impl HostFacts {
    /// Reads the facts from `dev_kvm`, the `sys_module` folder and `cpuinfo`.
    pub fn read(dev_kvm: &Path, sys_module: &Path, cpuinfo: &Path) -> Self {
        let kvm_modules = ["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"]
            .into_iter()
            .filter(|name| sys_module.join(name).exists())
            .map(String::from)
            .collect();
        let cpuinfo = std::fs::read_to_string(cpuinfo).unwrap_or_default();
        Self { dev_kvm: dev_kvm.exists(), kvm_modules, hw_virt_flag: has_hw_virt_flag(&cpuinfo) }
    }

    /// The facts of this machine.
    pub fn of_this_host() -> Self {
        Self::read(Path::new("/dev/kvm"), Path::new("/sys/module"), Path::new("/proc/cpuinfo"))
    }

    /// `Ok(module)` when `/dev/kvm` is hardware KVM (before the probe boot),
    /// else why not.
    pub fn hardware_kvm(&self) -> Result<&'static str, String> {
        if !self.dev_kvm {
            return Err("no /dev/kvm".into());
        }
        let module = ["kvm_intel", "kvm_amd"].into_iter().find(|m| self.kvm_modules.contains(*m));
        match module {
            Some(module) if self.hw_virt_flag => Ok(module),
            Some(module) => {
                Err(format!("{module} is loaded but /proc/cpuinfo shows no vmx/svm flag"))
            }
            None if self.kvm_modules.contains("kvm_pvm") => {
                Err("/dev/kvm is kvm_pvm, a software hypervisor".into())
            }
            None => Err("/dev/kvm is not backed by kvm_intel or kvm_amd".into()),
        }
    }
}

/// Whether a `flags` line of `/proc/cpuinfo` text has `vmx` or `svm`.
pub fn has_hw_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .filter_map(|line| line.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|flag| flag == "vmx" || flag == "svm"))
}

/// The accelerator picked and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelDecision {
    pub accel: Accel,
    pub reason: String,
}

impl AccelDecision {
    /// The line the runner always prints.
    pub fn line(&self) -> String {
        format!("runner: accel {}: {}", self.accel.describe(), self.reason)
    }
}

/// Picks the accelerator for `choice`. `probe` boots a tiny guest under KVM
/// (called only when KVM is a candidate) and says why it failed.
pub fn choose(
    choice: AccelChoice,
    facts: &HostFacts,
    probe: &mut dyn FnMut() -> Result<(), String>,
) -> Result<AccelDecision, String> {
    let decision = |accel, reason: String| Ok(AccelDecision { accel, reason });
    match choice {
        AccelChoice::Tcg => decision(Accel::Tcg, "requested".into()),
        AccelChoice::Icount => {
            decision(Accel::Icount, "requested (deterministic instruction counting)".into())
        }
        AccelChoice::Auto => match facts.hardware_kvm() {
            Err(why) => decision(Accel::Tcg, why),
            Ok(module) => match probe() {
                Ok(()) => {
                    decision(Accel::Kvm, format!("hardware KVM ({module}), probe boot works"))
                }
                Err(why) => decision(
                    Accel::Tcg,
                    format!("{module} is loaded but the KVM probe boot failed: {why}"),
                ),
            },
        },
        AccelChoice::Kvm => {
            if !facts.dev_kvm {
                return Err("--accel kvm: there is no /dev/kvm (use --accel tcg or auto)".into());
            }
            probe().map_err(|why| {
                format!("--accel kvm: the KVM probe boot failed: {why} (use --accel tcg or auto)")
            })?;
            match facts.hardware_kvm() {
                Ok(module) => decision(
                    Accel::Kvm,
                    format!("requested; hardware KVM ({module}), probe boot works"),
                ),
                Err(why) => decision(
                    Accel::Kvm,
                    format!("requested, but {why}: guests may run 100-1000x slower than under TCG"),
                ),
            }
        }
    }
}

/// A 64 KiB firmware image whose reset vector writes 0x10 to the debug-exit
/// port: QEMU exits with status 33 once the guest has run real instructions.
fn probe_firmware() -> Vec<u8> {
    let mut image = vec![0xf4_u8; 64 * 1024]; // hlt
    // At 0xffff0 (the reset vector, real mode): mov al, 0x10; out 0xf4, al; hlt; jmp $-1
    image[0xfff0..0xfff7].copy_from_slice(&[0xb0, 0x10, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    image
}

/// The QEMU arguments of a probe boot under `accel` with `firmware`.
pub fn probe_args(accel: Accel, firmware: &Path) -> Vec<String> {
    let mut args: Vec<String> =
        ["-M", "microvm", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(accel.qemu_args().iter().map(|s| s.to_string()));
    args.extend(
        ["-m", "16M", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-bios"].map(String::from),
    );
    args.push(firmware.display().to_string());
    args
}

/// Boots the probe firmware under `accel`; `Ok` when QEMU exits with 33
/// within `limit`.
pub fn probe_boot(accel: Accel, limit: Duration) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let firmware = dir.path().join("probe.bin");
    std::fs::write(&firmware, probe_firmware())
        .map_err(|e| format!("cannot write {}: {e}", firmware.display()))?;
    let mut child = Command::new(crate::QEMU)
        .args(probe_args(accel, &firmware))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", crate::QEMU))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let stderr = child.wait_with_output().map(|o| o.stderr).unwrap_or_default();
                let said = String::from_utf8_lossy(&stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return match status.code() {
                    Some(33) => Ok(()),
                    Some(code) if said.is_empty() => Err(format!("QEMU exited with status {code}")),
                    Some(code) => Err(format!("QEMU exited with status {code}: {said}")),
                    None => Err("QEMU was killed by a signal".into()),
                };
            }
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no exit within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dev_kvm: bool, modules: &[&str], hw_virt_flag: bool) -> HostFacts {
        HostFacts {
            dev_kvm,
            kvm_modules: modules.iter().map(|m| m.to_string()).collect(),
            hw_virt_flag,
        }
    }

    fn probe_ok() -> Result<(), String> {
        Ok(())
    }

    fn probe_fails() -> Result<(), String> {
        Err("QEMU exited with status 1: failed to set MSR 0x10a".into())
    }

    fn never_probe() -> Result<(), String> {
        panic!("the probe must not run here")
    }

    #[test]
    fn reads_facts_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("module");
        for m in ["kvm", "kvm_pvm", "usbcore"] {
            std::fs::create_dir_all(modules.join(m)).unwrap();
        }
        let cpuinfo = dir.path().join("cpuinfo");
        std::fs::write(&cpuinfo, "processor\t: 0\nflags\t\t: fpu sse2 x2apic hypervisor\n")
            .unwrap();
        let dev_kvm = dir.path().join("kvm");
        std::fs::write(&dev_kvm, "").unwrap();
        let read = HostFacts::read(&dev_kvm, &modules, &cpuinfo);
        assert_eq!(read, facts(true, &["kvm", "kvm_pvm"], false));
        assert_eq!(read.hardware_kvm().unwrap_err(), "/dev/kvm is kvm_pvm, a software hypervisor");

        std::fs::write(&cpuinfo, "flags\t\t: fpu svm sse2\n").unwrap();
        std::fs::create_dir_all(modules.join("kvm_amd")).unwrap();
        let read = HostFacts::read(&dir.path().join("absent"), &modules, &cpuinfo);
        assert_eq!(read, facts(false, &["kvm", "kvm_amd", "kvm_pvm"], true));
    }

    #[test]
    fn cpu_flags() {
        assert!(has_hw_virt_flag("flags\t: fpu vmx sse\n"));
        assert!(has_hw_virt_flag("vendor\t: x\nflags\t: fpu svm\n"));
        assert!(!has_hw_virt_flag("flags\t: fpu svm_lock vmxx\n"));
        assert!(!has_hw_virt_flag("model name\t: vmx svm\n"));
        assert!(!has_hw_virt_flag(""));
    }

    #[test]
    fn auto_without_dev_kvm_is_tcg() {
        let d = choose(AccelChoice::Auto, &facts(false, &["kvm_intel"], true), &mut never_probe)
            .unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert_eq!(d.line(), "runner: accel tcg (multi-threaded): no /dev/kvm");
    }

    #[test]
    fn auto_with_kvm_pvm_is_tcg() {
        let d =
            choose(AccelChoice::Auto, &facts(true, &["kvm", "kvm_pvm"], false), &mut never_probe)
                .unwrap();
        assert_eq!(
            d.line(),
            "runner: accel tcg (multi-threaded): /dev/kvm is kvm_pvm, a software hypervisor"
        );
    }

    #[test]
    fn auto_with_hardware_kvm_probes() {
        let d = choose(AccelChoice::Auto, &facts(true, &["kvm", "kvm_amd"], true), &mut probe_ok)
            .unwrap();
        assert_eq!(d.accel, Accel::Kvm);
        assert_eq!(d.line(), "runner: accel kvm: hardware KVM (kvm_amd), probe boot works");

        let d =
            choose(AccelChoice::Auto, &facts(true, &["kvm", "kvm_intel"], true), &mut probe_fails)
                .unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(
            d.reason.contains("kvm_intel is loaded but the KVM probe boot failed: QEMU exited"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn auto_without_the_cpu_flag_or_the_module_is_tcg() {
        let d =
            choose(AccelChoice::Auto, &facts(true, &["kvm", "kvm_intel"], false), &mut never_probe)
                .unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("no vmx/svm"));
        let d = choose(AccelChoice::Auto, &facts(true, &["kvm"], true), &mut never_probe).unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("not backed by kvm_intel or kvm_amd"));
    }

    #[test]
    fn explicit_kvm() {
        let error =
            choose(AccelChoice::Kvm, &facts(false, &[], false), &mut never_probe).unwrap_err();
        assert!(error.contains("no /dev/kvm"));
        let error = choose(AccelChoice::Kvm, &facts(true, &["kvm_amd"], true), &mut probe_fails)
            .unwrap_err();
        assert!(error.contains("probe boot failed"));
        let d = choose(AccelChoice::Kvm, &facts(true, &["kvm_amd"], true), &mut probe_ok).unwrap();
        assert_eq!(d.accel, Accel::Kvm);
        // Honoured on kvm_pvm too, with a warning.
        let d = choose(AccelChoice::Kvm, &facts(true, &["kvm_pvm"], false), &mut probe_ok).unwrap();
        assert_eq!(d.accel, Accel::Kvm);
        assert!(d.reason.contains("kvm_pvm") && d.reason.contains("slower"), "{}", d.reason);
    }

    #[test]
    fn explicit_tcg_and_icount_never_probe() {
        let kvm = facts(true, &["kvm_intel"], true);
        assert_eq!(choose(AccelChoice::Tcg, &kvm, &mut never_probe).unwrap().accel, Accel::Tcg);
        let d = choose(AccelChoice::Icount, &kvm, &mut never_probe).unwrap();
        assert_eq!(d.accel, Accel::Icount);
        assert!(d.line().starts_with("runner: accel icount"));
    }

    #[test]
    fn accelerator_arguments() {
        assert_eq!(Accel::Kvm.qemu_args(), ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]);
        assert_eq!(Accel::Tcg.qemu_args(), ["-accel", "tcg,thread=multi", "-cpu", "max"]);
        assert_eq!(
            Accel::Icount.qemu_args(),
            ["-accel", "tcg,thread=single", "-icount", "shift=0,sleep=off", "-cpu", "max"]
        );
    }

    #[test]
    fn probe_firmware_starts_at_the_reset_vector() {
        let image = probe_firmware();
        assert_eq!(image.len(), 65536);
        assert_eq!(&image[0xfff0..0xfff4], &[0xb0, 0x10, 0xe6, 0xf4]);
        let args = probe_args(Accel::Kvm, Path::new("/tmp/p.bin"));
        assert!(args.windows(2).any(|w| w == ["-bios", "/tmp/p.bin"]));
        assert!(args.windows(2).any(|w| w == ["-cpu", "host,-arch-capabilities"]));
    }

    /// The probe mechanism itself, under TCG (needs QEMU; skipped without it).
    #[test]
    fn probe_boot_works_under_tcg() {
        if crate::find_in_path(crate::QEMU).is_none() {
            eprintln!("skipped: no {}", crate::QEMU);
            return;
        }
        probe_boot(Accel::Tcg, Duration::from_secs(30)).unwrap();
    }
}
