//! From how QEMU ended to the kernel's verdict, the runner's exit code and the
//! one-line reason (`docs/interface.md`).
use std::time::Duration;

use crate::{boot::QemuStatus, serial};

/// QEMU's status for each exit code the kernel writes (`(code << 1) | 1`).
pub const QEMU_SUCCESS: i32 = 33;
pub const QEMU_FAILURE: i32 = 35;
pub const QEMU_HEAP_EXHAUSTED: i32 = 37;
pub const QEMU_TEST_RESUME: i32 = 39;

/// How the kernel's readable line about heap exhaustion begins.
const HEAP_EXHAUSTED_LINE: &str = "heap exhausted: ";

/// The runner's exit codes.
pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_HEAP_EXHAUSTED: i32 = 3;
pub const EXIT_TIMEOUT: i32 = 124;

/// What a boot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    HeapExhausted,
    /// A `should_panic` test passed: boot again to resume.
    Resume,
    /// QEMU ended without the kernel writing a verdict: its status, `None`
    /// for a signal.
    NoVerdict(Option<i32>),
    Timeout,
    /// The bootloader stopped with an error or said nothing (the runner
    /// stopped QEMU early).
    LoaderFailure,
}

impl Verdict {
    /// The verdict of QEMU's `status`.
    pub fn of(status: QemuStatus) -> Self {
        match status {
            QemuStatus::Exited(QEMU_SUCCESS) => Self::Success,
            QemuStatus::Exited(QEMU_FAILURE) => Self::Failure,
            QemuStatus::Exited(QEMU_HEAP_EXHAUSTED) => Self::HeapExhausted,
            QemuStatus::Exited(QEMU_TEST_RESUME) => Self::Resume,
            QemuStatus::Exited(other) => Self::NoVerdict(Some(other)),
            QemuStatus::Killed => Self::NoVerdict(None),
            QemuStatus::TimedOut => Self::Timeout,
            QemuStatus::LoaderFailed => Self::LoaderFailure,
        }
    }

