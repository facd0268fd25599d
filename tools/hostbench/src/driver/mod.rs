//! The driver (`hostbench`): builds one worker per allocator, runs every
//! (allocator, workload, thread count) cell `--reps` times, repetitions
//! outermost and allocators innermost (so the host's drift spreads over
//! all allocators alike), and writes results.json, results.csv,
//! conditions.json, summary.md and throughput plots (docs/host-bench.md).
pub mod args;
pub mod build;
pub mod conditions;
pub mod summary;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;
use serde_json::{Map, Value};

use args::Args;

/// Exit codes: every run gave a record; some failed; the driver's own error.
pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_DRIVER_ERROR: i32 = 2;

/// How often a running worker is checked for its end.
const POLL: Duration = Duration::from_millis(5);
/// Lines of a failed worker's output shown.
const TAIL_LINES: usize = 12;

/// The first keys of every record, in order (the first CSV columns).
pub const LEADING_KEYS: [&str; 13] = [
    "status",
    "error",
    "alloc",
    "workload",
    "cpus",
    "accel",
    "rep",
    "process_seconds",
    "elapsed_seconds",
    "ops",
    "ops_per_sec",
    "cycles_per_op_median",
    "cycles_per_op_p99",
];

/// One run of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub alloc: String,
    pub workload: String,
    pub threads: usize,
    /// 1-based.
    pub rep: u32,
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "alloc={} workload={} threads={} rep={}",
            self.alloc, self.workload, self.threads, self.rep
        )
    }
}

/// One cell's outcome: the worker's BENCH record, or why there is none.
#[derive(Debug, Clone)]
pub struct Record {
    pub cell: Cell,
    pub process_seconds: f64,
    pub bench: Result<Map<String, Value>, String>,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.bench.is_ok()
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        self.bench.as_ref().ok()?.get(key)?.as_f64()
    }

    /// The record as written to results.json: `LEADING_KEYS`, then the
    /// worker's other keys in its order.
    pub fn to_json(&self) -> Map<String, Value> {
        let bench = self.bench.as_ref().ok();
        let mut json = Map::new();
        for key in LEADING_KEYS {
            let value = match key {
                "status" => Value::from(if self.ok() { "ok" } else { "failed" }),
                "error" => self.bench.as_ref().err().map_or(Value::Null, |e| e.clone().into()),
                "alloc" => self.cell.alloc.clone().into(),
                "workload" => self.cell.workload.clone().into(),
                "cpus" => self.cell.threads.into(),
                "accel" => "native".into(),
                "rep" => self.cell.rep.into(),
                "process_seconds" => ((self.process_seconds * 1000.0).round() / 1000.0).into(),
                other => bench.and_then(|b| b.get(other)).cloned().unwrap_or(Value::Null),
            };
            json.insert(key.to_string(), value);
        }
        for (key, value) in bench.into_iter().flatten() {
            if !json.contains_key(key) {
                json.insert(key.clone(), value.clone());
            }
        }
        json
    }
}

/// Every cell, repetitions outermost, then workloads, thread counts,
/// allocators.
pub fn cells(allocs: &[String], workloads: &[String], threads: &[usize], reps: u32) -> Vec<Cell> {
    let mut cells = Vec::new();
    for rep in 1..=reps {
        for workload in workloads {
            for &count in threads {
                for alloc in allocs {
                    cells.push(Cell {
                        alloc: alloc.clone(),
                        workload: workload.clone(),
                        threads: count,
                        rep,
                    });
                }
            }
        }
    }
    cells
}

/// Runs the driver; returns the exit code.
pub fn run(args: &Args) -> i32 {
    match drive(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hostbench: error: {error:#}");
            EXIT_DRIVER_ERROR
        }
    }
}

