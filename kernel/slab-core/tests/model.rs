//! Property test: random sequences of alloc / free / realloc / drain of
//! mixed sizes and alignments on random CPUs, checked against a model of
//! the live blocks: no two live blocks overlap, every block is aligned,
//! contents survive until freed, and once everything is freed and every CPU
//! drained the backend's free bytes are back where they started.

mod support;

use std::alloc::Layout;
use std::collections::BTreeMap;

use proptest::prelude::*;
use support::{HeapExt, ReclaimStyle, TestHeap, fill, holds, set_cpu};

const CPUS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Alloc { cpu: usize, size: usize, align_shift: u32 },
    Free { cpu: usize, pick: usize },
    Realloc { cpu: usize, pick: usize, size: usize },
    Drain { cpu: usize },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 257usize..=4096,
        1 => 4097usize..=20_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..CPUS, size(), 0u32..=13).prop_map(|(cpu, size, align_shift)| Op::Alloc { cpu, size, align_shift }),
        7 => (0..CPUS, any::<usize>()).prop_map(|(cpu, pick)| Op::Free { cpu, pick }),
        3 => (0..CPUS, any::<usize>(), size()).prop_map(|(cpu, pick, size)| Op::Realloc { cpu, pick, size }),
        1 => (0..CPUS).prop_map(|cpu| Op::Drain { cpu }),
    ]
}

/// A live block in the model.
struct Live {
    layout: Layout,
    tag: u64,
}

/// The live blocks by address, checking overlap on insertion.
#[derive(Default)]
struct Model {
    blocks: BTreeMap<usize, (*mut u8, Live)>,
}

impl Model {
    fn insert(&mut self, block: *mut u8, live: Live) {
        let start = block.addr();
        let end = start + live.layout.size().max(1);
        if let Some((&prev, (_, prev_live))) = self.blocks.range(..=start).next_back() {
            assert!(
                prev + prev_live.layout.size().max(1) <= start,
                "overlaps the block at {prev:#x}"
            );
        }
        if let Some((&next, _)) = self.blocks.range(start..).next() {
            assert!(end <= next, "overlaps the block at {next:#x}");
        }
        self.blocks.insert(start, (block, live));
    }

    fn remove(&mut self, pick: usize) -> Option<(*mut u8, Live)> {
        if self.blocks.is_empty() {
            return None;
        }
        let key = *self.blocks.keys().nth(pick % self.blocks.len())?;
        self.blocks.remove(&key)
    }
}

fn run(ops: Vec<Op>) {
    let test_heap = TestHeap::new(8 << 20, CPUS, ReclaimStyle::SwitchCpus);
    let heap = &test_heap.heap;
    let start = heap.free_bytes();
    let mut model = Model::default();
    for (tag, op) in ops.into_iter().enumerate() {
        let tag = tag as u64;
        match op {
            Op::Alloc { cpu, size, align_shift } => {
                set_cpu(cpu);
                let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                let block = heap.alloc(layout);
                assert!(!block.is_null(), "{layout:?}");
                assert_eq!(block.addr() % layout.align(), 0, "{layout:?}");
                // SAFETY: a fresh block of `size` bytes.
                unsafe { fill(block, size, tag) };
                model.insert(block, Live { layout, tag });
            }
            Op::Free { cpu, pick } => {
                set_cpu(cpu);
                if let Some((block, live)) = model.remove(pick) {
                    // SAFETY: live, filled with its tag.
                    assert!(unsafe { holds(block, live.layout.size(), live.tag) });
                    // SAFETY: allocated with this layout, freed once.
                    unsafe { heap.dealloc(block, live.layout) };
                }
            }
            Op::Realloc { cpu, pick, size } => {
                set_cpu(cpu);
                if let Some((block, live)) = model.remove(pick) {
                    // SAFETY: live with this layout.
                    let moved = unsafe { heap.realloc(block, live.layout, size) };
                    assert!(!moved.is_null());
                    let layout = Layout::from_size_align(size, live.layout.align()).unwrap();
                    assert_eq!(moved.addr() % layout.align(), 0);
                    let kept = live.layout.size().min(size);
                    // SAFETY: the first `kept` bytes were carried over.
                    let carried = unsafe { holds(moved, kept, live.tag) };
                    assert!(carried, "realloc lost contents");
                    // SAFETY: the new block has `size` bytes.
                    unsafe { fill(moved, size, tag) };
                    model.insert(moved, Live { layout, tag });
                }
            }
            Op::Drain { cpu } => {
                set_cpu(cpu);
                heap.drain_local_cpu();
            }
        }
    }
    for (_, (block, live)) in std::mem::take(&mut model.blocks) {
        // SAFETY: as in `Op::Free`.
        assert!(unsafe { holds(block, live.layout.size(), live.tag) });
        // SAFETY: as in `Op::Free`.
        unsafe { heap.dealloc(block, live.layout) };
    }
    heap.drain_all_cpus(CPUS);
    let stats = heap.stats();
    assert_eq!(stats.heap.slabs, 0, "no slab stranded");
    assert_eq!(stats.total.cached_bytes, 0);
    assert_eq!(heap.free_bytes(), start, "every byte back in the backend");
    assert_eq!(
        stats.total.cache_hits + stats.total.refills + stats.total.flushes,
        stats.total.small_ops
    );
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 192 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 400 })) {
        run(ops);
    }
}
