//! Physical memory regions and the Limine memory map: turns overlapping E820
//! entries and the loader's own claims into sorted, disjoint, typed regions,
//! page-aligning usable and bootloader-reclaimable ones as the protocol requires.

use crate::phys::{PAGE, align_down, align_up};
use crate::serial::fail;

/// Region types. The Limine ones keep their protocol numbers through
/// [`Kind::limine_type`]; `Busy` only marks memory the loader must not
/// allocate from (firmware data it still reads) and never reaches the map.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    BadMemory,
    BootloaderReclaimable,
    ExecutableAndModules,
    Busy,
}

impl Kind {
    /// Where inputs overlap, the highest priority wins (the most restrictive
    /// firmware type, and the loader's claims over any firmware type).
    fn priority(self) -> u8 {
        match self {
            Kind::Usable => 0,
            Kind::AcpiReclaimable => 1,
            Kind::AcpiNvs => 2,
            Kind::BadMemory => 3,
            Kind::Reserved => 4,
            Kind::BootloaderReclaimable => 5,
            Kind::ExecutableAndModules => 6,
            Kind::Busy => 7,
        }
    }

    /// `LIMINE_MEMMAP_*` number.
    pub fn limine_type(self) -> u64 {
        match self {
            Kind::Usable => 0,
            Kind::Reserved | Kind::Busy => 1,
            Kind::AcpiReclaimable => 2,
            Kind::AcpiNvs => 3,
            Kind::BadMemory => 4,
            Kind::BootloaderReclaimable => 5,
            Kind::ExecutableAndModules => 6,
        }
    }

    /// Base revision 3: only usable, bootloader-reclaimable,
    /// executable-and-modules (and framebuffer, which PVH has none of)
    /// regions are mapped in the HHDM.
    pub fn in_hhdm(self) -> bool {
        matches!(self, Kind::Usable | Kind::BootloaderReclaimable | Kind::ExecutableAndModules)
    }

    pub fn from_e820(kind: u32) -> Kind {
        use crate::pvh::{E820_ACPI, E820_NVS, E820_RAM, E820_UNUSABLE};
        match kind {
            E820_RAM => Kind::Usable,
            E820_ACPI => Kind::AcpiReclaimable,
            E820_NVS => Kind::AcpiNvs,
            E820_UNUSABLE => Kind::BadMemory,
            _ => Kind::Reserved,
        }
    }
}

/// A half-open physical range `[start, end)` of one kind.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: Kind,
}

impl Region {
    pub const EMPTY: Region = Region { start: 0, end: 0, kind: Kind::Reserved };

    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// A fixed-capacity list of regions (no heap in the loader).
pub struct Regions<const N: usize> {
    items: [Region; N],
    len: usize,
}

impl<const N: usize> Regions<N> {
    pub const fn new() -> Self {
        Regions { items: [Region::EMPTY; N], len: 0 }
    }

    pub fn push(&mut self, region: Region) {
        if self.len == N {
            fail!("too many memory regions (more than {N})");
        }
        self.items[self.len] = region;
        self.len += 1;
    }

    /// Adds `[start, end)` unless it is empty.
    pub fn add(&mut self, start: u64, end: u64, kind: Kind) {
        if end > start {
            self.push(Region { start, end, kind });
        }
    }

    pub fn insert(&mut self, index: usize, region: Region) {
        if self.len == N {
            fail!("too many memory regions (more than {N})");
        }
        self.items.copy_within(index..self.len, index + 1);
        self.items[index] = region;
        self.len += 1;
    }

    pub fn remove(&mut self, index: usize) {
        self.items.copy_within(index + 1..self.len, index);
        self.len -= 1;
    }

    pub fn as_slice(&self) -> &[Region] {
        &self.items[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [Region] {
        &mut self.items[..self.len]
    }

    /// Appends `region`, merging it into the last one when they touch and match.
    fn append_merged(&mut self, region: Region) {
        if let Some(last) = self.items[..self.len].last_mut()
            && last.kind == region.kind
            && last.end == region.start
        {
            last.end = region.end;
            return;
        }
        self.push(region);
    }
}

/// Most inputs `classify` accepts (E820 entries plus loader claims).
pub const MAX_INPUTS: usize = 256;
/// Capacity for classified maps.
pub const MAX_REGIONS: usize = 2 * MAX_INPUTS + 1;

/// Splits possibly overlapping, unsorted `inputs` into sorted, disjoint
/// regions; where inputs overlap the higher-priority kind wins; adjacent
/// regions of one kind are merged; holes stay holes.
pub fn classify(inputs: &[Region]) -> Regions<MAX_REGIONS> {
    if inputs.len() > MAX_INPUTS {
        fail!("too many memory map inputs ({})", inputs.len());
    }
    let mut bounds = [0u64; 2 * MAX_INPUTS];
    let mut count = 0;
    for r in inputs.iter().filter(|r| r.end > r.start) {
        bounds[count] = r.start;
        bounds[count + 1] = r.end;
        count += 2;
    }
    let bounds = &mut bounds[..count];
    bounds.sort_unstable();

    let mut out = Regions::new();
    let mut prev: Option<u64> = None;
    for &b in bounds.iter() {
        if let Some(a) = prev
            && b > a
        {
            let winner = inputs
                .iter()
                .filter(|r| r.start <= a && r.end >= b && r.end > r.start)
                .map(|r| r.kind)
                .max_by_key(|k| k.priority());
            if let Some(kind) = winner {
                out.append_merged(Region { start: a, end: b, kind });
            }
        }
        prev = Some(b);
    }
    out
}

/// Applies the protocol's alignment rule to a classified map: usable and
/// bootloader-reclaimable entries are shrunk to whole pages (partial pages
/// are dropped); other entries are kept as they are.
pub fn page_align(map: &Regions<MAX_REGIONS>) -> Regions<MAX_REGIONS> {
    let mut out = Regions::new();
    for r in map.as_slice() {
        let (start, end) = match r.kind {
            Kind::Usable | Kind::BootloaderReclaimable => {
                (align_up(r.start, PAGE), align_down(r.end, PAGE))
            }
            _ => (r.start, r.end),
        };
        if end > start {
            out.append_merged(Region { start, end, kind: r.kind });
        }
    }
    out
}
