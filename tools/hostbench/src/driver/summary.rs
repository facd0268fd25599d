//! Medians over repetitions: one row per (workload, thread count,
//! allocator), each allocator's wall time against glibc's in the same
//! repetition, and each allocator's scaling over thread counts.
use runner::bench::{
    report::si,
    stats::{self as runner_stats, Spread, median},
};

use super::{Record, conditions::Conditions};

/// The allocator the wall-time ratios compare against.
pub const BASELINE: &str = "glibc";

/// One (workload, thread count, allocator) over its repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    pub threads: usize,
    pub alloc: String,
    pub reps_ok: usize,
    pub reps: usize,
    pub ops_per_sec: Option<Spread>,
    pub wall_seconds: Option<Spread>,
    pub cycles_per_op: Option<f64>,
    pub peak_rss_kib: Option<f64>,
    /// This allocator's wall time over glibc's in the same repetition:
    /// median, smallest and largest over the repetitions. Above 1, slower
    /// than glibc.
    pub wall_vs_glibc: Option<Spread>,
    /// ops/s at this thread count over ops/s at the smallest thread count:
    /// the ratio of the medians, and the median of the per-repetition
    /// ratios.
    pub scaling: Option<(f64, f64)>,
}

fn matching<'a>(
    records: &'a [Record],
    workload: &str,
    threads: usize,
    alloc: &str,
) -> impl Iterator<Item = &'a Record> {
    records.iter().filter(move |r| {
        r.cell.workload == workload && r.cell.threads == threads && r.cell.alloc == alloc
    })
}

/// `key` of the successful run of the cell in repetition `rep`.
fn of_rep(
    records: &[Record],
    workload: &str,
    threads: usize,
    alloc: &str,
    rep: u32,
    key: &str,
) -> Option<f64> {
    matching(records, workload, threads, alloc).find(|r| r.cell.rep == rep)?.number(key)
}

/// Per-repetition ratios `numerator / denominator` of `key`.
fn rep_ratios(records: &[Record], pairs: impl Fn(u32) -> Option<(f64, f64)>) -> Vec<f64> {
    let reps = records.iter().map(|r| r.cell.rep).max().unwrap_or(0);
    (1..=reps).filter_map(pairs).filter(|(_, d)| *d > 0.0).map(|(n, d)| n / d).collect()
}

/// One row per (workload, thread count, allocator), in the order of the lists.
pub fn summarize(
    records: &[Record],
    workloads: &[String],
    threads: &[usize],
    allocs: &[String],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for workload in workloads {
        for &count in threads {
            for alloc in allocs {
                let all: Vec<&Record> = matching(records, workload, count, alloc).collect();
                let values = |key: &str| -> Vec<f64> {
                    all.iter().filter(|r| r.ok()).filter_map(|r| r.number(key)).collect()
                };
                let versus_glibc = rep_ratios(records, |rep| {
                    Some((
                        of_rep(records, workload, count, alloc, rep, "elapsed_seconds")?,
                        of_rep(records, workload, count, BASELINE, rep, "elapsed_seconds")?,
                    ))
                });
                let base = threads[0];
                let ops_at =
                    |n: usize| median(&values_of(records, workload, n, alloc, "ops_per_sec"));
                let scaling = match (ops_at(count), ops_at(base)) {
                    (Some(here), Some(there)) if there > 0.0 => {
                        let per_rep = rep_ratios(records, |rep| {
                            Some((
                                of_rep(records, workload, count, alloc, rep, "ops_per_sec")?,
                                of_rep(records, workload, base, alloc, rep, "ops_per_sec")?,
                            ))
                        });
                        median(&per_rep).map(|per_rep| (here / there, per_rep))
                    }
                    _ => None,
                };
                rows.push(Row {
                    workload: workload.clone(),
                    threads: count,
                    alloc: alloc.clone(),
                    reps_ok: all.iter().filter(|r| r.ok()).count(),
                    reps: all.len(),
                    ops_per_sec: Spread::of(&values("ops_per_sec")),
                    wall_seconds: Spread::of(&values("elapsed_seconds")),
                    cycles_per_op: median(&values("cycles_per_op_median")),
                    peak_rss_kib: median(&values("peak_rss_kib")),
                    wall_vs_glibc: Spread::of(&versus_glibc),
                    scaling,
                });
            }
        }
    }
    rows
}

fn values_of(
    records: &[Record],
    workload: &str,
    threads: usize,
    alloc: &str,
    key: &str,
) -> Vec<f64> {
    matching(records, workload, threads, alloc).filter_map(|r| r.number(key)).collect()
}

