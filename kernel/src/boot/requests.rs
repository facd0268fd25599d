//! The Limine requests, between the start and end markers, and the check
//! that every response the kernel needs is there.
use limine::{
    BaseRevision, RequestsEndMarker, RequestsStartMarker,
    file::File,
    memmap::Entry,
    mp::{MP_FLAG_X2APIC, MpRespData},
    request::{
        BootloaderInfoRequest, ExecutableAddressRequest, ExecutableFileRequest, HhdmRequest,
        MemmapRequest, MpRequest, RsdpRequest, StackSizeRequest,
    },
};

use super::revision::{
    BASE_REVISION_WANTED, BaseRevisionTag, Bootloader, RevisionError, RsdpAddressError,
    rsdp_physical, served_base_revision,
};

/// Stack for the bootstrap CPU and each application processor.
pub const STACK_BYTES: u64 = 256 * 1024;

#[used]
#[unsafe(link_section = ".requests_start_marker")]
static START_MARKER: RequestsStartMarker = RequestsStartMarker::new();

#[used]
#[unsafe(link_section = ".requests")]
static BASE_REVISION: BaseRevision = BaseRevision::with_revision(BASE_REVISION_WANTED);

#[used]
#[unsafe(link_section = ".requests")]
static BOOTLOADER_INFO: BootloaderInfoRequest = BootloaderInfoRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static HHDM: HhdmRequest = HhdmRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static MEMORY_MAP: MemmapRequest = MemmapRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static MP: MpRequest = MpRequest::new(MP_FLAG_X2APIC);

#[used]
#[unsafe(link_section = ".requests")]
static RSDP: RsdpRequest = RsdpRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static EXECUTABLE_ADDRESS: ExecutableAddressRequest = ExecutableAddressRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static EXECUTABLE_FILE: ExecutableFileRequest = ExecutableFileRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static STACK_SIZE: StackSizeRequest = StackSizeRequest::new(STACK_BYTES);

#[used]
#[unsafe(link_section = ".requests_end_marker")]
static END_MARKER: RequestsEndMarker = RequestsEndMarker::new();

/// What the bootloader answered, once checked complete.
pub struct Responses {
    /// The base revision the bootloader served (2 or 3).
    pub base_revision: u64,
    pub bootloader_name: &'static str,
    pub bootloader_version: &'static str,
    pub hhdm_offset: u64,
    pub memory_map: &'static [&'static Entry],
    pub mp: &'static MpRespData,
    /// The RSDP's physical address (the response gives an HHDM address
    /// before base revision 3).
    pub rsdp_phys: u64,
    pub kernel_physical_base: u64,
    pub kernel_virtual_base: u64,
    pub kernel_file: &'static File,
}

/// Why the kernel cannot go on with what the bootloader answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The kernel cannot tell, or cannot run under, the base revision served.
    BaseRevision(RevisionError<'static>),
    /// The named request got no response.
    Missing(&'static str),
    /// The RSDP response does not fit the base revision.
    Rsdp(RsdpAddressError),
}

impl core::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BaseRevision(e) => write!(f, "{e}"),
            Self::Missing(name) => write!(f, "the bootloader gave no {name} response"),
            Self::Rsdp(e) => write!(f, "{e}"),
        }
    }
}

/// Checks the base revision and that every needed response is there.
pub fn collect() -> Result<Responses, ResponseError> {
    let info = BOOTLOADER_INFO.response();
    let tag = BaseRevisionTag {
        wanted_is_served: BASE_REVISION.is_supported(),
        reported: BASE_REVISION.actual_revision(),
    };
    let bootloader = info.map(|info| Bootloader { name: info.name(), version: info.version() });
    let base_revision =
        served_base_revision(tag, bootloader).map_err(ResponseError::BaseRevision)?;
    let missing = ResponseError::Missing;
    let info = info.ok_or(missing("bootloader info"))?;
    let executable_address = EXECUTABLE_ADDRESS.response().ok_or(missing("executable address"))?;
    STACK_SIZE.response().ok_or(missing("stack size"))?;
    let hhdm_offset = HHDM.response().ok_or(missing("HHDM"))?.offset;
    let rsdp_address = RSDP.response().ok_or(missing("RSDP"))?.address as u64;
    Ok(Responses {
        base_revision,
        bootloader_name: info.name(),
        bootloader_version: info.version(),
        hhdm_offset,
        memory_map: MEMORY_MAP.response().ok_or(missing("memory map"))?.entries(),
        mp: MP.response().ok_or(missing("MP"))?,
        rsdp_phys: rsdp_physical(rsdp_address, base_revision, hhdm_offset)
            .map_err(ResponseError::Rsdp)?,
        kernel_physical_base: executable_address.physical_base,
        kernel_virtual_base: executable_address.virtual_base,
        kernel_file: EXECUTABLE_FILE
            .response()
            .ok_or(missing("executable file"))?
            .executable_file(),
    })
}
