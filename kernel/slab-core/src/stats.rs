//! Instrumentation: the always-on counters each CPU keeps on its own cache
//! lines (written only by that CPU with plain Relaxed load + store, never a
//! read-modify-write; read by anyone with Relaxed loads), the snapshot types
//! built from them (`ClassStats`, `CpuStats`, `CpuSummary`, `HeapStats`),
//! the readable report and the one-line `HEAPSTATS` JSON.

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::central::HeapUsage;
use crate::mode::Mode;
use crate::platform::MAX_CPUS;
use crate::size_class::{NUM_CLASSES, SizeClass};

/// A counter one writer at a time updates with a plain load + store (never a
/// read-modify-write: only its CPU writes it, and the writers on that CPU
/// never interleave, see below), and anyone reads.
///
/// Which code writes a counter decides why writers cannot interleave:
/// - "slot user" counters are written only by the CPU slot's one user
///   (a `cpu_cache::Claim` of the CPU's own slot, or the `SlotUser` made of
///   one); an interrupt handler cannot become a user
///   while the interrupted code is one;
/// - "masked" counters are written only with interrupts masked on the CPU,
///   so no handler runs in between (handlers run masked too).
#[derive(Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) const fn new() -> Self {
        Self::starting_at(0)
    }

    pub(crate) const fn starting_at(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub(crate) fn raise_to(&self, value: u64) {
        if value > self.0.load(Relaxed) {
            self.0.store(value, Relaxed);
        }
    }

    /// The value, read by its writer: a plain load, which the compiler may
    /// fold into the instruction that uses it (an atomic load it keeps
    /// apart).
    ///
    /// # Safety
    /// Only code that may write the counter (see above) may call this, or
    /// code reading a counter nobody ever writes: then no write can race
    /// with the plain read (other CPUs only read, and reads never race).
    #[inline(always)]
    pub(crate) unsafe fn get_as_writer(&self) -> u64 {
        // SAFETY: by the caller's promise, no write to the counter can
        // happen during this read; the pointer is the atomic's own, valid
        // and aligned.
        unsafe { self.0.as_ptr().read() }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One CPU's slow-path counters for one size class (the fast path's word of
/// operations and loaded length, `ops_and_len`, sits beside the cache in
/// `cpu_cache::ClassSlot`).
#[derive(Debug)]
pub(crate) struct ClassCounters {
    /// Allocations that refilled the loaded magazine (slot user).
    pub(crate) refills: Counter,
    /// Frees that flushed a magazine under the lock, or a batch that found
    /// its owner's inbox full (slot user).
    pub(crate) flushes: Counter,
    /// Frees of another CPU's objects into this CPU's bucket: cache hits
    /// the fast path's word does not count (slot user).
    pub(crate) bucket_frees: Counter,
    /// Frees of another CPU's objects straight to its slab: heap checking,
    /// which closes the caches (masked).
    pub(crate) uncached_cross_frees: Counter,
    /// Objects refills brought into the cache, from the slabs or from an
    /// inbox (slot user).
    pub(crate) refilled_objects: Counter,
    /// Objects flushes, drains and batches sent to an inbox took out of the
    /// cache (slot user).
    pub(crate) flushed_objects: Counter,
    /// Allocations of this class served by the backend, not the cache:
    /// locked mode, or an interrupt handler that found the slot busy
    /// (masked).
    pub(crate) uncached_allocs: Counter,
    /// Frees of this class straight to the backend or slab (masked).
    pub(crate) uncached_frees: Counter,
}

impl ClassCounters {
    const fn new() -> Self {
        Self {
            refills: Counter::new(),
            flushes: Counter::new(),
            bucket_frees: Counter::new(),
            uncached_cross_frees: Counter::new(),
            refilled_objects: Counter::new(),
            flushed_objects: Counter::new(),
            uncached_allocs: Counter::new(),
            uncached_frees: Counter::new(),
        }
    }
}

/// One CPU's record of its own acquisitions of the global lock (masked).
#[derive(Debug)]
pub(crate) struct LockCounters {
    pub(crate) acquisitions: Counter,
    pub(crate) contended: Counter,
    pub(crate) wait_cycles: Counter,
    pub(crate) max_wait_cycles: Counter,
    pub(crate) hold_cycles: Counter,
}

/// Everything one CPU counts off the fast path.
#[derive(Debug)]
pub(crate) struct CpuCounters {
    pub(crate) classes: [ClassCounters; NUM_CLASSES],
    /// Allocations above the small classes (masked).
    pub(crate) large_allocs: Counter,
    /// Frees above the small classes (masked).
    pub(crate) large_frees: Counter,
    pub(crate) lock: LockCounters,
}

impl CpuCounters {
    pub(crate) const fn new() -> Self {
        Self {
            classes: [const { ClassCounters::new() }; NUM_CLASSES],
            large_allocs: Counter::new(),
            large_frees: Counter::new(),
            lock: LockCounters {
                acquisitions: Counter::new(),
                contended: Counter::new(),
                wait_cycles: Counter::new(),
                max_wait_cycles: Counter::new(),
                hold_cycles: Counter::new(),
            },
        }
    }

    /// Fills in the figures that are not per class.
    pub(crate) fn snapshot_into(&self, stats: &mut CpuStats) {
        stats.large_allocs = self.large_allocs.get();
        stats.large_frees = self.large_frees.get();
        stats.lock = LockStats {
            acquisitions: self.lock.acquisitions.get(),
            contended: self.lock.contended.get(),
            wait_cycles: self.lock.wait_cycles.get(),
            max_wait_cycles: self.lock.max_wait_cycles.get(),
            hold_cycles: self.lock.hold_cycles.get(),
        };
    }
}

/// One CPU's figures for one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Objects allocated (successfully).
    pub allocs: u64,
    /// Objects freed.
    pub frees: u64,
    /// Allocations and frees served without the global lock.
    pub cache_hits: u64,
    /// Allocations that refilled the CPU's magazine under the lock.
    pub refills: u64,
    /// Frees that flushed a full magazine, or a batch that found its
    /// owner's inbox full, under the lock.
    pub flushes: u64,
    /// Frees of objects another CPU allocated.
    pub cross_cpu_frees: u64,
    /// Allocations plus frees that went around the cache, straight to the
    /// slabs or the backend: every one in locked mode; in slab mode those of
    /// an interrupt handler that found its CPU's slot busy.
    pub uncached_ops: u64,
    /// Bytes of free objects the CPU holds now.
    pub cached_bytes: u64,
}

/// Figures of the global lock (one CPU's acquisitions, or everyone's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Times the lock was taken.
    pub acquisitions: u64,
    /// Times the first `try_lock` failed and the CPU had to spin.
    pub contended: u64,
    /// Cycles spent spinning for the lock.
    pub wait_cycles: u64,
    /// Longest single wait, in cycles.
    pub max_wait_cycles: u64,
    /// Cycles the lock was held.
    pub hold_cycles: u64,
}

