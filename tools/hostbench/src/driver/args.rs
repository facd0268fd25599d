//! The driver's command line.
use std::path::PathBuf;

use clap::Parser;

use crate::{harness::MAX_THREADS, workloads::WORKLOADS};

/// The allocators `--alloc` knows: a worker binary each.
pub const ALLOCATORS: &[&str] = &["glibc", "mimalloc", "jemalloc", "slab"];

/// The workloads run when `--workload` is not given (all but `null`).
pub const DEFAULT_WORKLOADS: &str =
    "pair,local,xfer,larson,xmalloc-test,cache-scratch,cache-thrash,threadtest,mstress,json";

#[derive(Debug, Parser)]
#[command(
    name = "hostbench",
    about = "The kernel bench's workloads on host threads, one worker binary per allocator \
             (docs/host-bench.md)"
)]
pub struct Args {
    /// Thread counts, comma-separated, each 1..=64.
    #[arg(long, default_value = "1,2", value_parser = parse_threads)]
    pub threads: ThreadList,
    /// Allocators, comma-separated: glibc, mimalloc, jemalloc, slab (slab-core's HostHeap).
    #[arg(long, default_value = "glibc,mimalloc,jemalloc,slab", value_parser = parse_allocs)]
    pub alloc: NameList,
    /// Workloads, comma-separated, or `all`.
    #[arg(long, default_value = DEFAULT_WORKLOADS, value_parser = parse_workloads)]
    pub workload: NameList,
    /// Runs of each (allocator, workload, thread count), interleaved: repetitions outermost.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reps: u32,
    /// Operations per thread (default: each workload's own, docs/host-bench.md).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: Option<u64>,
    /// Output folder (default bench-results/host-<UTC time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Wall-clock limit of each run, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Worker binaries' folder: use the `hostbench-worker-<alloc>` there
    /// instead of building them.
    #[arg(long)]
    pub workers: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadList(pub Vec<usize>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

/// The non-empty items of a comma-separated list; an empty one is an error.
fn items(text: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(format!("'{text}' has an empty item"));
    }
    Ok(items)
}

pub fn parse_threads(text: &str) -> Result<ThreadList, String> {
    let mut counts = Vec::new();
    for item in items(text)? {
        match item.parse::<usize>() {
            Ok(count) if (1..=MAX_THREADS).contains(&count) => counts.push(count),
            _ => return Err(format!("'{item}' is not a thread count (1..={MAX_THREADS})")),
        }
    }
    counts.sort_unstable();
    counts.dedup();
    Ok(ThreadList(counts))
}

fn names(text: &str, known: &[&str], what: &str) -> Result<NameList, String> {
    let mut names: Vec<String> = Vec::new();
    for item in items(text)? {
        if !known.contains(&item) {
            return Err(format!("unknown {what} '{item}' (known: {})", known.join(", ")));
        }
        if !names.iter().any(|name| name == item) {
            names.push(item.to_string());
        }
    }
    Ok(NameList(names))
}

pub fn parse_allocs(text: &str) -> Result<NameList, String> {
    names(text, ALLOCATORS, "allocator")
}

pub fn parse_workloads(text: &str) -> Result<NameList, String> {
    if text == "all" {
        return Ok(NameList(WORKLOADS.iter().map(|w| w.to_string()).collect()));
    }
    names(text, WORKLOADS, "workload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_and_sorted() {
        assert_eq!(parse_threads("2,1,2"), Ok(ThreadList(vec![1, 2])));
        assert_eq!(parse_threads("1,0"), Err("'0' is not a thread count (1..=64)".into()));
        assert_eq!(parse_threads("1,,2"), Err("'1,,2' has an empty item".into()));
        assert_eq!(
            parse_allocs("slab,tcmalloc"),
            Err("unknown allocator 'tcmalloc' (known: glibc, mimalloc, jemalloc, slab)".into())
        );
        assert_eq!(parse_allocs("slab,glibc").unwrap().0, ["slab", "glibc"]);
        assert!(parse_workloads("local,remote").unwrap_err().contains("unknown workload 'remote'"));
        assert_eq!(parse_workloads("all").unwrap().0.len(), WORKLOADS.len());
    }
}
