//! The loader's IDT: while the loader runs (BSP and APs), any CPU exception
//! is reported on the serial port and QEMU exits with failure instead of
//! triple-faulting silently. Vector 32 is the wake-up IPI for sleeping APs.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::entry::CODE64;
use crate::serial::fail;

const EXCEPTIONS: usize = 32;
/// Vector of the IPI that wakes APs sleeping until the BSP releases them.
pub const WAKE_VECTOR: u8 = 32;
const VECTORS: usize = EXCEPTIONS + 1;
const STUB_SIZE: u64 = 16;

static IDT: [AtomicU64; 2 * VECTORS] = [const { AtomicU64::new(0) }; 2 * VECTORS];

unsafe extern "C" {
    safe static loader_exception_stubs: u8;
}

global_asm!(
    r#"
    .section .text.loader_exceptions, "ax"
    .code64
    .balign 16
    .global loader_exception_stubs
loader_exception_stubs:
    .set vector, 0
    .rept 32
    .balign 16
    push $vector
    jmp 1f
    .set vector, vector + 1
    .endr
1:  mov (%rsp), %rdi            /* vector */
    mov 8(%rsp), %rsi           /* error code, or rip */
    mov 16(%rsp), %rdx          /* rip, or cs */
    and $-16, %rsp
    call {handler}
    ud2
"#,
    handler = sym exception,
    options(att_syntax)
);

/// Vectors for which the CPU pushes an error code.
fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

extern "C" fn exception(vector: u64, a: u64, b: u64) -> ! {
    let (error, rip) = if has_error_code(vector) { (a, b) } else { (0, a) };
    if vector == 14 {
        fail!(
            "CPU exception {vector} (page fault) at rip {rip:#x}, address {:#x}, error {error:#x}",
            crate::cpu::read_cr2()
        );
    }
    fail!("CPU exception {vector} at rip {rip:#x} (error {error:#x})");
}

fn set_gate(vector: usize, handler: u64) {
    let low = (handler & 0xffff)
        | (u64::from(CODE64) << 16)
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    IDT[2 * vector].store(low, Ordering::Relaxed);
    IDT[2 * vector + 1].store(handler >> 32, Ordering::Relaxed);
}

/// Fills the IDT (once, on the BSP): the exception reporters and the
/// wake-up handler `wake` (for vector 32).
pub fn init(wake: u64) {
    let stubs = &raw const loader_exception_stubs as u64;
    for vector in 0..EXCEPTIONS {
        set_gate(vector, stubs + vector as u64 * STUB_SIZE);
    }
    set_gate(usize::from(WAKE_VECTOR), wake);
}

/// Loads the loader's IDT on this CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer { limit: (VECTORS * 16 - 1) as u16, base: IDT.as_ptr() as u64 };
    // SAFETY: the IDT is a static with 32 valid gates pointing at the
    // exception stubs; `lidt` only reads the 10-byte pointer.
    unsafe {
        asm!("lidt [{}]", in(reg) &raw const pointer, options(readonly, nostack, preserves_flags))
    }
}
