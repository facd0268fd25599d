//! What `bench` and `profile` set up once and boot many times with: the
//! checked kernel path, the accelerator (chosen and announced once), the boot
//! media source and a temporary folder; and the output folder.
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, anyhow};

use super::args::BootOptions;
use crate::{
    QEMU,
    accel::AccelDecision,
    boot::{BootConfig, BootOutcome, boot},
    cli::MemSize,
    qemu::{Machine, shell_line},
    run::HostSetup,
};

/// Ready to boot one kernel many times.
pub struct Session {
    pub kernel: PathBuf,
    pub options: BootOptions,
    host: HostSetup,
}

impl Session {
    /// The accelerator chosen for every boot of the session.
    pub fn decision(&self) -> &AccelDecision {
        &self.host.decision
    }

    /// Checks the kernel and QEMU, picks the accelerator (printing the
    /// `runner: accel ...` line) and prepares the boot media.
    pub fn start(kernel: &Path, options: &BootOptions) -> anyhow::Result<Self> {
        let kernel =
            kernel.canonicalize().with_context(|| format!("kernel ELF {}", kernel.display()))?;
        if !kernel.is_file() {
            return Err(anyhow!("kernel ELF {} is not a file", kernel.display()));
        }
        let host = HostSetup::prepare(options.accel, options.boot, "runner-bench-")?;
        Ok(Self { kernel, options: options.clone(), host })
    }

    /// The machine for boot number `index` with `smp` CPUs and `cmdline`.
    pub fn machine(&self, index: usize, smp: u32, cmdline: &str) -> anyhow::Result<Machine> {
        let media = self.host.source.media(&self.kernel, cmdline, &self.work_dir(index))?;
        Ok(Machine {
            media,
            accel: self.host.decision.accel,
            smp,
            mem_mib: self.options.mem.unwrap_or_else(|| MemSize::default_for(smp)).mib,
            gdb: false,
            monitor: self.host.monitor_socket(index),
            extra: self.options.qemu_args.clone(),
        })
    }

    /// The QEMU command line of `machine`, for `--verbose`.
    pub fn command(machine: &Machine) -> String {
        format!("runner: {}", shell_line(QEMU, &machine.args()))
    }

    /// Boots `machine` (number `index`) once, echoing serial lines if asked,
    /// within the per-boot time limit.
    pub fn boot(&self, index: usize, machine: Machine, echo: bool) -> anyhow::Result<BootOutcome> {
        let config = BootConfig {
            echo,
            epoch: Instant::now(),
            ..BootConfig::new(machine, self.options.boot_timeout())
        };
        let outcome = boot(&config).with_context(|| format!("cannot start {QEMU}"))?;
        // A Limine ISO per boot adds up over a bench.
        let _ = std::fs::remove_dir_all(self.work_dir(index));
        Ok(outcome)
    }

    fn work_dir(&self, index: usize) -> PathBuf {
        self.host.work.path().join(format!("boot-{index}"))
    }
}

/// Creates the output folder: `out`, or `bench-results/<prefix><UTC stamp>`.
pub fn output_folder(out: Option<&Path>, prefix: &str) -> anyhow::Result<PathBuf> {
    let folder = match out {
        Some(out) => out.to_path_buf(),
        None => Path::new("bench-results").join(format!(
            "{prefix}{}",
            super::conditions::utc_stamp(std::time::SystemTime::now())
        )),
    };
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create the output folder {}", folder.display()))?;
    Ok(folder)
}

/// Writes `text` to `folder/name`.
pub fn write(folder: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = folder.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
