//! Masking local interrupts, as a guard value that proves it.
use ::x86_64::instructions::interrupts;
use core::marker::PhantomData;

/// Proof that local interrupts stay masked on this CPU while it lives; on drop
/// the previous state comes back. Not `Send`: it belongs to one CPU.
pub struct IrqGuard {
    were_enabled: bool,
    _this_cpu_only: PhantomData<*const ()>,
}

impl IrqGuard {
    /// Masks local interrupts until the guard is dropped.
    #[inline(always)]
    pub fn new() -> Self {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        Self { were_enabled, _this_cpu_only: PhantomData }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.were_enabled {
            interrupts::enable();
        }
    }
}

/// Enables interrupts and halts until one arrives, with no window between the
/// two for a wake-up to be lost; interrupts are masked again on return.
pub fn wait_for_interrupt() {
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// Enables local interrupts.
pub fn enable() {
    interrupts::enable();
}

/// Masks local interrupts.
pub fn disable() {
    interrupts::disable();
}

/// Whether local interrupts are enabled.
pub fn enabled() -> bool {
    interrupts::are_enabled()
}
