//! Corruption detection (`heapcheck`): the layout of a checked object (red
//! zone, state word, poison), the byte-level checks on it, and the fault
//! report, [`HeapFault`]. `SlabHeap::set_checking` switches it on while the
//! heap is empty; it then closes every CPU slot, so `alloc` and `dealloc`
//! leave their fast paths (unchanged: checking costs nothing when off) for
//! the checked variants in `heap.rs`, which serve every request under the
//! global lock. Whether a freed pointer is one the heap handed out is
//! `central.rs`'s and `slab.rs`'s part.
//!
//! ```text
//!  small request of s bytes: an object of the class C serving s + 16 bytes
//!   allocated | user [0, s)     | red zone 0xbb [s, C-8) | ACTIVE ^ address   |
//!   free      | link | poison 0x6b [8, C-8)              | INACTIVE ^ address |
//!  large request (backend block of r + 16 bytes, r = round_up(max(s, 8), 8))
//!   allocated | user [0, s)     | red zone [s, r+8)      | ACTIVE ^ address   |
//!   freed     | (the backend's)                          | INACTIVE ^ address |
//! ```

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use crate::size_class::SizeClass;

/// What freed small objects (and new slabs) are filled with.
pub const POISON_BYTE: u8 = 0x6b;
/// What the red zone after each checked object is filled with.
pub const RED_ZONE_BYTE: u8 = 0xbb;
/// A state word never written: a new slab's poison.
const POISON_WORD: u64 = u64::from_ne_bytes([POISON_BYTE; 8]);
/// State word of an allocated block, mixed with its address.
const ACTIVE: u64 = 0xa110_ca7e_d0b1_ec75;
/// State word of a freed block, mixed with its address.
const INACTIVE: u64 = 0xf7ee_d0b1_ec75_dead;
/// Bytes of the state word.
const STATE_BYTES: usize = 8;
/// Bytes a checked request adds to its size: a red zone of at least 8 bytes
/// and the state word.
const TRAILER_BYTES: usize = 16;
/// Bytes of a free object's magazine link (not poison).
const LINK_BYTES: usize = size_of::<usize>();

/// Whether the heap checks for corruption (`heapcheck=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Checking {
    /// No checks; the fast paths serve (encoded as 0: a fresh heap).
    #[default]
    Off = 0,
    /// Every request checked, under the global lock.
    On = 1,
}

impl Checking {
    /// The name on the kernel command line (`heapcheck=`).
    pub const fn name(self) -> &'static str {
        match self {
            Checking::Off => "off",
            Checking::On => "on",
        }
    }

    /// The setting named `name` (`"on"` or `"off"`).
    pub fn from_name(name: &str) -> Option<Checking> {
        match name {
            "off" => Some(Checking::Off),
            "on" => Some(Checking::On),
            _ => None,
        }
    }

    pub(crate) const fn from_u8(raw: u8) -> Checking {
        if raw == Checking::On as u8 { Checking::On } else { Checking::Off }
    }
}

/// Checking could not be switched: the heap has handed out memory, laid out
/// (and to be freed) the other way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckingLocked {
    /// The setting the heap keeps.
    pub current: Checking,
}

impl fmt::Display for CheckingLocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap checking stays `{}`: memory was already allocated", self.current.name())
    }
}

/// What kind of corruption a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A freed small object was written: its poison, state word or
    /// free-list link changed. Found when it was about to be handed out
    /// again; it is not (it stays allocated for good).
    WriteAfterFree,
    /// The red zone after a block was written. Found when it was freed.
    /// Nothing is freed.
    Overflow,
    /// The block was freed already. Nothing is freed.
    DoubleFree,
    /// The pointer is not a block the heap handed out: outside the heap, in
    /// no live slab of the layout's size class, an object of a slab never
    /// handed out, or (large blocks) no allocated block's state word behind
    /// it. Nothing is freed.
    InvalidFree,
    /// Inside a slab of the layout's size class but not at the start of an
    /// object, or (large blocks) not aligned as the layout says. Nothing is
    /// freed.
    MisalignedFree,
    /// A small object's state word says neither allocated nor freed: it was
    /// overwritten (a wild write, or an overflow past the red zone). Nothing
    /// is freed.
    Corrupted,
}

