//! A whole `runner` invocation: pick the accelerator, prepare the boot media,
//! boot (again after each `should_panic` test), and report.
use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};

use crate::{
    EXIT_RUNNER_ERROR, QEMU,
    accel::{self, Accel, AccelDecision, HostFacts},
    boot::{BootConfig, BootOutcome, boot},
    cleanup::Tracked,
    cli::{AccelChoice, BootMode, Cli, kernel_cmdline, with_kernel_arg},
    iso::{self, Limine},
    loader, nmidump,
    outcome::{EXIT_FAILURE, Verdict},
    qemu::{Firmware, GDB_PORT, Machine, Media, shell_line, shell_quote},
    serial,
    testsummary::TestSummary,
};

/// How long the KVM probe boot may take.
pub(crate) const PROBE_LIMIT: Duration = Duration::from_secs(20);
/// Serial lines shown again after a timeout.
const TAIL_LINES: usize = 20;

/// What every run shares before its first boot: QEMU is there, the
/// accelerator is chosen (and announced), the boot media are prepared, and a
/// scratch folder exists that is removed however the runner ends.
pub(crate) struct HostSetup {
    pub decision: AccelDecision,
    pub source: MediaSource,
    pub work: tempfile::TempDir,
    _tracked: Tracked,
}

impl HostSetup {
    /// Checks for QEMU, chooses the accelerator as `accel` asks (printing
    /// the `runner: accel ...` line), prepares the media for `boot` and a
    /// scratch folder named `scratch_prefix...`.
    pub(crate) fn prepare(
        accel: AccelChoice,
        boot: BootMode,
        scratch_prefix: &str,
    ) -> anyhow::Result<Self> {
        if crate::find_in_path(QEMU).is_none() {
            return Err(anyhow!(
                "{QEMU} is not on PATH: install the Debian package qemu-system-x86"
            ));
        }
        let decision = accel::choose(accel, &HostFacts::of_this_host(), &mut || {
            accel::probe_boot(Accel::Kvm, PROBE_LIMIT)
        })
        .map_err(|e| anyhow!(e))?;
        println!("{}", decision.line());
        let source = MediaSource::prepare(boot, &loader::workspace_root())?;
        let work = tempfile::Builder::new()
            .prefix(scratch_prefix)
            .tempdir()
            .context("cannot create a temporary folder")?;
        let tracked = crate::cleanup::track_folder(work.path().to_path_buf());
        Ok(Self { decision, source, work, _tracked: tracked })
    }

    /// The QMP socket of boot number `index` in the scratch folder (through
    /// it a timeout asks for the kernel's NMI dump); `None` if the path is
    /// too long for a Unix socket.
    pub(crate) fn monitor_socket(&self, index: usize) -> Option<PathBuf> {
        let socket = self.work.path().join(format!("qmp-{index}.sock"));
        (socket.as_os_str().len() <= nmidump::MAX_SOCKET_PATH_BYTES).then_some(socket)
    }
}

/// Runs `cli` and returns the process exit code; `epoch` is the runner's start.
pub fn run(cli: &Cli, epoch: Instant) -> i32 {
    crate::cleanup::install();
    match run_boots(cli, epoch) {
        Ok(code) => code,
        Err(error) => {
            let _ = std::io::stdout().flush();
            eprintln!("runner: error: {error:#}");
            EXIT_RUNNER_ERROR
        }
    }
}

/// Where each boot's media come from.
pub(crate) enum MediaSource {
    Pvh { loader: PathBuf },
    Limine { limine: Limine, conf: String, uefi: bool },
}

impl MediaSource {
    /// Builds the PVH loader, or finds the Limine release and `limine.conf`.
    pub(crate) fn prepare(mode: BootMode, root: &Path) -> anyhow::Result<Self> {
        match mode {
            BootMode::Pvh => Ok(Self::Pvh { loader: loader::pvh_loader(root)? }),
            BootMode::LimineBios | BootMode::LimineUefi => {
                let bios = mode == BootMode::LimineBios;
                let dir = iso::limine_dir(std::env::var_os(iso::LIMINE_DIR_ENV).as_deref(), root);
                let limine = iso::find_limine(Some(dir.as_os_str()), bios)
                    .map_err(|e| anyhow!("--boot {}: {e}", mode.name()))?;
                let path = std::env::var_os(iso::LIMINE_CONF_ENV)
                    .map_or_else(|| root.join("limine.conf"), PathBuf::from);
                let conf = std::fs::read_to_string(&path).with_context(|| {
                    format!("--boot {}: cannot read {}", mode.name(), path.display())
                })?;
                Ok(Self::Limine { limine, conf, uefi: !bios })
            }
        }
    }

    /// The media for one boot of `kernel` with `cmdline` (an ISO is built in `work`).
    pub(crate) fn media(&self, kernel: &Path, cmdline: &str, work: &Path) -> anyhow::Result<Media> {
        match self {
            Self::Pvh { loader } => Ok(Media::Pvh {
                loader: loader.clone(),
                kernel: kernel.to_path_buf(),
                cmdline: cmdline.to_string(),
            }),
            Self::Limine { limine, conf, uefi } => {
                std::fs::create_dir_all(work)
                    .with_context(|| format!("cannot create {}", work.display()))?;
                let conf =
                    iso::rewrite_conf(conf, cmdline).map_err(|e| anyhow!("limine.conf: {e}"))?;
                let iso = iso::build_iso(limine, kernel, &conf, work, !uefi)?;
                let firmware = if *uefi { iso::ovmf(work)? } else { Firmware::Bios };
                Ok(Media::Iso { iso, firmware })
            }
        }
    }
}

