//! The heap's virtual range: a fixed kernel address, backed page by page with
//! frames from the memory map's usable memory (the chapter's `init_heap`).
use ::x86_64::VirtAddr;

use crate::arch::paging::{self, Access, MapError};

/// Where the heap starts: a 2 MiB-aligned kernel address far from the HHDM
/// and the kernel image.
pub const HEAP_START: u64 = 0xffff_c000_0000_0000;
/// Heap size when the command line names none, up to 16 CPUs.
pub const DEFAULT_HEAP_BYTES: u64 = 32 * 1024 * 1024;
/// Above 16 CPUs the default heap grows by this much per CPU: each CPU's
/// caches and the jobs' live objects take about 1.1 MiB per CPU in
/// `job=stress` (`heap_peak_bytes` 17388624 at `--smp 16`), so 32 MiB runs
/// out near 30 CPUs.
pub const DEFAULT_HEAP_BYTES_PER_CPU: u64 = 2 * 1024 * 1024;

/// The heap size when the command line names none, for `cpus` CPUs:
/// 32 MiB, or 2 MiB per CPU if that is more (256 MiB at 128 CPUs).
pub fn default_heap_bytes(cpus: usize) -> u64 {
    DEFAULT_HEAP_BYTES.max(DEFAULT_HEAP_BYTES_PER_CPU.saturating_mul(cpus as u64))
}
/// The smallest heap the kernel accepts.
pub const MIN_HEAP_BYTES: u64 = 64 * 1024;
const PAGE_BYTES: u64 = 4096;

/// Why the heap could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapSetupError {
    /// `heap=` was not a size like `32M`.
    BadSize(&'static str),
    /// Smaller than [`MIN_HEAP_BYTES`].
    TooSmall(u64),
    /// More than the usable memory left.
    LargerThanMemory { requested: u64, available: u64 },
    /// Mapping failed.
    Map(MapError),
}

impl core::fmt::Display for HeapSetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadSize(text) => {
                write!(f, "heap={text}: not a size (examples: 32M, 512K, 1G, 65536)")
            }
            Self::TooSmall(bytes) => {
                write!(f, "heap of {bytes} bytes is below the minimum of {MIN_HEAP_BYTES}")
            }
            Self::LargerThanMemory { requested, available } => write!(
                f,
                "heap of {requested} bytes does not fit: {available} bytes of usable memory are left"
            ),
            Self::Map(e) => write!(f, "mapping the heap: {e:?}"),
        }
    }
}

/// Parses a size: a number of bytes with an optional K, M or G suffix.
pub fn parse_size(text: &'static str) -> Result<u64, HeapSetupError> {
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or(HeapSetupError::BadSize(text))
}

/// Maps `bytes` (rounded up to pages) at [`HEAP_START`]; returns the range's
/// start and length.
pub fn map(bytes: u64) -> Result<(usize, usize), HeapSetupError> {
    if bytes < MIN_HEAP_BYTES {
        return Err(HeapSetupError::TooSmall(bytes));
    }
    let pages = bytes.div_ceil(PAGE_BYTES);
    let available = crate::memory::frames::free_bytes();
    // Page tables for the range take frames too: about one per 2 MiB.
    let needed = pages * PAGE_BYTES + (pages / 512 + 4) * PAGE_BYTES;
    if needed > available {
        return Err(HeapSetupError::LargerThanMemory { requested: bytes, available });
    }
    paging::map_new_frames(VirtAddr::new(HEAP_START), pages, Access::ReadWriteData)
        .map_err(HeapSetupError::Map)?;
    Ok((HEAP_START as usize, (pages * PAGE_BYTES) as usize))
}
