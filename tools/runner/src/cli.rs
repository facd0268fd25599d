//! The command line: `runner [OPTIONS] <KERNEL_ELF> [ARGS...]`, where ARGS
//! mixes runner options and the kernel's `key=value` arguments (cargo puts
//! everything after `--` behind the kernel path).
use std::{fmt, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// Seconds a kernel test binary may run (all its boots together), up to
/// 16 CPUs.
pub const DEFAULT_TEST_TIMEOUT_S: u64 = 120;
/// More seconds a test binary may run per CPU above 16: under TCG on a
/// 2-core host `smp_stress` takes about 1 s per CPU (docs/kernel.md).
pub const TEST_TIMEOUT_S_PER_CPU_ABOVE_16: u64 = 3;
/// Seconds a `cargo run` of the kernel may run.
pub const DEFAULT_RUN_TIMEOUT_S: u64 = 600;
/// The most CPUs `--smp` accepts: the kernel's `MAX_CPUS`.
pub const MAX_SMP: i64 = 128;

/// Boots a kernel ELF (or a kernel test binary) in QEMU and reports its verdict.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "runner",
    version,
    // The last of a repeated option wins (e.g. `--smp` in an alias and on the line).
    args_override_self = true,
    after_help = "Every KEY=VALUE argument goes on the kernel's command line. \
                  Exit codes: 0 success, 1 failure or no verdict, 2 runner error, \
                  3 kernel heap exhausted, 124 timeout (see docs/runner.md). \
                  Benchmarks: `runner KERNEL_ELF bench --help`, `runner KERNEL_ELF profile --help` \
                  (docs/benchmarks-tool.md)."
)]
pub struct Cli {
    /// The kernel ELF; one in a `deps` folder is a test binary.
    #[arg(value_name = "KERNEL_ELF")]
    pub kernel: PathBuf,

    /// Kernel command-line arguments, `key=value` each (runner options may be mixed in).
    #[arg(value_name = "KEY=VALUE")]
    pub kernel_args: Vec<String>,

    /// Number of CPUs (the kernel's `MAX_CPUS` is 128).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_SMP))]
    pub smp: u32,

    /// Guest memory, e.g. 512M or 2G [default: 512M, 1G with more than 16 CPUs].
    #[arg(long, value_parser = parse_mem)]
    pub mem: Option<MemSize>,

    /// Accelerator: auto picks hardware KVM if it works, else multi-threaded TCG.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,

    /// How to boot: the PVH loader on microvm, or a Limine ISO (needs LIMINE_DIR).
    #[arg(long, value_enum, default_value_t = BootMode::Pvh)]
    pub boot: BootMode,

    /// Wall-clock limit in seconds for the whole run, 0 for none
    /// [default: 120 for test binaries, 600 otherwise; none with --gdb].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Wait for gdb on :1234 before the first instruction (no timeout).
    #[arg(long)]
    pub gdb: bool,

    /// Print the QEMU command line.
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// An extra argument for QEMU (repeatable), e.g. --qemu-arg=-d --qemu-arg=int.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,

    // libtest flags that cargo or IDEs pass to test binaries: accepted, ignored.
    #[arg(long, short = 'q', hide = true)]
    pub quiet: bool,
    #[arg(long, hide = true)]
    pub nocapture: bool,
    #[arg(long, hide = true)]
    pub show_output: bool,
    #[arg(long, hide = true)]
    pub exact: bool,
    #[arg(long, hide = true, value_name = "N")]
    pub test_threads: Option<String>,
    #[arg(long, hide = true, value_name = "WHEN")]
    pub color: Option<String>,
    #[arg(long, hide = true, value_name = "FORMAT")]
    pub format: Option<String>,
    #[arg(short = 'Z', hide = true, value_name = "FLAG")]
    pub unstable: Vec<String>,
}

/// Which accelerator the user asked for.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// Hardware KVM when present and a probe boot works, else multi-threaded TCG.
    Auto,
    /// KVM (an error if /dev/kvm is missing or the probe boot fails).
    Kvm,
    /// Multi-threaded TCG.
    Tcg,
    /// Single-threaded TCG with -icount shift=0,sleep=off (deterministic timing).
    Icount,
}

/// How QEMU loads the kernel.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// microvm, `-kernel pvh-loader -initrd KERNEL`.
    Pvh,
    /// q35 with SeaBIOS booting a Limine ISO.
    LimineBios,
    /// q35 with OVMF booting a Limine ISO.
    LimineUefi,
}

impl BootMode {
    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pvh => "pvh",
            Self::LimineBios => "limine-bios",
            Self::LimineUefi => "limine-uefi",
        }
    }
}

/// Guest memory in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSize {
    pub mib: u64,
}

impl MemSize {
    pub const MIN_MIB: u64 = 32;
    pub const MAX_MIB: u64 = 64 * 1024;

