//! Magazine: a LIFO stack of free objects of one size class, linked through
//! the first word of each free object, with its length. CPU caches hold
//! magazines bounded by the class's capacity; a slab's own free list is an
//! unbounded one.

use core::ptr::NonNull;

/// A stack of free objects. The link to the next object lives in the first
/// word of each object (objects are at least 16 bytes and 16-aligned), so a
/// magazine costs two words wherever it is and moving one is O(1).
#[derive(Debug)]
pub(crate) struct Magazine {
    head: Option<NonNull<u8>>,
    len: usize,
}

impl Magazine {
    /// An empty magazine.
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    /// How many objects it holds.
    #[inline]
    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no object.
    #[inline]
    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object [`Self::pop`] would return, without taking it.
    #[inline]
    pub(crate) const fn head(&self) -> Option<NonNull<u8>> {
        self.head
    }

    /// The magazine as its two words: the top object and the length.
    #[inline]
    pub(crate) fn into_parts(self) -> (Option<NonNull<u8>>, usize) {
        (self.head, self.len)
    }

    /// The magazine whose top object is `head`, holding `len` objects.
    ///
    /// # Safety
    /// `head` and `len` must be the parts of a magazine taken apart with
    /// [`Self::into_parts`] (or kept the way `push` and `pop` keep them):
    /// `len` objects linked from `head` under `push`'s contract.
    #[inline]
    pub(crate) unsafe fn from_parts(head: Option<NonNull<u8>>, len: usize) -> Magazine {
        Magazine { head, len }
    }

    /// Takes every object out, leaving this magazine empty.
    #[inline]
    pub(crate) fn take(&mut self) -> Magazine {
        core::mem::take(self)
    }

    /// Pushes a free object.
    ///
    /// # Safety
    /// `object` must be valid for writes of one pointer, pointer-aligned, and
    /// belong to nobody else from now on (free, and in no other magazine):
    /// the magazine owns it until it is popped again.
    #[inline]
    pub(crate) unsafe fn push(&mut self, object: NonNull<u8>) {
        // SAFETY: the caller hands `object` over, writable and aligned for
        // the one link word stored in it.
        unsafe { object.cast::<Option<NonNull<u8>>>().write(self.head) };
        self.head = Some(object);
        self.len += 1;
    }

    /// Pops the most recently pushed object; the caller owns it.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        let object = self.head?;
        // SAFETY: every object in the magazine was pushed under `push`'s
        // contract (owned by the magazine, aligned, its first word the link
        // written then) and nothing else wrote it since.
        self.head = unsafe { object.cast::<Option<NonNull<u8>>>().read() };
        self.len -= 1;
        Some(object)
    }
}

impl Default for Magazine {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_and_pops_in_lifo_order_and_counts() {
        let mut storage = [[0u64; 2]; 4];
        let objects: std::vec::Vec<NonNull<u8>> =
            storage.iter_mut().map(|slot| NonNull::from(slot).cast::<u8>()).collect();
        let mut magazine = Magazine::new();
        for &object in &objects {
            // SAFETY: each slot is a distinct, aligned, 16-byte local.
            unsafe { magazine.push(object) };
        }
        assert_eq!(magazine.len(), 4);
        let mut moved = magazine.take();
        assert!(magazine.is_empty());
        for &object in objects.iter().rev() {
            assert_eq!(moved.pop(), Some(object));
        }
        assert_eq!(moved.pop(), None);
        assert!(moved.is_empty());
    }
}
