//! Validation of the kernel ELF (a static ELF64 x86_64 ET_EXEC linked in the
//! higher half) and copying of its PT_LOAD segments into one physically
//! contiguous image.

use crate::phys::{PAGE, align_down, align_up};

/// Lowest virtual address the protocol allows for the executable.
pub const HIGHER_HALF: u64 = 0xffff_ffff_8000_0000;
/// Largest loaded image accepted (virtual span of all PT_LOAD segments).
const MAX_IMAGE: u64 = 1 << 30;
const MAX_SEGMENTS: usize = 16;
const MAX_PHDRS: u16 = 256;

const PT_LOAD: u32 = 1;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

#[derive(Clone, Copy, Default)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

/// A validated kernel: its PT_LOAD segments sorted by address, the page
/// aligned virtual span they cover, and the entry point.
pub struct Kernel {
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    /// Page-aligned lowest virtual address of the image.
    pub virt_base: u64,
    /// Page-aligned size of the virtual span `[virt_base, virt_base + span)`.
    pub span: u64,
    pub entry: u64,
    /// Physical alignment wanted for the image (largest p_align, 4 KiB..2 MiB).
    pub align: u64,
}

/// Why a module is rejected; `NotElf` reasons complete "not an ELF64 x86_64
/// executable (...)", `Malformed` ones "kernel ELF is malformed: ...".
pub enum Error {
    NotElf(&'static str),
    Malformed(&'static str),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl Kernel {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// Checks everything the loader relies on before touching memory.
    pub fn parse(file: &[u8]) -> Result<Kernel, Error> {
        use Error::{Malformed, NotElf};
        if file.len() < 64 {
            return Err(NotElf("file too small for an ELF header"));
        }
        if file[..4] != *b"\x7fELF" {
            return Err(NotElf("bad magic"));
        }
        if file[4] != 2 {
            return Err(NotElf("not ELFCLASS64"));
        }
        if file[5] != 1 {
            return Err(NotElf("not little-endian"));
        }
        if file[6] != 1 || u32_at(file, 20) != 1 {
            return Err(NotElf("unknown ELF version"));
        }
        match u16_at(file, 16) {
            2 => {}
            3 => return Err(NotElf("ET_DYN: relocatable kernels are not supported")),
            _ => return Err(NotElf("not ET_EXEC")),
        }
        if u16_at(file, 18) != 62 {
            return Err(NotElf("machine is not x86_64"));
        }
        let entry = u64_at(file, 24);
        let phoff = u64_at(file, 32);
        let phentsize = u16_at(file, 54);
        let phnum = u16_at(file, 56);
        if phentsize != 56 {
            return Err(Malformed("program header size is not 56"));
        }
        if phnum == 0 || phnum > MAX_PHDRS {
            return Err(Malformed("bad program header count"));
        }
        let table_end = u64::from(phnum)
            .checked_mul(56)
            .and_then(|len| phoff.checked_add(len))
            .ok_or(Malformed("program header table overflows"))?;
        if table_end > file.len() as u64 {
            return Err(Malformed("program headers extend past the end of the file"));
        }

        let mut kernel = Kernel {
            segments: [Segment::default(); MAX_SEGMENTS],
            count: 0,
            virt_base: 0,
            span: 0,
            entry,
            align: PAGE,
        };
        for i in 0..usize::from(phnum) {
            let ph = &file[phoff as usize + i * 56..][..56];
            if u32_at(ph, 0) != PT_LOAD {
                continue;
            }
            let seg = Segment {
                flags: u32_at(ph, 4),
                offset: u64_at(ph, 8),
                vaddr: u64_at(ph, 16),
                filesz: u64_at(ph, 32),
                memsz: u64_at(ph, 40),
            };
            let p_align = u64_at(ph, 48);
            if seg.memsz == 0 {
                continue;
            }
            if seg.filesz > seg.memsz {
                return Err(Malformed("segment file size exceeds its memory size"));
            }
            let file_end = seg
                .offset
                .checked_add(seg.filesz)
                .ok_or(Malformed("segment file range overflows"))?;
            if file_end > file.len() as u64 {
                return Err(Malformed("segment extends past the end of the file"));
            }
            if seg.vaddr < HIGHER_HALF {
                return Err(Malformed(
                    "segment below 0xffffffff80000000 (not a higher-half kernel)",
                ));
            }
            if seg.vaddr.checked_add(seg.memsz).is_none() {
                return Err(Malformed("segment wraps around the address space"));
            }
            if p_align > 1 && !p_align.is_power_of_two() {
                return Err(Malformed("segment alignment is not a power of two"));
            }
            if kernel.count == MAX_SEGMENTS {
                return Err(Malformed("too many PT_LOAD segments"));
            }
            kernel.align = kernel.align.max(p_align.clamp(PAGE, 2 << 20));
            kernel.segments[kernel.count] = seg;
            kernel.count += 1;
        }
        if kernel.count == 0 {
            return Err(Malformed("no PT_LOAD segments"));
        }
        kernel.segments[..kernel.count].sort_unstable_by_key(|s| s.vaddr);
        let segs = kernel.segments();
        for pair in segs.windows(2) {
            if pair[0].vaddr + pair[0].memsz > pair[1].vaddr {
                return Err(Malformed("PT_LOAD segments overlap"));
            }
        }
        let first = segs[0];
        let last = segs[segs.len() - 1];
        let base = align_down(first.vaddr, PAGE);
        let end = align_up(last.vaddr + last.memsz, PAGE);
        if end <= base || end - base > MAX_IMAGE {
            return Err(Malformed("image larger than 1 GiB"));
        }
        if !segs
            .iter()
            .any(|s| s.flags & PF_X != 0 && entry >= s.vaddr && entry < s.vaddr + s.memsz)
        {
            return Err(Malformed("entry point is not inside an executable segment"));
        }
        kernel.virt_base = base;
        kernel.span = end - base;
        Ok(kernel)
    }

    /// Fills `image` (the physical copy of `[virt_base, virt_base + span)`):
    /// file bytes copied, bss and gaps zeroed.
    pub fn load(&self, file: &[u8], image: &mut [u8]) {
        let mut cursor = 0usize;
        for seg in self.segments() {
            let start = (seg.vaddr - self.virt_base) as usize;
            let file_end = start + seg.filesz as usize;
            let mem_end = start + seg.memsz as usize;
            image[cursor..start].fill(0);
            image[start..file_end]
                .copy_from_slice(&file[seg.offset as usize..][..seg.filesz as usize]);
            image[file_end..mem_end].fill(0);
            cursor = mem_end;
        }
        image[cursor..].fill(0);
    }
}
