//! `job=soak`: millions of random heap operations on every CPU at once,
//! every block checked, and the heap's books balanced at the end
//! (`docs/soak.md`).
//!
//! Each CPU keeps a table of live blocks and, `ops=` times in all (split
//! evenly over the CPUs), picks a random slot: an empty slot gets a new
//! block (1 B to 64 KiB, skewed small; alignment 1 to 4096); a full slot's
//! block is freed, reallocated (grown or shrunk; the kept prefix checked) or
//! handed through a ring to a random other CPU, which checks and frees it.
//! Every block holds a pattern derived from its address and size, checked
//! before it goes. At the end every CPU frees what it holds, every cache is
//! drained, and the backend's free bytes must equal those at the start.
//! One `SOAK {json}` record (`docs/interface.md`) reports the run.
mod block;
mod ring;

use alloc::{boxed::Box, vec::Vec};
use core::{
    alloc::Layout,
    fmt,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use self::{
    block::{Block, Mismatch, mix64},
    ring::Rings,
};
use crate::{
    ExitCode,
    boot::BootInfo,
    heap,
    jobs::stress,
    json::{JsonArray, JsonStr},
    println,
    smp::{self, MAX_CPUS},
    time,
};

/// Operations in all when `ops=` is not given.
const DEFAULT_OPS: u64 = 1_000_000;
/// The random seed when `seed=` is not given.
const DEFAULT_SEED: u64 = 1;
/// Live-block slots per CPU.
const LIVE_SLOTS: usize = 1024;
/// Largest block the soak asks for (and grows a block to).
const MAX_BLOCK_BYTES: usize = 64 * 1024;
/// Sizes come in power-of-two bands 1, 2-3, 4-7, ..., 32768-65535, 65536.
const SIZE_BANDS: usize = 17;
/// Alignments up to `1 << MAX_ALIGN_LOG2` (4096); typical ones up to 16.
const MAX_ALIGN_LOG2: usize = 12;
const TYPICAL_ALIGN_LOG2: usize = 4;
/// Live blocks of all CPUs together stay within the heap's size divided by
/// this, leaving the rest for slabs, caches and fragmentation.
const HEAP_SHARE_DIVISOR: usize = 4;
/// Over its share, a CPU's new blocks are at most this big and aligned at
/// most to 16, so tables of them stay small.
const SMALL_BLOCK_BYTES: usize = 256;
/// Each CPU adds up everyone's live bytes once per this many operations.
const SAMPLE_EVERY_OPS: u64 = 1024;
/// CPU 0 prints its progress this many times.
const PROGRESS_LINES: u64 = 10;
/// Corruption lines printed at most (all of them are counted).
const MAX_CORRUPTION_LINES: usize = 16;

/// What a CPU does with the block in a full slot, out of `FULL_SLOT_CHOICES`:
/// free it below `FREE_BELOW`, reallocate it below `REALLOC_BELOW`, hand it
/// over otherwise. Empty slots always get a block, so about 60 % of the
/// slots are full and the mix is about 40 % allocations, 20 % frees, 21 %
/// reallocs, 19 % handovers: about half of the frees cross CPUs, and a
/// third even counting every realloc as a free (`docs/soak.md`).
const FULL_SLOT_CHOICES: usize = 20;
const FREE_BELOW: usize = 6;
const REALLOC_BELOW: usize = 13;

/// `job=soak`.
pub fn run_job(boot: &'static BootInfo) -> ExitCode {
    let plan = match Plan::from_boot(boot) {
        Ok(plan) => plan,
        Err(message) => {
            println!("soak: {message}");
            return ExitCode::Failure;
        }
    };
    println!(
        "soak: {} ops over {} cpus (alloc {}, seed {}), live blocks within {} bytes per cpu",
        plan.ops, plan.cpus, plan.alloc, plan.seed, plan.share_bytes_per_cpu
    );
    let shared = Shared::new(plan.cpus);
    let free_bytes_start = stress::drained_free_bytes();
    let tallies = smp::run_on_all_cpus(|cpu| Worker::new(cpu, &plan, &shared).run());
    let free_bytes_end = stress::drained_free_bytes();
    let report = Report::new(&plan, &shared, &tallies, free_bytes_start, free_bytes_end);
    drop(shared);
    heap::print_report();
    heap::print_heapstats_record(&heap::stats());
    report.print_summary();
    report.print_record();
    report.verdict()
}

/// The run as the command line sets it.
struct Plan {
    ops: u64,
    seed: u64,
    cpus: usize,
    alloc: &'static str,
    heap_bytes: usize,
    share_bytes_per_cpu: usize,
}

impl Plan {
    fn from_boot(boot: &'static BootInfo) -> Result<Self, &'static str> {
        let ops = match boot.cmdline.get("ops").map(str::parse::<u64>) {
            None => DEFAULT_OPS,
            Some(Ok(ops)) if ops > 0 => ops,
            Some(_) => return Err("ops= must be a positive number of operations (all CPUs)"),
        };
        let seed = match boot.cmdline.get("seed") {
            None => DEFAULT_SEED,
            Some(text) => parse_u64(text).ok_or("seed= must be a number (decimal or 0x hex)")?,
        };
        let cpus = smp::online_cpus();
        Ok(Self {
            ops,
            seed,
            cpus,
            alloc: boot.allocator.name,
            heap_bytes: boot.heap_bytes,
            share_bytes_per_cpu: boot.heap_bytes / HEAP_SHARE_DIVISOR / cpus,
        })
    }

    /// CPU `cpu`'s part of the operations.
    fn ops_for(&self, cpu: usize) -> u64 {
        let cpus = self.cpus as u64;
        self.ops / cpus + u64::from((cpu as u64) < self.ops % cpus)
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A value alone on its cache line.
#[repr(align(64))]
struct CachePadded<T>(T);

/// What the CPUs share while they soak.
struct Shared {
    rings: Rings,
    /// CPU `i` has done its operations, freed its table and will send no
    /// more blocks.
    finished: [AtomicBool; MAX_CPUS],
    /// Bytes of CPU `i`'s blocks in rings (added by the sender, taken off by
    /// the receiver once freed).
    in_flight_bytes: [CachePadded<AtomicUsize>; MAX_CPUS],
    /// Bytes in CPU `i`'s table (written by CPU `i` only).
    held_bytes: [CachePadded<AtomicUsize>; MAX_CPUS],
    max_live_bytes: AtomicUsize,
    corruption_lines: AtomicUsize,
}

impl Shared {
    fn new(cpus: usize) -> Box<Self> {
        Box::new(Self {
            rings: Rings::new(cpus),
            finished: [const { AtomicBool::new(false) }; MAX_CPUS],
            in_flight_bytes: [const { CachePadded(AtomicUsize::new(0)) }; MAX_CPUS],
            held_bytes: [const { CachePadded(AtomicUsize::new(0)) }; MAX_CPUS],
            max_live_bytes: AtomicUsize::new(0),
            corruption_lines: AtomicUsize::new(0),
        })
    }

    /// Adds up every CPU's live bytes (tables and rings) and keeps the
    /// largest sum seen.
    fn sample_live_bytes(&self, cpus: usize) {
        let live: usize = (0..cpus)
            .map(|cpu| {
                self.held_bytes[cpu].0.load(Ordering::Relaxed)
                    + self.in_flight_bytes[cpu].0.load(Ordering::Relaxed)
            })
            .sum();
        self.max_live_bytes.fetch_max(live, Ordering::Relaxed);
    }

    fn all_finished(&self, cpus: usize) -> bool {
        self.finished[..cpus].iter().all(|done| done.load(Ordering::Acquire))
    }

    /// Prints one corruption line, unless enough were printed.
    fn report_corruption(&self, corruption: &Corruption) {
        match self.corruption_lines.fetch_add(1, Ordering::Relaxed) {
            n if n < MAX_CORRUPTION_LINES => println!("{corruption}"),
            MAX_CORRUPTION_LINES => println!("soak: more corruptions: counted, not printed"),
            _ => {}
        }
    }
}

/// Bytes a block takes at least: its size rounded up to its alignment.
fn footprint(layout: Layout) -> usize {
    layout.pad_to_align().size()
}

/// When a block was checked.
#[derive(Clone, Copy)]
enum CheckPoint {
    Free,
    Realloc,
    /// After a realloc: the prefix realloc kept from the block at `from`.
    ReallocKept {
        from: usize,
    },
    CrossCpuFree,
    FinalFree,
}

impl fmt::Display for CheckPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Free => f.write_str("before a free"),
            Self::Realloc => f.write_str("before a realloc"),
            Self::ReallocKept { from } => {
                write!(f, "after a realloc, in the prefix kept from {from:#x}")
            }
            Self::CrossCpuFree => f.write_str("before a cross-CPU free"),
            Self::FinalFree => f.write_str("before the final free"),
        }
    }
}

/// One corrupted block, as reported.
struct Corruption {
    cpu: usize,
    allocated_on: usize,
    address: usize,
    layout: Layout,
    checked_bytes: usize,
    mismatch: Mismatch,
    at: CheckPoint,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.mismatch;
        write!(
            f,
            "soak: CORRUPTION cpu {}: block {:#x} (size {}, align {}, allocated on cpu {}) byte {}: expected {:#04x}, found {:#04x} ({} of {} checked bytes differ), {}",
            self.cpu,
            self.address,
            self.layout.size(),
            self.layout.align(),
            self.allocated_on,
            m.offset,
            m.expected,
            m.found,
            m.differing_bytes,
            self.checked_bytes,
            self.at
        )
    }
}

