//! `runner KERNEL profile`: one `job=bench ... trace=on` boot whose report is
//! printed as it comes; its BENCH and LOCKTRACE records go to profile.json
//! and its global-lock waits and holds to lock_timeline.svg and, for
//! Perfetto UI, lock_timeline.trace.json.
use std::time::Instant;

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::{
    EXIT_RUNNER_ERROR,
    bench::{
        args::ProfileArgs,
        conditions::Conditions,
        core_roundtrip,
        matrix::{self, Cell},
        pretty,
        records::{self, LockTrace, Record},
        session::{Session, output_folder, write},
        timeline, trace_events,
    },
    outcome::{EXIT_FAILURE, EXIT_SUCCESS, Verdict},
};

/// Runs a profile and returns the exit code: 0 with a BENCH record and
/// LOCKTRACE records, 1 without, 2 on the runner's own errors.
pub fn run(args: &ProfileArgs) -> i32 {
    crate::cleanup::install();
    match profile(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner: error: {error:#}");
            EXIT_RUNNER_ERROR
        }
    }
}

fn profile(args: &ProfileArgs) -> anyhow::Result<i32> {
    let extra = args.options.extra_cmdline().map_err(|e| anyhow!(e))?;
    let session = Session::start(&args.kernel, &args.options)?;
    let conditions = Conditions::gather(&session.kernel, session.decision(), args.smp);
    for warning in &conditions.warnings {
        println!("runner: warning: {warning}");
    }
    let out = output_folder(args.options.out.as_deref(), "profile-")?;
    let cell =
        Cell { alloc: args.alloc.clone(), workload: args.workload.clone(), cpus: args.smp, rep: 1 };
    let cmdline = matrix::cmdline(&cell.workload, &cell.alloc, args.options.ops, true, &extra);
    println!(
        "runner: profile alloc={} workload={} cpus={}: kernel command line '{cmdline}'",
        cell.alloc, cell.workload, cell.cpus
    );
    let machine = session.machine(0, cell.cpus, &cmdline)?;
    if args.options.verbose {
        println!("{}", Session::command(&machine));
    }
    let ((outcome, boot_seconds), host_core_roundtrip_ns) = core_roundtrip::around(|| {
        let started = Instant::now();
        (session.boot(0, machine, true), started.elapsed().as_secs_f64())
    });
    let outcome = outcome?;

    let verdict = Verdict::of(outcome.status);
    let mut problems: Vec<String> =
        outcome.reason(args.options.boot_timeout()).into_iter().collect();
    let bench = records::find_bench(&outcome.lines)
        .and_then(|bench| records::check_cell(&bench, &cell).map(|()| bench));
    if let Err(why) = &bench {
        problems.push(why.clone());
    }
    let traces = match records::find_locktraces(&outcome.lines) {
        Ok(traces) if traces.is_empty() => {
            problems.push("no LOCKTRACE lines (does the kernel know trace=on?)".into());
            traces
        }
        Ok(traces) => traces,
        Err(why) => {
            problems.push(why);
            Vec::new()
        }
    };
    let hz = bench.as_ref().ok().and_then(|b| b.get("timestamp_hz")).and_then(Value::as_f64);
    let record = Record {
        cell: cell.clone(),
        accel: session.decision().accel,
        boot_seconds,
        host_core_roundtrip_ns,
        // A BENCH record counts only from a boot that ended well.
        bench: match bench {
            Ok(bench) if verdict == Verdict::Success => Ok(bench),
            Ok(_) => Err(problems[0].clone()),
            Err(why) => Err(why),
        },
    };
    let document = json!({
        "conditions": conditions,
        "bench": record.to_json(),
        "locktrace": traces,
        "problems": problems,
    });
    write(&out, "profile.json", &pretty(&document)?)?;
    let mut written = vec!["profile.json"];
    if !traces.is_empty() {
        if hz.is_none() {
            println!(
                "runner: warning: no timestamp_hz in BENCH: the timeline is in timestamp ticks"
            );
        }
        let title = format!(
            "global lock: alloc={} workload={} cpus={} accel={}",
            cell.alloc, cell.workload, cell.cpus, conditions.accel
        );
        let svg = timeline::timeline(&traces, hz, &title).map_err(|e| anyhow!(e))?;
        write(&out, "lock_timeline.svg", &svg)?;
        written.push("lock_timeline.svg");
        let trace = trace_events::trace_events(&traces, hz, &title);
        write(&out, "lock_timeline.trace.json", &(serde_json::to_string(&trace)? + "\n"))?;
        written.push("lock_timeline.trace.json");
        for line in trace_summary(&traces, hz) {
            println!("runner: {line}");
        }
    }
    for warning in &conditions.warnings {
        println!("runner: warning: {warning}");
    }
    println!("runner: wrote {} in {}", written.join(", "), out.display());
    if problems.is_empty() {
        Ok(EXIT_SUCCESS)
    } else {
        for problem in &problems {
            println!("runner: profile incomplete: {problem}");
        }
        Ok(EXIT_FAILURE)
    }
}

/// One line per CPU: traced acquisitions, time waiting and holding.
pub fn trace_summary(traces: &[LockTrace], hz: Option<f64>) -> Vec<String> {
    let (scale, unit) = match hz.filter(|hz| *hz > 0.0) {
        Some(hz) => (1e6 / hz, "µs"),
        None => (1.0, "ticks"),
    };
    traces
        .iter()
        .map(|trace| {
            let wait: u64 = trace.events.iter().map(|e| e[1] - e[0]).sum();
            let hold: u64 = trace.events.iter().map(|e| e[2] - e[1]).sum();
            let contended = trace.events.iter().filter(|e| e[1] > e[0]).count();
            format!(
                "cpu {}: {} acquisitions traced ({contended} waited), waiting {:.1} {unit}, holding {:.1} {unit}",
                trace.cpu,
                trace.events.len(),
                wait as f64 * scale,
                hold as f64 * scale,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_summary() {
        let traces = [LockTrace { cpu: 3, events: vec![[0, 2000, 3000], [4000, 4000, 8000]] }];
        assert_eq!(
            trace_summary(&traces, Some(1e9)),
            ["cpu 3: 2 acquisitions traced (1 waited), waiting 2.0 µs, holding 5.0 µs"]
        );
        assert_eq!(
            trace_summary(&traces, None),
            ["cpu 3: 2 acquisitions traced (1 waited), waiting 2000.0 ticks, holding 5000.0 ticks"]
        );
    }
}
