//! Finding the kernel's Limine requests: the request delimiters, the base
//! revision tag (acknowledged as the protocol says), and the known request
//! IDs; responses are attached by writing the request's `response` field.

use crate::phys;

const COMMON_MAGIC: [u64; 2] = [0xc7b1_dd30_df4c_8b88, 0x0a82_e883_a194_f07b];
const BASE_REVISION_MAGIC: [u64; 2] = [0xf956_2b2d_5c95_a6c8, 0x6a7b_3849_4453_6bdc];
const START_MARKER: [u64; 4] =
    [0xf6b8_f4b3_9de7_d1ae, 0xfab9_1a69_40fc_b9cf, 0x785c_6ed0_15d3_e316, 0x181e_920a_7852_b9d9];
const END_MARKER: [u64; 2] = [0xadc0_e053_1bb1_0d03, 0x9572_709f_3176_4c62];

/// The only base revision this loader implements.
pub const BASE_REVISION: u64 = 3;

/// Offset of `response` in every request (after `id[4]` and `revision`).
const RESPONSE_OFFSET: u64 = 40;
/// Offset of the first request-specific member (`stack_size`, MP `flags`).
const EXTRA_OFFSET: u64 = 48;

/// The features this loader answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    BootloaderInfo,
    StackSize,
    Hhdm,
    Mp,
    Memmap,
    ExecutableFile,
    Rsdp,
    ExecutableAddress,
}

const FEATURES: [(Feature, [u64; 2], &str); 8] = [
    (Feature::BootloaderInfo, [0xf550_38d8_e2a1_202f, 0x2794_26fc_f5f5_9740], "bootloader info"),
    (Feature::StackSize, [0x224e_f046_0a8e_8926, 0xe1cb_0fc2_5f46_ea3d], "stack size"),
    (Feature::Hhdm, [0x48dc_f1cb_8ad2_b852, 0x6398_4e95_9a98_244b], "HHDM"),
    (Feature::Mp, [0x95a6_7b81_9a1b_857e, 0xa0b6_1b72_3b6a_73e0], "MP"),
    (Feature::Memmap, [0x67cf_3d9d_378a_806f, 0xe304_acdf_c50c_3c62], "memory map"),
    (Feature::ExecutableFile, [0xad97_e90e_83f1_ed67, 0x31eb_5d1c_5ff2_3b69], "executable file"),
    (Feature::Rsdp, [0xc5e7_7b6b_397e_7b43, 0x2763_7845_accd_cf3c], "RSDP"),
    (
        Feature::ExecutableAddress,
        [0x71ba_7686_3cc5_5f63, 0xb264_4a48_c516_a487],
        "executable address",
    ),
];

const MAX_REQUESTS: usize = 128;

/// Why the kernel's requests cannot be honoured.
pub enum Error {
    NoBaseRevision,
    UnsupportedRevision(u64),
    DuplicateBaseRevision,
    Duplicate(&'static str),
    DuplicateUnknown,
    TooMany,
}

/// Requests found in the loaded image, by physical address.
pub struct Requests {
    found: [u64; FEATURES.len()],
    base_revision_tag: u64,
}

/// Reads the u64 at byte `offset` of the loaded image.
fn word(image: &[u8], offset: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&image[offset..offset + 8]);
    u64::from_le_bytes(v)
}

fn matches(image: &[u8], offset: usize, magic: &[u64]) -> bool {
    offset + magic.len() * 8 <= image.len()
        && magic.iter().enumerate().all(|(i, m)| word(image, offset + i * 8) == *m)
}

impl Requests {
    /// Scans the loaded image (`image`, whose first byte is at physical
    /// `image_phys`; both page aligned, so 8-byte alignment of offsets is
    /// alignment of virtual addresses). Only the part between the last start
    /// marker and the first end marker is searched, when markers exist.
    pub fn scan(image: &[u8], image_phys: u64) -> Result<Requests, Error> {
        let mut from = 0;
        let mut to = image.len();
        let mut first_end = None;
        for offset in (0..image.len()).step_by(8) {
            if matches(image, offset, &START_MARKER) {
                from = offset + START_MARKER.len() * 8;
            }
            if first_end.is_none() && matches(image, offset, &END_MARKER) {
                first_end = Some(offset);
            }
        }
        if let Some(end) = first_end {
            to = end;
        }

        let mut requests = Requests { found: [0; FEATURES.len()], base_revision_tag: 0 };
        let mut seen = [[0u64; 2]; MAX_REQUESTS];
        let mut seen_count = 0;
        let mut offset = from;
        while offset + 24 <= to {
            if matches(image, offset, &BASE_REVISION_MAGIC) {
                if requests.base_revision_tag != 0 {
                    return Err(Error::DuplicateBaseRevision);
                }
                requests.base_revision_tag = image_phys + offset as u64;
                offset += 24;
                continue;
            }
            if offset + 48 <= image.len() && matches(image, offset, &COMMON_MAGIC) {
                let id = [word(image, offset + 16), word(image, offset + 24)];
                if seen[..seen_count].contains(&id) {
                    return Err(match FEATURES.iter().find(|f| f.1 == id) {
                        Some(f) => Error::Duplicate(f.2),
                        None => Error::DuplicateUnknown,
                    });
                }
                if seen_count == MAX_REQUESTS {
                    return Err(Error::TooMany);
                }
                seen[seen_count] = id;
                seen_count += 1;
                if let Some(i) = FEATURES.iter().position(|f| f.1 == id) {
                    requests.found[i] = image_phys + offset as u64;
                }
                offset += 48;
                continue;
            }
            offset += 8;
        }

        if requests.base_revision_tag == 0 {
            return Err(Error::NoBaseRevision);
        }
        // SAFETY: the tag lies inside the loaded kernel image, which the
        // loader owns (identity mapped) until handoff.
        let wanted: u64 = unsafe { phys::read(requests.base_revision_tag + 16) };
        if wanted != BASE_REVISION {
            return Err(Error::UnsupportedRevision(wanted));
        }
        Ok(requests)
    }

    /// Marks the base revision tag as honoured: the 3rd component is set to
    /// 0 (requested revision supported) and the 2nd to the revision used.
    pub fn acknowledge_base_revision(&self) {
        // SAFETY: the tag lies inside the loaded image, owned by the loader.
        unsafe {
            phys::write::<u64>(self.base_revision_tag + 8, BASE_REVISION);
            phys::write::<u64>(self.base_revision_tag + 16, 0);
        }
    }

    fn address(&self, feature: Feature) -> Option<u64> {
        let i = FEATURES.iter().position(|f| f.0 == feature)?;
        (self.found[i] != 0).then_some(self.found[i])
    }

    pub fn has(&self, feature: Feature) -> bool {
        self.address(feature).is_some()
    }

    /// The first request-specific u64 (stack size, MP flags) of `feature`'s
    /// request, if the kernel made that request.
    pub fn extra(&self, feature: Feature, image_end: u64) -> Option<u64> {
        let at = self.address(feature)? + EXTRA_OFFSET;
        // SAFETY: the request lies inside the loaded image, owned by the
        // loader; the bound check keeps the read inside it.
        (at + 8 <= image_end).then(|| unsafe { phys::read::<u64>(at) })
    }

    /// Points `feature`'s request at `response` (an HHDM address).
    pub fn respond(&self, feature: Feature, response: u64) {
        if let Some(at) = self.address(feature) {
            // SAFETY: the request (48 bytes, checked during the scan) lies
            // inside the loaded image, owned by the loader until handoff.
            unsafe { phys::write::<u64>(at + RESPONSE_OFFSET, response) };
        }
    }
}
