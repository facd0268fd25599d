//! `runner KERNEL bench`: boots the kernel's `job=bench` once per
//! (allocator, workload, CPU count, repetition), keeps going past failed
//! boots, and writes results.json, results.csv, conditions.json, summary.md
//! and SVG plots (docs/benchmarks-tool.md).
use std::{path::Path, time::Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::{
    EXIT_RUNNER_ERROR,
    boot::BootOutcome,
    outcome::{EXIT_FAILURE, EXIT_SUCCESS},
};

pub mod args;
pub mod conditions;
pub mod core_roundtrip;
pub mod matrix;
pub mod plot;
pub mod records;
pub mod report;
pub mod session;
pub mod stats;
pub mod timeline;
pub mod trace_events;

use args::BenchArgs;
use conditions::Conditions;
use matrix::Cell;
use records::Record;
use session::{Session, output_folder, write};

/// Serial lines shown with a failed boot.
pub const TAIL_LINES: usize = 12;

/// Runs a bench and returns the exit code: 0 when every boot gave a BENCH
/// record, 1 when some failed, 2 on the runner's own errors.
pub fn run(args: &BenchArgs) -> i32 {
    crate::cleanup::install();
    match bench(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner: error: {error:#}");
            EXIT_RUNNER_ERROR
        }
    }
}

fn bench(args: &BenchArgs) -> anyhow::Result<i32> {
    let extra = args.options.extra_cmdline().map_err(|e| anyhow!(e))?;
    let session = Session::start(&args.kernel, &args.options)?;
    let max_cpus = args.smp.0.iter().copied().max().unwrap_or(1);
    let conditions = Conditions::gather(&session.kernel, session.decision(), max_cpus);
    for warning in &conditions.warnings {
        println!("runner: warning: {warning}");
    }
    let out = output_folder(args.options.out.as_deref(), "")?;
    write(&out, "conditions.json", &pretty(&conditions)?)?;

    let cells = matrix::cells(&args.alloc.0, &args.workload.0, &args.smp.0, args.reps);
    println!(
        "runner: bench: {} boots (allocators {} x workloads {} x CPU counts {} x reps {}) into {}",
        cells.len(),
        args.alloc.0.len(),
        args.workload.0.len(),
        args.smp.0.len(),
        args.reps,
        out.display()
    );
    let bar = ProgressBar::new(cells.len() as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut records = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        bar.set_message(cell.to_string());
        let cmdline = matrix::cmdline(&cell.workload, &cell.alloc, args.options.ops, false, &extra);
        let machine = session.machine(index, cell.cpus, &cmdline)?;
        if args.options.verbose {
            bar.suspend(|| println!("{}", Session::command(&machine)));
        }
        let ((outcome, boot_seconds), host_core_roundtrip_ns) = core_roundtrip::around(|| {
            let started = Instant::now();
            (session.boot(index, machine, false), started.elapsed().as_secs_f64())
        });
        let outcome = outcome?;
        let record = Record {
            cell: cell.clone(),
            accel: session.decision().accel,
            boot_seconds,
            host_core_roundtrip_ns,
            bench: bench_of(&outcome, cell, &session),
        };
        let position = format!("[{}/{}]", index + 1, cells.len());
        bar.suspend(|| report_boot(&position, &record, &outcome));
        if !record.ok() {
            save_serial_log(&out, cell, &outcome)?;
        }
        records.push(record);
        write_results(&out, &records)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let rows = stats::summarize(&records, &args.workload.0, &args.smp.0, &args.alloc.0);
    let summary = report::summary(&conditions, &rows, &records);
    write(&out, "summary.md", &summary)?;
    let mut written = vec!["conditions.json", "results.json", "results.csv", "summary.md"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for workload in &args.workload.0 {
        for (name, svg) in [
            (
                format!("throughput_{workload}.svg"),
                plot::throughput(&rows, workload, &conditions.accel),
            ),
            (
                format!("lock_wait_{workload}.svg"),
                plot::lock_wait(&rows, workload, &conditions.accel),
            ),
        ] {
            write(&out, &name, &svg.map_err(|e| anyhow!(e))?)?;
            written.push(name);
        }
    }

    println!();
    print!("{}", report::table(&rows, conditions.accel == "icount"));
    println!();
    for warning in &conditions.warnings {
        println!("runner: warning: {warning}");
    }
    println!("runner: wrote {} in {}", written.join(", "), out.display());
    let failed = records.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        println!("runner: {failed} of {} boots failed (see summary.md)", records.len());
        Ok(EXIT_FAILURE)
    } else {
        println!("runner: all {} boots gave a BENCH record", records.len());
        Ok(EXIT_SUCCESS)
    }
}

/// The BENCH record of a boot, or why there is none.
fn bench_of(
    outcome: &BootOutcome,
    cell: &Cell,
    session: &Session,
) -> Result<records::Json, String> {
    if let Some(why) = outcome.reason(session.options.boot_timeout()) {
        return Err(why);
    }
    let bench = records::find_bench(&outcome.lines)?;
    records::check_cell(&bench, cell)?;
    Ok(bench)
}

/// One line per boot; a failure adds its last serial lines.
fn report_boot(position: &str, record: &Record, outcome: &BootOutcome) {
    let seconds = record.boot_seconds;
    match &record.bench {
        Ok(_) => {
            let ops = record.number("ops_per_sec").map_or("-".into(), report::si);
            let per_op =
                record.number("cycles_per_op_median").map_or("-".into(), |v| format!("{v:.1}"));
            println!(
                "runner: {position} {}: {ops} ops/s, {per_op} cycles/op ({seconds:.1} s)",
                record.cell
            );
        }
        Err(why) => {
            println!("runner: {position} FAILED {}: {why} ({seconds:.1} s)", record.cell);
            let tail = &outcome.lines[outcome.lines.len().saturating_sub(TAIL_LINES)..];
            for line in tail {
                println!("runner: | {line}");
            }
        }
    }
}

/// Where the full serial output of a failed boot goes, under the output folder.
pub fn failed_log_name(cell: &Cell) -> String {
    format!("failed/{}_{}_{}cpus_rep{}.log", cell.alloc, cell.workload, cell.cpus, cell.rep)
}

/// Keeps a failed boot's serial lines and QEMU's stderr.
fn save_serial_log(out: &Path, cell: &Cell, outcome: &BootOutcome) -> anyhow::Result<()> {
    let name = failed_log_name(cell);
    std::fs::create_dir_all(out.join("failed"))?;
    let mut text = outcome.lines.join("\n");
    if !outcome.stderr.is_empty() {
        text.push_str("\n--- QEMU stderr\n");
        text.push_str(&outcome.stderr);
    }
    text.push('\n');
    write(out, &name, &text)?;
    Ok(())
}

/// Rewrites results.json and results.csv (after every boot, so an
/// interrupted bench keeps what it measured).
fn write_results(out: &Path, records: &[Record]) -> anyhow::Result<()> {
    let json: Vec<Value> = records.iter().map(|r| Value::Object(r.to_json())).collect();
    write(out, "results.json", &pretty(&json)?)?;
    let objects: Vec<records::Json> = records.iter().map(Record::to_json).collect();
    write(out, "results.csv", &records::to_csv(&objects)?)?;
    Ok(())
}

/// Pretty JSON with a final newline.
pub fn pretty<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}