    /// The runner's exit code when the run ends with this verdict (a
    /// `Resume` that cannot be followed is a failure).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Success => EXIT_SUCCESS,
            Self::HeapExhausted => EXIT_HEAP_EXHAUSTED,
            Self::Timeout => EXIT_TIMEOUT,
            Self::Failure | Self::Resume | Self::NoVerdict(_) | Self::LoaderFailure => EXIT_FAILURE,
        }
    }

    /// Why the run ended, for the `runner: ` line; `None` for success.
    /// `lines` and `stderr` are the last boot's; `timeout` the limit that ran out.
    pub fn reason(
        self,
        lines: &[String],
        stderr: &str,
        timeout: Option<Duration>,
    ) -> Option<String> {
        let reason = match self {
            Self::Success => return None,
            Self::Failure => match serial::first_panic(lines) {
                Some(panic) => format!("kernel reported failure: {panic}"),
                None => match lines.iter().rev().find(|line| !line.trim().is_empty()) {
                    Some(last) => format!("kernel reported failure (last serial line: {last})"),
                    None => "kernel reported failure (no serial output)".to_string(),
                },
            },
            Self::HeapExhausted => {
                match lines.iter().rev().find(|line| line.contains(HEAP_EXHAUSTED_LINE)) {
                    Some(report) => format!("kernel {}", report.trim()),
                    None => match lines.iter().rev().find(|line| !line.trim().is_empty()) {
                        Some(last) => format!("kernel heap exhausted (last serial line: {last})"),
                        None => {
                            "kernel heap exhausted (its allocation error handler ran)".to_string()
                        }
                    },
                }
            }
            Self::Resume => {
                "kernel asked to resume (QEMU status 39) without a usable TEST-RESUME line"
                    .to_string()
            }
            Self::NoVerdict(status) => {
                let mut reason = match status {
                    Some(status) => format!(
                        "QEMU exited with status {status} without a verdict from the kernel (triple fault or reset?)"
                    ),
                    None => {
                        "QEMU was killed by a signal without a verdict from the kernel".to_string()
                    }
                };
                if let Some(said) = stderr.lines().rev().find(|line| !line.trim().is_empty()) {
                    reason.push_str(&format!("; QEMU said: {}", said.trim()));
                }
                reason
            }
            Self::Timeout => format!("timeout after {} s", timeout.unwrap_or_default().as_secs()),
            Self::LoaderFailure => "the bootloader never started the kernel".to_string(),
        };
        Some(reason)
    }

    /// Short name for `runner: kernel exited: ...`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::HeapExhausted => "heap exhausted",
            Self::Resume => "resume",
            Self::NoVerdict(_) => "no verdict",
            Self::Timeout => "timeout",
            Self::LoaderFailure => "bootloader failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn status_mapping() {
        let cases = [
            (QemuStatus::Exited(33), Verdict::Success, 0),
            (QemuStatus::Exited(35), Verdict::Failure, 1),
            (QemuStatus::Exited(37), Verdict::HeapExhausted, 3),
            (QemuStatus::Exited(39), Verdict::Resume, 1),
            (QemuStatus::Exited(0), Verdict::NoVerdict(Some(0)), 1),
            (QemuStatus::Exited(1), Verdict::NoVerdict(Some(1)), 1),
            (QemuStatus::Exited(3), Verdict::NoVerdict(Some(3)), 1),
            (QemuStatus::Killed, Verdict::NoVerdict(None), 1),
            (QemuStatus::TimedOut, Verdict::Timeout, 124),
            (QemuStatus::LoaderFailed, Verdict::LoaderFailure, 1),
        ];
        for (status, verdict, code) in cases {
            assert_eq!(Verdict::of(status), verdict, "{status:?}");
            assert_eq!(verdict.exit_code(), code, "{verdict:?}");
        }
    }

    #[test]
    fn failure_quotes_the_panic() {
        let serial = lines(&["BOOT {}", "PANIC cpu=2 at kernel/src/x.rs:1:5: boom", "later"]);
        assert_eq!(
            Verdict::Failure.reason(&serial, "", None).unwrap(),
            "kernel reported failure: PANIC cpu=2 at kernel/src/x.rs:1:5: boom"
        );
        assert_eq!(
            Verdict::Failure.reason(&lines(&["boot: bad cmdline", ""]), "", None).unwrap(),
            "kernel reported failure (last serial line: boot: bad cmdline)"
        );
        assert_eq!(
            Verdict::Failure.reason(&[], "", None).unwrap(),
            "kernel reported failure (no serial output)"
        );
    }

    #[test]
    fn other_reasons() {
        assert_eq!(Verdict::Success.reason(&[], "", None), None);
        assert_eq!(
            Verdict::NoVerdict(Some(0)).reason(&[], "", None).unwrap(),
            "QEMU exited with status 0 without a verdict from the kernel (triple fault or reset?)"
        );
        assert_eq!(
            Verdict::NoVerdict(Some(1))
                .reason(&[], "qemu-system-x86_64: -initrd k: error\n\n", None)
                .unwrap(),
            "QEMU exited with status 1 without a verdict from the kernel (triple fault or reset?); \
             QEMU said: qemu-system-x86_64: -initrd k: error"
        );
        assert_eq!(
            Verdict::Timeout.reason(&[], "", Some(Duration::from_secs(120))).unwrap(),
            "timeout after 120 s"
        );
        assert!(Verdict::HeapExhausted.reason(&[], "", None).unwrap().contains("heap exhausted"));
        let serial = lines(&[
            "heap exhausted: cpu 1 could not allocate 64 bytes aligned to 8 (alloc=slab, ...)",
            r#"HEAPSTATS {"alloc":"slab"}"#,
        ]);
        assert_eq!(
            Verdict::HeapExhausted.reason(&serial, "", None).unwrap(),
            "kernel heap exhausted: cpu 1 could not allocate 64 bytes aligned to 8 (alloc=slab, ...)"
        );
    }
}
