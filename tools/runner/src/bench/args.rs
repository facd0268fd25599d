//! The command lines of `runner KERNEL bench ...` and `runner KERNEL profile
//! ...`, and how `main` tells them from a plain run (the word right after the
//! kernel path).
use std::{ffi::OsString, path::PathBuf};

use clap::Parser;

use crate::cli::{AccelChoice, BootMode, Cli, MAX_SMP, MemSize, kernel_cmdline, parse_mem};

/// The workloads the kernel's `job=bench` knows (`docs/interface.md`); the
/// end-to-end test `the_runner_knows_exactly_the_workloads_the_kernel_knows`
/// fails when this list and the kernel's differ.
pub const WORKLOADS: [&str; 11] = [
    "local",
    "xfer",
    "seed",
    "mixed",
    "null",
    "larson",
    "xmalloc-test",
    "cache-scratch",
    "cache-thrash",
    "threadtest",
    "mstress",
];
/// Kernel arguments the runner sets itself for every bench or profile boot.
pub const RESERVED_KEYS: [&str; 5] = ["job", "workload", "alloc", "ops", "trace"];
/// Default wall-clock limit of one bench or profile boot, in seconds.
pub const DEFAULT_BOOT_TIMEOUT_S: u64 = 600;

/// What the runner was asked to do.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// A plain run: `runner KERNEL [OPTIONS] [KEY=VALUE...]`.
    Run(Box<Cli>),
    /// `runner KERNEL bench ...`.
    Bench(Box<BenchArgs>),
    /// `runner KERNEL profile ...`.
    Profile(Box<ProfileArgs>),
}

impl Invocation {
    /// Parses the whole argument list (program name first). `bench` or
    /// `profile` right after the kernel path (the first argument) selects
    /// a subcommand; anything else is a plain run, parsed as before.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let kernel = args.get(1).filter(|a| !a.to_string_lossy().starts_with('-'));
        let word = args.get(2).and_then(|a| a.to_str());
        match (kernel, word) {
            (Some(kernel), Some(word @ ("bench" | "profile"))) => {
                let kernel = PathBuf::from(kernel);
                let name = format!("runner {} {word}", kernel.display());
                let rest = std::iter::once(OsString::from(name)).chain(args[3..].iter().cloned());
                if word == "bench" {
                    let mut bench = BenchArgs::try_parse_from(rest)?;
                    bench.kernel = kernel;
                    Ok(Self::Bench(Box::new(bench)))
                } else {
                    let mut profile = ProfileArgs::try_parse_from(rest)?;
                    profile.kernel = kernel;
                    Ok(Self::Profile(Box::new(profile)))
                }
            }
            _ => Cli::try_parse_from(args).map(|cli| Self::Run(Box::new(cli))),
        }
    }
}

/// Options shared by `bench` and `profile`.
#[derive(clap::Args, Debug, Clone)]
pub struct BootOptions {
    /// Extra kernel arguments, `key=value` each (not job, workload, alloc, ops, trace).
    #[arg(value_name = "KEY=VALUE")]
    pub kernel_args: Vec<String>,

    /// Operations per CPU, passed as `ops=N` [default: the kernel's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: Option<u64>,

    /// Accelerator: auto picks hardware KVM if it works, else multi-threaded TCG.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,

    /// Output folder [default: bench-results/<UTC timestamp>, for profile
    /// bench-results/profile-<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Wall-clock limit of each boot in seconds, 0 for none.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_BOOT_TIMEOUT_S)]
    pub timeout: u64,

    /// Guest memory, e.g. 512M or 2G [default: 512M, 1G with more than 16 CPUs].
    #[arg(long, value_parser = parse_mem)]
    pub mem: Option<MemSize>,

    /// How to boot: the PVH loader on microvm, or a Limine ISO (needs LIMINE_DIR).
    #[arg(long, value_enum, default_value_t = BootMode::Pvh)]
    pub boot: BootMode,

    /// Print each QEMU command line.
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// An extra argument for QEMU (repeatable).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
}

impl BootOptions {
    /// The extra kernel arguments joined, checked to be `key=value` and not
    /// to set a key the runner sets itself.
    pub fn extra_cmdline(&self) -> Result<String, String> {
        for arg in &self.kernel_args {
            let key = arg.split_once('=').map_or(arg.as_str(), |(key, _)| key);
            if RESERVED_KEYS.contains(&key) {
                let hint = match key {
                    "workload" | "alloc" | "ops" => format!(" (use --{key})"),
                    _ => String::new(),
                };
                return Err(format!("'{arg}': the runner sets {key}= itself for each boot{hint}"));
            }
        }
        kernel_cmdline(&self.kernel_args)
    }