impl LockStats {
    fn accumulate(&mut self, other: &LockStats) {
        self.acquisitions += other.acquisitions;
        self.contended += other.contended;
        self.wait_cycles += other.wait_cycles;
        self.max_wait_cycles = self.max_wait_cycles.max(other.max_wait_cycles);
        self.hold_cycles += other.hold_cycles;
    }
}

/// One CPU's full figures: per size class, large objects and the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuStats {
    /// The CPU's index.
    pub cpu: usize,
    /// Per size class, in `SizeClass::ALL` order.
    pub classes: [ClassStats; NUM_CLASSES],
    /// Allocations served by the backend directly (large, or locked mode).
    pub large_allocs: u64,
    /// Frees to the backend directly.
    pub large_frees: u64,
    /// This CPU's acquisitions of the global lock.
    pub lock: LockStats,
}

impl CpuStats {
    /// All zero, for CPU `cpu`.
    pub(crate) fn empty(cpu: usize) -> Self {
        Self {
            cpu,
            classes: [ClassStats::default(); NUM_CLASSES],
            large_allocs: 0,
            large_frees: 0,
            lock: LockStats::default(),
        }
    }

    /// The per-CPU line of `HeapStats`.
    pub fn summary(&self) -> CpuSummary {
        let mut summary = CpuSummary {
            cpu: self.cpu,
            large_ops: self.large_allocs + self.large_frees,
            lock: self.lock,
            ..CpuSummary::default()
        };
        for class in &self.classes {
            summary.small_ops += class.allocs + class.frees;
            summary.cache_hits += class.cache_hits;
            summary.refills += class.refills;
            summary.flushes += class.flushes;
            summary.cross_cpu_frees += class.cross_cpu_frees;
            summary.uncached_small_ops += class.uncached_ops;
            summary.cached_bytes += class.cached_bytes;
        }
        summary
    }
}

