//! The atomics and cells of state shared between CPUs (the global lock, the
//! reclaim handshake, the inboxes of cross-CPU frees): `core`'s normally, loom's under `--cfg loom` so the
//! loom tests can explore every interleaving of that shared state.
//!
//! Per-CPU counters and magazines are deliberately not routed through here:
//! only their owning CPU writes them, so there is nothing for loom to find,
//! and keeping them on `core` types keeps the per-CPU array `const`-built.

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::cell::{MutPtr, UnsafeCell};
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

/// Declares a constructor that is `const` normally and a plain `fn` under
/// loom, whose atomics and cells have no `const` constructors. One body, so
/// the two builds cannot drift apart.
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($args:tt)*) -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $name($($args)*) -> $ret $body
        #[cfg(loom)]
        $(#[$attr])* $vis fn $name($($args)*) -> $ret $body
    };
}
pub(crate) use const_unless_loom;

/// `core::cell::UnsafeCell` with loom's access API (`get_mut` returning a
/// pointer object), so lock code reads the same in both builds.
#[cfg(not(loom))]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// A pointer to the contents; dereferencing it is the caller's promise.
    pub(crate) fn get_mut(&self) -> MutPtr<T> {
        MutPtr(self.0.get())
    }
}

/// A raw pointer to an [`UnsafeCell`]'s contents (loom tracks its lifetime).
#[cfg(not(loom))]
pub(crate) struct MutPtr<T>(*mut T);

#[cfg(not(loom))]
impl<T> MutPtr<T> {
    /// # Safety
    /// No other reference to the contents may be live while the returned one
    /// is (the lock holding this pointer guarantees it).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn deref(&self) -> &mut T {
        // SAFETY: the pointer came from `UnsafeCell::get_mut`, so it is valid
        // and aligned; exclusivity is the caller's promise above.
        unsafe { &mut *self.0 }
    }
}