    /// The per-boot time limit; `None` for `--timeout 0`.
    pub fn boot_timeout(&self) -> Option<std::time::Duration> {
        (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout))
    }
}

/// `runner KERNEL bench`: boots once per (allocator, workload, CPU count,
/// repetition) and writes tables and plots.
#[derive(Parser, Debug, Clone)]
#[command(
    args_override_self = true,
    about = "Runs job=bench for every allocator, workload, CPU count and repetition; \
             writes results.json, results.csv, summary.md and SVG plots (docs/benchmarks-tool.md)"
)]
pub struct BenchArgs {
    #[arg(skip)]
    pub kernel: PathBuf,

    /// CPU counts, comma-separated (each 1..=128).
    #[arg(long, value_name = "LIST", default_value = "1,2,4", value_parser = parse_cpu_list)]
    pub smp: CpuList,

    /// Allocators, comma-separated (as the kernel's alloc= knows them):
    /// slab, slab-talc, slab-buddy, slab-rlsf; the plain baselines
    /// lockedheap, talc, buddy, rlsf; their instrumented stand-ins locked,
    /// locked-talc, locked-buddy, locked-rlsf.
    #[arg(long, value_name = "LIST", default_value = "lockedheap,locked,slab,talc,buddy", value_parser = parse_alloc_list)]
    pub alloc: NameList,

    /// Workloads, comma-separated: local, xfer, seed, mixed, null, larson,
    /// xmalloc-test, cache-scratch, cache-thrash, threadtest, mstress.
    #[arg(long, value_name = "LIST", default_value = "local,xfer", value_parser = parse_workload_list)]
    pub workload: NameList,

    /// Boots per (allocator, workload, CPU count).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reps: u32,

    #[command(flatten)]
    pub options: BootOptions,
}

/// `runner KERNEL profile`: one traced boot and a lock timeline.
#[derive(Parser, Debug, Clone)]
#[command(
    args_override_self = true,
    about = "Runs job=bench once with trace=on, prints the kernel's report, \
             and draws the global lock's waits and holds per CPU (lock_timeline.svg)"
)]
pub struct ProfileArgs {
    #[arg(skip)]
    pub kernel: PathBuf,

    /// Number of CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_SMP))]
    pub smp: u32,

    /// The allocator.
    #[arg(long, default_value = "slab", value_parser = parse_name)]
    pub alloc: String,

    /// The workload: one of the workloads of `bench --workload`.
    #[arg(long, default_value = "xfer", value_parser = parse_workload)]
    pub workload: String,

    #[command(flatten)]
    pub options: BootOptions,
}

/// CPU counts, ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<u32>);

/// Names in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

/// The comma-separated items of `text`, each trimmed; an empty item is an error.
fn items(text: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(format!(
            "'{text}' has an empty item (write a comma-separated list like 1,2,4)"
        ));
    }
    Ok(items)
}

/// Parses `1,2,4`: CPU counts 1..=128, sorted, repeats dropped.
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for item in items(text)? {
        let count: u32 = item
            .parse()
            .ok()
            .filter(|&n| (1..=MAX_SMP).contains(&i64::from(n)))
            .ok_or_else(|| format!("'{item}' is not a CPU count (1..={MAX_SMP})"))?;
        cpus.push(count);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuList(cpus))
}

/// Parses one allocator or workload name: lower-case letters, digits, `-`, `_`.
pub fn parse_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!("'{text}' is not a name (lower-case letters, digits, '-', '_')"))
    }
}

/// Parses one workload: one of [`WORKLOADS`].
pub fn parse_workload(text: &str) -> Result<String, String> {
    if WORKLOADS.contains(&text) {
        Ok(text.to_string())
    } else {
        Err(format!("'{text}' is not a workload (one of {})", WORKLOADS.join(", ")))
    }
}

