//! pvh-loader: boots a Limine-protocol (base revision 3) x86_64 kernel under
//! QEMU's PVH direct boot (`-kernel pvh-loader -initrd KERNEL.elf -append
//! CMDLINE`). `loader_main` runs the boot sequence phase by phase; see
//! docs/pvh-loader.md.
#![no_std]
#![no_main]

mod acpi;
mod cpu;
mod elf;
mod entry;
mod handoff;
mod idt;
mod lapic;
mod memmap;
mod mp;
mod paging;
mod phys;
mod physalloc;
mod pvh;
mod requests;
mod responses;
mod serial;
mod timer;

use cpu::Features;
use elf::{Kernel, PF_W, PF_X};
use memmap::{Kind, MAX_INPUTS, MAX_REGIONS, Region, Regions};
use paging::{HHDM_OFFSET, PageTables};
use phys::{PAGE, align_down, align_up};
use physalloc::Allocator;
use requests::{Feature, Requests};
use responses::{Arena, hhdm};
use serial::fail;

const NAME: &str = "pvh-loader";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_PATH: &[u8] = b"/boot/kernel";
/// Protocol minimum stack size, and the loader's ceiling for requests.
const MIN_STACK: u64 = 64 * 1024;
const MAX_STACK: u64 = 16 << 20;
/// General allocations stay above the first MiB (left to the trampoline
/// and to the kernel's own real-mode needs).
const LOW_MEMORY: u64 = 1 << 20;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail!("internal error: {}", info.message());
}

/// The kernel as loaded: its ELF, where the image and the file live.
struct Loaded {
    kernel: Kernel,
    image_phys: u64,
    module_phys: u64,
    module_size: u64,
}

/// The bootloader-reclaimable memory the kernel receives.
struct Blr {
    bsp_stack: u64,
    ap_stacks: u64,
    trampoline: u64,
    arena: (u64, u64),
    tables: (u64, u64),
}

