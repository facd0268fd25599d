//! Fuzz target: a sequence of heap operations decoded from the input with
//! `arbitrary` (alloc, bursts of allocs, free, bursts of frees of other
//! CPUs' blocks, realloc, switch the running CPU, drain this CPU, drain
//! every CPU, reclaim, switch the mode) run on a
//! fresh `SlabHeap` (slab or locked mode; a tiny heap that runs out of
//! memory, or a normal one; 1 to 4 CPUs played by this one thread), checked
//! against a model of the live blocks. `docs/fuzzing.md` lists the checks.
#![no_main]

// The host tests' `HostPlatform` (threads as CPUs, `set_cpu` switches the
// running one; reclaim drains the other CPUs by becoming each in turn).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use linked_list_allocator::Heap;
use slab_core::{MAX_SMALL_SIZE, Mode, ModeLocked, NUM_CLASSES, SizeClass, SlabHeap};
use support::{HostPlatform, ReclaimStyle, TestSlabHeap, cpu, set_cpu};

/// Backend sizes: three tiny heaps (a few slabs at most: out of memory,
/// reclaim and null results are routine) and a normal one.
const HEAP_SIZES: [usize; 4] = [8 << 20, 40 << 10, 100 << 10, 300 << 10];
/// The largest of them.
const ARENA_BYTES: usize = 8 << 20;
/// Most CPUs a run uses: six, so that owners 0 and 4, and 1 and 5, share
/// a place among a freeing CPU's parked buckets (`BUCKETS_PER_CLASS` is 4).
const MAX_FUZZ_CPUS: usize = 6;
/// Most blocks one `Alloc` or `Free` op handles (bursts fill and empty
/// magazines, so refills and flushes come quickly).
const MAX_BURST: usize = 48;
/// Most blocks one `FreeForeign` op frees: a few batches of cross-CPU frees
/// (buckets fill, batches go to inboxes, a full inbox falls back to the
/// lock).
const MAX_FOREIGN_BURST: usize = 200;

fuzz_target!(|input: Input| run(input));

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `count` allocations of `layout` on the running CPU.
    Alloc { layout: Layout, count: usize },
    /// Frees `count` live blocks, the first the `pick`-th (modulo).
    Free { pick: usize, count: usize },
    /// Frees up to `count` live blocks another CPU allocated, searching
    /// from the `pick`-th (modulo).
    FreeForeign { pick: usize, count: usize },
    /// Resizes the `pick`-th live block (modulo) to `size`.
    Realloc { pick: usize, size: usize },
    /// Makes CPU `cpu` (modulo the CPU count) the running one.
    Switch { cpu: usize },
    /// `drain_local_cpu` on the running CPU.
    Drain,
    /// `drain_local_cpu` on every CPU.
    DrainAll,
    /// `SlabHeap::reclaim` from the running CPU.
    Reclaim,
    /// `set_mode`: allowed only when the backend has nothing allocated.
    SetMode(Mode),
}

#[derive(Debug)]
struct Input {
    mode: Mode,
    heap_bytes: usize,
    cpus: usize,
    ops: Vec<Op>,
}

