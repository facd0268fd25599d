//! The GS base register points at the running CPU's per-CPU block
//! (`smp::percpu::Cpu`), whose first three words are its own address, the
//! CPU's index and the heap's slot word; reading or writing one is one
//! `mov` with `gs:`.
use ::x86_64::{VirtAddr, registers::model_specific::GsBase};
use core::arch::asm;

use super::{apic::LocalApicCell, gdt::CpuDescriptorTables};

/// Byte offset of the block's own address in the per-CPU block.
pub const BLOCK_SELF_OFFSET: usize = 0;
/// Byte offset of the CPU index in the per-CPU block.
pub const BLOCK_INDEX_OFFSET: usize = 8;
/// Byte offset of the heap's slot word in the per-CPU block
/// (`slab_core::Platform::this_cpu_word`).
pub const BLOCK_HEAP_WORD_OFFSET: usize = 16;

/// The architecture's part of a per-CPU block.
pub struct CpuArchState {
    pub(super) tables: CpuDescriptorTables,
    pub(super) local_apic: LocalApicCell,
}

impl CpuArchState {
    /// State before the CPU has loaded anything.
    pub const fn new() -> Self {
        Self { tables: CpuDescriptorTables::new(), local_apic: LocalApicCell::new(None) }
    }
}

impl Default for CpuArchState {
    fn default() -> Self {
        Self::new()
    }
}

/// Points GS at `block`, the per-CPU block of the CPU that runs this.
///
/// # Safety
/// `block` must be the address of this CPU's own per-CPU block, live for
/// ever, with its own address at [`BLOCK_SELF_OFFSET`] and its index at
/// [`BLOCK_INDEX_OFFSET`] already written; no other CPU may use the block.
pub unsafe fn install_cpu_base(block: usize) {
    GsBase::write(VirtAddr::new(block as u64));
}

/// The address of the running CPU's per-CPU block.
#[inline(always)]
pub fn current_cpu_base() -> usize {
    let base: usize;
    // SAFETY: every CPU installs its block before running any code that can
    // call this (boot::start and smp::bringup do it first), so gs:[0] is the
    // block's own address; the read has no side effects.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) base, off = const BLOCK_SELF_OFFSET,
             options(nostack, preserves_flags, readonly, pure))
    };
    base
}

/// The running CPU's index (0 is the bootstrap CPU).
#[inline(always)]
pub fn current_cpu_index() -> usize {
    let index: usize;
    // SAFETY: as in `current_cpu_base`: gs:[8] is the index of the CPU whose
    // block GS points at, written before the block was installed.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) index, off = const BLOCK_INDEX_OFFSET,
             options(nostack, preserves_flags, readonly, pure))
    };
    index
}

/// The running CPU's heap slot word.
#[inline(always)]
pub fn current_heap_word() -> usize {
    let word: usize;
    // SAFETY: as in `current_cpu_base`: gs:[16] is the heap word of the
    // CPU whose block GS points at. Not `pure`: the word changes (see
    // `set_current_heap_word`), and a read must not be merged with an
    // earlier one across a write.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) word, off = const BLOCK_HEAP_WORD_OFFSET,
             options(nostack, preserves_flags, readonly))
    };
    word
}

/// Sets the running CPU's heap slot word: one `mov` to `gs:[16]`, which an
/// interrupt cannot split. Also a compiler barrier for memory (no `nomem`):
/// the heap's accesses stay on their side of it.
#[inline(always)]
pub fn set_current_heap_word(word: usize) {
    // SAFETY: gs:[16] is the running CPU's own heap word (see
    // `current_cpu_base` for why GS is installed); only this CPU writes it.
    unsafe {
        asm!("mov gs:[{off}], {}", in(reg) word, off = const BLOCK_HEAP_WORD_OFFSET,
             options(nostack, preserves_flags))
    };
}

/// [`set_current_heap_word`] for a word known when compiling: the value is
/// an immediate of the `mov`, so no register is loaded for it.
#[inline(always)]
pub fn set_current_heap_word_to<const WORD: u32>() {
    // SAFETY: as in `set_current_heap_word`.
    unsafe {
        asm!("mov qword ptr gs:[{off}], {word}", word = const WORD,
             off = const BLOCK_HEAP_WORD_OFFSET, options(nostack, preserves_flags))
    };
}