extern "C" fn loader_main(start_info: u32) -> ! {
    serial::init();
    idt::init(mp::wake_handler());
    idt::load();
    let features = Features::detect();
    let info = pvh::parse(u64::from(start_info));
    let Some(module) = info.module else {
        fail!("no kernel module: pass the kernel ELF with -initrd");
    };
    let loader = loader_image();
    let mut alloc = Allocator::new(&free_memory(&info, &module, loader));

    let loaded = load_kernel(&mut alloc, &module);
    let image_end = loaded.image_phys + loaded.kernel.span;
    // SAFETY: the loaded image is loader-owned and only read during the scan.
    let image = unsafe { phys::bytes(loaded.image_phys, loaded.kernel.span) };
    let requests = Requests::scan(image, loaded.image_phys).unwrap_or_else(|e| request_error(e));
    requests.acknowledge_base_revision();
    let stack_size = match requests.extra(Feature::StackSize, image_end) {
        Some(s) if s > MAX_STACK => {
            fail!("kernel asks for a {} KiB stack (at most 16 MiB)", s / 1024)
        }
        Some(s) => align_up(s, PAGE).max(MIN_STACK),
        None => MIN_STACK,
    };

    // CPUs: only with an MP request are the APIC and the APs touched.
    let madt = match info.rsdp {
        0 => Err("no RSDP"),
        rsdp => acpi::read_madt(rsdp),
    };
    let mp_request = requests.has(Feature::Mp).then(|| {
        let flags = requests.extra(Feature::Mp, image_end).unwrap_or(0);
        let x2apic = flags & 1 != 0 && features.x2apic;
        let Some(mode) = lapic::enable(x2apic) else {
            fail!("local APIC MMIO window is above 4 GiB");
        };
        let bsp = lapic::id(mode);
        (mode, bsp, mp::CpuList::from_madt(&madt, bsp, x2apic))
    });
    let cpu_count = mp_request.as_ref().map_or(0, |(_, _, cpus)| cpus.as_slice().len());
    let path: &[u8] = if module.string.is_empty() { DEFAULT_PATH } else { module.string };
    let strings = info.cmdline.len() + path.len() + NAME.len() + VERSION.len() + 16;
    let blr = allocate_blr(&mut alloc, &info, &loaded.kernel, stack_size, cpu_count, strings);
    alloc.claim(loader.0, loader.1, Kind::BootloaderReclaimable);
    let map = final_memory_map(&info, &alloc);
    let kernel_cr3 = build_page_tables(&map, &loaded, blr.tables, features);

    let mut arena = Arena::new(blr.arena.0, blr.arena.1);
    let cmdline = arena.put_str(info.cmdline);
    let path = arena.put_path(path);
    let file = arena.executable_file(hhdm(loaded.module_phys), loaded.module_size, path, cmdline);
    let responses = [
        (Feature::BootloaderInfo, arena.bootloader_info(NAME, VERSION)),
        (Feature::Hhdm, arena.words([0, HHDM_OFFSET])),
        (Feature::Memmap, arena.memmap(map.as_slice())),
        (Feature::ExecutableFile, file),
        (Feature::ExecutableAddress, arena.words([0, loaded.image_phys, loaded.kernel.virt_base])),
        (Feature::StackSize, arena.words([0])),
    ];
    for (feature, response) in responses {
        requests.respond(feature, response);
    }
    if info.rsdp != 0 {
        // Base revision 3 (only): the RSDP address is physical.
        requests.respond(Feature::Rsdp, arena.words([0, info.rsdp]));
    }

    share_upper_half(kernel_cr3);
    handoff::program_pat(features.pat);
    if let Some((mode, bsp_apic_id, cpus)) = &mp_request {
        let cpus = cpus.as_slice();
        let infos = arena.mp_infos(cpus.iter().map(|c| (c.uid, c.apic_id)));
        if cpus.len() > 1 {
            handoff::snapshot_mtrrs(features);
            mp::start_aps(&mp::Plan {
                cpus,
                bsp_apic_id: *bsp_apic_id,
                mode: *mode,
                features,
                trampoline: blr.trampoline,
                infos,
                stacks: blr.ap_stacks,
                stack_size,
                kernel_cr3,
            });
        }
        let listed = mp::listed(cpus, *bsp_apic_id);
        let flags = u32::from(mode.is_x2apic());
        requests.respond(Feature::Mp, arena.mp(flags, *bsp_apic_id, infos, listed.as_slice()));
    }

    handoff::mask_legacy_pics();
    if let Ok(m) = &madt {
        m.ioapics().iter().for_each(|&base| handoff::mask_ioapic(base));
    }
    handoff::open_a20();
    // SAFETY: the loader PML4's upper half equals the kernel's, which maps
    // the loader image and the stack through the HHDM; the entry point was
    // validated to lie in an executable segment of the loaded image.
    unsafe { handoff::enter_bsp(kernel_cr3, hhdm(blr.bsp_stack + stack_size), loaded.kernel.entry) }
}

/// The loader's own image `[start, end)` (page aligned, .bss included).
fn loader_image() -> (u64, u64) {
    let start = &raw const entry::__loader_start as u64;
    (start, align_up(&raw const entry::__loader_end as u64, PAGE))
}

fn add_e820(inputs: &mut Regions<MAX_INPUTS>, info: &pvh::StartInfo) {
    for e in &info.e820[..info.e820_count] {
        inputs.add(e.base, e.base.saturating_add(e.size), Kind::from_e820(e.kind));
    }
}

/// RAM the loader may allocate from: E820 RAM minus its own image and
/// everything QEMU handed over that it still reads.
fn free_memory(
    info: &pvh::StartInfo,
    module: &pvh::Module,
    loader: (u64, u64),
) -> Regions<MAX_REGIONS> {
    if module.size == 0 {
        fail!("kernel module is empty");
    }
    if !phys::reachable(module.base, module.size) {
        fail!("kernel module at {:#x} (+{:#x}) is above 4 GiB", module.base, module.size);
    }
    let mut inputs = Regions::<MAX_INPUTS>::new();
    add_e820(&mut inputs, info);
    let busy = [
        (loader.0, loader.1 - loader.0),
        info.info,
        info.e820_table,
        info.module_table,
        (info.cmdline_phys, info.cmdline.len() as u64 + 1),
        (module.string_phys, module.string.len() as u64 + 1),
        (module.base, module.size),
    ];
    for (start, len) in busy.into_iter().filter(|(s, _)| *s != 0) {
        inputs.add(start, start + len, Kind::Busy);
    }
    memmap::classify(inputs.as_slice())
}