impl Input {
    fn header(u: &mut Unstructured<'_>) -> Result<(Mode, usize, usize)> {
        let mode = if u.arbitrary()? { Mode::Locked } else { Mode::Slab };
        let heap_bytes = *u.choose(&HEAP_SIZES)?;
        let cpus = u.int_in_range(1..=MAX_FUZZ_CPUS)?;
        Ok((mode, heap_bytes, cpus))
    }
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let (mode, heap_bytes, cpus) = Input::header(u)?;
        let ops = u.arbitrary_iter()?.collect::<Result<_>>()?;
        Ok(Input { mode, heap_bytes, cpus, ops })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
        let (mode, heap_bytes, cpus) = Input::header(&mut u)?;
        let ops = u.arbitrary_take_rest_iter()?.collect::<Result<_>>()?;
        Ok(Input { mode, heap_bytes, cpus, ops })
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let burst = |u: &mut Unstructured<'a>| -> Result<usize> {
            Ok(if u.ratio(1, 6)? { u.int_in_range(2..=MAX_BURST)? } else { 1 })
        };
        Ok(match u.int_in_range(0u8..=99)? {
            0..=39 => {
                let size = arbitrary_size(u)?;
                // Alignments 1 to 8 KiB, up to 16 most often.
                let shift =
                    if u.ratio(3, 4)? { u.int_in_range(0..=4)? } else { u.int_in_range(5..=13)? };
                let align = 1usize << shift;
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    unreachable!("sizes stay far below isize::MAX");
                };
                Op::Alloc { layout, count: burst(u)? }
            }
            40..=56 => Op::Free { pick: u.arbitrary::<u16>()?.into(), count: burst(u)? },
            57..=64 => Op::FreeForeign {
                pick: u.arbitrary::<u16>()?.into(),
                count: u.int_in_range(1..=MAX_FOREIGN_BURST)?,
            },
            65..=76 => Op::Realloc { pick: u.arbitrary::<u16>()?.into(), size: arbitrary_size(u)? },
            77..=90 => Op::Switch { cpu: u.int_in_range(0..=MAX_FUZZ_CPUS - 1)? },
            91..=94 => Op::Drain,
            95..=96 => Op::DrainAll,
            97..=98 => Op::Reclaim,
            _ => Op::SetMode(if u.arbitrary()? { Mode::Locked } else { Mode::Slab }),
        })
    }
}

/// Sizes: small classes most often, their boundaries, large objects, and
/// some larger than the tiny heaps.
fn arbitrary_size(u: &mut Unstructured<'_>) -> Result<usize> {
    Ok(match u.int_in_range(0u8..=15)? {
        0..=5 => u.int_in_range(0..=256)?,
        6..=8 => u.int_in_range(257..=MAX_SMALL_SIZE)?,
        9..=11 => {
            // A class size, one less or one more.
            let class = SizeClass::ALL[u.choose_index(NUM_CLASSES)?];
            class.size() + u.int_in_range(0..=2)? - 1
        }
        12..=14 => u.int_in_range(MAX_SMALL_SIZE + 1..=20_000)?,
        _ => u.int_in_range(20_001..=320 << 10)?,
    })
}

/// Says which op, on which CPU, broke what.
macro_rules! check {
    ($run:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("{} on cpu {}: {}", $run.context(), cpu(), format_args!($($msg)+));
        }
    };
}

/// A live block in the model.
struct Live {
    ptr: *mut u8,
    layout: Layout,
    /// The pattern the block is filled with (from its address and id).
    key: u64,
    /// The CPU that allocated it.
    cpu: usize,
    /// Its class if a slab holds it (slab mode, small layout).
    slab_class: Option<SizeClass>,
}

impl Live {
    fn addr(&self) -> usize {
        self.ptr.addr()
    }

    /// The slab holding the block, if one does.
    fn slab_base(&self) -> Option<usize> {
        self.slab_class.map(|class| self.addr() & !(class.slab_bytes() - 1))
    }
}

/// Small and large operations a CPU should have counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Expected {
    small_ops: u64,
    large_ops: u64,
    cross_cpu_frees: u64,
}

thread_local! {
    /// The backend's memory, allocated once and reused by every run on this
    /// thread (a fresh 8 MiB block per run would cost most of the time in
    /// page faults), aligned like the largest slab as in `TestHeap`.
    static ARENA: *mut u8 = {
        let Ok(layout) = Layout::from_size_align(ARENA_BYTES, 64 << 10) else {
            unreachable!("a valid layout");
        };
        // SAFETY: nonzero size. Never freed: it lives as long as the thread.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null(), "no memory for the arena");
        base
    };
    /// The last run's heap (120 KiB), overwritten by the next run: a fresh
    /// allocation each run would page-fault just as much.
    static SPARE_HEAP: Cell<Option<Box<TestSlabHeap>>> = const { Cell::new(None) };
}

/// A new heap in `mode` of `bytes` (at most `ARENA_BYTES`) for `cpus` CPUs,
/// over this thread's arena. The caller is done with the previous one.
fn new_heap(bytes: usize, cpus: usize, mode: Mode) -> Box<TestSlabHeap> {
    let platform = HostPlatform::new(cpus, ReclaimStyle::SwitchCpus);
    let heap = match SPARE_HEAP.take() {
        Some(mut heap) => {
            *heap = SlabHeap::new(Heap::empty(), platform);
            heap
        }
        None => Box::new(SlabHeap::new(Heap::empty(), platform)),
    };
    let base = ARENA.with(|arena| *arena);
    // SAFETY: the arena has `ARENA_BYTES >= bytes` bytes and lives forever;
    // only this heap uses it now (the previous run's heap is overwritten
    // above, or was never made).
    heap.with_backend(|backend| unsafe { backend.init(base, bytes) });
    heap.set_mode(mode).expect("a new heap takes either mode");
    heap
}

