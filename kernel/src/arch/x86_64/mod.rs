//! x86_64: registers, descriptor tables, interrupts, the local APIC, paging
//! and the QEMU exit device. Nothing outside `arch` names an instruction,
//! an MSR or a port.
pub mod apic;
mod cpu;
mod gdt;
mod idt;
pub mod interrupts;
pub mod paging;
mod percpu;
mod pic;
mod qemu;
pub mod serial;
pub mod tsc;

pub use cpu::{
    HAND_COUNTED, halt_forever, marked_hand_counted, pause, read_timestamp, timestamp_marker,
};
pub use percpu::{
    BLOCK_HEAP_WORD_OFFSET, BLOCK_INDEX_OFFSET, BLOCK_SELF_OFFSET, CpuArchState, current_cpu_base,
    current_cpu_index, current_heap_word, install_cpu_base, set_current_heap_word,
    set_current_heap_word_to,
};
pub use pic::mask_legacy_pic;
pub use qemu::qemu_exit;

/// Loads this CPU's descriptor tables (GDT, TSS with IST stacks, IDT).
///
/// `state` must be the per-CPU block of the CPU that runs this, whose index
/// is `cpu_index`.
pub fn init_cpu_tables(state: &'static CpuArchState, cpu_index: usize) {
    gdt::load(state, cpu_index);
    idt::load();
}