impl FaultKind {
    /// The name in reports (`HEAPCHECK {"kind":...}`).
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::WriteAfterFree => "write_after_free",
            FaultKind::Overflow => "overflow",
            FaultKind::DoubleFree => "double_free",
            FaultKind::InvalidFree => "invalid_free",
            FaultKind::MisalignedFree => "misaligned_free",
            FaultKind::Corrupted => "corrupted",
        }
    }
}

/// One detected corruption: what, where, on which CPU. The heap hands it to
/// `Platform::heap_fault`; `Display` is the one-line report, `json()` the
/// JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapFault {
    /// What was found.
    pub kind: FaultKind,
    /// The CPU that found it (the one allocating or freeing).
    pub cpu: usize,
    /// The block's address: the pointer freed, or the object that was about
    /// to be handed out.
    pub address: usize,
    /// Bytes of the size class serving the layout with its checking trailer;
    /// `None` for blocks straight from the backend.
    pub size_class: Option<usize>,
    /// The layout's size: of the free, or of the allocation the object was
    /// about to serve.
    pub size: usize,
    /// The layout's alignment.
    pub align: usize,
    /// Where in the block the damage starts, when known.
    pub offset: Option<usize>,
    /// What should have been there (a byte, a state word), when known.
    pub expected: Option<u64>,
    /// What was there.
    pub found: Option<u64>,
}

impl HeapFault {
    /// Writes the JSON object the kernel prints as `HEAPCHECK {json}`. Keys
    /// in this order: `kind`, `cpu`, `address` (hex string), `size_class`
    /// (bytes or null), `size`, `align`, `offset` (or null), `expected`,
    /// `found` (hex strings or null).
    pub fn write_json(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(
            out,
            "{{\"kind\":\"{}\",\"cpu\":{},\"address\":\"{:#x}\",\"size_class\":{},\"size\":{}\
             ,\"align\":{},\"offset\":{},\"expected\":{},\"found\":{}}}",
            self.kind.name(),
            self.cpu,
            self.address,
            OrNull(self.size_class),
            self.size,
            self.align,
            OrNull(self.offset),
            OrNull(self.expected.map(Hex)),
            OrNull(self.found.map(Hex)),
        )
    }

    /// The JSON object as something to `write!`/`format_args!` with.
    pub fn json(&self) -> impl fmt::Display + '_ {
        struct Json<'a>(&'a HeapFault);
        impl fmt::Display for Json<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_json(f)
            }
        }
        Json(self)
    }
}

impl fmt::Display for HeapFault {
    /// `heap corruption: double_free of 0x... on cpu 1 (size class 32 B,
    /// layout 10 B align 8)`, then `, at offset N: expected 0x.., found 0x..`
    /// when known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap corruption: {} of {:#x} on cpu {} (",
            self.kind.name(),
            self.address,
            self.cpu
        )?;
        match self.size_class {
            Some(bytes) => write!(f, "size class {bytes} B")?,
            None => f.write_str("backend block")?,
        }
        write!(f, ", layout {} B align {})", self.size, self.align)?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        if let Some(expected) = self.expected {
            write!(f, ": expected {expected:#x}")?;
        }
        if let Some(found) = self.found {
            write!(f, ", found {found:#x}")?;
        }
        Ok(())
    }
}

/// A JSON value or `null`.
struct OrNull<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrNull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("null"),
        }
    }
}

/// A number as a JSON hex string.
struct Hex(u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{:#x}\"", self.0)
    }
}

/// A fault without the context the heap adds (CPU, address, layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    kind: FaultKind,
    offset: Option<usize>,
    expected: Option<u64>,
    found: Option<u64>,
}

impl Finding {
    /// A finding with nothing more to say than its kind.
    pub(crate) const fn bare(kind: FaultKind) -> Finding {
        Finding { kind, offset: None, expected: None, found: None }
    }

    /// A pointer inside a slab, `offset` bytes into an object (if inside
    /// one at all).
    pub(crate) const fn misaligned(offset: Option<usize>) -> Finding {
        Finding { offset, ..Finding::bare(FaultKind::MisalignedFree) }
    }

