//! Multi-thread stress: std threads as CPUs (each thread its own CPU
//! index). Threads allocate mixed small blocks, fill them, and hand many to
//! other threads to free (cross-CPU frees); every free checks contents. At
//! the end nothing leaks (after every CPU drained, the backend's free bytes
//! are back to the start, no slab is left) and, per CPU in the steady
//! phase, `lock_acquisitions * 16 <= small_ops`. A second test has threads
//! serve reclaim requests while another CPU runs out of memory.

mod support;

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Barrier};
use std::thread;

use slab_core::{MIN_BATCH, SizeClass};
use support::{ReclaimStyle, Rng, TestHeap, fill, holds, serve_reclaim, set_cpu};

/// A block in flight to the thread that will free it.
struct Handoff {
    block: *mut u8,
    layout: Layout,
    tag: u64,
}

// SAFETY: the block is owned by whoever holds the handoff; the heap lets
// any CPU free any block.
unsafe impl Send for Handoff {}

const SIZES: [usize; 10] = [8, 16, 24, 48, 64, 100, 256, 512, 1000, 3000];

struct Worker {
    cpu: usize,
    heap: Arc<TestHeap>,
    inbox: Receiver<Handoff>,
    outboxes: Vec<Sender<Handoff>>,
    rng: Rng,
    live: Vec<Handoff>,
    next_tag: u64,
}

impl Worker {
    fn free(&self, handoff: Handoff) {
        // SAFETY: the block is live and was filled with its tag.
        let intact = unsafe { holds(handoff.block, handoff.layout.size(), handoff.tag) };
        assert!(intact, "cpu {} found a corrupted block", self.cpu);
        // SAFETY: allocated with this layout, freed once.
        unsafe { self.heap.dealloc(handoff.block, handoff.layout) };
    }

    /// One step: maybe free what others sent, then allocate or free.
    fn step(&mut self) {
        // An "interrupt" point: serve reclaim requests like an IPI would.
        serve_reclaim(&self.heap);
        if self.rng.below(4) == 0 {
            while let Ok(handoff) = self.inbox.try_recv() {
                self.free(handoff);
            }
        }
        if self.live.len() < 256 && (self.rng.below(2) == 0 || self.live.is_empty()) {
            let size = SIZES[self.rng.below(SIZES.len() as u64) as usize];
            let align = 1usize << self.rng.below(7);
            let layout = Layout::from_size_align(size, align).unwrap();
            let block = self.heap.alloc(layout);
            assert!(!block.is_null());
            assert_eq!(block.addr() % align, 0);
            let tag = (self.cpu as u64) << 48 | self.next_tag;
            self.next_tag += 1;
            // SAFETY: a fresh block of `size` bytes.
            unsafe { fill(block, size, tag) };
            self.live.push(Handoff { block, layout, tag });
        } else {
            let pick = self.rng.below(self.live.len() as u64) as usize;
            let handoff = self.live.swap_remove(pick);
            // Half the frees happen on another CPU.
            let target = self.rng.below(self.outboxes.len() as u64) as usize;
            if target != self.cpu && self.rng.below(2) == 0 {
                self.outboxes[target].send(handoff).unwrap();
            } else {
                self.free(handoff);
            }
        }
    }
}

