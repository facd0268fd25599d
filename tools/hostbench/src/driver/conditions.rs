//! What a host bench ran under: date, command, commit, CPU, cores, the
//! TSC's frequency, the allocators' versions, the load before and after,
//! and the warnings that calls for.
use std::{process::Command, time::SystemTime};

use runner::bench::{conditions as runner_conditions, stats::median};
use serde::Serialize;

use super::{Record, build::workspace_root};

#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    pub date_utc: String,
    pub command_line: String,
    pub commit: String,
    pub host_cpu: String,
    pub host_cores: usize,
    /// TSC ticks per second, the median of the workers' measurements
    /// (each measures it against CLOCK_MONOTONIC over 100 ms).
    pub timestamp_hz: Option<f64>,
    pub rustc: String,
    pub glibc: String,
    /// `name version` of each allocator crate, from Cargo.lock.
    pub allocator_crates: Vec<String>,
    /// /proc/loadavg's first three fields at the start and the end.
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub warnings: Vec<String>,
}

/// The allocator crates whose versions conditions.json names.
const ALLOCATOR_CRATES: [&str; 3] = ["mimalloc", "libmimalloc-sys", "tikv-jemallocator"];

impl Conditions {
    /// The facts known before the runs, for runs of up to `max_threads`.
    pub fn gather(max_threads: usize) -> Self {
        let host_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap_or_default();
        Self {
            date_utc: runner_conditions::utc_date(SystemTime::now()),
            command_line: runner_conditions::command_line(),
            commit: runner_conditions::kernel_commit(&workspace_root()),
            host_cpu: runner_conditions::host_cpu(
                &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            ),
            host_cores,
            timestamp_hz: None,
            rustc: first_line("rustc", &["--version"]),
            glibc: first_line("getconf", &["GNU_LIBC_VERSION"]),
            allocator_crates: ALLOCATOR_CRATES
                .iter()
                .filter_map(|name| locked_version(&lock, name).map(|v| format!("{name} {v}")))
                .collect(),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            warnings: warnings(max_threads, host_cores),
        }
    }

    /// Adds what the runs tell: the TSC frequency and the load at the end.
    pub fn finish(&mut self, records: &[Record]) {
        let hz: Vec<f64> = records.iter().filter_map(|r| r.number("timestamp_hz")).collect();
        self.timestamp_hz = median(&hz);
        self.loadavg_end = loadavg();
    }

    /// The Markdown lines at the top of summary.md.
    pub fn markdown(&self) -> String {
        let hz = self.timestamp_hz.map_or("unknown".into(), |hz| format!("{:.3} GHz", hz / 1e9));
        let mut text = format!(
            "- date: {}\n- commit: {}\n- host: {}, {} cores\n- TSC: {hz} (cycles are TSC ticks)\n\
             - {}, {}, {}\n- load average (1, 5, 15 min): {} at the start, {} at the end\n\
             - command: `{}`\n",
            self.date_utc,
            self.commit,
            self.host_cpu,
            self.host_cores,
            self.rustc,
            self.glibc,
            self.allocator_crates.join(", "),
            self.loadavg_start,
            self.loadavg_end,
            self.command_line,
        );
        for warning in &self.warnings {
            text.push_str(&format!("\n> **Warning:** {warning}\n"));
        }
        text
    }
}

/// The warnings every host bench carries, and oversubscription.
pub fn warnings(max_threads: usize, host_cores: usize) -> Vec<String> {
    let mut warnings = vec![format!(
        "host timings are noisy: {host_cores} cores shared with other work; compare allocators \
         by the ratios within one run and medians over interleaved repetitions"
    )];
    if max_threads > host_cores {
        warnings.push(format!(
            "oversubscription: {max_threads} threads on {host_cores} cores: threads get \
             preempted, a lock holder too"
        ));
    }
    warnings
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{program}: unknown"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The version of package `name` in Cargo.lock text.
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}
