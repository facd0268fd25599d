//! The Markdown summary of a bench: the medians table (printed at the end
//! and written to summary.md with the conditions, warnings and failures).
use super::{conditions::Conditions, records::Record, stats::Row};

/// `1.23M`, `456k`, `789`: three significant digits with an SI suffix.
pub fn si(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let decimals = match scaled.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{scaled:.decimals$}{suffix}")
}

fn or_dash(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// The medians table; `instructions` names the per-op column for icount.
pub fn table(rows: &[Row], instructions: bool) -> String {
    let per_op = if instructions { "instr/op" } else { "cycles/op" };
    let per_pair = if instructions { "alloc instr/pair" } else { "alloc cycles/pair" };
    let mut text = format!(
        "| workload | cpus | alloc | reps | ops/s | {per_op} | {per_pair} | instr/alloc | instr/free | locks/1k ops | lock wait | cache hits | slab/x |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let cells = [
            row.workload.clone(),
            row.cpus.to_string(),
            row.alloc.clone(),
            format!("{}/{}", row.reps_ok, row.reps),
            or_dash(row.ops_per_sec.map(|s| s.median), si),
            or_dash(row.cycles_per_op, |v| format!("{v:.1}")),
            or_dash(row.allocator_cycles_per_pair, |v| format!("{v:.1}")),
            or_dash(row.instructions_per_alloc, |v| format!("{v:.3}")),
            or_dash(row.instructions_per_free, |v| format!("{v:.3}")),
            or_dash(row.locks_per_kop, |v| format!("{v:.2}")),
            or_dash(row.lock_wait_share.map(|s| s.median), percent),
            or_dash(row.cache_hit_rate, percent),
            or_dash(row.slab_ratio, |v| format!("{v:.2}")),
        ];
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    text
}

/// summary.md.
pub fn summary(conditions: &Conditions, rows: &[Row], records: &[Record]) -> String {
    let instructions = conditions.accel == "icount";
    let mut text = format!("# Allocator benchmark\n\n{}", conditions.markdown());
    text.push_str(
        "\n## Medians over repetitions\n\n\
         `reps`: boots with a BENCH record / boots. `instr/alloc`, `instr/free`: the \
         allocator's exact instructions per allocation and per free (`local` on one CPU \
         under icount, counted between markers; `alloc instr/pair` is the older \
         estimate). `locks/1k ops`: global-lock \
         acquisitions per 1000 operations. `lock wait`: share of the CPUs' time spent \
         waiting for the global lock. `cache hits`: small-class operations served by a \
         CPU cache. `slab/x`: slab's median ops/s divided by this row's (same workload \
         and CPU count): above 1, slab is faster.\n\n",
    );
    text.push_str(&table(rows, instructions));
    let failed: Vec<&Record> = records.iter().filter(|r| !r.ok()).collect();
    if !failed.is_empty() {
        text.push_str(&format!("\n## Failed boots ({})\n\n", failed.len()));
        for record in failed {
            let why = record.bench.as_ref().err().map_or("", String::as_str);
            let log = super::failed_log_name(&record.cell);
            text.push_str(&format!("- {}: {why} (serial output: `{log}`)\n", record.cell));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Spread;

    fn row(alloc: &str, ops: Option<f64>, ratio: Option<f64>) -> Row {
        Row {
            workload: "local".into(),
            cpus: 2,
            alloc: alloc.into(),
            reps_ok: usize::from(ops.is_some()) * 3,
            reps: 3,
            ops_per_sec: ops.map(|median| Spread { median, min: median, max: median }),
            cycles_per_op: ops.map(|_| 41.5),
            allocator_cycles_per_pair: ops.map(|_| 35.5),
            instructions_per_alloc: ops.map(|_| 20.3125),
            instructions_per_free: None,
            locks_per_kop: ops.map(|_| 15.0),
            lock_wait_share: ops.map(|_| Spread { median: 0.125, min: 0.1, max: 0.2 }),
            cache_hit_rate: ops.map(|_| 0.984),
            slab_ratio: ratio,
        }
    }

    #[test]
    fn summary_has_conditions_table_and_failures() {
        let conditions = Conditions {
            date_utc: "2026-05-21T10:30:00Z".into(),
            command_line: "runner k bench".into(),
            kernel: "k".into(),
            kernel_commit: "abc1234".into(),
            host_cpu: "CPU".into(),
            host_cores: 8,
            accel: "icount".into(),
            accel_reason: "requested".into(),
            qemu_version: "QEMU 7.2".into(),
            warnings: vec!["icount: ticks are instructions".into()],
        };
        let failed = Record {
            cell: crate::bench::matrix::Cell {
                alloc: "slab".into(),
                workload: "local".into(),
                cpus: 2,
                rep: 3,
            },
            accel: crate::accel::Accel::Icount,
            boot_seconds: 1.0,
            host_core_roundtrip_ns: [None, None],
            bench: Err("timeout after 600 s".into()),
        };
        let text = summary(&conditions, &[row("slab", None, None)], &[failed]);
        assert!(text.starts_with("# Allocator benchmark\n\n- date: 2026-05-21T10:30:00Z\n"));
        assert!(text.contains("> **Warning:** icount: ticks are instructions\n"));
        assert!(text.contains("| ops/s | instr/op | alloc instr/pair |"));
        assert!(text.contains("| local | 2 | slab | 0/3 |"));
        assert!(text.ends_with(
            "## Failed boots (1)\n\n- alloc=slab workload=local cpus=2 rep=3: timeout after 600 s \
             (serial output: `failed/slab_local_2cpus_rep3.log`)\n"
        ));
    }

    #[test]
    fn numbers() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(45_600.0), "45.6k");
        assert_eq!(si(789.0), "789");
        assert_eq!(si(2.5e9), "2.50G");
        assert_eq!(si(0.5), "0.50");
    }

    #[test]
    fn table_shape() {
        let rows = [row("locked", Some(1.0e6), Some(2.5)), row("slab", None, None)];
        let text = table(&rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            "| workload | cpus | alloc | reps | ops/s | cycles/op | alloc cycles/pair | instr/alloc | instr/free | locks/1k ops | lock wait | cache hits | slab/x |"
        );
        assert_eq!(lines[1].matches('|').count(), lines[0].matches('|').count());
        assert_eq!(
            lines[2],
            "| local | 2 | locked | 3/3 | 1.00M | 41.5 | 35.5 | 20.312 | - | 15.00 | 12.5% | 98.4% | 2.50 |"
        );
        assert_eq!(lines[3], "| local | 2 | slab | 0/3 | - | - | - | - | - | - | - | - | - |");
        assert!(
            table(&rows, true).starts_with("| workload | cpus | alloc | reps | ops/s | instr/op |")
        );
    }
}
