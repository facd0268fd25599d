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

/// The base revision of the Limine protocol the kernel is written for.
pub const BASE_REVISION_WANTED: u64 = 3;
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
    pub base_revision: u64,
    pub bootloader_name: &'static str,
    pub bootloader_version: &'static str,
    pub hhdm_offset: u64,
    pub memory_map: &'static [&'static Entry],
    pub mp: &'static MpRespData,
    /// As the bootloader gave it (physical in base revision 3; older
    /// bootloaders gave an HHDM address).
    pub rsdp_address: u64,
    pub kernel_physical_base: u64,
    pub kernel_virtual_base: u64,
    pub kernel_file: &'static File,
}

/// Why the kernel cannot go on with what the bootloader answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The bootloader does not speak the base revision the kernel needs.
    BaseRevisionUnsupported { actual: Option<u64> },
    /// The named request got no response.
    Missing(&'static str),
}

impl core::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BaseRevisionUnsupported { actual: Some(actual) } => write!(
                f,
                "Limine base revision {BASE_REVISION_WANTED} is not supported by the bootloader (it loaded revision {actual})"
            ),
            Self::BaseRevisionUnsupported { actual: None } => write!(
                f,
                "Limine base revision {BASE_REVISION_WANTED} is not supported: no Limine-protocol bootloader answered"
            ),
            Self::Missing(name) => write!(f, "the bootloader gave no {name} response"),
        }
    }
}

/// Checks the base revision and that every needed response is there.
pub fn collect() -> Result<Responses, ResponseError> {
    if !BASE_REVISION.is_supported() {
        return Err(ResponseError::BaseRevisionUnsupported {
            actual: BASE_REVISION.actual_revision(),
        });
    }
    let missing = ResponseError::Missing;
    let info = BOOTLOADER_INFO.response().ok_or(missing("bootloader info"))?;
    let executable_address = EXECUTABLE_ADDRESS.response().ok_or(missing("executable address"))?;
    STACK_SIZE.response().ok_or(missing("stack size"))?;
    Ok(Responses {
        base_revision: BASE_REVISION.actual_revision().unwrap_or(BASE_REVISION_WANTED),
        bootloader_name: info.name(),
        bootloader_version: info.version(),
        hhdm_offset: HHDM.response().ok_or(missing("HHDM"))?.offset,
        memory_map: MEMORY_MAP.response().ok_or(missing("memory map"))?.entries(),
        mp: MP.response().ok_or(missing("MP"))?,
        rsdp_address: RSDP.response().ok_or(missing("RSDP"))?.address as u64,
        kernel_physical_base: executable_address.physical_base,
        kernel_virtual_base: executable_address.virtual_base,
        kernel_file: EXECUTABLE_FILE
            .response()
            .ok_or(missing("executable file"))?
            .executable_file(),
    })
}
