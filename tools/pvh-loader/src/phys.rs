//! Access to physical memory through the loader's identity map of the first
//! 4 GiB (built by the 32-bit entry code), and small address helpers.

/// Everything below this physical address is identity mapped while the loader runs.
pub const IDENTITY_LIMIT: u64 = 1 << 32;
pub const PAGE: u64 = 4096;

pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds up; saturates at the largest aligned value instead of overflowing.
pub const fn align_up(value: u64, align: u64) -> u64 {
    match value.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => !(align - 1),
    }
}

/// Whether `[phys, phys + len)` is non-null and lies inside the identity map.
pub fn reachable(phys: u64, len: u64) -> bool {
    phys != 0 && phys.checked_add(len).is_some_and(|end| end <= IDENTITY_LIMIT)
}

/// Borrows physical memory as bytes.
///
/// # Safety
/// `reachable(phys, len)` must hold, and nothing may write the range while
/// the returned slice is alive.
pub unsafe fn bytes<'a>(phys: u64, len: u64) -> &'a [u8] {
    debug_assert!(reachable(phys, len));
    // SAFETY: the range is identity mapped, non-null and not written
    // concurrently, as the caller guarantees.
    unsafe { core::slice::from_raw_parts(phys as usize as *const u8, len as usize) }
}

/// Borrows physical memory as mutable bytes.
///
/// # Safety
/// `reachable(phys, len)` must hold and the range must be memory the loader
/// owns exclusively (allocated by it, or the kernel image it is loading)
/// for as long as the slice is alive.
pub unsafe fn bytes_mut<'a>(phys: u64, len: u64) -> &'a mut [u8] {
    debug_assert!(reachable(phys, len));
    // SAFETY: identity mapped, non-null and exclusively owned, as the caller guarantees.
    unsafe { core::slice::from_raw_parts_mut(phys as usize as *mut u8, len as usize) }
}

/// Reads a `T` (unaligned) from physical memory.
///
/// # Safety
/// `reachable(phys, size_of::<T>())` must hold and the bytes must be a valid `T`.
pub unsafe fn read<T: Copy>(phys: u64) -> T {
    debug_assert!(reachable(phys, size_of::<T>() as u64));
    // SAFETY: identity mapped and holding a valid T, as the caller guarantees.
    unsafe { core::ptr::read_unaligned(phys as usize as *const T) }
}

/// Writes a `T` (unaligned) to physical memory.
///
/// # Safety
/// `reachable(phys, size_of::<T>())` must hold and the loader must own the
/// bytes (no live reference to them elsewhere).
pub unsafe fn write<T: Copy>(phys: u64, value: T) {
    debug_assert!(reachable(phys, size_of::<T>() as u64));
    // SAFETY: identity mapped and owned by the loader, as the caller guarantees.
    unsafe { core::ptr::write_unaligned(phys as usize as *mut T, value) }
}

/// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
/// Returns `None` if the string is unreachable or not terminated in time.
///
/// # Safety
/// The memory at `phys` must be RAM or ROM that nothing writes meanwhile.
pub unsafe fn c_str<'a>(phys: u64, max: u64) -> Option<&'a [u8]> {
    let mut len = 0;
    while len < max {
        if !reachable(phys, len + 1) {
            return None;
        }
        // SAFETY: the byte is reachable; the caller guarantees it is memory.
        if unsafe { read::<u8>(phys + len) } == 0 {
            // SAFETY: the `len` bytes before the NUL were just read, so they are reachable.
            return Some(unsafe { bytes(phys, len) });
        }
        len += 1;
    }
    None
}
