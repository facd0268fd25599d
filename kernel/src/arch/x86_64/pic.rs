//! The legacy 8259 PICs: the kernel uses the local APICs only, so both PICs
//! stay fully masked (the Limine protocol promises this at entry; doing it
//! again costs two port writes and guards against a loader that did not).
use ::x86_64::instructions::port::Port;

const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xa1;
const ALL_LINES_MASKED: u8 = 0xff;

/// Masks every line of both PICs.
pub fn mask_legacy_pic() {
    for port in [PIC1_DATA, PIC2_DATA] {
        // SAFETY: 0x21 and 0xa1 are the PICs' interrupt mask registers;
        // masking all lines only stops legacy IRQs, which the kernel never
        // uses.
        unsafe { Port::<u8>::new(port).write(ALL_LINES_MASKED) };
    }
}
