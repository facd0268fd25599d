//! Reads the ACPI MADT (through the `acpi` crate) for the list of CPUs the
//! firmware describes, to check it against the bootloader's MP response.
use core::ptr::NonNull;

use ::x86_64::PhysAddr;
use acpi::{
    AcpiHandler, AcpiTables, PhysicalMapping,
    madt::{Madt, MadtEntry},
};

use crate::{arch::paging, smp::MAX_CPUS};

/// MADT local APIC flag: the processor is enabled.
const PROCESSOR_ENABLED: u32 = 1;

/// The CPUs the MADT lists.
#[derive(Debug, Clone, Copy)]
pub struct MadtCpus {
    /// Enabled processors (local APIC and local x2APIC entries).
    pub enabled: usize,
    /// Their APIC ids, the first `enabled.min(MAX_CPUS)` of them.
    pub apic_ids: [u32; MAX_CPUS],
}

impl MadtCpus {
    /// Whether the MADT lists an enabled CPU with this APIC id.
    pub fn contains(&self, apic_id: u32) -> bool {
        self.apic_ids[..self.enabled.min(self.apic_ids.len())].contains(&apic_id)
    }
}

/// Reaches ACPI tables through the HHDM, mapping pages the bootloader left
/// out.
#[derive(Clone, Copy)]
struct HhdmAcpiHandler;

impl AcpiHandler for HhdmAcpiHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = paging::map_firmware_tables(PhysAddr::new(physical_address as u64), size as u64);
        let ptr = NonNull::new(virt.as_mut_ptr::<T>()).expect("the HHDM never maps address 0");
        // SAFETY: `virt` maps `size` bytes at `physical_address` (map_firmware_tables
        // made sure), and the mapping is never removed.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Why the MADT could not be read.
#[derive(Debug)]
pub struct AcpiError(acpi::AcpiError);

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The enabled CPUs in the MADT found from the RSDP at `rsdp_phys`.
pub fn madt_cpus(rsdp_phys: u64) -> Result<MadtCpus, AcpiError> {
    // SAFETY: `rsdp_phys` comes from the bootloader's RSDP response; the
    // crate validates the signature and checksum before trusting it.
    let tables =
        unsafe { AcpiTables::from_rsdp(HhdmAcpiHandler, rsdp_phys as usize) }.map_err(AcpiError)?;
    let madt = tables.find_table::<Madt>().map_err(AcpiError)?;
    let mut cpus = MadtCpus { enabled: 0, apic_ids: [0; MAX_CPUS] };
    for entry in madt.get().entries() {
        let (flags, apic_id) = match entry {
            MadtEntry::LocalApic(e) => (e.flags, u32::from(e.apic_id)),
            MadtEntry::LocalX2Apic(e) => (e.flags, e.x2apic_id),
            _ => continue,
        };
        if flags & PROCESSOR_ENABLED != 0 {
            if let Some(slot) = cpus.apic_ids.get_mut(cpus.enabled) {
                *slot = apic_id;
            }
            cpus.enabled += 1;
        }
    }
    Ok(cpus)
}
