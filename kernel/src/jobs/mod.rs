//! What the kernel does after boot, picked by `job=` on the command line:
//! `stress` (the default), `bench` (one allocator workload, timed), `soak`
//! (millions of random checked heap operations, books balanced at the end)
//! or `boot` (bring-up only).
pub mod bench;
pub mod soak;
pub mod stress;

use crate::{ExitCode, boot::BootInfo, println};

/// The jobs `job=` accepts.
pub const JOBS: &[&str] = &["stress", "bench", "soak", "boot"];

/// Runs the job the command line names.
pub fn run(boot: &'static BootInfo) -> ExitCode {
    match boot.cmdline.get("job").unwrap_or("stress") {
        "stress" => stress::run_job(),
        "bench" => bench::run_job(boot),
        "soak" => soak::run_job(boot),
        "boot" => ExitCode::Success,
        other => {
            println!("unknown job '{other}' (known jobs: {})", Jobs);
            ExitCode::Failure
        }
    }
}

struct Jobs;

impl core::fmt::Display for Jobs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, job) in JOBS.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(job)?;
        }
        Ok(())
    }
}