fn drive(args: &Args) -> anyhow::Result<i32> {
    let allocs = &args.alloc.0;
    let workers = match &args.workers {
        Some(folder) => folder.clone(),
        None => build::build_workers(allocs)?,
    };
    for alloc in allocs {
        let path = build::worker_path(&workers, alloc);
        anyhow::ensure!(path.is_file(), "no {alloc} worker at {}", path.display());
    }
    let out = output_folder(args.out.as_deref())?;
    let max_threads = args.threads.0.iter().copied().max().unwrap_or(1);
    let mut conditions = conditions::Conditions::gather(max_threads);
    for warning in &conditions.warnings {
        println!("hostbench: warning: {warning}");
    }
    let cells = cells(allocs, &args.workload.0, &args.threads.0, args.reps);
    println!(
        "hostbench: {} runs (allocators {} x workloads {} x thread counts {} x reps {}) into {}",
        cells.len(),
        allocs.len(),
        args.workload.0.len(),
        args.threads.0.len(),
        args.reps,
        out.display()
    );
    let mut records = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let record = run_cell(&workers, cell, args.ops, Duration::from_secs(args.timeout));
        let position = format!("[{}/{}]", index + 1, cells.len());
        report_cell(&position, &record);
        records.push(record);
        write_results(&out, &records)?;
    }
    conditions.finish(&records);
    write(&out, "conditions.json", &pretty(&conditions)?)?;

    let rows = summary::summarize(&records, &args.workload.0, &args.threads.0, allocs);
    write(&out, "summary.md", &summary::markdown(&conditions, &rows, &records))?;
    let mut written =
        ["conditions.json", "results.json", "results.csv", "summary.md"].map(String::from).to_vec();
    for workload in &args.workload.0 {
        let name = format!("throughput_{workload}.svg");
        let svg = runner::bench::plot::throughput(&summary::plot_rows(&rows), workload, "host")
            .map_err(|e| anyhow::anyhow!(e))?;
        write(&out, &name, &svg)?;
        written.push(name);
    }
    println!();
    print!("{}", summary::tables(&rows));
    println!();
    for warning in &conditions.warnings {
        println!("hostbench: warning: {warning}");
    }
    println!("hostbench: wrote {} in {}", written.join(", "), out.display());
    let failed = records.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        println!("hostbench: {failed} of {} runs failed (see summary.md)", records.len());
        Ok(EXIT_FAILURE)
    } else {
        println!("hostbench: all {} runs gave a BENCH record", records.len());
        Ok(EXIT_SUCCESS)
    }
}

/// Runs one cell's worker with a wall-clock limit.
pub fn run_cell(workers: &Path, cell: &Cell, ops: Option<u64>, timeout: Duration) -> Record {
    let started = Instant::now();
    let bench = run_worker(workers, cell, ops, timeout);
    Record { cell: cell.clone(), process_seconds: started.elapsed().as_secs_f64(), bench }
}

