//! Size classes: which small-object class serves a request, and each class's
//! geometry (object size and alignment, slab size, objects per slab,
//! magazine capacity).
//!
//! Classes go 16, 32, 48, 64, then two per power of two (`2^k` and
//! `1.5 * 2^k`) up to 4096: at most a third of an object is lost to rounding
//! above 64 bytes. A class's alignment is the largest power of two dividing
//! its size (48 -> 16, 96 -> 32, 4096 -> 4096); a request is served by the
//! smallest class at least as large as its size whose alignment is at least
//! its alignment, so a 64-byte-aligned 48-byte request lands in the 64 class.
//! Requests above 4096 bytes or aligned above 4096 go to the backend.

use core::alloc::Layout;

/// How many size classes there are.
pub const NUM_CLASSES: usize = 16;

/// The largest size (and alignment) a size class serves.
pub const MAX_SMALL_SIZE: usize = 4096;

/// Minimum magazine capacity: a refill or flush moves at least this many
/// objects, so the global lock is taken at most once per this many
/// small-object operations in steady state.
pub const MIN_BATCH: usize = 16;

/// Maximum magazine capacity (the small classes' 2 KiB worth is capped here).
pub(crate) const MAX_MAGAZINE_CAPACITY: usize = 64;

/// Buckets a CPU keeps per class for frees of other CPUs' objects, one per
/// owner index modulo this (`cpu_cache`): with up to this many CPUs, frees
/// of mixed owners all travel in full batches.
pub(crate) const BUCKETS_PER_CLASS: usize = 4;

/// Bytes of one size class an inbox holds at most, unless four magazines
/// are more (`SizeClass::inbox_capacity`).
pub const INBOX_BYTES: usize = 64 * 1024;

/// Bytes of full magazines of one class one CPU keeps in its depot, beyond
/// its loaded and previous magazines, at most (`SizeClass::depot_magazines`).
pub const DEPOT_BYTES: usize = 8 * 1024;

/// Magazines a depot holds at most.
pub const MAX_DEPOT_MAGAZINES: usize = 4;

/// Objects an inbox holds at most (its word counts them in 11 bits).
pub const MAX_INBOX_OBJECTS: usize = 1024;

/// Bytes reserved for the slab header at the start of every slab (one cache
/// line, so objects never share a line with the header the lock holder
/// writes). `slab::SlabHeader` must fit; a static assertion checks it.
pub const SLAB_HEADER_BYTES: usize = 64;

const CLASS_SIZES: [usize; NUM_CLASSES] =
    [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096];

/// Granule of the size lookup table.
const GRANULE_SHIFT: u32 = 4;
/// `SIZE_LOOKUP[(n + 15) / 16]` is the smallest class of size >= `n`.
const SIZE_LOOKUP: [u8; (MAX_SMALL_SIZE >> GRANULE_SHIFT) + 1] = build_size_lookup();

const fn build_size_lookup() -> [u8; (MAX_SMALL_SIZE >> GRANULE_SHIFT) + 1] {
    let mut table = [0u8; (MAX_SMALL_SIZE >> GRANULE_SHIFT) + 1];
    let mut granules = 0;
    while granules < table.len() {
        let bytes = granules << GRANULE_SHIFT;
        let mut class = 0;
        while CLASS_SIZES[class] < bytes {
            class += 1;
        }
        table[granules] = class as u8;
        granules += 1;
    }
    table
}

/// One small-object size class (an index into the class table).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct SizeClass(u8);

impl SizeClass {
    /// Every class, smallest first.
    pub const ALL: [SizeClass; NUM_CLASSES] = {
        let mut all = [SizeClass(0); NUM_CLASSES];
        let mut i = 0;
        while i < NUM_CLASSES {
            all[i] = SizeClass(i as u8);
            i += 1;
        }
        all
    };

