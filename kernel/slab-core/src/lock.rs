//! The global lock: a test-and-test-and-set spin lock whose `try_lock`
//! lets the heap count contention (a failed first try) before it spins.
//! Built on `crate::sync`, so loom can check it.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::{AtomicBool, MutPtr, UnsafeCell, const_unless_loom, spin_loop};

/// A spin lock around `T`. The heap only takes it with local interrupts
/// masked, so an interrupt handler on the same CPU can never spin on a lock
/// its own CPU holds.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to the value to one holder at a time
// (acquire/release on `locked` orders each holder after the previous one),
// so sharing the lock only moves the value between threads: `T: Send`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: owning the lock is owning the value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    const_unless_loom! {
        /// An unlocked lock around `value`.
        pub fn new(value: T) -> SpinLock<T> {
            SpinLock {
                locked: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }
    }

    /// Takes the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        if self.locked.compare_exchange(false, true, Acquire, Relaxed).is_ok() {
            Some(SpinGuard { lock: self, value: ManuallyDrop::new(self.value.get_mut()) })
        } else {
            None
        }
    }

    /// Takes the lock, spinning (on plain loads, so waiters do not bounce
    /// the line between them) until it is free.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_waiting(|_| spin_loop())
    }

    /// Takes the lock as [`lock`](Self::lock) does, calling `wait(spins)`
    /// each time it finds the lock still held, with `spins` the number of
    /// earlier calls in this acquisition (0, 1, 2, ...). The heap passes
    /// `Platform::relax`: a pause in the kernel, spin-then-yield on the
    /// host, where the holder can be preempted.
    #[inline]
    pub fn lock_waiting(&self, mut wait: impl FnMut(u32)) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            while self.locked.load(Relaxed) {
                wait(spins);
                spins = spins.saturating_add(1);
            }
        }
    }

    /// Unlocks a lock whose guard was forgotten (`mem::forget`): for a
    /// holder that keeps the lock past the guard's scope (`HostHeap`'s
    /// `fork` handlers, `SlabHeap::hold_lock`).
    ///
    /// # Safety
    /// The lock is held through a guard that was forgotten, by the calling
    /// thread (in a forked child: by the thread that forked, which the
    /// child's one thread continues), and it is unlocked only this once.
    #[cfg(feature = "host")]
    pub(crate) unsafe fn unlock_forgotten(&self) {
        self.locked.store(false, Release);
    }
}

/// Access to the value while the lock is held; dropping it unlocks.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// Dropped by hand before unlocking (loom tracks the access until then).
    value: ManuallyDrop<MutPtr<T>>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other
        // access to the value exists; the borrow ends before the guard.
        unsafe { MutPtr::deref(&self.value) }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { MutPtr::deref(&self.value) }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here, and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        self.lock.locked.store(false, Release);
    }
}
