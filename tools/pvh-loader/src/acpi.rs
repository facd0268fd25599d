//! A minimal ACPI reader: RSDP -> XSDT/RSDT -> MADT, yielding the enabled
//! processors (local APIC and local x2APIC entries) and the I/O APICs.

use crate::phys;

pub const MAX_CPUS: usize = 512;
const MAX_IOAPICS: usize = 16;
const MAX_TABLE: u64 = 1 << 20;

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// ACPI processor UID.
    pub uid: u32,
    pub apic_id: u32,
}

pub struct Madt {
    cpus: [Cpu; MAX_CPUS],
    cpu_count: usize,
    /// Enabled CPUs left out because the list was full.
    pub dropped: usize,
    ioapics: [u64; MAX_IOAPICS],
    ioapic_count: usize,
}

impl Madt {
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus[..self.cpu_count]
    }

    pub fn ioapics(&self) -> &[u64] {
        &self.ioapics[..self.ioapic_count]
    }

    fn add_cpu(&mut self, uid: u32, apic_id: u32) {
        if self.cpus().iter().any(|c| c.apic_id == apic_id) {
            return; // the same CPU listed as both LAPIC and x2APIC
        }
        if self.cpu_count == MAX_CPUS {
            self.dropped += 1;
            return;
        }
        self.cpus[self.cpu_count] = Cpu { uid, apic_id };
        self.cpu_count += 1;
    }
}

/// Borrows `len` bytes of firmware table memory, if reachable.
fn table(phys_addr: u64, len: u64) -> Option<&'static [u8]> {
    // SAFETY: reachability is checked; ACPI tables are firmware memory that
    // nothing writes while the loader runs.
    phys::reachable(phys_addr, len).then(|| unsafe { phys::bytes(phys_addr, len) })
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// A whole SDT at `addr` whose checksum is valid.
fn sdt(addr: u64) -> Option<&'static [u8]> {
    let header = table(addr, 36)?;
    let len = u64::from(u32_at(header, 4));
    if !(36..=MAX_TABLE).contains(&len) {
        return None;
    }
    let whole = table(addr, len)?;
    checksum_ok(whole).then_some(whole)
}

/// Finds and parses the MADT. `Err` says what is wrong with the tables.
pub fn read_madt(rsdp: u64) -> Result<Madt, &'static str> {
    let r = table(rsdp, 20).ok_or("RSDP out of reach")?;
    if &r[..8] != b"RSD PTR " || !checksum_ok(r) {
        return Err("bad RSDP");
    }
    let revision = r[15];
    let (root, entry_size) = if revision >= 2 {
        let r2 = table(rsdp, 36).ok_or("RSDP out of reach")?;
        let xsdt = u64_at(r2, 24);
        if xsdt != 0 && checksum_ok(r2) { (xsdt, 8) } else { (u64::from(u32_at(r, 16)), 4) }
    } else {
        (u64::from(u32_at(r, 16)), 4)
    };
    let root = sdt(root).ok_or("bad RSDT/XSDT")?;
    let mut madt = None;
    for at in (36..root.len()).step_by(entry_size) {
        if at + entry_size > root.len() {
            break;
        }
        let addr = if entry_size == 8 { u64_at(root, at) } else { u64::from(u32_at(root, at)) };
        if let Some(t) = table(addr, 4)
            && t == b"APIC"
        {
            madt = Some(sdt(addr).ok_or("bad MADT checksum")?);
            break;
        }
    }
    let madt_bytes = madt.ok_or("no MADT")?;

    let mut out = Madt {
        cpus: [Cpu::default(); MAX_CPUS],
        cpu_count: 0,
        dropped: 0,
        ioapics: [0; MAX_IOAPICS],
        ioapic_count: 0,
    };
    let mut at = 44;
    while at + 2 <= madt_bytes.len() {
        let kind = madt_bytes[at];
        let len = usize::from(madt_bytes[at + 1]);
        if len < 2 || at + len > madt_bytes.len() {
            break;
        }
        let e = &madt_bytes[at..at + len];
        match (kind, len) {
            (0, 8..) if u32_at(e, 4) & 1 != 0 => out.add_cpu(u32::from(e[2]), u32::from(e[3])),
            (9, 16..) if u32_at(e, 8) & 1 != 0 => out.add_cpu(u32_at(e, 12), u32_at(e, 4)),
            (1, 12..) if out.ioapic_count < MAX_IOAPICS => {
                out.ioapics[out.ioapic_count] = u64::from(u32_at(e, 4));
                out.ioapic_count += 1;
            }
            _ => {}
        }
        at += len;
    }
    Ok(out)
}