    /// A free object whose link word held `link`, which is no free object of
    /// its slab.
    pub(crate) const fn bad_link(link: usize) -> Finding {
        Finding {
            kind: FaultKind::WriteAfterFree,
            offset: Some(0),
            expected: None,
            found: Some(link as u64),
        }
    }

    /// The full report.
    pub(crate) fn fault(
        self,
        cpu: usize,
        address: usize,
        size_class: Option<SizeClass>,
        layout: Layout,
    ) -> HeapFault {
        HeapFault {
            kind: self.kind,
            cpu,
            address,
            size_class: size_class.map(SizeClass::size),
            size: layout.size(),
            align: layout.align(),
            offset: self.offset,
            expected: self.expected,
            found: self.found,
        }
    }
}

/// The size class serving `layout` when checking: the class for its size
/// plus the trailer, or `None` if the backend serves it.
pub(crate) fn small_class(layout: Layout) -> Option<SizeClass> {
    let padded = Layout::from_size_align(layout.size().checked_add(TRAILER_BYTES)?, layout.align());
    SizeClass::for_layout(padded.ok()?)
}

/// Where a checked block's state word lies; its red zone runs from the
/// requested size up to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trailer {
    size: usize,
    state_offset: usize,
}

impl Trailer {
    /// The trailer of a `size`-byte request served by `class`.
    pub(crate) fn small(size: usize, class: SizeClass) -> Trailer {
        debug_assert!(size + TRAILER_BYTES <= class.size());
        Trailer { size, state_offset: class.size() - STATE_BYTES }
    }

    /// The trailer of a request served by the backend, and the layout to
    /// ask the backend for; `None` if that would overflow.
    pub(crate) fn large(layout: Layout) -> Option<(Trailer, Layout)> {
        let rounded = layout.size().max(STATE_BYTES).checked_next_multiple_of(STATE_BYTES)?;
        let total = rounded.checked_add(TRAILER_BYTES)?;
        let backend = Layout::from_size_align(total, layout.align()).ok()?;
        Some((Trailer { size: layout.size(), state_offset: total - STATE_BYTES }, backend))
    }
}

/// Fills `len` bytes at `start` with poison (new slabs).
///
/// # Safety
/// The range must be valid for writes and owned by the caller.
pub(crate) unsafe fn poison(start: NonNull<u8>, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { start.write_bytes(POISON_BYTE, len) };
}

/// Checks a free small object about to be handed out again: every byte
/// past its link is poison, its state word says freed (or is a new slab's
/// poison).
///
/// # Safety
/// `object` must be an object of `class` just taken out of its slab (owned
/// by the caller) of a slab poisoned when it was made, so every byte of it
/// was written.
pub(crate) unsafe fn check_poison(object: NonNull<u8>, class: SizeClass) -> Result<(), Finding> {
    let state_offset = class.size() - STATE_BYTES;
    // SAFETY: the object is the caller's and written (contract); the range
    // lies inside it (classes are at least 16 bytes).
    let poisoned = unsafe { bytes(object, LINK_BYTES, state_offset) };
    if let Some((at, byte)) = first_not(poisoned, POISON_BYTE) {
        return Err(Finding {
            kind: FaultKind::WriteAfterFree,
            offset: Some(LINK_BYTES + at),
            expected: Some(POISON_BYTE.into()),
            found: Some(byte.into()),
        });
    }
    let freed = INACTIVE ^ object.addr().get() as u64;
    // SAFETY: as above; the state word lies inside the object.
    let state = unsafe { read_state(object, state_offset) };
    if state != freed && state != POISON_WORD {
        return Err(Finding {
            kind: FaultKind::WriteAfterFree,
            offset: Some(state_offset),
            expected: Some(freed),
            found: Some(state),
        });
    }
    Ok(())
}

