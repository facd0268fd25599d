//! The bench matrix: one cell per (allocator, workload, CPU count,
//! repetition), the order they boot in, and each boot's kernel command line.
use std::fmt;

/// One boot of a bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub alloc: String,
    pub workload: String,
    pub cpus: u32,
    /// 1-based.
    pub rep: u32,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alloc={} workload={} cpus={} rep={}",
            self.alloc, self.workload, self.cpus, self.rep
        )
    }
}

/// Every cell, repetitions outermost (so slow drift of the host spreads over
/// all allocators alike), then workloads, CPU counts, allocators.
pub fn cells(allocs: &[String], workloads: &[String], cpus: &[u32], reps: u32) -> Vec<Cell> {
    let mut cells = Vec::new();
    for rep in 1..=reps {
        for workload in workloads {
            for &count in cpus {
                for alloc in allocs {
                    cells.push(Cell {
                        alloc: alloc.clone(),
                        workload: workload.clone(),
                        cpus: count,
                        rep,
                    });
                }
            }
        }
    }
    cells
}

/// The kernel command line of a bench boot:
/// `job=bench workload=W alloc=A [ops=N] [trace=on] EXTRA`.
pub fn cmdline(workload: &str, alloc: &str, ops: Option<u64>, trace: bool, extra: &str) -> String {
    let mut words =
        vec!["job=bench".to_string(), format!("workload={workload}"), format!("alloc={alloc}")];
    if let Some(ops) = ops {
        words.push(format!("ops={ops}"));
    }
    if trace {
        words.push("trace=on".into());
    }
    if !extra.is_empty() {
        words.push(extra.to_string());
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_cell_once_with_reps_outermost() {
        let cells = cells(&names(&["locked", "slab"]), &names(&["local"]), &[1, 2], 2);
        assert_eq!(cells.len(), 8);
        let shown: Vec<String> = cells.iter().map(ToString::to_string).collect();
        assert_eq!(shown[0], "alloc=locked workload=local cpus=1 rep=1");
        assert_eq!(shown[1], "alloc=slab workload=local cpus=1 rep=1");
        assert_eq!(shown[2], "alloc=locked workload=local cpus=2 rep=1");
        assert_eq!(shown[4], "alloc=locked workload=local cpus=1 rep=2");
        assert_eq!(shown[7], "alloc=slab workload=local cpus=2 rep=2");
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            cmdline("local", "slab", None, false, ""),
            "job=bench workload=local alloc=slab"
        );
        assert_eq!(
            cmdline("xfer", "talc", Some(5000), true, "heap=64M"),
            "job=bench workload=xfer alloc=talc ops=5000 trace=on heap=64M"
        );
    }
}