/// A small deterministic random-number generator (xorshift64*).
struct Random(u64);

impl Random {
    fn for_cpu(seed: u64, cpu: usize) -> Self {
        Self(mix64(seed ^ mix64(cpu as u64 + 1)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// 1 B to 64 KiB, skewed small: a power-of-two band picked as the
    /// smaller of two uniform draws (band 0, 1 B, 11 % of requests; 4 KiB
    /// and more 9 %; the 64 KiB band 0.3 %), then uniform in the band.
    fn block_size(&mut self) -> usize {
        let band = self.below(SIZE_BANDS).min(self.below(SIZE_BANDS));
        let low = 1 << band;
        self.between(low, (2 * low - 1).min(MAX_BLOCK_BYTES))
    }

    /// 3 in 4 requests aligned 1 to 16 (ordinary types), 1 in 4 to any
    /// power of two up to 4096.
    fn block_align(&mut self) -> usize {
        let log2 = if self.below(4) == 0 { MAX_ALIGN_LOG2 } else { TYPICAL_ALIGN_LOG2 };
        1 << self.below(log2 + 1)
    }
}

/// What one CPU did.
#[derive(Default, Clone, Copy)]
struct Tally {
    ops: u64,
    allocs: u64,
    frees: u64,
    reallocs: u64,
    handoffs: u64,
    cross_cpu_frees: u64,
    final_frees: u64,
    bytes_checked: u64,
    corruptions: u64,
    alloc_failures: u64,
    start: u64,
    end: u64,
}

/// One CPU's soak.
struct Worker<'a> {
    cpu: usize,
    plan: &'a Plan,
    shared: &'a Shared,
    random: Random,
    live: Vec<Option<Block>>,
    held_bytes: usize,
    tally: Tally,
    /// The allocator failed a request that should fit: stop early.
    failed: bool,
}

impl<'a> Worker<'a> {
    fn new(cpu: usize, plan: &'a Plan, shared: &'a Shared) -> Self {
        let mut live = Vec::new();
        live.resize_with(LIVE_SLOTS, || None);
        Self {
            cpu,
            plan,
            shared,
            random: Random::for_cpu(plan.seed, cpu),
            live,
            held_bytes: 0,
            tally: Tally::default(),
            failed: false,
        }
    }

    fn run(mut self) -> Tally {
        self.tally.start = time::now();
        let ops = self.plan.ops_for(self.cpu);
        let progress_every = (ops / PROGRESS_LINES).max(1);
        while self.tally.ops < ops && !self.failed {
            self.step();
            self.tally.ops += 1;
            self.receive();
            self.shared.held_bytes[self.cpu].0.store(self.held_bytes, Ordering::Relaxed);
            if self.tally.ops.is_multiple_of(SAMPLE_EVERY_OPS) {
                self.shared.sample_live_bytes(self.plan.cpus);
            }
            if self.cpu == 0 && self.tally.ops.is_multiple_of(progress_every) {
                self.print_progress(ops);
            }
        }
        self.shared.sample_live_bytes(self.plan.cpus);
        self.free_everything();
        self.shared.finished[self.cpu].store(true, Ordering::Release);
        self.receive_until_all_finished();
        self.tally.end = time::now();
        self.tally
    }

    /// One random operation on a random slot.
    fn step(&mut self) {
        let slot = self.random.below(LIVE_SLOTS);
        match self.live[slot].take() {
            None => self.allocate_into(slot),
            Some(block) => match self.random.below(FULL_SLOT_CHOICES) {
                choice if choice < FREE_BELOW => self.free(block, CheckPoint::Free),
                choice if choice < REALLOC_BELOW => self.reallocate_into(slot, block),
                _ => self.hand_over(block),
            },
        }
    }

    /// Whether `extra` more bytes would take this CPU past its share of the
    /// heap (its table and its blocks in rings).
    fn over_share(&self, extra: usize) -> bool {
        let in_flight = self.shared.in_flight_bytes[self.cpu].0.load(Ordering::Relaxed);
        self.held_bytes + in_flight + extra > self.plan.share_bytes_per_cpu
    }

    fn allocate_into(&mut self, slot: usize) {
        let (mut size, mut align) = (self.random.block_size(), self.random.block_align());
        if self.over_share(size.max(align)) {
            size = self.random.between(1, SMALL_BLOCK_BYTES);
            align = align.min(1 << TYPICAL_ALIGN_LOG2);
        }
        let layout = Layout::from_size_align(size, align).expect("valid soak layout");
        let Some(block) = Block::allocate(layout) else {
            self.allocation_failed(format_args!("allocating {size} bytes aligned to {align}"));
            return;
        };
        self.check_alignment(&block);
        self.held_bytes += footprint(layout);
        self.tally.allocs += 1;
        self.live[slot] = Some(block);
    }

    fn reallocate_into(&mut self, slot: usize, block: Block) {
        self.check(&block, CheckPoint::Realloc, self.cpu);
        let (old_address, old_layout) = (block.address(), block.layout());
        let new_size = self.realloc_size(old_layout.size());
        match block.reallocate(new_size) {
            Ok((block, kept)) => {
                let kept_bytes = old_layout.size().min(new_size);
                self.tally.bytes_checked += kept_bytes as u64;
                if let Err(mismatch) = kept {
                    let at = CheckPoint::ReallocKept { from: old_address };
                    self.corrupted(&block, kept_bytes, mismatch, at, self.cpu);
                }
                self.check_alignment(&block);
                self.held_bytes =
                    self.held_bytes - footprint(old_layout) + footprint(block.layout());
                self.tally.reallocs += 1;
                self.live[slot] = Some(block);
            }
            Err(block) => {
                self.live[slot] = Some(block);
                self.allocation_failed(format_args!(
                    "reallocating the {}-byte block at {old_address:#x} (align {}) to {new_size} bytes",
                    old_layout.size(),
                    old_layout.align()
                ));
            }
        }
    }

    /// Half the time any size, a quarter larger (up to twice), a quarter
    /// smaller; never growing past this CPU's share.
    fn realloc_size(&mut self, old: usize) -> usize {
        let shrunk = self.random.between(1, old);
        let new = match self.random.below(4) {
            0 | 1 => self.random.block_size(),
            2 => self.random.between(old + 1, 2 * old).min(MAX_BLOCK_BYTES),
            _ => shrunk,
        };
        if new > old && self.over_share(new - old) { shrunk } else { new }
    }

    /// Sends `block` to a random other CPU, or frees it here when alone or
    /// when that CPU's ring is full.
    fn hand_over(&mut self, block: Block) {
        let cpus = self.plan.cpus;
        if cpus == 1 {
            return self.free(block, CheckPoint::Free);
        }
        let other = self.random.below(cpus - 1);
        let to = if other >= self.cpu { other + 1 } else { other };
        let bytes = footprint(block.layout());
        let in_flight = &self.shared.in_flight_bytes[self.cpu].0;
        // Counted before the push, so the receiver's subtraction follows it.
        in_flight.fetch_add(bytes, Ordering::Relaxed);
        match self.shared.rings.between(self.cpu, to).push(block) {
            Ok(()) => {
                self.held_bytes -= bytes;
                self.tally.handoffs += 1;
            }
            Err(block) => {
                in_flight.fetch_sub(bytes, Ordering::Relaxed);
                self.free(block, CheckPoint::Free);
            }
        }
    }

    /// Checks and frees every block the other CPUs sent here.
    fn receive(&mut self) {
        let me = self.cpu;
        for from in (0..self.plan.cpus).filter(|&from| from != me) {
            let ring = self.shared.rings.between(from, self.cpu);
            while let Some(block) = ring.pop() {
                self.check(&block, CheckPoint::CrossCpuFree, from);
                let bytes = footprint(block.layout());
                block.free();
                self.shared.in_flight_bytes[from].0.fetch_sub(bytes, Ordering::Relaxed);
                self.tally.cross_cpu_frees += 1;
            }
        }
    }

    /// After its own operations: receives until no CPU can send any more.
    fn receive_until_all_finished(&mut self) {
        loop {
            // Every push of a finished CPU happened before its flag, so one
            // more pass after seeing all flags finds every block.
            let all_finished = self.shared.all_finished(self.plan.cpus);
            self.receive();
            if all_finished {
                return;
            }
            core::hint::spin_loop();
        }
    }

    fn free(&mut self, block: Block, at: CheckPoint) {
        self.check_and_release(block, at);
        self.tally.frees += 1;
    }

    /// Checks and frees one of this CPU's own blocks.
    fn check_and_release(&mut self, block: Block, at: CheckPoint) {
        self.check(&block, at, self.cpu);
        self.held_bytes -= footprint(block.layout());
        block.free();
    }

    fn free_everything(&mut self) {
        for slot in 0..LIVE_SLOTS {
            if let Some(block) = self.live[slot].take() {
                self.check_and_release(block, CheckPoint::FinalFree);
                self.tally.final_frees += 1;
            }
        }
        self.shared.held_bytes[self.cpu].0.store(self.held_bytes, Ordering::Relaxed);
    }

    /// Checks `block`'s whole pattern; counts and reports a mismatch.
    fn check(&mut self, block: &Block, at: CheckPoint, allocated_on: usize) {
        self.tally.bytes_checked += block.size() as u64;
        if let Err(mismatch) = block.check() {
            self.corrupted(block, block.size(), mismatch, at, allocated_on);
        }
    }

    fn corrupted(
        &mut self,
        block: &Block,
        checked_bytes: usize,
        mismatch: Mismatch,
        at: CheckPoint,
        allocated_on: usize,
    ) {
        self.tally.corruptions += 1;
        self.shared.report_corruption(&Corruption {
            cpu: self.cpu,
            allocated_on,
            address: block.address(),
            layout: block.layout(),
            checked_bytes,
            mismatch,
            at,
        });
    }

    fn check_alignment(&mut self, block: &Block) {
        let align = block.layout().align();
        if !block.address().is_multiple_of(align) {
            self.tally.alloc_failures += 1;
            println!(
                "soak: FAILURE cpu {}: block {:#x} of {} bytes is not aligned to {align}",
                self.cpu,
                block.address(),
                block.size()
            );
        }
    }

    /// The allocator returned null for a request within this CPU's share:
    /// a failure; this CPU stops its operations.
    fn allocation_failed(&mut self, what: fmt::Arguments<'_>) {
        self.tally.alloc_failures += 1;
        self.failed = true;
        println!(
            "soak: FAILURE cpu {}: {what} returned null after {} ops (this cpu holds {} bytes, {} in rings; share {} bytes)",
            self.cpu,
            self.tally.ops,
            self.held_bytes,
            self.shared.in_flight_bytes[self.cpu].0.load(Ordering::Relaxed),
            self.plan.share_bytes_per_cpu
        );
    }

    fn print_progress(&self, ops: u64) {
        let seconds = time::ticks_to_ns(time::now() - self.tally.start) / 1_000_000_000;
        println!(
            "soak: {}% (cpu 0: {} of {ops} ops, {seconds} s, {} corruptions)",
            self.tally.ops * 100 / ops,
            self.tally.ops,
            self.tally.corruptions
        );
    }
}

/// The figures of one run.
struct Report<'a> {
    plan: &'a Plan,
    total: Tally,
    ops_per_cpu: [u64; MAX_CPUS],
    elapsed_cycles: u64,
    max_live_bytes: usize,
    free_bytes_start: usize,
    free_bytes_end: usize,
}

impl<'a> Report<'a> {
    fn new(
        plan: &'a Plan,
        shared: &Shared,
        tallies: &smp::CpuResults<Tally>,
        free_bytes_start: usize,
        free_bytes_end: usize,
    ) -> Self {
        let mut total = Tally::default();
        let mut ops_per_cpu = [0; MAX_CPUS];
        for (cpu, tally) in tallies.iter() {
            ops_per_cpu[cpu] = tally.ops;
            total.ops += tally.ops;
            total.allocs += tally.allocs;
            total.frees += tally.frees;
            total.reallocs += tally.reallocs;
            total.handoffs += tally.handoffs;
            total.cross_cpu_frees += tally.cross_cpu_frees;
            total.final_frees += tally.final_frees;
            total.bytes_checked += tally.bytes_checked;
            total.corruptions += tally.corruptions;
            total.alloc_failures += tally.alloc_failures;
        }
        let start = tallies.iter().map(|(_, t)| t.start).min().unwrap_or(0);
        let end = tallies.iter().map(|(_, t)| t.end).max().unwrap_or(0);
        Self {
            plan,
            total,
            ops_per_cpu,
            elapsed_cycles: end - start,
            max_live_bytes: shared.max_live_bytes.load(Ordering::Relaxed),
            free_bytes_start,
            free_bytes_end,
        }
    }