fn parse_names(text: &str, each: fn(&str) -> Result<String, String>) -> Result<NameList, String> {
    let mut names: Vec<String> = Vec::new();
    for item in items(text)? {
        let name = each(item)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(NameList(names))
}

/// Parses `locked,slab,talc`.
pub fn parse_alloc_list(text: &str) -> Result<NameList, String> {
    parse_names(text, parse_name)
}

/// Parses `local,xfer`.
pub fn parse_workload_list(text: &str) -> Result<NameList, String> {
    parse_names(text, parse_workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, clap::Error> {
        Invocation::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))
    }

    fn bench(args: &[&str]) -> BenchArgs {
        match parse(args).unwrap() {
            Invocation::Bench(bench) => *bench,
            other => panic!("not a bench: {other:?}"),
        }
    }

    #[test]
    fn a_plain_run_is_unchanged() {
        let Invocation::Run(cli) = parse(&["k", "--smp", "8", "heap=64M"]).unwrap() else {
            panic!("not a plain run");
        };
        assert_eq!(cli.smp, 8);
        assert_eq!(cli.kernel_args, ["heap=64M"]);
        // Options first, then the kernel: still a plain run.
        let Invocation::Run(cli) = parse(&["--smp", "2", "k", "bench"]).unwrap() else {
            panic!("not a plain run");
        };
        assert_eq!(cli.kernel_args, ["bench"]);
        assert!(kernel_cmdline(&cli.kernel_args).is_err());
        assert_eq!(parse(&["k", "--smp", "1,2"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn bench_defaults() {
        let args = bench(&["target/kernel", "bench"]);
        assert_eq!(args.kernel, PathBuf::from("target/kernel"));
        assert_eq!(args.smp, CpuList(vec![1, 2, 4]));
        assert_eq!(args.alloc.0, ["lockedheap", "locked", "slab", "talc", "buddy"]);
        assert_eq!(args.workload.0, ["local", "xfer"]);
        assert_eq!(args.reps, 3);
        assert_eq!(args.options.ops, None);
        assert_eq!(args.options.accel, AccelChoice::Auto);
        assert_eq!(args.options.out, None);
        assert_eq!(args.options.timeout, DEFAULT_BOOT_TIMEOUT_S);
        assert_eq!(args.options.extra_cmdline().unwrap(), "");
    }

    #[test]
    fn bench_with_lists() {
        let args = bench(&[
            "k",
            "bench",
            "--smp",
            "4,1, 2,2",
            "--alloc=slab,locked,slab",
            "--workload",
            "xfer",
            "--reps",
            "5",
            "--ops",
            "1000",
            "--accel",
            "icount",
            "--out",
            "/tmp/x",
            "heap=64M",
            "--timeout",
            "30",
        ]);
        assert_eq!(args.smp, CpuList(vec![1, 2, 4]));
        assert_eq!(args.alloc.0, ["slab", "locked"]);
        assert_eq!(args.workload.0, ["xfer"]);
        assert_eq!(args.reps, 5);
        assert_eq!(args.options.ops, Some(1000));
        assert_eq!(args.options.accel, AccelChoice::Icount);
        assert_eq!(args.options.out, Some(PathBuf::from("/tmp/x")));
        assert_eq!(args.options.timeout, 30);
        assert_eq!(args.options.extra_cmdline().unwrap(), "heap=64M");
    }

    #[test]
    fn bad_list_values_are_clear_errors() {
        for (args, says) in [
            (&["k", "bench", "--smp", "1,two"][..], "'two' is not a CPU count"),
            (&["k", "bench", "--smp", "1,129"], "'129' is not a CPU count"),
            (&["k", "bench", "--smp", "1,,2"], "empty item"),
            (&["k", "bench", "--alloc", "Slab"], "'Slab' is not a name"),
            (&["k", "bench", "--workload", "local,remote"], "'remote' is not a workload"),
            (&["k", "bench", "--reps", "0"], "--reps"),
            (&["k", "profile", "--smp", "1,2"], "--smp"),
            (&["k", "bench", "--frobnicate"], "--frobnicate"),
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(says), "{args:?}: {error}");
        }
    }

    #[test]
    fn reserved_kernel_arguments_are_refused() {
        let args = bench(&["k", "bench", "alloc=slab"]);
        let error = args.options.extra_cmdline().unwrap_err();
        assert!(error.contains("use --alloc"), "{error}");
        let args = bench(&["k", "bench", "job=stress"]);
        assert!(args.options.extra_cmdline().is_err());
        let args = bench(&["k", "bench", "not_key_value"]);
        assert!(args.options.extra_cmdline().unwrap_err().contains("'not_key_value'"));
    }

    #[test]
    fn profile_options() {
        let Invocation::Profile(args) = parse(&["k", "profile"]).unwrap() else {
            panic!("not a profile");
        };
        assert_eq!((args.smp, args.alloc.as_str(), args.workload.as_str()), (4, "slab", "xfer"));
        let Invocation::Profile(args) = parse(&[
            "k",
            "profile",
            "--smp",
            "8",
            "--alloc",
            "locked",
            "--workload",
            "local",
            "--accel",
            "tcg",
            "--out",
            "p",
        ])
        .unwrap() else {
            panic!("not a profile");
        };
        assert_eq!(args.kernel, PathBuf::from("k"));
        assert_eq!((args.smp, args.alloc.as_str(), args.workload.as_str()), (8, "locked", "local"));
        assert_eq!(args.options.accel, AccelChoice::Tcg);
        assert_eq!(args.options.out, Some(PathBuf::from("p")));
    }
}