struct Run {
    heap: Box<TestSlabHeap>,
    cpus: usize,
    arena: Range<usize>,
    start_free: usize,
    live: Vec<Live>,
    /// Live blocks by start address: their end (at least one byte).
    spans: BTreeMap<usize, usize>,
    next_id: u64,
    expected: [Expected; MAX_FUZZ_CPUS],
    /// Small operations done in slab mode: each is a cache hit, a refill or
    /// a flush.
    slab_small_ops: u64,
    op_index: usize,
    op: Option<Op>,
}

fn run(input: Input) {
    set_cpu(0);
    let heap = new_heap(input.heap_bytes, input.cpus, input.mode);
    let arena = heap.with_backend(|backend| {
        let bottom = backend.bottom().addr();
        bottom..bottom + backend.size()
    });
    let mut run = Run {
        start_free: heap.usage().free_bytes,
        heap,
        cpus: input.cpus,
        arena,
        live: Vec::new(),
        spans: BTreeMap::new(),
        next_id: 0,
        expected: [Expected::default(); MAX_FUZZ_CPUS],
        slab_small_ops: 0,
        op_index: 0,
        op: None,
    };
    for (index, op) in input.ops.into_iter().enumerate() {
        run.op_index = index;
        run.op = Some(op);
        run.apply(op);
        run.after_op();
    }
    run.op = None;
    run.finish();
}

impl Run {
    /// Where the run is, for failure messages.
    fn context(&self) -> String {
        match self.op {
            Some(op) => format!("op {} ({op:?})", self.op_index),
            None => "freeing what is left and draining every CPU after the last op".into(),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Alloc { layout, count } => {
                for _ in 0..count {
                    if !self.alloc(layout) {
                        break;
                    }
                }
            }
            Op::Free { pick, count } => {
                for _ in 0..count {
                    if self.live.is_empty() {
                        break;
                    }
                    let index = pick % self.live.len();
                    self.free(index);
                }
            }
            Op::FreeForeign { pick, count } => {
                let me = cpu();
                for _ in 0..count {
                    let len = self.live.len();
                    let Some(index) = (0..len)
                        .map(|i| (pick + i) % len)
                        .find(|&index| self.live[index].cpu != me)
                    else {
                        break;
                    };
                    self.free(index);
                }
            }
            Op::Realloc { pick, size } => {
                if !self.live.is_empty() {
                    let index = pick % self.live.len();
                    self.realloc(index, size);
                }
            }
            Op::Switch { cpu } => set_cpu(cpu % self.cpus),
            Op::Drain => {
                self.heap.drain_local_cpu();
                let cached = self.heap.stats().per_cpu()[cpu()].cached_bytes;
                check!(self, cached == 0, "{cached} bytes still cached after drain_local_cpu");
            }
            Op::DrainAll => {
                self.drain_all_cpus();
                self.check_drained("drain of every CPU");
            }
            Op::Reclaim => {
                self.heap.reclaim();
                self.check_drained("reclaim");
            }
            Op::SetMode(mode) => self.set_mode(mode),
        }
    }

    /// Checks after every op: nobody holds the lock, and the running CPU
    /// caches no more than its bound in any class.
    fn after_op(&self) {
        check!(self, self.heap.lock_holder().is_none(), "the global lock is still held");
        let Some(stats) = self.heap.cpu_stats(cpu()) else {
            unreachable!("fuzzed CPUs are below MAX_CPUS");
        };
        for (class, figures) in SizeClass::ALL.iter().zip(&stats.classes) {
            let bound = class.max_cached_bytes_per_cpu() as u64;
            check!(
                self,
                figures.cached_bytes <= bound,
                "caches {} bytes of size class {}, over the bound {bound}",
                figures.cached_bytes,
                class.size()
            );
        }
    }

