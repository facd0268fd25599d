//! The interrupt descriptor table, shared by every CPU, and its handlers.
//! Faults become panics that name the CPU; interrupts are passed to the
//! generic code that owns them.
use ::x86_64::{
    registers::{control::Cr2, rflags::RFlags},
    structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode},
};
use spin::Lazy;

use super::{
    apic::{self, ERROR_VECTOR, RECLAIM_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, WAKEUP_VECTOR},
    gdt::{DOUBLE_FAULT_IST_INDEX, NMI_IST_INDEX},
};
use crate::smp;

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    idt.breakpoint.set_handler_fn(breakpoint);
    idt.invalid_opcode.set_handler_fn(invalid_opcode);
    idt.general_protection_fault.set_handler_fn(general_protection_fault);
    idt.page_fault.set_handler_fn(page_fault);
    // SAFETY: the IST slots are filled in every CPU's TSS (gdt::load) with
    // stacks used for nothing else, and the IDT is loaded only after it.
    unsafe {
        idt.double_fault.set_handler_fn(double_fault).set_stack_index(DOUBLE_FAULT_IST_INDEX);
        idt.non_maskable_interrupt
            .set_handler_fn(non_maskable_interrupt)
            .set_stack_index(NMI_IST_INDEX);
    }
    idt[TIMER_VECTOR].set_handler_fn(timer);
    idt[WAKEUP_VECTOR].set_handler_fn(wakeup);
    idt[RECLAIM_VECTOR].set_handler_fn(reclaim);
    idt[ERROR_VECTOR].set_handler_fn(apic_error);
    idt[SPURIOUS_VECTOR].set_handler_fn(spurious);
    idt
});

/// Loads the shared IDT on this CPU.
pub fn load() {
    IDT.load();
}

extern "x86-interrupt" fn breakpoint(frame: InterruptStackFrame) {
    crate::println!(
        "cpu {}: breakpoint at {:#x}",
        smp::current_cpu_index(),
        frame.instruction_pointer
    );
}

extern "x86-interrupt" fn invalid_opcode(frame: InterruptStackFrame) {
    panic!("invalid opcode at {:#x}", frame.instruction_pointer);
}

extern "x86-interrupt" fn general_protection_fault(frame: InterruptStackFrame, code: u64) {
    panic!("general protection fault at {:#x} (error code {code:#x})", frame.instruction_pointer);
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let address = Cr2::read_raw();
    panic!("page fault at {:#x} accessing {address:#x} ({code:?})", frame.instruction_pointer);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, _code: u64) -> ! {
    panic!("double fault at {:#x} (rsp {:#x})", frame.instruction_pointer, frame.stack_pointer);
}

extern "x86-interrupt" fn non_maskable_interrupt(frame: InterruptStackFrame) {
    crate::nmi::on_nmi(&smp::Interrupted {
        instruction_pointer: frame.instruction_pointer.as_u64(),
        stack_pointer: frame.stack_pointer.as_u64(),
        interrupts_enabled: frame.cpu_flags.contains(RFlags::INTERRUPT_FLAG),
    });
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    smp::with_this_cpu(|this| {
        crate::timer::on_tick(this);
        apic::end_of_interrupt(this);
    });
}

extern "x86-interrupt" fn wakeup(_frame: InterruptStackFrame) {
    smp::with_this_cpu(apic::end_of_interrupt);
}

extern "x86-interrupt" fn reclaim(_frame: InterruptStackFrame) {
    crate::heap::on_reclaim_ipi();
    smp::with_this_cpu(apic::end_of_interrupt);
}

extern "x86-interrupt" fn apic_error(_frame: InterruptStackFrame) {
    smp::with_this_cpu(apic::end_of_interrupt);
    panic!("local APIC error interrupt");
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}