/// Validates the kernel ELF and copies its segments into a physically
/// contiguous image. The module itself stays where QEMU put it (or is moved
/// to a page boundary) and is reported as executable-and-modules memory.
fn load_kernel(alloc: &mut Allocator, module: &pvh::Module) -> Loaded {
    let module_phys = if module.base.is_multiple_of(PAGE) {
        let end = align_up(module.base + module.size, PAGE);
        alloc.claim(module.base, end, Kind::ExecutableAndModules);
        module.base
    } else {
        let Some(copy) =
            alloc.alloc(module.size, PAGE, LOW_MEMORY, Kind::ExecutableAndModules, false)
        else {
            fail!("not enough memory to page-align the kernel module");
        };
        // SAFETY: `copy` is fresh loader-owned memory; the module is RAM that
        // nothing writes; the two ranges do not overlap.
        unsafe {
            phys::bytes_mut(copy, module.size)
                .copy_from_slice(phys::bytes(module.base, module.size))
        };
        copy
    };
    // SAFETY: the module is reachable (checked in `free_memory`) and read-only from now on.
    let file = unsafe { phys::bytes(module_phys, module.size) };
    let kernel = match Kernel::parse(file) {
        Ok(k) => k,
        Err(elf::Error::NotElf(why)) => {
            fail!("kernel module is not an ELF64 x86_64 executable ({why})")
        }
        Err(elf::Error::Malformed(why)) => fail!("kernel ELF is malformed: {why}"),
    };
    let Some(image_phys) =
        alloc.alloc(kernel.span, kernel.align, LOW_MEMORY, Kind::ExecutableAndModules, false)
    else {
        fail!("not enough memory for the kernel image ({} KiB)", kernel.span / 1024);
    };
    // SAFETY: freshly allocated, loader-owned, below 4 GiB.
    kernel.load(file, unsafe { phys::bytes_mut(image_phys, kernel.span) });
    Loaded { kernel, image_phys, module_phys, module_size: module.size }
}

fn alloc_blr(alloc: &mut Allocator, size: u64, zero: bool, what: &str) -> u64 {
    match alloc.alloc(size, PAGE, LOW_MEMORY, Kind::BootloaderReclaimable, zero) {
        Some(at) => at,
        None => fail!("not enough memory for {what} ({} KiB)", size / 1024),
    }
}

/// Stacks, the trampoline page, the response arena and the page-table pool,
/// all sized before the memory map is final (the map must include them).
fn allocate_blr(
    alloc: &mut Allocator,
    info: &pvh::StartInfo,
    kernel: &Kernel,
    stack_size: u64,
    cpus: usize,
    strings: usize,
) -> Blr {
    let aps = cpus.saturating_sub(1) as u64;
    let bsp_stack = alloc_blr(alloc, stack_size, false, "the kernel stack");
    let ap_stacks =
        if aps > 0 { alloc_blr(alloc, aps * stack_size, false, "AP stacks") } else { 0 };
    let trampoline = if aps > 0 {
        match alloc.alloc_page_below(PAGE, LOW_MEMORY, Kind::BootloaderReclaimable) {
            Some(page) => page,
            None => fail!("no free page below 1 MiB for the AP trampoline"),
        }
    } else {
        0
    };
    let arena_len = responses::arena_size(MAX_REGIONS, cpus, strings);
    let arena = alloc_blr(alloc, arena_len, true, "the responses");
    let ram = info.e820[..info.e820_count]
        .iter()
        .filter(|e| e.kind == pvh::E820_RAM)
        .map(|e| (align_down(e.base, PAGE), align_up(e.base.saturating_add(e.size), PAGE)));
    let tables_len = (paging::tables_needed(ram, kernel.span) + 8) * PAGE;
    let tables = alloc_blr(alloc, tables_len, true, "page tables");
    Blr {
        bsp_stack,
        ap_stacks,
        trampoline,
        arena: (arena, arena_len),
        tables: (tables, tables_len),
    }
}