/// One CPU's totals (or, in `HeapStats::total`, everyone's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSummary {
    /// The CPU's index (0 in the total).
    pub cpu: usize,
    /// Allocations plus frees of small size classes.
    pub small_ops: u64,
    /// Small operations served without the global lock.
    pub cache_hits: u64,
    /// Magazine refills (each one lock acquisition).
    pub refills: u64,
    /// Magazine flushes and batches sent back to their slabs because the
    /// owner's inbox was full (each one lock acquisition).
    pub flushes: u64,
    /// Frees of objects allocated on another CPU.
    pub cross_cpu_frees: u64,
    /// Small operations that went around the CPU cache (`ClassStats::uncached_ops`).
    pub uncached_small_ops: u64,
    /// Bytes of free objects held in CPU caches now.
    pub cached_bytes: u64,
    /// Allocations plus frees served by the backend directly.
    pub large_ops: u64,
    /// Global lock figures.
    pub lock: LockStats,
}

impl CpuSummary {
    fn accumulate(&mut self, other: &CpuSummary) {
        self.small_ops += other.small_ops;
        self.cache_hits += other.cache_hits;
        self.refills += other.refills;
        self.flushes += other.flushes;
        self.cross_cpu_frees += other.cross_cpu_frees;
        self.uncached_small_ops += other.uncached_small_ops;
        self.cached_bytes += other.cached_bytes;
        self.large_ops += other.large_ops;
        self.lock.accumulate(&other.lock);
    }
}

/// A snapshot of the whole heap (about 14 KiB with `MAX_CPUS` = 128: put
/// it in a static or on a big enough stack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// The heap's mode; `None` for an allocator other than `SlabHeap`
    /// that keeps no counters ([`HeapStats::uncounted`]): the JSON's
    /// `mode` is then `"plain"` and every counter in it is null.
    pub mode: Option<Mode>,
    /// The allocator's name as the user chose it (the kernel's `alloc=`,
    /// e.g. `slab-talc`), if the embedder set one; the JSON's `alloc` key
    /// falls back to the mode's name.
    pub allocator: Option<&'static str>,
    /// CPUs online (`Platform::cpu_count`); `per_cpu()` has this many.
    pub cpus: usize,
    /// The backend's usage.
    pub heap: HeapUsage,
    /// Sum over the CPUs (`max_wait_cycles` is the maximum).
    pub total: CpuSummary,
    per_cpu: [CpuSummary; MAX_CPUS],
}

impl HeapStats {
    pub(crate) fn new(mode: Mode, heap: HeapUsage, cpus: usize) -> Self {
        Self {
            mode: Some(mode),
            allocator: None,
            cpus: cpus.min(MAX_CPUS),
            heap,
            total: CpuSummary::default(),
            per_cpu: [CpuSummary::default(); MAX_CPUS],
        }
    }

    pub(crate) fn record_cpu(&mut self, summary: CpuSummary) {
        self.total.accumulate(&summary);
        if let Some(slot) = self.per_cpu.get_mut(summary.cpu) {
            *slot = summary;
        }
    }

    /// The figures of an allocator that keeps no counters (a plain global
    /// allocator): its used and free bytes only. The counters read 0 here
    /// and null in the JSON; `heap.peak_bytes` and `heap.slabs` too.
    pub fn uncounted(used_bytes: usize, free_bytes: usize, cpus: usize) -> Self {
        let mut stats = Self::new(
            Mode::Locked,
            HeapUsage { used_bytes, free_bytes, peak_bytes: 0, slabs: 0 },
            cpus,
        );
        stats.mode = None;
        for (cpu, summary) in stats.per_cpu.iter_mut().enumerate() {
            summary.cpu = cpu;
        }
        stats
    }

    /// Whether the counters were kept (a `SlabHeap`'s figures).
    pub fn counted(&self) -> bool {
        self.mode.is_some()
    }