/// Marks a block just handed out: its red zone, then `ACTIVE ^ address`.
///
/// # Safety
/// `block` must be valid for writes up to the end of `trailer`'s state
/// word and owned by the caller.
pub(crate) unsafe fn arm(block: NonNull<u8>, trailer: Trailer) {
    // SAFETY: the red zone and the state word lie inside the block (caller).
    unsafe {
        block.add(trailer.size).write_bytes(RED_ZONE_BYTE, trailer.state_offset - trailer.size);
        write_state(block, trailer.state_offset, ACTIVE ^ block.addr().get() as u64);
    }
}

/// The checks on free: the state word must say allocated (not freed, not
/// garbage), the red zone must be intact.
///
/// # Safety
/// `block` must be valid for reads up to the end of `trailer`'s state word,
/// and those bytes written (a block of the heap's, armed or disarmed).
pub(crate) unsafe fn check_free(block: NonNull<u8>, trailer: Trailer) -> Result<(), Finding> {
    let address = block.addr().get() as u64;
    // SAFETY: inside the block (caller).
    let state = unsafe { read_state(block, trailer.state_offset) };
    if state == INACTIVE ^ address {
        return Err(Finding::bare(FaultKind::DoubleFree));
    }
    if state != ACTIVE ^ address {
        return Err(Finding {
            kind: FaultKind::Corrupted,
            offset: Some(trailer.state_offset),
            expected: Some(ACTIVE ^ address),
            found: Some(state),
        });
    }
    // SAFETY: inside the block (caller), written by `arm`.
    let red_zone = unsafe { bytes(block, trailer.size, trailer.state_offset) };
    match first_not(red_zone, RED_ZONE_BYTE) {
        Some((at, byte)) => Err(Finding {
            kind: FaultKind::Overflow,
            offset: Some(trailer.size + at),
            expected: Some(RED_ZONE_BYTE.into()),
            found: Some(byte.into()),
        }),
        None => Ok(()),
    }
}

/// Marks a small object freed: poison up to its state word, then
/// `INACTIVE ^ address` (its slab's free list then writes the link).
///
/// # Safety
/// `object` must be an object of `class` owned by the caller.
pub(crate) unsafe fn disarm_small(object: NonNull<u8>, class: SizeClass) {
    let state_offset = class.size() - STATE_BYTES;
    // SAFETY: the object's bytes are the caller's.
    unsafe {
        object.write_bytes(POISON_BYTE, state_offset);
        write_state(object, state_offset, INACTIVE ^ object.addr().get() as u64);
    }
}

/// Marks a backend block freed: `INACTIVE ^ address` in its state word
/// (the backend may write its own bookkeeping over the rest).
///
/// # Safety
/// `block` must be valid for writes up to the end of `trailer`'s state word
/// and owned by the caller.
pub(crate) unsafe fn mark_freed(block: NonNull<u8>, trailer: Trailer) {
    // SAFETY: inside the block (caller).
    unsafe { write_state(block, trailer.state_offset, INACTIVE ^ block.addr().get() as u64) };
}

/// For a backend block, which no slab header vouches for, a state word
/// saying neither allocated nor freed means the pointer was never handed
/// out (or its trailer was overwritten): reported as an invalid free.
pub(crate) fn as_backend_block(finding: Finding) -> Finding {
    match finding.kind {
        FaultKind::Corrupted => Finding { kind: FaultKind::InvalidFree, ..finding },
        _ => finding,
    }
}

/// The bytes `from..to` of `block`.
///
/// # Safety
/// The range must be valid for reads, written, and not written by anyone
/// else while the slice lives.
unsafe fn bytes<'a>(block: NonNull<u8>, from: usize, to: usize) -> &'a [u8] {
    // SAFETY: forwarded from the caller.
    unsafe { core::slice::from_raw_parts(block.as_ptr().add(from), to - from) }
}

/// The first byte that is not `expected`, with its index. Compares eight
/// bytes at a time, then finds the byte in the first word that differs.
fn first_not(bytes: &[u8], expected: u8) -> Option<(usize, u8)> {
    let word = [expected; 8];
    let words = bytes.chunks_exact(8);
    let tail = bytes.len() - words.remainder().len();
    let from = words
        .map(|chunk| <[u8; 8]>::try_from(chunk).ok())
        .position(|chunk| chunk != Some(word))
        .map_or(tail, |at| at * 8);
    let at = from + bytes[from..].iter().position(|&b| b != expected)?;
    Some((at, bytes[at]))
}