fn or_dash(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

/// The medians table and the scaling table, Markdown.
pub fn tables(rows: &[Row]) -> String {
    let mut text = String::from(
        "| workload | threads | alloc | reps | ops/s | wall ms | cycles/op | cycles/pair | peak RSS MiB | wall / glibc (median, min..max) |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let cells = [
            row.workload.clone(),
            row.threads.to_string(),
            row.alloc.clone(),
            format!("{}/{}", row.reps_ok, row.reps),
            or_dash(row.ops_per_sec.map(|s| s.median), si),
            or_dash(row.wall_seconds.map(|s| s.median * 1000.0), |v| format!("{v:.2}")),
            or_dash(row.cycles_per_op, |v| format!("{v:.1}")),
            or_dash(row.cycles_per_op, |v| format!("{:.1}", 2.0 * v)),
            or_dash(row.peak_rss_kib, |v| format!("{:.1}", v / 1024.0)),
            or_dash(row.wall_vs_glibc.map(|s| s.median), |v| {
                let s = row.wall_vs_glibc.expect("a median has a spread");
                format!("{v:.2} ({:.2}..{:.2})", s.min, s.max)
            }),
        ];
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    let scaled: Vec<&Row> = rows.iter().filter(|r| r.scaling.is_some()).collect();
    let base = rows.iter().map(|r| r.threads).min().unwrap_or(1);
    if scaled.iter().any(|r| r.threads != base) {
        text.push_str(&format!(
            "\nScaling: ops/s at this thread count over ops/s at {base} thread(s), same allocator \
             (ratio of medians; median of the per-repetition ratios).\n\n\
             | workload | threads | alloc | ratio of medians | median per-rep ratio |\n\
             |---|---:|---|---:|---:|\n"
        ));
        for row in scaled.iter().filter(|r| r.threads != base) {
            let (of_medians, per_rep) = row.scaling.expect("filtered");
            text.push_str(&format!(
                "| {} | {} | {} | {of_medians:.2} | {per_rep:.2} |\n",
                row.workload, row.threads, row.alloc
            ));
        }
    }
    text
}

/// summary.md.
pub fn markdown(conditions: &Conditions, rows: &[Row], records: &[Record]) -> String {
    let mut text = format!("# Host allocator benchmark\n\n{}", conditions.markdown());
    text.push_str(
        "\n## Medians over repetitions\n\n\
         `reps`: runs with a BENCH record / runs. `wall ms`: from the first thread's start to \
         the last thread's end (TSC). `cycles/op`: median over timed batches of TSC ticks per \
         operation (an allocation or a free); `cycles/pair` is twice that. `wall / glibc`: \
         this allocator's wall time over glibc's in the same repetition (above 1, slower).\n\n",
    );
    text.push_str(&tables(rows));
    let failed: Vec<&Record> = records.iter().filter(|r| !r.ok()).collect();
    if !failed.is_empty() {
        text.push_str(&format!("\n## Failed runs ({})\n\n", failed.len()));
        for record in failed {
            let why = record.bench.as_ref().err().map_or("", String::as_str);
            text.push_str(&format!("- {}:\n\n```\n{why}\n```\n", record.cell));
        }
    }
    text
}

/// The rows as the runner's plots take them (threads as CPUs).
pub fn plot_rows(rows: &[Row]) -> Vec<runner_stats::Row> {
    rows.iter()
        .map(|row| runner_stats::Row {
            workload: row.workload.clone(),
            cpus: row.threads as u32,
            alloc: row.alloc.clone(),
            reps_ok: row.reps_ok,
            reps: row.reps,
            ops_per_sec: row.ops_per_sec,
            cycles_per_op: row.cycles_per_op,
            allocator_cycles_per_pair: None,
            instructions_per_alloc: None,
            instructions_per_free: None,
            locks_per_kop: None,
            lock_wait_share: None,
            cache_hit_rate: None,
            slab_ratio: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Cell;
    use serde_json::json;

    fn record(alloc: &str, threads: usize, rep: u32, seconds: Option<f64>) -> Record {
        let bench = match seconds {
            Some(seconds) => match json!({
                "elapsed_seconds": seconds,
                "ops_per_sec": 1000.0 * threads as f64 / seconds,
                "cycles_per_op_median": 10.0 * seconds,
            }) {
                serde_json::Value::Object(map) => Ok(map),
                _ => unreachable!(),
            },
            None => Err("timeout".to_string()),
        };
        Record {
            cell: Cell { alloc: alloc.into(), workload: "xfer".into(), threads, rep },
            process_seconds: 0.5,
            bench,
        }
    }

    #[test]
    fn wall_time_is_compared_with_glibc_rep_by_rep_and_scaling_with_one_thread() {
        let records = [
            record("glibc", 1, 1, Some(1.0)),
            record("slab", 1, 1, Some(2.0)),
            record("glibc", 2, 1, Some(1.0)),
            record("slab", 2, 1, Some(1.0)),
            // Repetition 2 is twice as slow for both: the ratios stay.
            record("glibc", 1, 2, Some(2.0)),
            record("slab", 1, 2, Some(4.0)),
            record("glibc", 2, 2, Some(2.0)),
            record("slab", 2, 2, None),
        ];
        let allocs = ["glibc", "slab"].map(String::from);
        let rows = summarize(&records, &["xfer".into()], &[1, 2], &allocs);
        let slab_1 = &rows[1];
        assert_eq!((slab_1.alloc.as_str(), slab_1.threads, slab_1.reps_ok), ("slab", 1, 2));
        assert_eq!(slab_1.wall_vs_glibc, Some(Spread { median: 2.0, min: 2.0, max: 2.0 }));
        let slab_2 = &rows[3];
        assert_eq!((slab_2.reps_ok, slab_2.reps), (1, 2));
        // Only repetition 1 has both: 1.0 / 1.0.
        assert_eq!(slab_2.wall_vs_glibc.map(|s| s.median), Some(1.0));
        // slab: 2000 ops/s at 2 threads against 500 and 250 at 1.
        let (of_medians, per_rep) = slab_2.scaling.expect("slab ran at both counts");
        assert_eq!(of_medians, 2000.0 / 375.0);
        assert_eq!(per_rep, 4.0);
        let text = tables(&rows);
        assert!(text.contains(
            "| xfer | 2 | slab | 1/2 | 2.00k | 1000.00 | 10.0 | 20.0 | - | 1.00 (1.00..1.00) |"
        ));
        assert!(text.contains("| xfer | 2 | glibc | 2.00 | 2.00 |"));
    }
}