    /// The `mode` key's value: the mode's name, or `plain`.
    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or(PLAIN_MODE_NAME, Mode::name)
    }

    /// The allocator's name, or the mode's.
    pub fn alloc_name(&self) -> &'static str {
        self.allocator.unwrap_or(self.mode_name())
    }

    /// Each online CPU's totals.
    pub fn per_cpu(&self) -> &[CpuSummary] {
        &self.per_cpu[..self.cpus]
    }

    /// Writes the one-line JSON object the kernel prints as
    /// `HEAPSTATS {json}`. Keys come in a fixed order: `alloc` (the
    /// allocator's name, or the mode's), `mode`, `cpus`,
    /// `small_ops`, `cache_hits`, `lock_acquisitions`, `lock_contended`,
    /// `lock_wait_cycles`, `lock_hold_cycles`, `heap_used_bytes`,
    /// `heap_free_bytes`, `heap_peak_bytes`, `cached_bytes`,
    /// `cross_cpu_frees`, then `lock_max_wait_cycles`, `refills`, `flushes`,
    /// `large_ops`, `slabs`, `uncached_small_ops`, and last `per_cpu`, an
    /// array of objects with `cpu` and the same per-CPU figures in the same
    /// order.
    pub fn write_json(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let counted = self.counted();
        // A counter's value, or null when none were kept.
        let n = |value: u64| Kept(counted.then_some(value));
        let bytes = |value: usize| n(value as u64);
        write!(
            out,
            "{{\"alloc\":\"{}\",\"mode\":\"{}\",\"cpus\":{}",
            self.alloc_name(),
            self.mode_name(),
            self.cpus
        )?;
        let t = &self.total;
        write!(
            out,
            ",\"small_ops\":{},\"cache_hits\":{},\"lock_acquisitions\":{},\"lock_contended\":{}\
             ,\"lock_wait_cycles\":{},\"lock_hold_cycles\":{}",
            n(t.small_ops),
            n(t.cache_hits),
            n(t.lock.acquisitions),
            n(t.lock.contended),
            n(t.lock.wait_cycles),
            n(t.lock.hold_cycles)
        )?;
        write!(
            out,
            ",\"heap_used_bytes\":{},\"heap_free_bytes\":{},\"heap_peak_bytes\":{}",
            self.heap.used_bytes,
            self.heap.free_bytes,
            bytes(self.heap.peak_bytes)
        )?;
        write!(
            out,
            ",\"cached_bytes\":{},\"cross_cpu_frees\":{},\"lock_max_wait_cycles\":{}\
             ,\"refills\":{},\"flushes\":{},\"large_ops\":{},\"slabs\":{}\
             ,\"uncached_small_ops\":{},\"per_cpu\":[",
            n(t.cached_bytes),
            n(t.cross_cpu_frees),
            n(t.lock.max_wait_cycles),
            n(t.refills),
            n(t.flushes),
            n(t.large_ops),
            bytes(self.heap.slabs),
            n(t.uncached_small_ops)
        )?;
        for (i, cpu) in self.per_cpu().iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(
                out,
                "{{\"cpu\":{},\"small_ops\":{},\"cache_hits\":{},\"lock_acquisitions\":{}\
                 ,\"lock_contended\":{},\"lock_wait_cycles\":{},\"lock_hold_cycles\":{}\
                 ,\"cached_bytes\":{},\"cross_cpu_frees\":{},\"lock_max_wait_cycles\":{}\
                 ,\"refills\":{},\"flushes\":{},\"large_ops\":{},\"uncached_small_ops\":{}}}",
                cpu.cpu,
                n(cpu.small_ops),
                n(cpu.cache_hits),
                n(cpu.lock.acquisitions),
                n(cpu.lock.contended),
                n(cpu.lock.wait_cycles),
                n(cpu.lock.hold_cycles),
                n(cpu.cached_bytes),
                n(cpu.cross_cpu_frees),
                n(cpu.lock.max_wait_cycles),
                n(cpu.refills),
                n(cpu.flushes),
                n(cpu.large_ops),
                n(cpu.uncached_small_ops)
            )?;
        }
        out.write_str("]}")
    }

    /// The JSON object as something to `write!`/`format_args!` with.
    pub fn json(&self) -> impl fmt::Display + '_ {
        struct Json<'a>(&'a HeapStats);
        impl fmt::Display for Json<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_json(f)
            }
        }
        Json(self)
    }
}

/// The `mode` of figures from an allocator that keeps no counters.
const PLAIN_MODE_NAME: &str = "plain";