    /// The default for `smp` CPUs: 512 MiB, 1 GiB above 16 CPUs.
    pub fn default_for(smp: u32) -> Self {
        Self { mib: if smp > 16 { 1024 } else { 512 } }
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// Parses `512M`, `2G`, `1024` (MiB), `524288K`; also `MiB`/`GiB`/`MB` spellings.
pub fn parse_mem(text: &str) -> Result<MemSize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let number: u64 =
        digits.parse().map_err(|_| format!("'{text}' is not a size like 512M or 2G"))?;
    let kib_per_unit: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "k" => 1,
        "" | "m" => 1024,
        "g" => 1024 * 1024,
        _ => return Err(format!("'{text}': unknown unit (use K, M or G)")),
    };
    let kib = number.checked_mul(kib_per_unit).ok_or_else(|| format!("'{text}' is too large"))?;
    if !kib.is_multiple_of(1024) {
        return Err(format!("'{text}' is not a whole number of MiB"));
    }
    let mib = kib / 1024;
    if !(MemSize::MIN_MIB..=MemSize::MAX_MIB).contains(&mib) {
        return Err(format!(
            "'{text}' is out of range ({}M..={}G)",
            MemSize::MIN_MIB,
            MemSize::MAX_MIB / 1024
        ));
    }
    Ok(MemSize { mib })
}

/// Joins the kernel arguments into a command line, checking each is `key=value`.
pub fn kernel_cmdline(args: &[String]) -> Result<String, String> {
    for arg in args {
        let valid_key = arg.split_once('=').is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
        if !valid_key || arg.chars().any(char::is_whitespace) {
            return Err(format!(
                "'{arg}' is neither a runner option nor a kernel argument (kernel arguments are key=value; see runner --help)"
            ));
        }
    }
    Ok(args.join(" "))
}