    /// Drains CPUs `0..cpus` by becoming each in turn.
    fn drain_all_cpus(&self) {
        let me = cpu();
        for other in 0..self.cpus {
            set_cpu(other);
            self.heap.drain_local_cpu();
        }
        set_cpu(me);
    }

    /// One allocation; false if it returned null (allowed, then checked).
    fn alloc(&mut self, layout: Layout) -> bool {
        let block = self.heap.alloc(layout);
        if block.is_null() {
            self.after_null(layout);
            return false;
        }
        let cpu = cpu();
        let slab_class = self.count_alloc(cpu, layout);
        self.adopt(block, layout, cpu, slab_class);
        true
    }

    fn free(&mut self, index: usize) {
        let live = self.forget(index);
        self.check_contents(&live, live.layout.size(), "before free");
        // SAFETY: `live` is a block of this heap, allocated with this layout
        // (or resized to it), and no longer in the model: freed once.
        unsafe { self.heap.dealloc(live.ptr, live.layout) };
        self.count_free(cpu(), &live);
    }

    fn realloc(&mut self, index: usize, size: usize) {
        let old = self.forget(index);
        self.check_contents(&old, old.layout.size(), "before realloc");
        let Ok(layout) = Layout::from_size_align(size, old.layout.align()) else {
            unreachable!("sizes stay far below isize::MAX");
        };
        // SAFETY: `old` is a live block of this heap with this layout; the
        // model takes it back below if realloc fails, else forgets it.
        let moved = unsafe { self.heap.realloc(old.ptr, old.layout, size) };
        if moved.is_null() {
            let old_size = old.layout.size();
            self.remember(old);
            self.after_null(layout);
            let old = &self.live[self.live.len() - 1];
            self.check_contents(old, old_size, "after a failed realloc");
            return;
        }
        let cpu = cpu();
        let same_class = old.slab_class.is_some() && old.slab_class == self.slab_class(layout);
        let owner = if same_class {
            check!(
                self,
                moved == old.ptr,
                "realloc of {:#x} from {} to {size} bytes stays in class {} but moved to {:#x}",
                old.addr(),
                old.layout.size(),
                old.slab_class.map_or(0, SizeClass::size),
                moved.addr()
            );
            old.cpu
        } else {
            self.count_alloc(cpu, layout);
            self.count_free(cpu, &old);
            cpu
        };
        let kept = old.layout.size().min(size);
        if let Some((offset, found, wanted)) = mismatch(moved, kept, old.key) {
            check!(
                self,
                false,
                "realloc of {:#x} ({} bytes) to {:#x} ({size} bytes) lost the prefix: \
                 byte {offset} is {found:#04x}, not {wanted:#04x}",
                old.addr(),
                old.layout.size(),
                moved.addr()
            );
        }
        let slab_class = if same_class { old.slab_class } else { self.slab_class(layout) };
        self.adopt(moved, layout, owner, slab_class);
    }

    fn set_mode(&mut self, mode: Mode) {
        let before = self.heap.mode();
        let used = self.heap.usage().used_bytes;
        let result = self.heap.set_mode(mode);
        check!(
            self,
            used != 0 || self.live.is_empty(),
            "the backend has nothing in use, but {} blocks are live",
            self.live.len()
        );
        if mode == before || used == 0 {
            check!(self, result.is_ok(), "set_mode({mode:?}) from {before:?} refused: {result:?}");
        } else {
            check!(
                self,
                result == Err(ModeLocked { current: before }),
                "set_mode({mode:?}) from {before:?} with {used} bytes in use: {result:?}"
            );
            if self.live.is_empty() {
                let cached = self.heap.stats().total.cached_bytes;
                check!(
                    self,
                    cached > 0,
                    "{used} bytes in use, no live block, nothing cached: leak"
                );
            }
        }
        check!(self, self.heap.mode() == result.map_or(before, |()| mode), "mode is wrong");
    }