/// `slack_batches`: lock acquisitions allowed per CPU beyond the bound (a
/// class can be mid-batch when the measured phase starts).
fn stress(threads: usize, warmup: usize, steady: usize, slack_batches: u64) {
    let heap: Arc<TestHeap> = Arc::from(TestHeap::new(32 << 20, threads, ReclaimStyle::Broadcast));
    let start = heap.free_bytes();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel()).unzip();
    let finished = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(cpu, inbox)| {
            let mut worker = Worker {
                cpu,
                heap: heap.clone(),
                inbox,
                outboxes: senders.clone(),
                rng: Rng(0x9e37_79b9 ^ ((cpu as u64 + 1) * 0x1000_0001)),
                live: Vec::new(),
                next_tag: 0,
            };
            let finished = finished.clone();
            thread::spawn(move || {
                set_cpu(worker.cpu);
                for _ in 0..warmup {
                    worker.step();
                }
                let before = worker.heap.cpu_stats(cpu).unwrap().summary();
                for _ in 0..steady {
                    worker.step();
                }
                let after = worker.heap.cpu_stats(cpu).unwrap().summary();
                // Stop sending; free what is live, and keep freeing what the
                // others still send (and serving reclaim) until all stopped.
                for handoff in std::mem::take(&mut worker.live) {
                    worker.free(handoff);
                }
                drop(std::mem::take(&mut worker.outboxes));
                finished.fetch_add(1, Ordering::AcqRel);
                while finished.load(Ordering::Acquire) < threads {
                    serve_reclaim(&worker.heap);
                    match worker.inbox.try_recv() {
                        Ok(handoff) => worker.free(handoff),
                        Err(_) => thread::yield_now(),
                    }
                }
                while let Ok(handoff) = worker.inbox.recv() {
                    worker.free(handoff);
                }
                worker.heap.drain_local_cpu();
                (before, after)
            })
        })
        .collect();
    drop(senders);
    let mut small_ops = 0;
    for handle in handles {
        let (before, after) = handle.join().unwrap();
        let ops = after.small_ops - before.small_ops;
        let locks = after.lock.acquisitions - before.lock.acquisitions;
        small_ops += ops;
        assert!(
            locks.saturating_sub(slack_batches) * MIN_BATCH as u64 <= ops,
            "cpu {}: {locks} lock acquisitions for {ops} small ops",
            after.cpu
        );
    }
    let stats = heap.stats();
    println!("{stats}");
    assert!(small_ops > 0);
    for cpu in stats.per_cpu() {
        assert!(cpu.cross_cpu_frees > 0, "cpu {} freed others' blocks", cpu.cpu);
    }
    assert_eq!(stats.total.cached_bytes, 0, "every CPU drained");
    assert_eq!(stats.heap.slabs, 0, "no slab stranded");
    assert_eq!(heap.free_bytes(), start, "no leak");
    assert_eq!(
        stats.total.cache_hits + stats.total.refills + stats.total.flushes,
        stats.total.small_ops
    );
    assert!(stats.total.lock.acquisitions >= stats.total.refills + stats.total.flushes);
}

#[test]
#[cfg_attr(miri, ignore = "too slow under miri; `threads_under_miri` covers it")]
fn four_cpus_allocating_and_freeing_each_others_blocks() {
    stress(4, 20_000, 200_000, 0);
}

/// The same with a handful of operations, small enough for miri's data
/// race detector.
#[test]
fn threads_under_miri() {
    stress(2, 50, if cfg!(miri) { 300 } else { 3000 }, 2 * SizeClass::ALL.len() as u64);
}

#[test]
fn reclaim_reaches_threads_that_serve_their_interrupts() {
    let cpus = 3;
    let heap: Arc<TestHeap> = Arc::from(TestHeap::new(384 << 10, cpus, ReclaimStyle::Broadcast));
    let start = heap.free_bytes();
    let ready = Arc::new(Barrier::new(cpus));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (1..cpus)
        .map(|cpu| {
            let (heap, ready, stop) = (heap.clone(), ready.clone(), stop.clone());
            thread::spawn(move || {
                set_cpu(cpu);
                // Cache one object of a few classes: pins a slab each.
                for class in [0, 3, 9, 12].map(|i| SizeClass::ALL[i]) {
                    let layout = Layout::from_size_align(class.size(), 8).unwrap();
                    let block = heap.alloc(layout);
                    assert!(!block.is_null());
                    // SAFETY: allocated just above with `layout`.
                    unsafe { heap.dealloc(block, layout) };
                }
                ready.wait();
                // Idle, but taking "interrupts" like a CPU would.
                while !stop.load(Ordering::Acquire) {
                    serve_reclaim(&heap);
                    thread::yield_now();
                }
            })
        })
        .collect();
    set_cpu(0);
    ready.wait();
    let pinned = start - heap.free_bytes();
    assert!(pinned >= (2 * 112) << 10, "{pinned} bytes pinned by caches");
    let big = Layout::from_size_align(300 << 10, 8).unwrap();
    let block = heap.alloc(big);
    assert!(!block.is_null(), "reclaim made the other CPUs drain");
    assert_eq!(heap.stats().total.cached_bytes, 0);
    // SAFETY: allocated just above with `big`.
    unsafe { heap.dealloc(block, big) };
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(heap.free_bytes(), start);
}
