//! One live block of the soak and the pattern it carries. Every byte of a
//! block is a function of the block's address, its size and the byte's
//! offset; the pattern is written when the block is allocated and checked
//! before the block is freed, reallocated or freed on another CPU. A block
//! that overlaps another, lost its contents in a move, or was written by
//! anyone else shows up as a [`Mismatch`] naming the first bad byte.
use alloc::alloc as global;
use core::{alloc::Layout, ptr::NonNull};

/// Added per 8-byte word of a pattern (the 64-bit golden ratio), so words
/// differ along a block and a block shifted by whole words does not match.
const WORD_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// A block from the global allocator, owned by this value alone.
///
/// Invariant: `ptr` came from the global allocator with `layout` (whose size
/// is not zero) and is not freed, and nothing else names it, so its
/// `layout.size()` bytes are this value's to read and write. A `Block` is
/// given back only by [`free`](Self::free), [`reallocate`](Self::reallocate)
/// or [`into_raw_parts`](Self::into_raw_parts); dropping one leaks it (the
/// soak's books then show it).
pub struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

/// The contents expected in a block at one address with one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    key: u64,
}

/// The first byte of a block that does not hold its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the first wrong byte from the block's start.
    pub offset: usize,
    pub expected: u8,
    pub found: u8,
    /// Wrong bytes among those checked.
    pub differing_bytes: usize,
}

impl Pattern {
    /// The pattern of a block of `size` bytes at `address`.
    pub fn of(address: usize, size: usize) -> Self {
        Self { key: mix64(address as u64 ^ (size as u64).rotate_left(40)) }
    }

    /// The 8-byte word at offset `8 * index`.
    #[inline]
    fn word(self, index: usize) -> u64 {
        self.key ^ (index as u64).wrapping_mul(WORD_STEP)
    }

    /// The byte at `offset`.
    pub fn byte(self, offset: usize) -> u8 {
        self.word(offset / 8).to_le_bytes()[offset % 8]
    }

    /// Writes the pattern over `bytes` (a whole block, from its start).
    fn fill(self, bytes: &mut [u8]) {
        let tail_start = bytes.len() / 8 * 8;
        let mut words = bytes.chunks_exact_mut(8);
        for (index, word) in (&mut words).enumerate() {
            word.copy_from_slice(&self.word(index).to_le_bytes());
        }
        let tail = words.into_remainder();
        for (i, byte) in tail.iter_mut().enumerate() {
            *byte = self.byte(tail_start + i);
        }
    }

    /// Checks `bytes` (a block's first `bytes.len()` bytes) against the
    /// pattern: whole words first, byte by byte only to describe a mismatch.
    fn check(self, bytes: &[u8]) -> Result<(), Mismatch> {
        let words = bytes.chunks_exact(8);
        let tail = words.remainder();
        let tail_start = bytes.len() - tail.len();
        let words_hold = words.enumerate().all(|(index, word)| {
            u64::from_le_bytes(word.try_into().expect("chunks of 8")) == self.word(index)
        });
        let tail_holds = tail.iter().enumerate().all(|(i, &b)| b == self.byte(tail_start + i));
        if words_hold && tail_holds { Ok(()) } else { Err(self.describe_mismatch(bytes)) }
    }

    fn describe_mismatch(self, bytes: &[u8]) -> Mismatch {
        let wrong = || bytes.iter().enumerate().filter(|&(offset, &b)| b != self.byte(offset));
        let (offset, &found) = wrong().next().expect("a failed check has a wrong byte");
        Mismatch { offset, expected: self.byte(offset), found, differing_bytes: wrong().count() }
    }
}

impl Block {
    /// Allocates a block for `layout` and fills it with its pattern; `None`
    /// when the allocator returns null.
    pub fn allocate(layout: Layout) -> Option<Self> {
        assert!(layout.size() > 0, "the soak never asks for zero bytes");
        // SAFETY: `layout` has a non-zero size (asserted).
        let ptr = NonNull::new(unsafe { global::alloc(layout) })?;
        let mut block = Self { ptr, layout };
        block.fill();
        Some(block)
    }

    pub fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn size(&self) -> usize {
        self.layout.size()
    }

    /// The pattern this block should hold.
    pub fn pattern(&self) -> Pattern {
        Pattern::of(self.address(), self.size())
    }

    /// Checks the whole block against its own pattern.
    pub fn check(&self) -> Result<(), Mismatch> {
        self.pattern().check(self.bytes())
    }

    /// Rewrites the whole block with its own pattern.
    pub fn fill(&mut self) {
        let pattern = self.pattern();
        pattern.fill(self.bytes_mut());
    }

    /// Gives the block back to the allocator.
    pub fn free(self) {
        // SAFETY: by the invariant `ptr` is live, from the global allocator
        // with `layout`; `self` is consumed, so it is freed once.
        unsafe { global::dealloc(self.ptr.as_ptr(), self.layout) };
    }

    /// Reallocates the block to `new_size` bytes with the same alignment.
    /// On success returns the new block, refilled with its own pattern, and
    /// the check of the bytes realloc had to keep (the first
    /// `min(old, new)` bytes, against the old block's pattern). On null the
    /// old block is returned unchanged.
    pub fn reallocate(self, new_size: usize) -> Result<(Self, Result<(), Mismatch>), Self> {
        let old_pattern = self.pattern();
        let kept = self.size().min(new_size);
        let new_layout = Layout::from_size_align(new_size, self.layout.align())
            .expect("the soak's sizes and alignments make valid layouts");
        assert!(new_size > 0, "the soak never asks for zero bytes");
        // SAFETY: by the invariant `ptr` is live, from the global allocator
        // with `layout`; `new_size` is non-zero and, rounded up to the
        // alignment, far below `isize::MAX` (valid `new_layout`).
        let new = unsafe { global::realloc(self.ptr.as_ptr(), self.layout, new_size) };
        let Some(ptr) = NonNull::new(new) else {
            return Err(self);
        };
        // The old block now belongs to the allocator (`self` ends here);
        // the new one is live with `new_layout`.
        let mut block = Self { ptr, layout: new_layout };
        let kept_check = old_pattern.check(&block.bytes()[..kept]);
        block.fill();
        Ok((block, kept_check))
    }

    /// The block's address and layout; whoever holds them owns the block.
    pub fn into_raw_parts(self) -> (NonNull<u8>, Layout) {
        (self.ptr, self.layout)
    }

    /// The block [`into_raw_parts`](Self::into_raw_parts) gave up.
    ///
    /// # Safety
    /// `ptr` and `layout` came from `into_raw_parts` of one `Block`, and
    /// this is the only call made with them.
    pub unsafe fn from_raw_parts(ptr: NonNull<u8>, layout: Layout) -> Self {
        Self { ptr, layout }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: by the invariant the block's `size` bytes are live and
        // only this value names them; `&self` lends them for reading.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.size()) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.size()) }
    }
}

/// The splitmix64 finaliser: spreads every input bit over the whole word.
pub fn mix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