/// The memory map the kernel sees: E820 with the loader's claims on top,
/// sorted, disjoint, usable/bootloader-reclaimable entries page aligned.
fn final_memory_map(info: &pvh::StartInfo, alloc: &Allocator) -> Regions<MAX_REGIONS> {
    let mut inputs = Regions::<MAX_INPUTS>::new();
    add_e820(&mut inputs, info);
    for c in alloc.claims() {
        inputs.push(*c);
    }
    memmap::page_align(&memmap::classify(inputs.as_slice()))
}

/// The kernel's page tables: the HHDM of the usable, bootloader-reclaimable
/// and executable-and-modules entries (base revision 3), and the kernel
/// segments with their ELF permissions. Nothing in the lower half.
fn build_page_tables(
    map: &Regions<MAX_REGIONS>,
    loaded: &Loaded,
    pool: (u64, u64),
    features: Features,
) -> u64 {
    let mut tables = PageTables::new(pool.0, pool.1, features.huge_1g, features.nx);
    hhdm_ranges(map.as_slice(), |start, end| tables.map_hhdm(start, end));
    let kernel = &loaded.kernel;
    for seg in kernel.segments() {
        let first = align_down(seg.vaddr, PAGE);
        let last = align_up(seg.vaddr + seg.memsz, PAGE);
        for page in (first..last).step_by(PAGE as usize) {
            let frame = loaded.image_phys + (page - kernel.virt_base);
            tables.map_kernel_page(page, frame, seg.flags & PF_W != 0, seg.flags & PF_X != 0);
        }
    }
    tables.root()
}

/// Calls `each(start, end)` for the HHDM entries of `map`, rounded out to
/// pages and merged where they touch (so large pages can span them).
fn hhdm_ranges(map: &[Region], mut each: impl FnMut(u64, u64)) {
    let mut current: Option<(u64, u64)> = None;
    for r in map.iter().filter(|r| r.kind.in_hhdm()) {
        let (start, end) = (align_down(r.start, PAGE), align_up(r.end, PAGE));
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                each(s, e);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        each(s, e);
    }
}

/// Copies the kernel tables' upper half (HHDM and kernel) into the loader's
/// PML4, so the handoff stubs can run through the HHDM before switching CR3.
fn share_upper_half(kernel_cr3: u64) {
    let loader_pml4 = &raw const entry::boot_pml4 as u64;
    for i in 256..512 {
        // SAFETY: both are page-aligned PML4s in loader-owned memory; the
        // loader's upper half is unused, so no current mapping changes.
        unsafe { phys::write::<u64>(loader_pml4 + i * 8, phys::read::<u64>(kernel_cr3 + i * 8)) };
    }
    // SAFETY: the same tables, reloaded to flush the TLB.
    unsafe { cpu::write_cr3(cpu::read_cr3()) };
}

fn request_error(e: requests::Error) -> ! {
    use requests::{BASE_REVISION, Error};
    match e {
        Error::NoBaseRevision => fail!(
            "kernel has no Limine base revision tag (that means revision 0; this loader implements base revision {BASE_REVISION})"
        ),
        Error::UnsupportedRevision(n) => {
            fail!(
                "kernel requests Limine base revision {n}; this loader implements base revision {BASE_REVISION} only"
            )
        }
        Error::DuplicateBaseRevision => fail!("kernel has more than one Limine base revision tag"),
        Error::Duplicate(name) => fail!("kernel has more than one Limine {name} request"),
        Error::DuplicateUnknown => fail!("kernel has two Limine requests with the same id"),
        Error::TooMany => fail!("kernel has too many Limine requests"),
    }
}
