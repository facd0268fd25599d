//! The conditions a bench or profile ran under (host, accelerator, QEMU,
//! kernel commit, command line, date), the warnings they call for, and UTC
//! time stamps.
use std::{
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::accel::{Accel, AccelDecision};

/// What conditions.json holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conditions {
    pub date_utc: String,
    pub command_line: String,
    pub kernel: String,
    pub kernel_commit: String,
    pub host_cpu: String,
    pub host_cores: usize,
    pub accel: String,
    pub accel_reason: String,
    pub qemu_version: String,
    pub warnings: Vec<String>,
}

impl Conditions {
    /// Gathers the facts of this host for a run whose largest guest has
    /// `max_cpus` CPUs.
    pub fn gather(kernel: &Path, decision: &AccelDecision, max_cpus: u32) -> Self {
        let host_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            date_utc: utc_date(SystemTime::now()),
            command_line: command_line(),
            kernel: kernel.display().to_string(),
            kernel_commit: kernel_commit(&crate::loader::workspace_root()),
            host_cpu: host_cpu(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            host_cores,
            accel: super::records::accel_name(decision.accel).into(),
            accel_reason: decision.reason.clone(),
            qemu_version: qemu_version(),
            warnings: warnings(max_cpus, host_cores, decision.accel),
        }
    }

    /// The Markdown lines at the top of summary.md: the facts, then the warnings.
    pub fn markdown(&self) -> String {
        let mut text = format!(
            "- date: {}\n- kernel: `{}` at commit {}\n- host: {}, {} cores\n\
             - accelerator: {} ({})\n- QEMU: {}\n- command: `{}`\n",
            self.date_utc,
            self.kernel,
            self.kernel_commit,
            self.host_cpu,
            self.host_cores,
            self.accel,
            self.accel_reason,
            self.qemu_version,
            self.command_line,
        );
        if !self.warnings.is_empty() {
            text.push('\n');
            for warning in &self.warnings {
                text.push_str(&format!("> **Warning:** {warning}\n>\n"));
            }
            text.truncate(text.len() - 2);
        }
        text
    }
}

/// The warnings a run deserves: oversubscribed host cores, TCG timings,
/// instruction counts under icount.
pub fn warnings(max_cpus: u32, host_cores: usize, accel: Accel) -> Vec<String> {
    let mut warnings = Vec::new();
    if max_cpus as usize > host_cores {
        warnings.push(format!(
            "oversubscription: {max_cpus} vCPUs on {host_cores} host cores: vCPUs share host cores, \
             lock holders get preempted, figures above {host_cores} CPUs measure the host scheduler"
        ));
    }
    match accel {
        Accel::Tcg => warnings.push(
            "TCG timings do not reflect hardware; compare allocators as ratios within one run"
                .into(),
        ),
        Accel::Icount => warnings.push(
            "icount: one timestamp tick is one guest instruction, so cycles/op are \
             instructions/op and ops/s counts virtual time; compare allocators as ratios"
                .into(),
        ),
        Accel::Kvm => {}
    }
    warnings
}

/// The `model name` of the first CPU in `/proc/cpuinfo` text.
pub fn host_cpu(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map_or_else(|| "unknown CPU".into(), |(_, value)| value.trim().to_string())
}

/// The first line of `qemu-system-x86_64 --version`.
pub fn qemu_version() -> String {
    Command::new(crate::QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// `git rev-parse --short HEAD` of `root`, `-dirty` with uncommitted
/// changes to tracked files, `unknown` when git fails. The committed
/// benchmark results under `docs/benchmarks/` are outputs, not inputs of the
/// kernel: `tools/figures` rewrites them set after set, and they must not
/// mark the next set's kernel dirty.
pub fn kernel_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)docs/benchmarks",
        ]),
    ) {
        (Some(commit), Some(status)) if !commit.is_empty() => {
            if status.is_empty() {
                commit
            } else {
                format!("{commit}-dirty")
            }
        }
        _ => "unknown".into(),
    }
}