fn run_boots(cli: &Cli, epoch: Instant) -> anyhow::Result<i32> {
    let kernel = cli
        .kernel
        .canonicalize()
        .with_context(|| format!("kernel ELF {}", cli.kernel.display()))?;
    if !kernel.is_file() {
        return Err(anyhow!("kernel ELF {} is not a file", kernel.display()));
    }
    let cmdline = kernel_cmdline(&cli.kernel_args).map_err(|e| anyhow!(e))?;
    let host = HostSetup::prepare(cli.accel, cli.boot, "runner-")?;
    let timeout = cli.timeout();
    let deadline = timeout.map(|limit| Instant::now() + limit);
    let is_test = cli.is_test_binary();

    let mut summary = TestSummary::default();
    let mut boot_line_at = None;
    let mut skip = 0;
    let mut resume_problem = None;
    let last = loop {
        let boot_cmdline = if summary.boots == 0 {
            cmdline.clone()
        } else {
            with_kernel_arg(&cmdline, "test_skip", &skip.to_string())
        };
        let media = host.source.media(
            &kernel,
            &boot_cmdline,
            &host.work.path().join(format!("boot-{}", summary.boots)),
        )?;
        let machine = Machine {
            media,
            accel: host.decision.accel,
            smp: cli.smp,
            mem_mib: cli.mem().mib,
            gdb: cli.gdb,
            monitor: host.monitor_socket(summary.boots),
            extra: cli.qemu_args.clone(),
        };
        if cli.verbose {
            println!("runner: {}", shell_line(QEMU, &machine.args()));
        }
        if cli.gdb {
            println!(
                "runner: QEMU waits for gdb on :{GDB_PORT}; attach with: gdb {} -ex 'target remote :{GDB_PORT}'",
                shell_quote(&kernel.display().to_string())
            );
        }
        let config = BootConfig {
            timeout: deadline.map(|deadline| deadline.saturating_duration_since(Instant::now())),
            echo: true,
            epoch,
            ..BootConfig::new(machine, None)
        };
        let outcome = boot(&config).with_context(|| format!("cannot start {QEMU}"))?;
        boot_line_at = boot_line_at.or(outcome.boot_line_at);
        summary.add_boot(&outcome.lines, outcome.duration);
        let resume = match Verdict::of(outcome.status) {
            Verdict::Resume => serial::resume_point(&outcome.lines)
                .map(|next| (next, "a should_panic test passed".to_string())),
            // A test that declared it exhausts the heap did: its pass.
            Verdict::HeapExhausted if is_test => serial::expected_heap_exhaustion(&outcome.lines)
                .map(|expected| {
                    summary.pass_by_expected_exit(&expected);
                    let why = format!(
                        "test {:#04x} {} exhausted the heap as it declared",
                        expected.index, expected.name
                    );
                    (expected.index + 1, why)
                }),
            _ => break outcome,
        };
        match resume {
            Some((next, why)) if next > skip && summary.boots < summary.boot_limit() => {
                println!("runner: {why}; booting again with test_skip={next}");
                skip = next;
            }
            Some((next, _)) if next <= skip => {
                resume_problem =
                    Some(format!("kernel asked to resume at test {next} again (no progress)"));
                break outcome;
            }
            Some(_) => {
                resume_problem = Some(format!(
                    "kernel asked to resume after {} boots (the limit)",
                    summary.boots
                ));
                break outcome;
            }
            None => break outcome,
        }
    };
    Ok(report(is_test, &last, &summary, boot_line_at, timeout, resume_problem))
}

/// Prints the end of the run and returns the exit code.
fn report(
    is_test: bool,
    last: &BootOutcome,
    summary: &TestSummary,
    boot_line_at: Option<Duration>,
    timeout: Option<Duration>,
    resume_problem: Option<String>,
) -> i32 {
    let verdict = Verdict::of(last.status);
    let clean = verdict == Verdict::Success;
    if verdict == Verdict::Timeout {
        let tail = &last.lines[last.lines.len().saturating_sub(TAIL_LINES)..];
        println!("runner: last {} serial lines:", tail.len());
        for line in tail {
            println!("runner: | {line}");
        }
    }
    match boot_line_at {
        Some(at) => println!("runner: BOOT line after {:.2} s", at.as_secs_f64()),
        None => println!("runner: no BOOT line"),
    }
    let why = match (verdict, serial::first_panic(&last.lines)) {
        // "test 0xNN name failed: PANIC ...".
        (Verdict::Failure, Some(panic)) if is_test && summary.first_failed().is_some() => {
            Some(panic.to_string())
        }
        _ => resume_problem.or_else(|| last.reason(timeout)),
    };
    if is_test {
        if !summary.ok(clean) {
            let why = why.unwrap_or_else(|| "a test failed".to_string());
            println!("runner: {}", summary.failure_reason(&why));
        }
        for line in summary.ignored_lines() {
            println!("runner: {line}");
        }
        println!("{}", summary.closing_line(clean));
        if clean && !summary.ok(clean) { EXIT_FAILURE } else { verdict.exit_code() }
    } else {
        let seconds = summary.elapsed.as_secs_f64();
        match why {
            None => println!("runner: kernel exited: {} ({seconds:.2} s)", verdict.name()),
            Some(why) if verdict == Verdict::Timeout => println!("runner: {why}"),
            Some(why) => println!("runner: {why} (after {seconds:.2} s)"),
        }
        verdict.exit_code()
    }
}
