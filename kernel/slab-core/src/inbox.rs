//! Cross-CPU frees by message passing: per owner CPU and size class an
//! *inbox*, a lock-free stack of *batches* of the owner's freed objects.
//!
//! A batch is a [`Magazine`] (objects linked through their first words);
//! its top object's second word (objects are at least 16 bytes) holds the
//! link to the next batch and the batch's length, packed into one
//! [`tagged`] pointer. The inbox is one word: the top batch and the number
//! of objects in the whole stack, packed the same way.
//!
//! - Any CPU pushes a whole batch with one compare-and-swap
//!   ([`Inbox::push`]), after writing the batch's links; the CAS is Release.
//! - The owner takes every batch at once with one `swap(null)`
//!   ([`Inbox::take_all`], Acquire), so there is no pop racing a push.
//! - No ABA: a push's CAS succeeds only if the word still equals the value
//!   the pusher linked its batch to, and then linking to it is right
//!   whatever happened in between (the classic ABA needs a pop that reads
//!   the top's link before its CAS, and there is none).
//! - Bounded: a push that would bring the stack above its limit fails and
//!   the caller gives the batch back to its slabs under the global lock, so
//!   an owner that never allocates again holds at most the limit per class.

use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::magazine::Magazine;
use crate::platform::MAX_CPUS;
use crate::size_class::{MAX_INBOX_OBJECTS, NUM_CLASSES};
use crate::sync::AtomicPtr;

/// Bits a [`tagged`] pointer keeps beside the address: 4 below it (objects
/// are 16-aligned) and [`TAG_SHIFT`] above it.
const TAG_BITS: u32 = 4 + TAG_SHIFT;
/// How far an address is shifted up to make room: x86-64 addresses are
/// canonical (the bits above bit 47, or bit 56 with 5-level paging, copy
/// it), so the top 7 bits are copies and an arithmetic shift restores them.
const TAG_SHIFT: u32 = 7;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;

/// The largest tag: the most objects an inbox may hold.
pub(crate) const MAX_TAG: usize = TAG_MASK;

/// `address` (16-aligned, canonical, or null) and `tag` (at most
/// [`MAX_TAG`]) in one word, keeping `address`'s provenance.
#[inline]
fn tagged(address: *mut u8, tag: usize) -> *mut u8 {
    debug_assert!(tag <= MAX_TAG && address.addr().is_multiple_of(16));
    let word = address.map_addr(|a| (a << TAG_SHIFT) | tag);
    debug_assert_eq!(untagged(word), (address, tag), "address is not canonical");
    word
}

/// The address and tag [`tagged`] packed.
#[inline]
fn untagged(word: *mut u8) -> (*mut u8, usize) {
    // The shifted tag's top bits land in the address's 4 zero bits.
    let address = word.map_addr(|a| (((a as isize) >> TAG_SHIFT) as usize) & !15);
    (address, word.addr() & TAG_MASK)
}

/// The second word of a batch's top object: where the batch link lives.
///
/// # Safety
/// `top` is a free object of at least 16 bytes, 16-aligned, that the caller
/// owns.
#[inline]
unsafe fn batch_link(top: NonNull<u8>) -> *mut *mut u8 {
    // SAFETY: in bounds of the object (caller: at least 16 bytes).
    unsafe { top.as_ptr().add(size_of::<usize>()).cast() }
}

/// One owner's inbox for one size class.
pub(crate) struct Inbox {
    /// The top batch (null: none) tagged with the objects in all batches.
    word: AtomicPtr<u8>,
}

impl Inbox {
    crate::sync::const_unless_loom! {
        /// An empty inbox.
        pub(crate) fn new() -> Inbox {
            Inbox { word: AtomicPtr::new(ptr::null_mut()) }
        }
    }

    /// Objects in the inbox now (approximate while others push).
    pub(crate) fn objects(&self) -> usize {
        untagged(self.word.load(Relaxed)).1
    }