/// This process's command line, shell-quoted.
pub fn command_line() -> String {
    std::env::args().map(|arg| crate::qemu::shell_quote(&arg)).collect::<Vec<_>>().join(" ")
}

/// `(year, month, day, hour, minute, second)` of `time` in UTC.
fn utc_parts(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm), eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let of_day = of_day as u32;
    (year, month, day, of_day / 3600, of_day / 60 % 60, of_day % 60)
}

/// `2026-05-21T10:30:00Z`.
pub fn utc_date(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-05-21T103000Z`: a time stamp for folder names.
pub fn utc_stamp(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(utc_date(at(1_735_689_600)), "2025-01-01T00:00:00Z");
        assert_eq!(utc_stamp(at(1_779_359_400)), "2026-05-21T103000Z");
    }

    #[test]
    fn cpu_model() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(host_cpu(cpuinfo), "AMD EPYC 7B13");
        assert_eq!(host_cpu(""), "unknown CPU");
    }

    #[test]
    fn warnings_for_oversubscription_and_tcg() {
        assert!(warnings(2, 4, Accel::Kvm).is_empty());
        let tcg = warnings(8, 2, Accel::Tcg);
        assert_eq!(tcg.len(), 2);
        assert!(tcg[0].starts_with("oversubscription: 8 vCPUs on 2 host cores"));
        assert!(tcg[0].ends_with("figures above 2 CPUs measure the host scheduler"));
        assert!(tcg[1].starts_with("TCG timings do not reflect hardware"));
        assert!(warnings(1, 1, Accel::Icount)[0].starts_with("icount:"));
    }

    #[test]
    fn markdown_has_facts_then_warnings() {
        let conditions = Conditions {
            date_utc: "2026-05-21T10:30:00Z".into(),
            command_line: "runner k bench".into(),
            kernel: "k".into(),
            kernel_commit: "abc1234-dirty".into(),
            host_cpu: "CPU".into(),
            host_cores: 2,
            accel: "tcg".into(),
            accel_reason: "no /dev/kvm".into(),
            qemu_version: "QEMU emulator version 7.2.22".into(),
            warnings: warnings(4, 2, Accel::Tcg),
        };
        let text = conditions.markdown();
        assert!(
            text.starts_with(
                "- date: 2026-05-21T10:30:00Z\n- kernel: `k` at commit abc1234-dirty\n"
            )
        );
        assert!(text.contains("- accelerator: tcg (no /dev/kvm)\n"));
        assert!(text.contains("\n\n> **Warning:** oversubscription"));
        assert!(text.ends_with("compare allocators as ratios within one run\n"), "{text}");
    }

    #[test]
    fn commit_of_this_repo_or_unknown() {
        let commit = kernel_commit(&crate::loader::workspace_root());
        assert!(!commit.is_empty());
        assert_eq!(kernel_commit(Path::new("/nonexistent/folder")), "unknown");
    }

    #[test]
    fn results_under_docs_benchmarks_and_untracked_files_leave_the_commit_clean() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(repo.path().join("docs/benchmarks")).unwrap();
        std::fs::write(repo.path().join("docs/benchmarks/results.json"), "[]").unwrap();
        std::fs::write(repo.path().join("kernel.rs"), "fn main() {}").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "first"]);
        let clean = kernel_commit(repo.path());
        assert!(!clean.ends_with("-dirty"), "{clean}");

        std::fs::write(repo.path().join("docs/benchmarks/results.json"), "[1]").unwrap();
        std::fs::write(repo.path().join("untracked.txt"), "x").unwrap();
        assert_eq!(
            kernel_commit(repo.path()),
            clean,
            "results and untracked files are not the kernel"
        );

        std::fs::write(repo.path().join("kernel.rs"), "fn main() { loop {} }").unwrap();
        assert_eq!(kernel_commit(repo.path()), format!("{clean}-dirty"));
    }
}