fn run_worker(
    workers: &Path,
    cell: &Cell,
    ops: Option<u64>,
    timeout: Duration,
) -> Result<Map<String, Value>, String> {
    let mut command = Command::new(build::worker_path(workers, &cell.alloc));
    command
        .args(["--alloc", &cell.alloc, "--workload", &cell.workload])
        .args(["--threads", &cell.threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ops) = ops {
        command.args(["--ops", &ops.to_string()]);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start the worker: {e}"))?;
    // Drain both pipes on their own threads so a chatty worker never blocks.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("cannot wait for the worker: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let tail = || {
        let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    };
    match status {
        None => return Err(format!("timeout after {} s; output:\n{}", timeout.as_secs(), tail())),
        Some(status) if !status.success() => {
            return Err(format!("the worker failed ({status}); output:\n{}", tail()));
        }
        Some(_) => {}
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("BENCH "))
        .ok_or_else(|| format!("no BENCH line in the worker's output:\n{}", tail()))?;
    let bench: Map<String, Value> =
        serde_json::from_str(line).map_err(|e| format!("malformed BENCH record ({e}): {line}"))?;
    check_cell(&bench, cell)?;
    Ok(bench)
}

/// The record must be of the cell asked for and have its numbers.
fn check_cell(bench: &Map<String, Value>, cell: &Cell) -> Result<(), String> {
    let text = |key: &str| bench.get(key).and_then(Value::as_str);
    if text("alloc") != Some(&cell.alloc) || text("workload") != Some(&cell.workload) {
        return Err(format!(
            "BENCH record is of alloc {:?} workload {:?}, not {} {}",
            text("alloc"),
            text("workload"),
            cell.alloc,
            cell.workload
        ));
    }
    if bench.get("threads").and_then(Value::as_u64) != Some(cell.threads as u64) {
        return Err(format!("BENCH record's threads is not {}", cell.threads));
    }
    for key in ["ops", "ops_per_sec", "elapsed_seconds", "cycles_per_op_median", "timestamp_hz"] {
        if bench.get(key).and_then(Value::as_f64).is_none() {
            return Err(format!("BENCH record lacks the number '{key}'"));
        }
    }
    Ok(())
}

fn report_cell(position: &str, record: &Record) {
    match &record.bench {
        Ok(_) => {
            let ops = record.number("ops_per_sec").map_or("-".into(), runner::bench::report::si);
            let per_op = record.number("cycles_per_op_median").unwrap_or(f64::NAN);
            let wall_ms = record.number("elapsed_seconds").unwrap_or(f64::NAN) * 1000.0;
            println!(
                "hostbench: {position} {}: {ops} ops/s, {per_op:.1} cycles/op, {wall_ms:.2} ms",
                record.cell
            );
        }
        Err(why) => {
            println!("hostbench: {position} FAILED {}: {why}", record.cell);
        }
    }
}

/// The output folder, created.
fn output_folder(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let folder = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-results/host-{}",
            runner::bench::conditions::utc_stamp(SystemTime::now())
        ))
    });
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    Ok(folder)
}

fn write(folder: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = folder.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn pretty<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Rewrites results.json and results.csv (after every run, so an
/// interrupted bench keeps what it measured).
fn write_results(out: &Path, records: &[Record]) -> anyhow::Result<()> {
    let objects: Vec<Map<String, Value>> = records.iter().map(Record::to_json).collect();
    let json: Vec<Value> = objects.iter().cloned().map(Value::Object).collect();
    write(out, "results.json", &pretty(&json)?)?;
    write(out, "results.csv", &runner::bench::records::to_csv(&objects)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).expect("test JSON")
    }

    #[test]
    fn a_record_of_another_cell_or_without_its_numbers_is_refused() {
        let cell = Cell { alloc: "slab".into(), workload: "xfer".into(), threads: 2, rep: 1 };
        let good = r#"{"alloc":"slab","workload":"xfer","threads":2,"ops":10,"ops_per_sec":5.0,
            "elapsed_seconds":2.0,"cycles_per_op_median":3.0,"timestamp_hz":1e9}"#;
        assert_eq!(check_cell(&bench(good), &cell), Ok(()));
        let other_alloc = good.replace("\"slab\"", "\"glibc\"");
        assert!(
            check_cell(&bench(&other_alloc), &cell).unwrap_err().contains("alloc Some(\"glibc\")")
        );
        let other_threads = good.replace("\"threads\":2", "\"threads\":1");
        assert_eq!(
            check_cell(&bench(&other_threads), &cell),
            Err("BENCH record's threads is not 2".into())
        );
        let no_ops = good.replace("\"ops\":10,", "");
        assert_eq!(
            check_cell(&bench(&no_ops), &cell),
            Err("BENCH record lacks the number 'ops'".into())
        );
    }

    #[test]
    fn cells_run_repetitions_outermost_and_allocators_innermost() {
        let allocs = ["glibc", "slab"].map(String::from);
        let cells = cells(&allocs, &["local".into()], &[1, 2], 2);
        let order: Vec<String> =
            cells.iter().map(|c| format!("{}{}{}", c.rep, c.threads, c.alloc)).collect();
        assert_eq!(
            order,
            ["11glibc", "11slab", "12glibc", "12slab", "21glibc", "21slab", "22glibc", "22slab"]
        );
    }
}
