//! Locks. A lock that an interrupt handler may also take is only ever held
//! with local interrupts masked, and the guard type makes that the only way
//! to hold it.
use crate::arch::interrupts::IrqGuard;

/// A spin lock held with local interrupts masked.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

/// Holds the lock and keeps interrupts masked until dropped.
pub struct IrqSpinLockGuard<'a, T> {
    // Field order matters: the lock is released before interrupts return.
    inner: spin::MutexGuard<'a, T>,
    _irqs_masked: IrqGuard,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self { inner: spin::Mutex::new(value) }
    }

    /// Masks local interrupts, then spins until the lock is free.
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let irqs_masked = IrqGuard::new();
        IrqSpinLockGuard { inner: self.inner.lock(), _irqs_masked: irqs_masked }
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let irqs_masked = IrqGuard::new();
        let inner = self.inner.try_lock()?;
        Some(IrqSpinLockGuard { inner, _irqs_masked: irqs_masked })
    }

    /// Releases the lock whoever holds it: only for the panic path, whose
    /// report must get out even if the panicking CPU held the lock.
    ///
    /// # Safety
    /// The holder must never touch the protected value again (it is stopped
    /// or is the caller, abandoning its guard).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: the caller guarantees the old holder is gone for good.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> core::ops::Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> core::ops::DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}