    /// The class serving `layout`, or `None` if the backend must serve it
    /// (size or alignment above [`MAX_SMALL_SIZE`]). A zero size is served
    /// as one byte.
    #[inline]
    pub fn for_layout(layout: Layout) -> Option<SizeClass> {
        let align = layout.align();
        // A class of size >= `align` is needed anyway, so look up the larger.
        let key = if layout.size() > align { layout.size() } else { align };
        if key > MAX_SMALL_SIZE {
            return None;
        }
        let mut class = SIZE_LOOKUP[(key + (1 << GRANULE_SHIFT) - 1) >> GRANULE_SHIFT] as usize;
        // A `1.5 * 2^k` class is only `2^(k-1)`-aligned; the next class,
        // `2^(k+1)`, is aligned to its size, so at most one step is needed.
        while CLASS_SIZES[class] & (align - 1) != 0 {
            class += 1;
        }
        Some(SizeClass(class as u8))
    }

    /// The class serving `layout` when its alignment is at most 16 (the
    /// common case: every class is 16-aligned), `None` otherwise or when it
    /// is large: the fast paths' lookup, one table read.
    /// [`for_layout`](Self::for_layout) gives the same class for every layout
    /// this one serves.
    #[inline(always)]
    pub fn for_common_layout(layout: Layout) -> Option<SizeClass> {
        if layout.align() > 1 << GRANULE_SHIFT || layout.size() > MAX_SMALL_SIZE {
            return None;
        }
        Some(SizeClass(SIZE_LOOKUP[(layout.size() + (1 << GRANULE_SHIFT) - 1) >> GRANULE_SHIFT]))
    }

    /// The class with this index, if there is one.
    pub const fn from_index(index: usize) -> Option<SizeClass> {
        if index < NUM_CLASSES { Some(SizeClass(index as u8)) } else { None }
    }

    /// Index into per-class tables, `0..NUM_CLASSES`.
    #[inline]
    pub const fn index(self) -> usize {
        // SAFETY: a `SizeClass` is only made from an index below
        // `NUM_CLASSES` (`ALL`, `from_index`, and the lookup table, whose
        // entries are class indices); telling the compiler lets it drop the
        // bounds checks of per-class tables on the fast path.
        unsafe { core::hint::assert_unchecked((self.0 as usize) < NUM_CLASSES) };
        self.0 as usize
    }

    /// Object size in bytes.
    #[inline]
    pub const fn size(self) -> usize {
        CLASS_SIZES[self.index()]
    }

    /// Alignment every object of the class has: the largest power of two
    /// dividing the size.
    #[inline]
    pub const fn align(self) -> usize {
        1 << self.size().trailing_zeros()
    }

    /// Bytes of one slab (a chunk from the backend aligned to its own size,
    /// so an object's slab header is found by masking the object's address).
    #[inline]
    pub const fn slab_bytes(self) -> usize {
        !SLAB_ADDRESS_MASK[self.index()] + 1
    }

    /// The mask that turns an object's address into its slab's base address
    /// (`!(slab_bytes - 1)`), from a table.
    #[inline]
    pub(crate) const fn slab_address_mask(self) -> usize {
        SLAB_ADDRESS_MASK[self.index()]
    }

    const fn compute_slab_bytes(self) -> usize {
        match self.size() {
            0..=512 => 16 << 10,
            513..=1024 => 32 << 10,
            _ => 64 << 10,
        }
    }

    /// Offset of the first object in its slab: past the header, aligned.
    #[inline]
    pub const fn first_object_offset(self) -> usize {
        SLAB_HEADER_BYTES.next_multiple_of(self.align())
    }

    /// Objects one slab holds.
    #[inline]
    pub const fn objects_per_slab(self) -> usize {
        (self.slab_bytes() - self.first_object_offset()) / self.size()
    }

    /// Objects a full magazine holds: 2 KiB worth, but never fewer than
    /// [`MIN_BATCH`] (the batching bound) nor more than 64.
    #[inline]
    pub const fn magazine_capacity(self) -> usize {
        MAGAZINE_CAPACITY[self.index()] as usize
    }

    /// The most objects of this class one CPU's inbox holds (other CPUs'
    /// frees of its objects, on their way back): [`INBOX_BYTES`] worth, at
    /// most [`MAX_INBOX_OBJECTS`], but never fewer than four magazines. A
    /// batch that would overflow it goes back to its slabs under the lock.
    #[inline]
    pub const fn inbox_capacity(self) -> usize {
        let by_bytes = INBOX_BYTES / self.size();
        let by_bytes = if by_bytes > MAX_INBOX_OBJECTS { MAX_INBOX_OBJECTS } else { by_bytes };
        let magazines = 4 * self.magazine_capacity();
        if by_bytes > magazines { by_bytes } else { magazines }
    }

