//! Locks. A lock that an interrupt handler may also take is only ever held
//! with local interrupts masked, and the guard type makes that the only way
//! to hold it. Each lock records the CPU holding it, for hang reports.
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::{arch::interrupts::IrqGuard, smp};

/// A spin lock held with local interrupts masked.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
    /// The CPU holding `inner`, or [`NO_HOLDER`]: written by the holder
    /// only, read by anyone (the NMI dump names it).
    holder: AtomicUsize,
}

/// `holder` when nobody holds the lock.
const NO_HOLDER: usize = usize::MAX;

/// Holds the lock and keeps interrupts masked until dropped.
pub struct IrqSpinLockGuard<'a, T> {
    // Field order matters: the lock is released before interrupts return.
    inner: spin::MutexGuard<'a, T>,
    _irqs_masked: IrqGuard,
    holder: &'a AtomicUsize,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self { inner: spin::Mutex::new(value), holder: AtomicUsize::new(NO_HOLDER) }
    }

    /// Masks local interrupts, then spins until the lock is free.
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let irqs_masked = IrqGuard::new();
        let inner = self.inner.lock();
        self.guard(inner, irqs_masked)
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let irqs_masked = IrqGuard::new();
        let inner = self.inner.try_lock()?;
        Some(self.guard(inner, irqs_masked))
    }

    fn guard<'a>(
        &'a self,
        inner: spin::MutexGuard<'a, T>,
        irqs_masked: IrqGuard,
    ) -> IrqSpinLockGuard<'a, T> {
        // Before the per-CPU blocks exist only the bootstrap CPU runs.
        self.holder.store(smp::try_current_cpu_index().unwrap_or(0), Relaxed);
        IrqSpinLockGuard { inner, _irqs_masked: irqs_masked, holder: &self.holder }
    }

    /// The CPU holding the lock now, if any (lock-free: safe from an NMI).
    pub fn holder(&self) -> Option<usize> {
        match self.holder.load(Relaxed) {
            NO_HOLDER => None,
            cpu => Some(cpu),
        }
    }

    /// Releases the lock whoever holds it: only for the panic path, whose
    /// report must get out even if the panicking CPU held the lock.
    ///
    /// # Safety
    /// The holder must never touch the protected value again (it is stopped
    /// or is the caller, abandoning its guard).
    pub unsafe fn force_unlock(&self) {
        self.holder.store(NO_HOLDER, Relaxed);
        // SAFETY: the caller guarantees the old holder is gone for good.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // Then the fields drop: the lock is released, then interrupts return.
        self.holder.store(NO_HOLDER, Relaxed);
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
