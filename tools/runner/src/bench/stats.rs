//! Medians over repetitions: one summary row per (workload, CPU count,
//! allocator), with each allocator's throughput ratio to `slab`.
use super::records::Record;

/// The allocator the ratios compare against.
pub const BASELINE: &str = "slab";

/// Median, minimum and maximum of some repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none. The median of an
    /// even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Self { median, min: sorted[0], max: sorted[sorted.len() - 1] })
    }
}

/// The median of `values`, `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    Spread::of(values).map(|s| s.median)
}

/// One (workload, CPU count, allocator) over its repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    pub cpus: u32,
    pub alloc: String,
    /// Repetitions with a BENCH record, and all repetitions.
    pub reps_ok: usize,
    pub reps: usize,
    pub ops_per_sec: Option<Spread>,
    pub cycles_per_op: Option<f64>,
    /// `local` only: the allocator's own cycles per alloc+free pair (the
    /// workload's loop subtracted).
    pub allocator_cycles_per_pair: Option<f64>,
    /// `local` on one CPU under icount: the allocator's exact instructions
    /// per allocation and per free, counted between markers.
    pub instructions_per_alloc: Option<f64>,
    pub instructions_per_free: Option<f64>,
    /// Global-lock acquisitions per 1000 operations.
    pub locks_per_kop: Option<f64>,
    pub lock_wait_share: Option<Spread>,
    pub cache_hit_rate: Option<f64>,
    /// Median ops/s of `slab` divided by this row's: above 1, slab is faster.
    pub slab_ratio: Option<f64>,
}

/// One row per (workload, CPU count, allocator), in the order of the lists.
pub fn summarize(
    records: &[Record],
    workloads: &[String],
    cpus: &[u32],
    allocs: &[String],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for workload in workloads {
        for &count in cpus {
            let start = rows.len();
            for alloc in allocs {
                let reps: Vec<&Record> = records
                    .iter()
                    .filter(|r| {
                        r.cell.workload == *workload
                            && r.cell.cpus == count
                            && r.cell.alloc == *alloc
                    })
                    .collect();
                let ok: Vec<&Record> = reps.iter().copied().filter(|r| r.ok()).collect();
                let values =
                    |key: &str| -> Vec<f64> { ok.iter().filter_map(|r| r.number(key)).collect() };
                let locks_per_kop: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| {
                        let ops = r.number("ops").filter(|&ops| ops > 0.0)?;
                        Some(r.number("lock_acquisitions")? * 1000.0 / ops)
                    })
                    .collect();
                rows.push(Row {
                    workload: workload.clone(),
                    cpus: count,
                    alloc: alloc.clone(),
                    reps_ok: ok.len(),
                    reps: reps.len(),
                    ops_per_sec: Spread::of(&values("ops_per_sec")),
                    cycles_per_op: median(&values("cycles_per_op_median")),
                    allocator_cycles_per_pair: median(&values("allocator_cycles_per_pair")),
                    instructions_per_alloc: median(&values("instructions_per_alloc")),
                    instructions_per_free: median(&values("instructions_per_free")),
                    locks_per_kop: median(&locks_per_kop),
                    lock_wait_share: Spread::of(&values("lock_wait_share")),
                    cache_hit_rate: median(&values("cache_hit_rate")),
                    slab_ratio: None,
                });
            }
            let group = &mut rows[start..];
            let baseline = group
                .iter()
                .find(|row| row.alloc == BASELINE)
                .and_then(|row| row.ops_per_sec)
                .map(|s| s.median);
            for row in group {
                row.slab_ratio = match (baseline, row.ops_per_sec) {
                    (Some(slab), Some(this)) if this.median > 0.0 => Some(slab / this.median),
                    _ => None,
                };
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accel::Accel,
        bench::{
            matrix::Cell,
            records::{parse_bench, tests::bench_line},
        },
    };

    fn record(alloc: &str, cpus: u32, rep: u32, ops_per_sec: Option<f64>) -> Record {
        Record {
            cell: Cell { alloc: alloc.into(), workload: "local".into(), cpus, rep },
            accel: Accel::Tcg,
            boot_seconds: 1.0,
            host_core_roundtrip_ns: [None, None],
            bench: match ops_per_sec {
                Some(rate) => Ok(parse_bench(&bench_line(alloc, cpus, rate)).unwrap().unwrap()),
                None => Err("boom".into()),
            },
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        assert_eq!(Spread::of(&[2.0, 9.0, 4.0]), Some(Spread { median: 4.0, min: 2.0, max: 9.0 }));
    }

    #[test]
    fn rows_and_ratios() {
        let records = vec![
            record("locked", 1, 1, Some(100.0)),
            record("slab", 1, 1, Some(400.0)),
            record("locked", 1, 2, Some(300.0)),
            record("slab", 1, 2, Some(600.0)),
            record("talc", 1, 1, Some(1000.0)),
            record("talc", 1, 2, None),
            record("locked", 2, 1, None),
            record("slab", 2, 1, Some(800.0)),
        ];
        let allocs: Vec<String> = ["locked", "slab", "talc"].map(String::from).into();
        let rows = summarize(&records, &["local".into()], &[1, 2], &allocs);
        assert_eq!(rows.len(), 6);
        let locked = &rows[0];
        assert_eq!((locked.alloc.as_str(), locked.cpus), ("locked", 1));
        assert_eq!(locked.ops_per_sec, Some(Spread { median: 200.0, min: 100.0, max: 300.0 }));
        assert_eq!(locked.slab_ratio, Some(2.5));
        assert_eq!(locked.locks_per_kop, Some(15.0));
        assert_eq!(locked.cycles_per_op, Some(41.5));
        assert_eq!(rows[1].slab_ratio, Some(1.0));
        let talc = &rows[2];
        assert_eq!((talc.reps_ok, talc.reps), (1, 2));
        assert_eq!(talc.slab_ratio, Some(0.5));
        let locked2 = &rows[3];
        assert_eq!((locked2.reps_ok, locked2.reps), (0, 1));
        assert_eq!((locked2.ops_per_sec, locked2.slab_ratio), (None, None));
        // No talc boot at 2 CPUs at all.
        assert_eq!((rows[5].reps, rows[5].slab_ratio), (0, None));

        let without_slab = summarize(&records, &["local".into()], &[1], &allocs[..1]);
        assert_eq!(without_slab[0].slab_ratio, None);
    }
}
