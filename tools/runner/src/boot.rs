//! One boot: start QEMU, stream and keep its serial lines, wait for it to end
//! or for the time limit (then ask the kernel for its NMI dump, read it for a
//! short grace period, and kill QEMU), and report what happened. This is the
//! building block of `runner` and of any tool that boots many times
//! (benchmarks).
use std::{
    ffi::OsString,
    io::{Read, Write},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use crate::{
    loaderwatch::{LoaderFailure, LoaderWatch},
    nmidump::{self, NmiDump},
    outcome::Verdict,
    qemu::Machine,
    serial::{self, Record},
};

/// What to boot and how to watch it.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The QEMU binary.
    pub qemu: OsString,
    pub machine: Machine,
    /// Kill QEMU after this long; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Print each serial line to stdout as it arrives.
    pub echo: bool,
    /// Where [`BootOutcome::boot_line_at`] is measured from (e.g. the
    /// runner's start).
    pub epoch: Instant,
}

impl BootConfig {
    /// A configuration for `machine` with the default QEMU, echo off, times
    /// measured from now.
    pub fn new(machine: Machine, timeout: Option<Duration>) -> Self {
        Self { qemu: crate::QEMU.into(), machine, timeout, echo: false, epoch: Instant::now() }
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuStatus {
    /// QEMU exited with this status (the kernel's verdict if 33, 35, 37, 39).
    Exited(i32),
    /// A signal ended QEMU (not the runner's timeout).
    Killed,
    /// The runner killed QEMU when the time limit ran out.
    TimedOut,
    /// The runner killed QEMU when the bootloader failed
    /// ([`BootOutcome::loader_failure`] says how).
    LoaderFailed,
}

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    pub status: QemuStatus,
    /// Every serial line, without its line ending.
    pub lines: Vec<String>,
    /// What QEMU wrote to stderr (also forwarded to the runner's stderr).
    pub stderr: String,
    /// From QEMU's start to its end.
    pub duration: Duration,
    /// When the `BOOT` line arrived, measured from [`BootConfig::epoch`].
    pub boot_line_at: Option<Duration>,
    /// On a timeout: whether the kernel's NMI dump was asked for and came.
    pub nmi_dump: NmiDump,
    /// Why the bootloader (Limine, on ISO boots) never handed over, when
    /// the runner stopped the boot for it.
    pub loader_failure: Option<LoaderFailure>,
}

impl BootOutcome {
    /// Why the boot did not succeed, for the `runner: ` line (`None` for
    /// success); a timeout says what came of the NMI dump.
    pub fn reason(&self, timeout: Option<Duration>) -> Option<String> {
        if let Some(failure) = &self.loader_failure {
            return Some(failure.to_string());
        }
        let reason = Verdict::of(self.status).reason(&self.lines, &self.stderr, timeout)?;
        Some(match self.nmi_dump.note() {
            Some(note) => format!("{reason} ({note})"),
            None => reason,
        })
    }
}

/// Boots `config.machine` once. Errors only when QEMU cannot be started.
pub fn boot(config: &BootConfig) -> std::io::Result<BootOutcome> {
    boot_with(config, &mut |_| {})
}

/// [`boot`], also calling `on_line` with each serial line as it arrives.
pub fn boot_with(
    config: &BootConfig,
    on_line: &mut dyn FnMut(&str),
) -> std::io::Result<BootOutcome> {
    let start = Instant::now();
    let mut child = Command::new(&config.qemu)
        .args(config.machine.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let _tracked = crate::cleanup::track_child(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let (sender, receiver) = mpsc::channel::<Serial>();
    let reader = thread::spawn(move || read_serial(stdout, &sender));
    let stderr_forwarder = thread::spawn(move || forward_stderr(stderr));

    let deadline = config.timeout.map(|limit| start + limit);
    // Under --gdb QEMU waits, halted, for the debugger: no watch then.
    let mut watch = (!config.machine.gdb)
        .then(|| LoaderWatch::for_media(&config.machine.media, start))
        .flatten();
    let mut lines = Vec::new();
    let mut boot_line_at = None;
    let mut take = |line: String| {
        if boot_line_at.is_none() && matches!(serial::parse(&line), Record::Boot(_)) {
            boot_line_at = Some(config.epoch.elapsed());
        }
        if config.echo {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        on_line(&line);
        lines.push(line);
    };
    let mut timed_out = false;
    let mut loader_failure = None;
    let mut unfinished = String::new();
    loop {
        let wake =
            [deadline, watch.as_ref().and_then(LoaderWatch::deadline)].into_iter().flatten().min();
        let received = match wake {
            Some(wake) => receiver.recv_timeout(wake.saturating_duration_since(Instant::now())),
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        let failure = match (&received, watch.as_mut()) {
            (Ok(Serial::Line(line)), Some(watch)) => watch.observe(line, true, now),
            (Ok(Serial::Unfinished(text)), Some(watch)) => watch.observe(text, false, now),
            (Err(RecvTimeoutError::Timeout), Some(watch)) => watch.check(now, &unfinished),
            _ => None,
        };
        match received {
            Ok(Serial::Line(line)) => {
                unfinished.clear();
                take(line);
            }
            Ok(Serial::Unfinished(text)) => unfinished = text,
            Err(RecvTimeoutError::Timeout) if deadline.is_some_and(|deadline| now >= deadline) => {
                timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if failure.is_some() {
            loader_failure = failure;
            break;
        }
    }
    let nmi_dump = match &config.machine.monitor {
        Some(socket) if timed_out => ask_for_nmi_dump(socket, &receiver, &mut take),
        _ => NmiDump::NotRequested,
    };
    let stop_now = timed_out || loader_failure.is_some();
    let status =
        match wait_until(&mut child, if stop_now { Some(Instant::now()) } else { deadline })? {
            Some(status) => status_of(status),
            None if loader_failure.is_some() => QemuStatus::LoaderFailed,
            None => QemuStatus::TimedOut,
        };
    // QEMU is gone, so its pipes are closed and both threads end.
    let _ = reader.join();
    let stderr = stderr_forwarder.join().unwrap_or_default();
    // Lines the reader sent after the loop ended (an unfinished last line
    // comes as a line once QEMU's output closed).
    for event in receiver.try_iter() {
        if let Serial::Line(line) = event {
            take(line);
        }
    }
    Ok(BootOutcome {
        status,
        lines,
        stderr,
        duration: start.elapsed(),
        boot_line_at,
        nmi_dump,
        loader_failure,
    })
}

/// What the serial reader hands over.
enum Serial {
    /// A line, without its line ending.
    Line(String),
    /// The text of the line not yet ended, whenever more of it came (a
    /// bootloader may never end its line: the UEFI console positions the
    /// cursor instead).
    Unfinished(String),
}

/// Reads QEMU's stdout (the serial port) into `sender` until it closes;
/// text after the last line ending comes as a last line.
fn read_serial(mut stdout: impl Read, sender: &mpsc::Sender<Serial>) {
    let text =
        |bytes: &[u8]| String::from_utf8_lossy(bytes).trim_end_matches(['\n', '\r']).to_string();
    let mut pending = Vec::new();
    let mut chunk = [0_u8; 4096];
    while let Ok(n @ 1..) = stdout.read(&mut chunk) {
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if sender.send(Serial::Line(text(&line))).is_err() {
                return;
            }
        }
        if !pending.is_empty() && sender.send(Serial::Unfinished(text(&pending))).is_err() {
            return;
        }
    }
    if !pending.is_empty() {
        let _ = sender.send(Serial::Line(text(&pending)));
    }
}

/// After a timeout, with QEMU still running: asks for the kernel's NMI dump
/// through QMP `socket` and hands each serial line that comes within the
/// grace period to `take`, stopping early at the dump's end marker.
fn ask_for_nmi_dump(
    socket: &Path,
    receiver: &Receiver<Serial>,
    take: &mut dyn FnMut(String),
) -> NmiDump {
    if let Err(why) = nmidump::inject_nmi(socket) {
        return NmiDump::RequestFailed(why);
    }
    let grace_end = Instant::now() + nmidump::GRACE;
    let mut dump_lines = Vec::new();
    while let Ok(event) = receiver.recv_timeout(grace_end.saturating_duration_since(Instant::now()))
    {
        let Serial::Line(line) = event else { continue };
        let end = nmidump::is_end_marker(&line);
        dump_lines.push(line.clone());
        take(line);
        if end {
            break;
        }
    }
    NmiDump::of(&dump_lines)
}

/// Waits for `child` until `deadline`; kills it then and returns `None`.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> std::io::Result<Option<ExitStatus>> {
    let Some(deadline) = deadline else {
        return child.wait().map(Some);
    };
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // It may have exited just now: then kill fails and wait reaps it.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn status_of(status: ExitStatus) -> QemuStatus {
    status.code().map_or(QemuStatus::Killed, QemuStatus::Exited)
}

/// Copies QEMU's stderr to ours as it comes and returns it.
fn forward_stderr(mut stderr: impl Read) -> String {
    let mut kept = Vec::new();
    let mut buffer = [0_u8; 4096];
    while let Ok(n @ 1..) = stderr.read(&mut buffer) {
        let mut ours = std::io::stderr().lock();
        let _ = ours.write_all(&buffer[..n]);
        let _ = ours.flush();
        kept.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accel::Accel,
        qemu::{Firmware, Media},
    };

    /// A stand-in for QEMU: a shell script that ignores QEMU's arguments.
    fn fake_qemu(dir: &std::path::Path, script: &str) -> OsString {
        let path = dir.join("fake-qemu");
        // A child shell writes the script: were this process to hold a
        // writable descriptor of it, a fork in another test's thread could
        // inherit that descriptor, and executing the script would then fail
        // with ETXTBSY ("Text file busy"), as it once did in CI.
        let written = std::process::Command::new("sh")
            .args(["-c", r#"printf '%s\n' "$1" > "$2" && chmod 755 "$2""#, "sh"])
            .arg(format!("#!/bin/sh\n{script}"))
            .arg(&path)
            .status()
            .unwrap();
        assert!(written.success(), "writing the fake QEMU {}: {written}", path.display());
        path.into()
    }

    fn config(qemu: OsString, timeout: Option<Duration>) -> BootConfig {
        let machine = Machine {
            media: Media::Pvh { loader: "l".into(), kernel: "k".into(), cmdline: String::new() },
            accel: Accel::Tcg,
            smp: 1,
            mem_mib: 64,
            gdb: false,
            monitor: None,
            extra: vec![],
        };
        BootConfig { qemu, ..BootConfig::new(machine, timeout) }
    }

    #[test]
    fn captures_lines_status_and_boot_time() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(
            dir.path(),
            "printf 'hello\\r\\nBOOT {\"cpus\":1}\\n'; echo oops >&2; printf 'last line without newline'; exit 35",
        );
        let mut seen = Vec::new();
        let outcome = boot_with(&config(qemu, Some(Duration::from_secs(20))), &mut |l| {
            seen.push(l.to_string())
        })
        .unwrap();
        assert_eq!(outcome.status, QemuStatus::Exited(35));
        assert_eq!(outcome.lines, ["hello", r#"BOOT {"cpus":1}"#, "last line without newline"]);
        assert_eq!(seen, outcome.lines);
        assert_eq!(outcome.stderr, "oops\n");
        assert!(outcome.boot_line_at.is_some());
    }

    #[test]
    fn kills_qemu_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(dir.path(), "echo started; exec sleep 30");
        let outcome = boot(&config(qemu, Some(Duration::from_millis(300)))).unwrap();
        assert_eq!(outcome.status, QemuStatus::TimedOut);
        assert_eq!(outcome.lines, ["started"]);
        assert!(outcome.boot_line_at.is_none());
        assert!(outcome.duration < Duration::from_secs(10), "{:?}", outcome.duration);
    }

    #[test]
    fn a_timeout_asks_for_the_nmi_dump_and_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        // The fake QMP server creates `flag` on inject-nmi; the fake QEMU then
        // prints a dump and hangs again.
        let flag = dir.path().join("nmi");
        let created = flag.clone();
        let _server = crate::nmidump::tests::fake_qmp(socket.clone(), move |command| {
            if command == "inject-nmi" {
                std::fs::write(&created, "").unwrap();
            }
            crate::nmidump::tests::qemu_like(command)
        });
        let qemu = fake_qemu(
            dir.path(),
            &format!(
                "echo started; while [ ! -e {flag} ]; do sleep 0.02; done
echo 'NMIDUMP {{\"cpu\":0,\"answered\":true,\"holds\":[]}}'
echo 'NMIDUMP {{\"done\":true,\"cpus\":1,\"answered\":1}}'
exec sleep 30",
                flag = flag.display()
            ),
        );
        let mut config = config(qemu, Some(Duration::from_millis(300)));
        config.machine.monitor = Some(socket);
        let outcome = boot(&config).unwrap();
        assert_eq!(outcome.status, QemuStatus::TimedOut);
        assert_eq!(outcome.nmi_dump, NmiDump::Printed { cpus: 1, answered: 1 });
        assert_eq!(outcome.lines.len(), 3, "{:?}", outcome.lines);
        // The end marker ends the grace period early.
        assert!(outcome.duration < Duration::from_millis(1500), "{:?}", outcome.duration);
        assert_eq!(
            outcome.reason(Some(Duration::from_secs(1))).unwrap(),
            "timeout after 1 s (NMI dump requested and printed: 1 of 1 CPUs answered)"
        );
    }

    #[test]
    fn a_timeout_without_qmp_says_the_dump_was_not_requested() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(dir.path(), "echo started; exec sleep 30");
        let mut config = config(qemu, Some(Duration::from_millis(300)));
        config.machine.monitor = Some(dir.path().join("no-such.sock"));
        let outcome = boot(&config).unwrap();
        assert_eq!(outcome.status, QemuStatus::TimedOut);
        assert!(
            matches!(&outcome.nmi_dump, NmiDump::RequestFailed(why) if why.contains("cannot connect")),
            "{:?}",
            outcome.nmi_dump
        );
        assert!(outcome.reason(None).unwrap().contains("(NMI dump not requested: cannot connect"));
    }

    #[test]
    fn a_silent_hang_times_out_too() {
        let dir = tempfile::tempdir().unwrap();
        // Closes stdout, then hangs: the wait for the exit must time out as well.
        let qemu = fake_qemu(dir.path(), "exec >/dev/null; exec sleep 30");
        let outcome = boot(&config(qemu, Some(Duration::from_millis(300)))).unwrap();
        assert_eq!(outcome.status, QemuStatus::TimedOut);
    }

    fn iso_config(qemu: OsString, timeout: Option<Duration>) -> BootConfig {
        let mut config = config(qemu, timeout);
        config.machine.media = Media::Iso { iso: "k.iso".into(), firmware: Firmware::Bios };
        config
    }

    #[test]
    fn a_limine_panic_stops_an_iso_boot_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(
            dir.path(),
            // One write, so that all of it is in the pipe before the
            // runner stops the fake on the panic line (two `printf`s raced
            // with that stop on a loaded machine).
            r"printf '\033[31mPANIC\033[37;1m\033[0m: limine: KERNEL_PATH not specified\r\nStacktrace:\r\nEnd of trace. Press a key to return to menu.'
exec sleep 30",
        );
        // A long timeout: only the watch (not the timeout, not the fake's
        // own exit after 30 s) gives `LoaderFailed`.
        let outcome = boot(&iso_config(qemu, Some(Duration::from_secs(600)))).unwrap();
        assert_eq!(outcome.status, QemuStatus::LoaderFailed);
        assert_eq!(
            outcome.reason(Some(Duration::from_secs(600))).unwrap(),
            "Limine stopped with an error before starting the kernel: limine: KERNEL_PATH not specified"
        );
        // The unfinished last line is kept as a line.
        assert_eq!(outcome.lines.last().unwrap(), "End of trace. Press a key to return to menu.");
    }

    #[test]
    fn a_limine_boot_that_goes_on_is_not_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(
            dir.path(),
            "echo 'limine: Loading kernel `boot():/boot/kernel`...'; echo 'BOOT {\"cpus\":1}'; exit 33",
        );
        let outcome = boot(&iso_config(qemu, Some(Duration::from_secs(20)))).unwrap();
        assert_eq!(outcome.status, QemuStatus::Exited(33));
        assert_eq!(outcome.loader_failure, None);
    }

    #[test]
    fn under_gdb_an_iso_boot_is_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(dir.path(), "printf 'PANIC: limine: x\n'; exec sleep 30");
        let mut config = iso_config(qemu, Some(Duration::from_millis(300)));
        config.machine.gdb = true;
        let outcome = boot(&config).unwrap();
        assert_eq!(outcome.status, QemuStatus::TimedOut);
        assert_eq!(outcome.loader_failure, None);
    }

    #[test]
    fn a_signal_is_not_a_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = fake_qemu(dir.path(), "kill -9 $$");
        assert_eq!(boot(&config(qemu, None)).unwrap().status, QemuStatus::Killed);
    }

    #[test]
    fn a_missing_qemu_is_an_error() {
        assert!(boot(&config("/nonexistent/qemu".into(), None)).is_err());
    }
}