    /// Free bytes lost between the start and the end (negative: gained).
    fn leaked_bytes(&self) -> i64 {
        self.free_bytes_start as i64 - self.free_bytes_end as i64
    }

    fn seconds(&self) -> f64 {
        self.elapsed_cycles as f64 / time::timestamp_hz() as f64
    }

    /// Blocks sent to another CPU that it never freed.
    fn lost_handoffs(&self) -> u64 {
        self.total.handoffs - self.total.cross_cpu_frees.min(self.total.handoffs)
    }

    fn passed(&self) -> bool {
        self.total.corruptions == 0
            && self.total.alloc_failures == 0
            && self.leaked_bytes() == 0
            && self.total.handoffs == self.total.cross_cpu_frees
    }

    fn print_summary(&self) {
        let t = &self.total;
        println!(
            "soak: {} ops on {} cpus (alloc {}, heap {} bytes, seed {}) in {:.1} s",
            t.ops,
            self.plan.cpus,
            self.plan.alloc,
            self.plan.heap_bytes,
            self.plan.seed,
            self.seconds()
        );
        println!(
            "soak: {} allocs, {} frees, {} reallocs, {} handed to another cpu and {} freed there, {} freed at the end",
            t.allocs, t.frees, t.reallocs, t.handoffs, t.cross_cpu_frees, t.final_frees
        );
        println!(
            "soak: {} bytes checked, at most {} bytes live; {} corruptions, {} allocation failures",
            t.bytes_checked, self.max_live_bytes, t.corruptions, t.alloc_failures
        );
        println!(
            "soak: heap free bytes with every cache drained: {} before, {} after: {} leaked",
            self.free_bytes_start,
            self.free_bytes_end,
            self.leaked_bytes()
        );
        if self.passed() {
            println!("soak: PASS");
        } else {
            println!(
                "soak: FAIL: {} corruptions, {} allocation failures, {} leaked bytes, {} blocks lost in rings",
                t.corruptions,
                t.alloc_failures,
                self.leaked_bytes(),
                self.lost_handoffs()
            );
        }
    }