/// A counter in the JSON: its value, or `null` when it was not kept.
struct Kept(Option<u64>);

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("null"),
        }
    }
}

/// Percentage with one decimal, as `12.3`.
struct Percent(u64, u64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 1000).checked_div(self.1).unwrap_or(0);
        let mut buf = [0u8; 24];
        let mut cursor = Cursor(&mut buf, 0);
        write!(cursor, "{}.{}", tenths / 10, tenths % 10)?;
        let len = cursor.1;
        // `pad` honours the width and alignment the caller asked for.
        f.pad(core::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

/// A tiny `fmt::Write` into a byte buffer (no alloc).
struct Cursor<'a>(&'a mut [u8], usize);

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.1 + s.len();
        self.0.get_mut(self.1..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}

impl fmt::Display for HeapStats {
    /// The heap line and a table with one row per CPU and a total row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.counted() {
            return writeln!(
                f,
                "heap: alloc {} (plain: keeps no counters), {} cpus, used {} B, free {} B",
                self.alloc_name(),
                self.cpus,
                self.heap.used_bytes,
                self.heap.free_bytes
            );
        }
        writeln!(
            f,
            "heap: mode {}, {} cpus, used {} B, free {} B, peak {} B, {} slabs",
            self.mode_name(),
            self.cpus,
            self.heap.used_bytes,
            self.heap.free_bytes,
            self.heap.peak_bytes,
            self.heap.slabs
        )?;
        writeln!(
            f,
            "{:>5} {:>12} {:>12} {:>6} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>12} {:>10} {:>12}",
            "cpu",
            "small_ops",
            "cache_hits",
            "hit%",
            "refills",
            "flushes",
            "cross_free",
            "cached_B",
            "large_ops",
            "lock_acq",
            "contended",
            "wait_cyc",
            "max_wait",
            "hold_cyc"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, label: &dyn fmt::Display, s: &CpuSummary| {
            writeln!(
                f,
                "{:>5} {:>12} {:>12} {:>6} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>12} {:>10} {:>12}",
                label,
                s.small_ops,
                s.cache_hits,
                Percent(s.cache_hits, s.small_ops),
                s.refills,
                s.flushes,
                s.cross_cpu_frees,
                s.cached_bytes,
                s.large_ops,
                s.lock.acquisitions,
                s.lock.contended,
                s.lock.wait_cycles,
                s.lock.max_wait_cycles,
                s.lock.hold_cycles
            )
        };
        for cpu in self.per_cpu() {
            row(f, &cpu.cpu, cpu)?;
        }
        row(f, &"total", &self.total)
    }
}