    /// Checks a fresh (or resized) block, fills it and adds it to the model.
    fn adopt(&mut self, ptr: *mut u8, layout: Layout, cpu: usize, slab_class: Option<SizeClass>) {
        let addr = ptr.addr();
        let size = layout.size();
        check!(
            self,
            addr.is_multiple_of(layout.align()),
            "block {addr:#x} for {layout:?} is misaligned"
        );
        let end = addr + size.max(1);
        check!(
            self,
            self.arena.start <= addr && end <= self.arena.end,
            "block {addr:#x}..{end:#x} ({size} bytes) is outside the heap {:#x}..{:#x}",
            self.arena.start,
            self.arena.end
        );
        if let Some(class) = slab_class {
            let base = addr & !(class.slab_bytes() - 1);
            let offset = addr - base;
            let first = class.first_object_offset();
            check!(
                self,
                offset >= first
                    && (offset - first).is_multiple_of(class.size())
                    && offset + class.size() <= class.slab_bytes(),
                "block {addr:#x} ({size} bytes) is not an object slot of class {} in the slab \
                 at {base:#x}",
                class.size()
            );
        }
        if let Some((&start, &stop)) = self.spans.range(..=addr).next_back() {
            check!(
                self,
                stop <= addr,
                "block {addr:#x}..{end:#x} ({size} bytes) overlaps the live block {start:#x}..{stop:#x}"
            );
        }
        if let Some((&start, &stop)) = self.spans.range(addr..).next() {
            check!(
                self,
                end <= start,
                "block {addr:#x}..{end:#x} ({size} bytes) overlaps the live block {start:#x}..{stop:#x}"
            );
        }
        let key = block_key(addr, self.next_id);
        self.next_id += 1;
        // SAFETY: the heap just handed out (or resized) this block: `size`
        // bytes valid for writes, used by nothing else (checked above
        // against every live block).
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr, size) };
        fill(bytes, key);
        self.remember(Live { ptr, layout, key, cpu, slab_class });
    }

    fn remember(&mut self, live: Live) {
        self.spans.insert(live.addr(), live.addr() + live.layout.size().max(1));
        self.live.push(live);
    }

    fn forget(&mut self, index: usize) -> Live {
        let live = self.live.swap_remove(index);
        self.spans.remove(&live.addr());
        live
    }

    /// The slab class a block of `layout` gets in the current mode.
    fn slab_class(&self, layout: Layout) -> Option<SizeClass> {
        SizeClass::for_layout(layout).filter(|_| self.heap.mode() == Mode::Slab)
    }

    fn count_alloc(&mut self, cpu: usize, layout: Layout) -> Option<SizeClass> {
        let expected = &mut self.expected[cpu];
        if SizeClass::for_layout(layout).is_some() {
            expected.small_ops += 1;
        } else {
            expected.large_ops += 1;
        }
        let slab_class = self.slab_class(layout);
        if slab_class.is_some() {
            self.slab_small_ops += 1;
        }
        slab_class
    }

    fn count_free(&mut self, cpu: usize, live: &Live) {
        let expected = &mut self.expected[cpu];
        if SizeClass::for_layout(live.layout).is_some() {
            expected.small_ops += 1;
        } else {
            expected.large_ops += 1;
        }
        if live.slab_class.is_some() {
            self.slab_small_ops += 1;
            if live.cpu != cpu {
                expected.cross_cpu_frees += 1;
            }
        }
    }

    /// The first `len` bytes of `live` still hold its pattern.
    fn check_contents(&self, live: &Live, len: usize, when: &str) {
        if let Some((offset, found, wanted)) = mismatch(live.ptr, len, live.key) {
            check!(
                self,
                false,
                "{when}: block {:#x} ({} bytes, allocated on cpu {}) corrupted: byte {offset} \
                 is {found:#04x}, not {wanted:#04x}",
                live.addr(),
                live.layout.size(),
                live.cpu
            );
        }
    }

    fn check_all_contents(&self, when: &str) {
        for live in &self.live {
            self.check_contents(live, live.layout.size(), when);
        }
    }

    /// After every CPU drained: nothing cached, each slab holds a live
    /// block, and an empty model means an empty backend.
    fn check_drained(&self, when: &str) {
        self.check_all_contents(when);
        let stats = self.heap.stats();
        check!(
            self,
            stats.total.cached_bytes == 0,
            "after {when}: {} bytes still cached",
            stats.total.cached_bytes
        );
        let slabs: BTreeSet<usize> = self.live.iter().filter_map(Live::slab_base).collect();
        check!(
            self,
            stats.heap.slabs == slabs.len(),
            "after {when}: {} slabs alive, but live blocks are in {}",
            stats.heap.slabs,
            slabs.len()
        );
        if self.live.is_empty() {
            check!(
                self,
                stats.heap.used_bytes == 0 && stats.heap.free_bytes == self.start_free,
                "after {when} with no live block: {} bytes used, {} free (started with {})",
                stats.heap.used_bytes,
                stats.heap.free_bytes,
                self.start_free
            );
        }
    }

    /// `alloc` (or `realloc`) returned null for `layout`. Allowed when the
    /// backend is really full; then the heap must have reclaimed every
    /// cache, corrupted nothing, and have no hole large enough.
    fn after_null(&self, layout: Layout) {
        self.check_drained("a null allocation");
        // The backend request that failed last: one slab, or the block.
        let request = match self.slab_class(layout) {
            Some(class) => Layout::from_size_align(class.slab_bytes(), class.slab_bytes()),
            None => Ok(layout),
        };
        let Ok(request) = request else {
            unreachable!("slab layouts are valid");
        };
        // linked_list_allocator rounds a request up to 16 bytes and a
        // multiple of 8; a hole fits it with 16 + (align - 1) bytes of
        // front padding and nothing or at least 16 bytes behind.
        let need = request.size().max(16).next_multiple_of(8) + request.align() + 48;
        // Its holes are merged, so there is at most one more hole than
        // backend blocks (slabs plus blocks the backend serves directly).
        let direct = self.live.iter().filter(|live| live.slab_class.is_none()).count();
        let blocks = self.heap.stats().heap.slabs + direct;
        let free = self.heap.usage().free_bytes;
        check!(
            self,
            free < (blocks + 1) * need,
            "null for {layout:?} although {free} bytes are free in at most {} holes, so one \
             holds the {need} bytes needed",
            blocks + 1
        );
    }

    /// Frees what is left, drains every CPU: the backend is back where it
    /// started, and the counters match the model.
    fn finish(mut self) {
        while !self.live.is_empty() {
            self.free(self.live.len() - 1);
        }
        self.drain_all_cpus();
        self.check_drained("freeing everything and draining every CPU");
        let stats = self.heap.stats();
        check!(self, stats.heap.slabs == 0, "{} slabs left", stats.heap.slabs);
        for (summary, expected) in stats.per_cpu().iter().zip(&self.expected) {
            let found = Expected {
                small_ops: summary.small_ops,
                large_ops: summary.large_ops,
                cross_cpu_frees: summary.cross_cpu_frees,
            };
            check!(
                self,
                found == *expected,
                "cpu {} counted {found:?}, not {expected:?}",
                summary.cpu
            );
        }
        let t = stats.total;
        check!(
            self,
            t.cache_hits + t.refills + t.flushes == self.slab_small_ops,
            "hits {} + refills {} + flushes {} != {} small ops in slab mode",
            t.cache_hits,
            t.refills,
            t.flushes,
            self.slab_small_ops
        );
        SPARE_HEAP.set(Some(self.heap));
    }
}

/// A block's pattern key, from its address and allocation id.
fn block_key(addr: usize, id: u64) -> u64 {
    mix(addr as u64 ^ id.rotate_left(32))
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pattern's `word`-th 8 bytes for `key`.
fn pattern_word(key: u64, word: usize) -> [u8; 8] {
    mix(key.wrapping_add((word as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))).to_le_bytes()
}

fn fill(bytes: &mut [u8], key: u64) {
    for (word, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&pattern_word(key, word)[..chunk.len()]);
    }
}

/// The first byte of `len` at `ptr` that differs from `key`'s pattern:
/// offset, found, expected.
fn mismatch(ptr: *const u8, len: usize, key: u64) -> Option<(usize, u8, u8)> {
    // SAFETY: callers pass a live block (or the prefix of one) that `fill`
    // initialised, `len` bytes at most its size.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    for (word, chunk) in bytes.chunks(8).enumerate() {
        let wanted = pattern_word(key, word);
        if chunk != &wanted[..chunk.len()] {
            let at = chunk.iter().zip(wanted).position(|(a, b)| *a != b).unwrap_or(0);
            return Some((word * 8 + at, chunk[at], wanted[at]));
        }
    }
    None
}
