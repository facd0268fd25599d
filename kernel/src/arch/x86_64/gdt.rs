//! Per-CPU GDT and TSS, with separate interrupt stacks (IST) for double
//! faults and NMIs so that both work even on a broken kernel stack.
use ::x86_64::{
    VirtAddr,
    instructions::{
        segmentation::{CS, DS, ES, SS, Segment},
        tables::load_tss,
    },
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector},
        tss::TaskStateSegment,
    },
};
use core::cell::UnsafeCell;
use spin::Once;

use super::CpuArchState;
use crate::smp::MAX_CPUS;

/// IST slot of the double-fault handler's stack.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
/// IST slot of the NMI handler's stack.
pub const NMI_IST_INDEX: u16 = 1;

const IST_STACK_BYTES: usize = 16 * 1024;

/// A stack only the CPU itself writes to, through the TSS.
#[repr(C, align(16))]
struct IstStack(UnsafeCell<[u8; IST_STACK_BYTES]>);

// SAFETY: Rust code never reads or writes the stack's bytes; only the CPU that
// owns the TSS pointing at it pushes onto it when an exception arrives.
unsafe impl Sync for IstStack {}

impl IstStack {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; IST_STACK_BYTES]))
    }

    fn top(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.0.get()) + IST_STACK_BYTES as u64
    }
}

struct LoadedGdt {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// One CPU's interrupt stacks. They live outside the per-CPU blocks, in
/// one zero-initialised array, so that they take no room in the kernel file.
struct CpuIstStacks {
    double_fault: IstStack,
    nmi: IstStack,
}

static IST_STACKS: [CpuIstStacks; MAX_CPUS] =
    [const { CpuIstStacks { double_fault: IstStack::new(), nmi: IstStack::new() } }; MAX_CPUS];

/// One CPU's descriptor tables.
pub struct CpuDescriptorTables {
    tss: Once<TaskStateSegment>,
    gdt: Once<LoadedGdt>,
}

impl CpuDescriptorTables {
    pub const fn new() -> Self {
        Self { tss: Once::new(), gdt: Once::new() }
    }
}

/// Builds (once) and loads the GDT and TSS of CPU `cpu_index`, which must be
/// the running CPU, and reloads the segment registers with its selectors.
pub fn load(state: &'static CpuArchState, cpu_index: usize) {
    let tables = &state.tables;
    let stacks = &IST_STACKS[cpu_index];
    let tss = tables.tss.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] = stacks.double_fault.top();
        tss.interrupt_stack_table[usize::from(NMI_IST_INDEX)] = stacks.nmi.top();
        tss
    });
    let loaded = tables.gdt.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        LoadedGdt { gdt, code, data, tss }
    });
    loaded.gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are valid 64-bit kernel segments and whose TSS descriptor
    // points at this CPU's TSS, which lives for ever in the per-CPU block.
    unsafe {
        CS::set_reg(loaded.code);
        SS::set_reg(loaded.data);
        DS::set_reg(loaded.data);
        ES::set_reg(loaded.data);
        load_tss(loaded.tss);
    }
}