impl fmt::Display for CpuStats {
    /// A header line for the CPU and a table with one row per size class
    /// that saw any use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cpu {}: lock {} acquisitions ({} contended), wait {} cycles (max {}), hold {} cycles; large {} allocs, {} frees",
            self.cpu,
            self.lock.acquisitions,
            self.lock.contended,
            self.lock.wait_cycles,
            self.lock.max_wait_cycles,
            self.lock.hold_cycles,
            self.large_allocs,
            self.large_frees
        )?;
        writeln!(
            f,
            "{:>6} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10} {:>10}",
            "class",
            "allocs",
            "frees",
            "cache_hits",
            "refills",
            "flushes",
            "cross_free",
            "cached_B"
        )?;
        for (class, s) in SizeClass::ALL.iter().zip(&self.classes) {
            if *s == ClassStats::default() {
                continue;
            }
            writeln!(
                f,
                "{:>6} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10} {:>10}",
                class.size(),
                s.allocs,
                s.frees,
                s.cache_hits,
                s.refills,
                s.flushes,
                s.cross_cpu_frees,
                s.cached_bytes
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn sample() -> HeapStats {
        let usage = HeapUsage { used_bytes: 100, free_bytes: 900, peak_bytes: 150, slabs: 1 };
        let mut stats = HeapStats::new(Mode::Slab, usage, 2);
        for cpu in 0..2u64 {
            stats.record_cpu(CpuSummary {
                cpu: cpu as usize,
                small_ops: 10 + cpu,
                cache_hits: 8,
                refills: 1,
                flushes: 1,
                cross_cpu_frees: cpu,
                uncached_small_ops: 0,
                cached_bytes: 64,
                large_ops: 2,
                lock: LockStats {
                    acquisitions: 4,
                    contended: cpu,
                    wait_cycles: 7,
                    max_wait_cycles: 5 + cpu,
                    hold_cycles: 30,
                },
            });
        }
        stats
    }

    #[test]
    fn json_has_the_keys_in_order_and_sums() {
        let mut json = String::new();
        sample().write_json(&mut json).unwrap();
        let expected = concat!(
            r#"{"alloc":"slab","mode":"slab","cpus":2,"small_ops":21,"cache_hits":16,"lock_acquisitions":8,"#,
            r#""lock_contended":1,"lock_wait_cycles":14,"lock_hold_cycles":60,"heap_used_bytes":100,"#,
            r#""heap_free_bytes":900,"heap_peak_bytes":150,"cached_bytes":128,"cross_cpu_frees":1,"#,
            r#""lock_max_wait_cycles":6,"refills":2,"flushes":2,"large_ops":4,"slabs":1,"#,
            r#""uncached_small_ops":0,"per_cpu":["#,
            r#"{"cpu":0,"small_ops":10,"cache_hits":8,"lock_acquisitions":4,"lock_contended":0,"#,
            r#""lock_wait_cycles":7,"lock_hold_cycles":30,"cached_bytes":64,"cross_cpu_frees":0,"#,
            r#""lock_max_wait_cycles":5,"refills":1,"flushes":1,"large_ops":2,"uncached_small_ops":0},"#,
            r#"{"cpu":1,"small_ops":11,"cache_hits":8,"lock_acquisitions":4,"lock_contended":1,"#,
            r#""lock_wait_cycles":7,"lock_hold_cycles":30,"cached_bytes":64,"cross_cpu_frees":1,"#,
            r#""lock_max_wait_cycles":6,"refills":1,"flushes":1,"large_ops":2,"uncached_small_ops":0}]}"#
        );
        assert_eq!(json, expected);
        assert!(!json.contains('\n'));
        assert_eq!(std::format!("{}", sample().json()), expected);
    }

    #[test]
    fn uncounted_figures_have_the_same_keys_with_null_counters() {
        let mut stats = HeapStats::uncounted(100, 900, 2);
        stats.allocator = Some("lockedheap");
        let mut json = String::new();
        stats.write_json(&mut json).unwrap();
        let mut counted = String::new();
        sample().write_json(&mut counted).unwrap();
        let keys = |text: &str| -> std::vec::Vec<std::string::String> {
            text.split('"').skip(1).step_by(2).map(std::string::String::from).collect()
        };
        // The same keys in the same order (values aside: `alloc` and
        // `mode` are strings in both).
        let strip =
            |keys: std::vec::Vec<std::string::String>| -> std::vec::Vec<std::string::String> {
                keys.into_iter()
                    .filter(|k| !["lockedheap", "plain", "slab"].contains(&k.as_str()))
                    .collect()
            };
        assert_eq!(strip(keys(&json)), strip(keys(&counted)));
        assert!(
            json.starts_with(r#"{"alloc":"lockedheap","mode":"plain","cpus":2,"small_ops":null,"#),
            "{json}"
        );
        assert!(
            json.contains(r#""heap_used_bytes":100,"heap_free_bytes":900,"heap_peak_bytes":null,"#),
            "{json}"
        );
        assert!(json.contains(r#"{"cpu":1,"small_ops":null,"#), "{json}");
        let values = json.replace(r#""cpu":0,"#, "");
        assert!(!values.contains(":0,") && !values.contains(":0}"), "no counter reads 0: {json}");
        let text = std::format!("{stats}");
        assert_eq!(
            text,
            "heap: alloc lockedheap (plain: keeps no counters), 2 cpus, used 100 B, free 900 B\n"
        );
    }

    #[test]
    fn report_has_a_row_per_cpu_and_a_total() {
        let text = std::format!("{}", sample());
        assert!(text.starts_with("heap: mode slab, 2 cpus, used 100 B"));
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().last().unwrap().trim_start().starts_with("total"));
        assert!(text.contains(" 76.1 "), "hit rate of 16/21: {text}");
    }

    #[test]
    fn counters_add_and_raise() {
        let counter = Counter::new();
        counter.add(3);
        counter.add(4);
        assert_eq!(counter.get(), 7);
        counter.raise_to(5);
        assert_eq!(counter.get(), 7);
        counter.raise_to(9);
        assert_eq!(counter.get(), 9);
    }
}