    /// Full magazines of its own objects a CPU keeps in its depot beyond
    /// the loaded and previous ones: [`DEPOT_BYTES`] worth, at most
    /// [`MAX_DEPOT_MAGAZINES`], none for classes whose magazine alone is
    /// larger (768 bytes and up). A refill under the lock fills the loaded
    /// magazine and the depot; a flush empties the depot.
    #[inline]
    pub const fn depot_magazines(self) -> usize {
        let by_bytes = DEPOT_BYTES / (self.magazine_capacity() * self.size());
        if by_bytes > MAX_DEPOT_MAGAZINES { MAX_DEPOT_MAGAZINES } else { by_bytes }
    }

    /// Magazines one global-lock acquisition moves, in a refill or a
    /// flush: the depot's worth, at least one. In a steady stream of
    /// allocations (or frees) the lock is taken once per this many
    /// magazines of operations.
    #[inline]
    pub const fn transfer_magazines(self) -> usize {
        let depot = self.depot_magazines();
        if depot > 1 { depot } else { 1 }
    }

    /// The most bytes of this class one CPU caches: a loaded and a previous
    /// magazine and a depot of its own objects, a bucket of each of
    /// [`BUCKETS_PER_CLASS`] other CPUs' objects and up to a transfer's
    /// worth of them less one object that
    /// full inboxes refused (waiting for one lock acquisition), and its own
    /// objects other CPUs freed, taken from its inbox (at most a full
    /// inbox) or still in it (as much again).
    pub const fn max_cached_bytes_per_cpu(self) -> usize {
        let magazines = 2 + BUCKETS_PER_CLASS + self.depot_magazines() + self.transfer_magazines();
        (magazines * self.magazine_capacity() + 2 * self.inbox_capacity()) * self.size()
    }

    const fn compute_magazine_capacity(self) -> usize {
        let by_bytes = 2048 / self.size();
        if by_bytes < MIN_BATCH {
            MIN_BATCH
        } else if by_bytes > MAX_MAGAZINE_CAPACITY {
            MAX_MAGAZINE_CAPACITY
        } else {
            by_bytes
        }
    }
}

/// `SizeClass::slab_address_mask` per class.
const SLAB_ADDRESS_MASK: [usize; NUM_CLASSES] = {
    let mut table = [0; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        table[i] = !(SizeClass(i as u8).compute_slab_bytes() - 1);
        i += 1;
    }
    table
};