/// `cmdline` with `key=value` set: replaces an earlier value of `key`.
pub fn with_kernel_arg(cmdline: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    cmdline
        .split_whitespace()
        .filter(|arg| !arg.starts_with(&prefix))
        .chain(std::iter::once(format!("{key}={value}").as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Cli {
    /// Whether the kernel ELF is a cargo test binary (`.../deps/NAME-HASH`).
    pub fn is_test_binary(&self) -> bool {
        is_test_binary(&self.kernel)
    }

    /// The memory size: the one given or the default for `--smp`.
    pub fn mem(&self) -> MemSize {
        self.mem.unwrap_or_else(|| MemSize::default_for(self.smp))
    }

    /// The wall-clock limit: none with `--gdb` or `--timeout 0`.
    pub fn timeout(&self) -> Option<Duration> {
        if self.gdb {
            return None;
        }
        let default = if self.is_test_binary() {
            DEFAULT_TEST_TIMEOUT_S
                + TEST_TIMEOUT_S_PER_CPU_ABOVE_16 * u64::from(self.smp.saturating_sub(16))
        } else {
            DEFAULT_RUN_TIMEOUT_S
        };
        match self.timeout.unwrap_or(default) {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        }
    }
}

/// Whether `kernel`'s parent folder is `deps`, where cargo puts test binaries.
pub fn is_test_binary(kernel: &std::path::Path) -> bool {
    kernel.parent().and_then(|dir| dir.file_name()).is_some_and(|name| name == "deps")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))
    }

    #[test]
    fn options_after_the_kernel_path_mix_with_kernel_args() {
        let cli =
            parse(&["target/kernel", "--smp", "8", "heap=64M", "--accel=tcg", "alloc=locked"])
                .unwrap();
        assert_eq!(cli.kernel, PathBuf::from("target/kernel"));
        assert_eq!(cli.smp, 8);
        assert_eq!(cli.accel, AccelChoice::Tcg);
        assert_eq!(cli.kernel_args, ["heap=64M", "alloc=locked"]);
        assert_eq!(kernel_cmdline(&cli.kernel_args).unwrap(), "heap=64M alloc=locked");
    }

    #[test]
    fn defaults() {
        let cli = parse(&["k"]).unwrap();
        assert_eq!(cli.smp, 4);
        assert_eq!(cli.accel, AccelChoice::Auto);
        assert_eq!(cli.boot, BootMode::Pvh);
        assert_eq!(cli.mem(), MemSize { mib: 512 });
        assert_eq!(cli.timeout(), Some(Duration::from_secs(DEFAULT_RUN_TIMEOUT_S)));
        assert!(!cli.gdb && !cli.verbose && cli.qemu_args.is_empty());
        assert_eq!(kernel_cmdline(&cli.kernel_args).unwrap(), "");
    }

    #[test]
    fn memory_defaults_to_1g_above_16_cpus() {
        assert_eq!(parse(&["k", "--smp", "17"]).unwrap().mem(), MemSize { mib: 1024 });
        assert_eq!(parse(&["k", "--smp", "16"]).unwrap().mem(), MemSize { mib: 512 });
        assert_eq!(
            parse(&["k", "--smp", "32", "--mem", "2G"]).unwrap().mem(),
            MemSize { mib: 2048 }
        );
    }

    #[test]
    fn memory_sizes_are_validated() {
        assert_eq!(parse_mem("512M"), Ok(MemSize { mib: 512 }));
        assert_eq!(parse_mem("512m"), Ok(MemSize { mib: 512 }));
        assert_eq!(parse_mem("1G"), Ok(MemSize { mib: 1024 }));
        assert_eq!(parse_mem("2GiB"), Ok(MemSize { mib: 2048 }));
        assert_eq!(parse_mem("768"), Ok(MemSize { mib: 768 }));
        assert_eq!(parse_mem("65536K"), Ok(MemSize { mib: 64 }));
        for bad in ["", "M", "lots", "1T", "16M", "100G", "1000K", "-1G", "99999999999999999999G"] {
            assert!(parse_mem(bad).is_err(), "{bad} accepted");
        }
        assert!(parse(&["k", "--mem", "12M"]).is_err());
        assert_eq!(MemSize { mib: 2048 }.to_string(), "2G");
        assert_eq!(MemSize { mib: 768 }.to_string(), "768M");
    }

    #[test]
    fn smp_range_is_checked() {
        assert!(parse(&["k", "--smp", "0"]).is_err());
        assert!(parse(&["k", "--smp", "129"]).is_err());
        assert_eq!(parse(&["k", "--smp", "128"]).unwrap().smp, 128);
        assert_eq!(parse(&["k", "--smp", "128"]).unwrap().mem(), MemSize { mib: 1024 });
    }

    #[test]
    fn unknown_options_are_errors_with_exit_code_2() {
        let error = parse(&["k", "--frobnicate"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--frobnicate"));
        assert_eq!(parse(&["k", "--accel", "hvf"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["k", "--boot", "grub"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn bare_words_are_not_kernel_arguments() {
        let cli = parse(&["k", "heap=1M", "some_test_filter"]).unwrap();
        let error = kernel_cmdline(&cli.kernel_args).unwrap_err();
        assert!(error.contains("'some_test_filter'"), "{error}");
        assert!(kernel_cmdline(&["=x".into()]).is_err());
        assert!(kernel_cmdline(&["a b=c".into()]).is_err());
        assert!(kernel_cmdline(&["job=stress".into(), "empty=".into()]).is_ok());
    }

    #[test]
    fn libtest_flags_are_accepted_and_ignored() {
        let cli = parse(&[
            "deps/boot-1234",
            "--quiet",
            "-q",
            "--nocapture",
            "--test-threads",
            "1",
            "--test-threads=2",
            "--color",
            "always",
            "--format=pretty",
            "--show-output",
            "--exact",
            "-Z",
            "unstable-options",
            "--smp",
            "2",
            "heap=8M",
        ])
        .unwrap();
        assert_eq!(cli.smp, 2);
        assert_eq!(cli.kernel_args, ["heap=8M"]);
        assert!(cli.is_test_binary());
    }

    #[test]
    fn qemu_args_may_start_with_a_hyphen() {
        let cli = parse(&[
            "k",
            "--qemu-arg",
            "-d",
            "--qemu-arg=int,cpu_reset",
            "--qemu-arg",
            "-no-shutdown",
        ])
        .unwrap();
        assert_eq!(cli.qemu_args, ["-d", "int,cpu_reset", "-no-shutdown"]);
    }

    #[test]
    fn timeouts() {
        let test = parse(&["target/x86_64-unknown-none/debug/deps/boot-0a1b"]).unwrap();
        assert!(test.is_test_binary());
        assert_eq!(test.timeout(), Some(Duration::from_secs(DEFAULT_TEST_TIMEOUT_S)));
        let test_128 =
            parse(&["target/x86_64-unknown-none/debug/deps/boot-0a1b", "--smp", "128"]).unwrap();
        assert_eq!(test_128.timeout(), Some(Duration::from_secs(120 + 3 * 112)));
        assert_eq!(
            parse(&["k", "--timeout", "5"]).unwrap().timeout(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse(&["k", "--timeout", "0"]).unwrap().timeout(), None);
        assert_eq!(parse(&["k", "--timeout", "5", "--gdb"]).unwrap().timeout(), None);
        assert!(!parse(&["target/x86_64-unknown-none/debug/kernel"]).unwrap().is_test_binary());
    }

    #[test]
    fn a_kernel_argument_can_be_replaced() {
        assert_eq!(with_kernel_arg("", "test_skip", "2"), "test_skip=2");
        assert_eq!(with_kernel_arg("heap=8M test_skip=1", "test_skip", "3"), "heap=8M test_skip=3");
        assert_eq!(with_kernel_arg("heap=8M", "test_skip", "1"), "heap=8M test_skip=1");
    }

    #[test]
    fn the_last_repeated_option_wins_and_qemu_args_accumulate() {
        let cli = Cli::try_parse_from([
            "runner",
            "k",
            "--smp",
            "2",
            "--smp",
            "8",
            "--gdb",
            "--gdb",
            "--qemu-arg",
            "-a",
            "--qemu-arg",
            "-b",
        ])
        .unwrap();
        assert_eq!(cli.smp, 8);
        assert!(cli.gdb);
        assert_eq!(cli.qemu_args, ["-a", "-b"]);
    }
}
