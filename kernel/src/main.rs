//! The kernel binary: boots every CPU, then runs the job the command line
//! names.
#![no_std]
#![no_main]

use kernel::{ExitCode, boot::BootInfo, println, smp};

kernel::entry_point!(kernel_main);

fn kernel_main(boot: &'static BootInfo) -> ExitCode {
    let job = boot.cmdline.get("job").unwrap_or("stress");
    match job {
        // Boot and stop: checks bring-up alone.
        "boot" => ExitCode::Success,
        "stress" => {
            let results = smp::run_on_all_cpus(|cpu| cpu * 10);
            for (cpu, value) in results.iter() {
                println!("cpu {cpu} answered {value}");
            }
            ExitCode::Success
        }
        other => {
            println!("unknown job '{other}' (known jobs: boot, stress)");
            ExitCode::Failure
        }
    }
}
