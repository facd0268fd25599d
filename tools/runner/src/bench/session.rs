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
    accel::{self, Accel, AccelDecision, HostFacts},
    boot::{BootConfig, BootOutcome, boot},
    cleanup::Tracked,
    cli::MemSize,
    loader,
    qemu::{Machine, shell_line},
    run::{MediaSource, PROBE_LIMIT},
};

/// Ready to boot one kernel many times.
pub struct Session {
    pub kernel: PathBuf,
    pub decision: AccelDecision,
    pub options: BootOptions,
    source: MediaSource,
    work: tempfile::TempDir,
    _tracked: Tracked,
}

impl Session {
    /// Checks the kernel and QEMU, picks the accelerator (printing the
    /// `runner: accel ...` line) and prepares the boot media.
    pub fn start(kernel: &Path, options: &BootOptions) -> anyhow::Result<Self> {
        let kernel =
            kernel.canonicalize().with_context(|| format!("kernel ELF {}", kernel.display()))?;
        if !kernel.is_file() {
            return Err(anyhow!("kernel ELF {} is not a file", kernel.display()));
        }
        if crate::find_in_path(QEMU).is_none() {
            return Err(anyhow!(
                "{QEMU} is not on PATH: install the Debian package qemu-system-x86"
            ));
        }
        let decision = accel::choose(options.accel, &HostFacts::of_this_host(), &mut || {
            accel::probe_boot(Accel::Kvm, PROBE_LIMIT)
        })
        .map_err(|e| anyhow!(e))?;
        println!("{}", decision.line());
        let source = MediaSource::prepare(options.boot, &loader::workspace_root())?;
        let work = tempfile::Builder::new()
            .prefix("runner-bench-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let tracked = crate::cleanup::track_folder(work.path().to_path_buf());
        Ok(Self { kernel, decision, options: options.clone(), source, work, _tracked: tracked })
    }

    /// The machine for boot number `index` with `smp` CPUs and `cmdline`.
    pub fn machine(&self, index: usize, smp: u32, cmdline: &str) -> anyhow::Result<Machine> {
        let media = self.source.media(&self.kernel, cmdline, &self.work_dir(index))?;
        Ok(Machine {
            media,
            accel: self.decision.accel,
            smp,
            mem_mib: self.options.mem.unwrap_or_else(|| MemSize::default_for(smp)).mib,
            gdb: false,
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
        self.work.path().join(format!("boot-{index}"))
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