    /// Pushes `batch` (not empty) if the inbox then holds at most `limit`
    /// objects (at most [`MAX_TAG`]); gives it back otherwise.
    ///
    /// # Safety
    /// Every object in `batch` is a free object of at least 16 bytes,
    /// 16-aligned, owned by the batch alone, of the class and owner this
    /// inbox is for: the owner takes them over.
    pub(crate) unsafe fn push(&self, batch: Magazine, limit: usize) -> Result<(), Magazine> {
        debug_assert!(limit <= MAX_TAG);
        let Some(top) = batch.head() else {
            return Ok(());
        };
        let len = batch.len();
        // SAFETY: the batch's top object, ours (caller).
        let link = unsafe { batch_link(top) };
        let mut current = self.word.load(Relaxed);
        loop {
            let (next, objects) = untagged(current);
            if objects + len > limit {
                return Err(batch);
            }
            // SAFETY: our object's second word; nobody else sees it before
            // the CAS below publishes it.
            unsafe { link.write(tagged(next, len)) };
            match self.word.compare_exchange_weak(
                current,
                tagged(top.as_ptr(), objects + len),
                Release,
                Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
    }

    /// Takes every batch out: the owner on a refill, any CPU draining
    /// (swaps only, so takers race safely).
    pub(crate) fn take_all(&self) -> Batches {
        // Cheap test first: an empty inbox stays unwritten (its line stays
        // shared instead of moving here on every refill).
        if self.word.load(Relaxed).is_null() {
            return Batches::new();
        }
        Batches { word: self.word.swap(ptr::null_mut(), Acquire) }
    }
}

/// One owner CPU's inboxes, one per size class, on their own cache lines.
#[repr(align(64))]
pub(crate) struct InboxRow(pub(crate) [Inbox; NUM_CLASSES]);

/// Every CPU's inboxes.
pub(crate) type Inboxes = [InboxRow; MAX_CPUS];

/// Every CPU's inboxes, empty.
#[cfg(not(loom))]
pub(crate) const fn new_inboxes() -> Inboxes {
    [const { InboxRow([const { Inbox::new() }; NUM_CLASSES]) }; MAX_CPUS]
}

/// Every CPU's inboxes, empty (loom's atomics have no `const` constructor).
#[cfg(loom)]
pub(crate) fn new_inboxes() -> Inboxes {
    core::array::from_fn(|_| InboxRow(core::array::from_fn(|_| Inbox::new())))
}

const _: () = assert!(MAX_INBOX_OBJECTS <= MAX_TAG);

/// Batches taken from an inbox, still linked: one word, the top batch
/// tagged with the objects in all batches (as the inbox's word), kept in
/// the owner's slot until loaded.
#[derive(Debug)]
pub(crate) struct Batches {
    word: *mut u8,
}

impl Batches {
    /// None.
    pub(crate) const fn new() -> Batches {
        Batches { word: ptr::null_mut() }
    }

    /// Objects in all batches.
    pub(crate) fn objects(&self) -> usize {
        untagged(self.word).1
    }

    /// Takes them all out, leaving none.
    pub(crate) fn take(&mut self) -> Batches {
        core::mem::replace(self, Batches::new())
    }

    /// Links `batch` on top (nothing if it is empty).
    ///
    /// # Safety
    /// As [`Inbox::push`]: every object in `batch` is a free object of at
    /// least 16 bytes, 16-aligned, owned by the batch alone; these batches
    /// own them from now on.
    pub(crate) unsafe fn push(&mut self, batch: Magazine) {
        let Some(top) = batch.head() else {
            return;
        };
        let (next, objects) = untagged(self.word);
        debug_assert!(objects + batch.len() <= MAX_TAG);
        // SAFETY: the batch's top object, ours (caller), with room for the
        // link in its second word.
        unsafe { batch_link(top).write(tagged(next, batch.len())) };
        self.word = tagged(top.as_ptr(), objects + batch.len());
    }

    /// The top batch as a magazine, unlinked from the rest.
    pub(crate) fn pop(&mut self) -> Option<Magazine> {
        let (top, objects) = untagged(self.word);
        let top = NonNull::new(top)?;
        // SAFETY: `top` is the top object of a batch linked by
        // `Inbox::push` (its second word written before the Release CAS
        // that `take_all`'s Acquire swap saw) or by `Self::push`, owned by
        // these batches alone.
        let (next, len) = untagged(unsafe { batch_link(top).read() });
        self.word = tagged(next, objects - len);
        // SAFETY: the batch was a magazine of `len` objects linked from
        // `top` when it was pushed, and its first words are untouched since.
        Some(unsafe { Magazine::from_parts(Some(top), len) })
    }
}

// SAFETY: `Batches` owns the free objects it links to, like `Magazine`.
unsafe impl Send for Batches {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn tagging_round_trips_canonical_addresses() {
        for address in [0usize, 16, 0x7fff_ffff_fff0, 0xffff_8000_0000_0000, 0xffff_ffff_ffff_fff0]
        {
            for tag in [0, 1, 64, MAX_TAG] {
                let word = tagged(ptr::without_provenance_mut(address), tag);
                assert_eq!(untagged(word), (ptr::without_provenance_mut(address), tag));
            }
        }
    }

    fn batch_of(objects: &mut [[u64; 2]]) -> Magazine {
        let mut batch = Magazine::new();
        for object in objects {
            // SAFETY: distinct 16-byte, 16-aligned-enough locals, handed over.
            unsafe { batch.push(NonNull::from(object).cast()) };
        }
        batch
    }

    #[repr(align(16))]
    struct Objects([[u64; 2]; 12]);

    #[test]
    fn batches_come_out_whole_newest_first_within_the_limit() {
        let mut storage = Objects([[0; 2]; 12]);
        let (first, rest) = storage.0.split_at_mut(5);
        let (second, third) = rest.split_at_mut(4);
        let inbox = Inbox::new();
        // SAFETY: fresh batches of distinct objects, handed over.
        unsafe {
            assert!(inbox.push(batch_of(first), 9).is_ok());
            assert!(inbox.push(batch_of(second), 9).is_ok());
            assert_eq!(inbox.objects(), 9);
            let refused = inbox.push(batch_of(third), 9).expect_err("over the limit");
            assert_eq!(refused.len(), 3);
        }
        let mut batches = inbox.take_all();
        assert_eq!((batches.objects(), inbox.objects()), (9, 0));
        let mut lens = Vec::new();
        while let Some(mut batch) = batches.pop() {
            lens.push(batch.len());
            let mut count = 0;
            while batch.pop().is_some() {
                count += 1;
            }
            assert_eq!(count, lens[lens.len() - 1]);
        }
        assert_eq!((lens, batches.objects()), (std::vec![4, 5], 0));
        assert_eq!(inbox.take_all().objects(), 0);
    }
}
