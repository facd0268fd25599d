//! Which Limine base revision the bootloader served, and what differs
//! between the revisions the kernel runs under (2 and 3).
//!
//! The kernel asks for revision 3 (the PVH loader serves exactly that). A
//! bootloader that serves the requested revision zeroes the tag's third
//! word. One that does not (Limine 8.x, which implements up to revision 2)
//! must still load the kernel, with a revision it does implement, and leave
//! the third word alone. Bootloaders implementing revision 3 or later may
//! also write the revision they loaded into the tag's second word; older ones
//! leave the magic number there.
//!
//! What the kernel depends on that differs:
//!
//! | | revision 2 | revision 3 |
//! |---|---|---|
//! | RSDP response | an HHDM address | a physical address |
//! | HHDM | all of 0..4 GiB (ACPI tables and MMIO included), plus every non-reserved region above | usable, bootloader-reclaimable, executable and framebuffer regions only |
//!
//! The second row needs no code: the kernel maps the ACPI tables it reads
//! (`paging::map_firmware_tables` skips pages already mapped) and its
//! device registers in a window of its own under either revision.

/// The base revision the kernel asks for.
pub const BASE_REVISION_WANTED: u64 = 3;
/// The oldest base revision the kernel runs under.
pub const BASE_REVISION_OLDEST: u64 = 2;

/// The Limine release that introduced base revision 2; every release from
/// it up to 8.x loads a kernel asking for more than 2 with revision 2
/// (`common/protos/limine.c`: "We only support up to revision 2") and does
/// not report it in the tag.
const LIMINE_WITH_REVISION_2: (u32, u32) = (7, 5);

/// The base revision tag as the bootloader left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseRevisionTag {
    /// The third word is 0: the bootloader serves the revision asked for.
    pub wanted_is_served: bool,
    /// The revision the bootloader wrote into the second word, if it did.
    pub reported: Option<u64>,
}

/// The bootloader info response: name and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bootloader<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// Why the kernel cannot tell, or cannot run under, the served revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionError<'a> {
    /// The tag is untouched and there is no bootloader info response.
    NoBootloader,
    /// The bootloader loaded the kernel with this revision.
    Unsupported { served: u64 },
    /// The bootloader does not serve revision 3 and does not say which one
    /// it served.
    Unreported(Bootloader<'a>),
}

impl core::fmt::Display for RevisionError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let runs_under = "this kernel runs under Limine base revision 2 or 3";
        match self {
            Self::NoBootloader => write!(
                f,
                "no Limine-protocol bootloader answered (the base revision tag is untouched and there is no bootloader info response)"
            ),
            Self::Unsupported { served } => {
                write!(
                    f,
                    "the bootloader loaded the kernel with Limine base revision {served}; {runs_under}"
                )
            }
            Self::Unreported(Bootloader { name, version }) => write!(
                f,
                "{name} {version} does not serve Limine base revision {BASE_REVISION_WANTED} and does not say which revision it loaded the kernel with; {runs_under}"
            ),
        }
    }
}

/// The base revision the bootloader served, from the tag it left and its
/// info response.
pub fn served_base_revision<'a>(
    tag: BaseRevisionTag,
    bootloader: Option<Bootloader<'a>>,
) -> Result<u64, RevisionError<'a>> {
    let served = match (tag.reported, tag.wanted_is_served) {
        (Some(reported), _) => reported,
        (None, true) => BASE_REVISION_WANTED,
        (None, false) => {
            let bootloader = bootloader.ok_or(RevisionError::NoBootloader)?;
            if !is_limine_with_revision_2(bootloader) {
                return Err(RevisionError::Unreported(bootloader));
            }
            2
        }
    };
    if (BASE_REVISION_OLDEST..=BASE_REVISION_WANTED).contains(&served) {
        Ok(served)
    } else {
        Err(RevisionError::Unsupported { served })
    }
}

/// Whether `bootloader` is a Limine release from 7.5 on (these serve
/// revision 2 to a kernel asking for 3 without saying so).
fn is_limine_with_revision_2(bootloader: Bootloader<'_>) -> bool {
    if bootloader.name != "Limine" {
        return false;
    }
    let mut numbers = bootloader.version.split('.').map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= LIMINE_WITH_REVISION_2,
        (Some(major), None) => major > LIMINE_WITH_REVISION_2.0,
        _ => false,
    }
}

/// The RSDP response's address is not what the revision promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsdpAddressError {
    pub address: u64,
    pub hhdm_offset: u64,
    pub base_revision: u64,
}

impl core::fmt::Display for RsdpAddressError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the RSDP response {:#x} is below the HHDM ({:#x}), but base revision {} gives an HHDM address",
            self.address, self.hhdm_offset, self.base_revision
        )
    }
}

/// The physical address of the RSDP from the RSDP response's `address`:
/// physical in base revision 3, an HHDM address before it.
pub fn rsdp_physical(
    address: u64,
    base_revision: u64,
    hhdm_offset: u64,
) -> Result<u64, RsdpAddressError> {
    if base_revision == 3 {
        return Ok(address);
    }
    address.checked_sub(hhdm_offset).ok_or(RsdpAddressError { address, hhdm_offset, base_revision })
}