/// `SizeClass::magazine_capacity` per class, as a table (no division on
/// the fast path).
const MAGAZINE_CAPACITY: [u8; NUM_CLASSES] = {
    let mut table = [0; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        table[i] = SizeClass(i as u8).compute_magazine_capacity() as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size/alignment combination up to 4 KiB maps to the smallest
    /// class that both fits and aligns it.
    #[test]
    fn every_small_layout_maps_to_the_smallest_fitting_aligned_class() {
        let mut align = 1;
        while align <= MAX_SMALL_SIZE {
            // Miri is ~1000x slower: there, every class boundary +-1 only.
            let sizes: std::vec::Vec<usize> = if cfg!(miri) {
                CLASS_SIZES
                    .iter()
                    .flat_map(|&c| [c - 1, c, c + 1])
                    .chain([0, 1])
                    .filter(|&s| s <= MAX_SMALL_SIZE)
                    .collect()
            } else {
                (0..=MAX_SMALL_SIZE).collect()
            };
            for size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                let class = SizeClass::for_layout(layout).expect("small layout has a class");
                assert!(class.size() >= size.max(1), "{layout:?} -> {class:?}");
                assert!(class.align() >= align, "{layout:?} -> {class:?}");
                if let Some(smaller) = class.index().checked_sub(1) {
                    // No smaller class would do: either too small or misaligned.
                    let fits = |c: SizeClass| c.size() >= size && c.align() >= align;
                    assert!(
                        !(0..=smaller).any(|i| fits(SizeClass::ALL[i])),
                        "{layout:?} -> {class:?} but a smaller class fits"
                    );
                }
            }
            align *= 2;
        }
    }

    /// The fast paths' one-table lookup agrees with the full one wherever
    /// it answers, and answers for every small layout aligned to 16 or less.
    #[test]
    fn the_fast_lookup_agrees_with_the_full_one() {
        for align in [1, 2, 4, 8, 16, 32, 4096] {
            let step = if cfg!(miri) { 61 } else { 1 };
            for size in (0..=MAX_SMALL_SIZE + 1).step_by(step).chain([MAX_SMALL_SIZE]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                let fast = SizeClass::for_common_layout(layout);
                if align <= 16 && size <= MAX_SMALL_SIZE {
                    assert_eq!(fast, SizeClass::for_layout(layout), "{layout:?}");
                } else {
                    assert_eq!(fast, None, "{layout:?}");
                }
            }
        }
    }

    #[test]
    fn large_or_overaligned_layouts_go_to_the_backend() {
        for (size, align) in [(4097, 1), (8192, 8), (16, 8192), (1 << 20, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(SizeClass::for_layout(layout), None, "{layout:?}");
        }
    }

    #[test]
    fn the_issue_example_48_bytes_aligned_64_gets_the_64_class() {
        let layout = Layout::from_size_align(48, 64).unwrap();
        assert_eq!(SizeClass::for_layout(layout).unwrap().size(), 64);
    }

    #[test]
    fn slab_geometry_fits_and_aligns_every_object() {
        for class in SizeClass::ALL {
            let slab = class.slab_bytes();
            assert!(slab.is_power_of_two());
            assert!(class.first_object_offset() >= SLAB_HEADER_BYTES);
            assert_eq!(class.first_object_offset() % class.align(), 0);
            assert_eq!(class.size() % class.align(), 0);
            assert!(class.size() >= 16, "a free object holds a link");
            let end = class.first_object_offset() + class.objects_per_slab() * class.size();
            assert!(end <= slab, "{class:?} overruns its slab");
            assert!(class.objects_per_slab() >= 8, "{class:?}");
            assert!(class.objects_per_slab() <= u16::MAX as usize);
            // Header waste plus tail waste stays under 7%.
            assert!((slab - class.objects_per_slab() * class.size()) * 100 / slab < 7, "{class:?}");
        }
    }

    #[test]
    fn batches_are_at_least_min_batch_and_bounded() {
        for class in SizeClass::ALL {
            let cap = class.magazine_capacity();
            assert!((MIN_BATCH..=64).contains(&cap), "{class:?}: {cap}");
            assert!(class.inbox_capacity() <= MAX_INBOX_OBJECTS, "{class:?}");
            assert!(
                class.inbox_capacity() * class.size() <= INBOX_BYTES.max(4 * cap * class.size())
            );
            // The 4096-byte class's: two magazines, the buckets and one
            // refused transfer of 16 objects, and two inboxes of 64.
            let most = ((2 + BUCKETS_PER_CLASS + 1) * 16 + 2 * 64) * 4096;
            assert!(class.max_cached_bytes_per_cpu() <= most, "{class:?}");
            let depot = class.depot_magazines();
            assert!(depot <= MAX_DEPOT_MAGAZINES && depot * cap * class.size() <= DEPOT_BYTES);
        }
        // The small classes move at least 128 objects per lock acquisition
        // (64-byte objects: four magazines of 32), classes of 768 bytes and
        // up one magazine, as before the depot.
        let moved = |size: usize| {
            let class = SizeClass::ALL.into_iter().find(|c| c.size() == size).unwrap();
            class.transfer_magazines() * class.magazine_capacity()
        };
        assert_eq!(
            [moved(16), moved(64), moved(128), moved(256), moved(768)],
            [256, 128, 64, 32, 16]
        );
        assert_eq!(SizeClass::ALL[0].magazine_capacity(), 64);
        assert_eq!(SizeClass::ALL[NUM_CLASSES - 1].magazine_capacity(), 16);
    }

    #[test]
    fn class_sizes_increase_and_end_at_max_small_size() {
        assert!(CLASS_SIZES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(CLASS_SIZES[NUM_CLASSES - 1], MAX_SMALL_SIZE);
        assert_eq!(SizeClass::from_index(NUM_CLASSES), None);
    }
}
