//! Limine response structures, laid out as PROTOCOL.md gives them, written
//! into a bootloader-reclaimable arena; every pointer stored in them is an
//! HHDM address.

use crate::memmap::Region;
use crate::mp::INFO_SIZE;
use crate::paging::HHDM_OFFSET;
use crate::phys;
use crate::serial::fail;

/// A bump allocator over one zeroed, loader-owned physical range.
pub struct Arena {
    next: u64,
    end: u64,
}

/// `struct limine_file` (revision 0).
#[repr(C)]
#[derive(Clone, Copy)]
struct LimineFile {
    revision: u64,
    address: u64,
    size: u64,
    path: u64,
    string: u64,
    media_type: u32,
    unused: u32,
    tftp_ipv4: u32,
    tftp_port: u32,
    partition_index: u32,
    mbr_disk_id: u32,
    gpt_disk_uuid: [u8; 16],
    gpt_part_uuid: [u8; 16],
    part_uuid: [u8; 16],
}

/// `struct limine_mp_response` (x86-64).
#[repr(C)]
#[derive(Clone, Copy)]
struct MpResponse {
    revision: u64,
    flags: u32,
    bsp_lapic_id: u32,
    cpu_count: u64,
    cpus: u64,
}

/// `struct limine_mp_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy)]
struct MpInfo {
    processor_id: u32,
    lapic_id: u32,
    reserved: u64,
    goto_address: u64,
    extra_argument: u64,
}

const _: () = assert!(size_of::<MpInfo>() as u64 == INFO_SIZE);
const _: () = assert!(size_of::<LimineFile>() == 112);

/// Bytes the arena needs for the given counts (rounded up generously).
pub fn arena_size(memmap_entries: usize, cpus: usize, strings: usize) -> u64 {
    let fixed = 1024 + size_of::<LimineFile>();
    let memmap = 24 + memmap_entries * (8 + 24);
    let mp = size_of::<MpResponse>() + cpus * (8 + size_of::<MpInfo>());
    phys::align_up((fixed + memmap + mp + strings + 64) as u64, phys::PAGE)
}

impl Arena {
    pub fn new(phys: u64, len: u64) -> Self {
        Arena { next: phys, end: phys + len }
    }

    fn alloc(&mut self, size: u64) -> u64 {
        let at = phys::align_up(self.next, 16);
        if at + size > self.end {
            fail!("response arena exhausted");
        }
        self.next = at + size;
        at
    }

    /// Stores `value`; returns its physical address.
    fn put<T: Copy>(&mut self, value: T) -> u64 {
        let at = self.alloc(size_of::<T>() as u64);
        // SAFETY: `at` was just carved out of the loader-owned arena.
        unsafe { phys::write(at, value) };
        at
    }

    /// Stores a NUL-terminated copy of `bytes`; returns its HHDM address.
    pub fn put_str(&mut self, bytes: &[u8]) -> u64 {
        let at = self.alloc(bytes.len() as u64 + 1);
        // SAFETY: `at` was just carved out of the loader-owned arena.
        let dst = unsafe { phys::bytes_mut(at, bytes.len() as u64 + 1) };
        dst[..bytes.len()].copy_from_slice(bytes);
        dst[bytes.len()] = 0;
        hhdm(at)
    }

    /// Stores a file path, adding the leading slash the protocol promises;
    /// returns its HHDM address.
    pub fn put_path(&mut self, path: &[u8]) -> u64 {
        if path.first() == Some(&b'/') {
            return self.put_str(path);
        }
        let at = self.alloc(path.len() as u64 + 2);
        // SAFETY: `at` was just carved out of the loader-owned arena.
        let dst = unsafe { phys::bytes_mut(at, path.len() as u64 + 2) };
        dst[0] = b'/';
        dst[1..=path.len()].copy_from_slice(path);
        dst[path.len() + 1] = 0;
        hhdm(at)
    }

    /// A response made of u64 fields; returns its HHDM address.
    pub fn words<const N: usize>(&mut self, words: [u64; N]) -> u64 {
        hhdm(self.put(words))
    }

    /// `limine_bootloader_info_response`.
    pub fn bootloader_info(&mut self, name: &str, version: &str) -> u64 {
        let name = self.put_str(name.as_bytes());
        let version = self.put_str(version.as_bytes());
        self.words([0, name, version])
    }

    /// `limine_memmap_response` with its entry array.
    pub fn memmap(&mut self, regions: &[Region]) -> u64 {
        let count = regions.len() as u64;
        let pointers = self.alloc(count * 8);
        for (i, r) in regions.iter().enumerate() {
            let entry = self.put([r.start, r.len(), r.kind.limine_type()]);
            // SAFETY: slot i of the pointer array just allocated in the arena.
            unsafe { phys::write::<u64>(pointers + i as u64 * 8, hhdm(entry)) };
        }
        self.words([0, count, hhdm(pointers)])
    }

    /// `limine_executable_file_response` with its `limine_file`.
    pub fn executable_file(&mut self, address: u64, size: u64, path: u64, string: u64) -> u64 {
        let file = self.put(LimineFile {
            revision: 0,
            address,
            size,
            path,
            string,
            media_type: 0,
            unused: 0,
            tftp_ipv4: 0,
            tftp_port: 0,
            partition_index: 0,
            mbr_disk_id: 0,
            gpt_disk_uuid: [0; 16],
            gpt_part_uuid: [0; 16],
            part_uuid: [0; 16],
        });
        self.words([0, hhdm(file)])
    }

    /// The `limine_mp_info` array for `cpus` (uid, APIC ID), physical address.
    pub fn mp_infos(&mut self, cpus: impl ExactSizeIterator<Item = (u32, u32)>) -> u64 {
        let base = self.alloc(cpus.len() as u64 * INFO_SIZE);
        for (i, (uid, apic_id)) in cpus.enumerate() {
            let info = MpInfo {
                processor_id: uid,
                lapic_id: apic_id,
                reserved: 0,
                goto_address: 0,
                extra_argument: 0,
            };
            // SAFETY: entry i of the array just allocated in the arena.
            unsafe { phys::write(base + i as u64 * INFO_SIZE, info) };
        }
        base
    }

    /// `limine_mp_response` listing the infos at `indices` of the array at `infos`.
    pub fn mp(&mut self, flags: u32, bsp_lapic_id: u32, infos: u64, indices: &[u16]) -> u64 {
        let count = indices.len() as u64;
        let pointers = self.alloc(count * 8);
        for (slot, &index) in indices.iter().enumerate() {
            let info = hhdm(infos + u64::from(index) * INFO_SIZE);
            // SAFETY: slot of the pointer array just allocated in the arena.
            unsafe { phys::write::<u64>(pointers + slot as u64 * 8, info) };
        }
        hhdm(self.put(MpResponse {
            revision: 0,
            flags,
            bsp_lapic_id,
            cpu_count: count,
            cpus: hhdm(pointers),
        }))
    }
}

pub fn hhdm(phys: u64) -> u64 {
    HHDM_OFFSET + phys
}