/// # Safety
/// `block + offset` must be valid for reads of 8 written bytes.
unsafe fn read_state(block: NonNull<u8>, offset: usize) -> u64 {
    // SAFETY: forwarded from the caller; unaligned reads are fine.
    unsafe { block.add(offset).cast::<u64>().read_unaligned() }
}

/// # Safety
/// `block + offset` must be valid for writes of 8 bytes.
unsafe fn write_state(block: NonNull<u8>, offset: usize, state: u64) {
    // SAFETY: forwarded from the caller; unaligned writes are fine.
    unsafe { block.add(offset).cast::<u64>().write_unaligned(state) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn fault(kind: FaultKind) -> HeapFault {
        HeapFault {
            kind,
            cpu: 1,
            address: 0xffff_c000_0001_2340,
            size_class: Some(32),
            size: 10,
            align: 8,
            offset: None,
            expected: None,
            found: None,
        }
    }

    #[test]
    fn the_report_and_json_name_kind_cpu_address_and_class() {
        let double = fault(FaultKind::DoubleFree);
        assert_eq!(
            double.to_string(),
            "heap corruption: double_free of 0xffffc00000012340 on cpu 1 (size class 32 B, layout 10 B align 8)"
        );
        assert_eq!(
            double.json().to_string(),
            r#"{"kind":"double_free","cpu":1,"address":"0xffffc00000012340","size_class":32,"size":10,"align":8,"offset":null,"expected":null,"found":null}"#
        );
        let overflow = HeapFault {
            offset: Some(10),
            expected: Some(0xbb),
            found: Some(0x41),
            size_class: None,
            ..fault(FaultKind::Overflow)
        };
        assert_eq!(
            overflow.to_string(),
            "heap corruption: overflow of 0xffffc00000012340 on cpu 1 (backend block, layout 10 B align 8) at offset 10: expected 0xbb, found 0x41"
        );
        assert!(
            overflow.json().to_string().ends_with(
                r#""size_class":null,"size":10,"align":8,"offset":10,"expected":"0xbb","found":"0x41"}"#
            ),
            "{}",
            overflow.json()
        );
    }

    #[test]
    fn checked_requests_leave_room_for_a_red_zone_and_the_state_word() {
        for size in [0, 1, 8, 15, 16, 17, 100, 4000, 4080, 4081, 5000] {
            for align in [1, 8, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                if let Some(class) = small_class(layout) {
                    assert!(class.size() >= size + TRAILER_BYTES, "{layout:?}");
                    assert!(class.align() >= align);
                    let trailer = Trailer::small(size, class);
                    assert!(trailer.state_offset - size >= 8, "{layout:?}: red zone");
                } else {
                    let (trailer, backend) = Trailer::large(layout).unwrap();
                    assert!(trailer.state_offset - size >= 8, "{layout:?}: red zone");
                    assert_eq!(trailer.state_offset + STATE_BYTES, backend.size());
                    assert_eq!(backend.align(), align);
                }
            }
        }
        assert_eq!(small_class(Layout::from_size_align(4081, 8).unwrap()), None);
    }

    #[test]
    fn the_first_differing_byte_is_found_wherever_it_is() {
        for len in [0, 1, 7, 8, 9, 48, 61] {
            let clean = std::vec![POISON_BYTE; len];
            assert_eq!(first_not(&clean, POISON_BYTE), None, "{len} clean bytes");
            for bad in 0..len {
                // A second difference further on must not hide the first.
                let mut bytes = clean.clone();
                bytes[len - 1] = 0x42;
                bytes[bad] = 0x41;
                assert_eq!(first_not(&bytes, POISON_BYTE), Some((bad, 0x41)), "{len}, {bad}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for checking in [Checking::Off, Checking::On] {
            assert_eq!(Checking::from_name(checking.name()), Some(checking));
            assert_eq!(Checking::from_u8(checking as u8), checking);
        }
        assert_eq!(Checking::from_name("yes"), None);
    }
}