    fn print_record(&self) {
        let t = &self.total;
        println!(
            "SOAK {{\"alloc\":{},\"cpus\":{},\"seed\":{},\"heap_bytes\":{},\"ops\":{},\"ops_per_cpu\":{},\"allocs\":{},\"frees\":{},\"reallocs\":{},\"handoffs\":{},\"cross_cpu_frees\":{},\"final_frees\":{},\"bytes_checked\":{},\"max_live_bytes\":{},\"corruptions\":{},\"alloc_failures\":{},\"free_bytes_start\":{},\"free_bytes_end\":{},\"leaked_bytes\":{},\"timestamp_hz\":{},\"elapsed_cycles\":{},\"seconds\":{:.3}}}",
            JsonStr(self.plan.alloc),
            self.plan.cpus,
            self.plan.seed,
            self.plan.heap_bytes,
            t.ops,
            JsonArray(&self.ops_per_cpu[..self.plan.cpus]),
            t.allocs,
            t.frees,
            t.reallocs,
            t.handoffs,
            t.cross_cpu_frees,
            t.final_frees,
            t.bytes_checked,
            self.max_live_bytes,
            t.corruptions,
            t.alloc_failures,
            self.free_bytes_start,
            self.free_bytes_end,
            self.leaked_bytes(),
            time::timestamp_hz(),
            self.elapsed_cycles,
            self.seconds()
        );
    }

    fn verdict(&self) -> ExitCode {
        if self.passed() { ExitCode::Success } else { ExitCode::Failure }
    }
}
