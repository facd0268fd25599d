//! Boot: from the bootloader's hand-over to the binary's main function, on
//! every CPU. [`start`] checks the Limine responses, sets up the bootstrap
//! CPU, memory, ACPI and the local APICs, brings the other CPUs up, prints
//! the `BOOT` record and calls main.
mod info;
mod requests;
pub mod revision;

pub use info::{BootInfo, MemoryRegion};
pub use requests::STACK_BYTES;
pub use revision::{BASE_REVISION_OLDEST, BASE_REVISION_WANTED};

use limine::memmap::MEMMAP_USABLE;
use spin::Once;

use crate::{
    ExitCode,
    arch::{self, apic, interrupts::IrqGuard, paging},
    cmdline::{self, Cmdline},
    console,
    exit::exit,
    firmware::acpi,
    heap,
    json::JsonStr,
    memory::frames,
    println, smp, time, timer,
};

/// The most usable memory regions the kernel keeps track of.
const MAX_USABLE_REGIONS: usize = 128;

static BOOT_INFO: Once<BootInfo> = Once::new();
static USABLE: Once<([MemoryRegion; MAX_USABLE_REGIONS], usize)> = Once::new();

/// Prints what went wrong and ends the run with the failure code.
fn boot_error(what: core::fmt::Arguments<'_>) -> ! {
    println!("boot error: {what}");
    exit(ExitCode::Failure)
}

/// Boots the machine and runs `main` on the bootstrap CPU; never returns.
pub fn start(main: fn(&'static BootInfo) -> ExitCode) -> ! {
    console::init();
    let responses = requests::collect().unwrap_or_else(|e| boot_error(format_args!("{e}")));
    let cmdline = Cmdline::parse(responses.kernel_file.cmdline())
        .unwrap_or_else(|e| boot_error(format_args!("kernel command line: {e}")));
    let cmdline = cmdline::set(cmdline);

    arch::mask_legacy_pic();
    smp::init_bootstrap_cpu();
    paging::init(responses.hhdm_offset);
    let usable = usable_regions(responses.memory_map);
    frames::init(usable);
    apic::map_registers();
    let irqs = IrqGuard::new();
    let (apic_mode, bsp_lapic_id) = apic::init_this_cpu(&smp::ThisCpu::new(&irqs));
    smp::mark_bootstrap_online(bsp_lapic_id);
    drop(irqs);
    if bsp_lapic_id != responses.mp.bsp_lapic_id {
        boot_error(format_args!(
            "the bootstrap CPU's local APIC id is {bsp_lapic_id}, the MP response says {}",
            responses.mp.bsp_lapic_id
        ));
    }
    let mp_cpus = responses.mp.cpus();
    let cpus = smp::start_application_processors(mp_cpus, bsp_lapic_id)
        .unwrap_or_else(|e| boot_error(format_args!("bringing up CPUs: {e:?}")));
    // Calibrate only now: until the other CPUs halt in their idle loop,
    // under emulation they spin on the host CPUs this one needs.
    let (timestamp_hz, measured) = time::calibrate();
    if !measured {
        println!("boot: no PIT to calibrate the TSC; assuming {timestamp_hz} Hz");
    }

    let rsdp_phys = responses.rsdp_phys;
    let madt =
        acpi::madt_cpus(rsdp_phys).unwrap_or_else(|e| boot_error(format_args!("ACPI MADT: {e}")));

    for index in 0..cpus {
        let cpu = smp::cpu(index);
        let acpi_id =
            mp_cpus.iter().find(|i| i.lapic_id == cpu.lapic_id()).map_or(0, |i| i.processor_id);
        println!(
            "cpu {index} online: lapic id {}, acpi id {acpi_id}, {}",
            cpu.lapic_id(),
            apic_mode.name()
        );
        if !madt.contains(cpu.lapic_id()) {
            boot_error(format_args!(
                "cpu {index} (lapic id {}) is not an enabled CPU in the MADT",
                cpu.lapic_id()
            ));
        }
    }
    if madt.enabled != cpus {
        boot_error(format_args!(
            "the MADT lists {} enabled CPUs, the MP response {cpus}",
            madt.enabled
        ));
    }

    let (allocator, heap_bytes) =
        heap::init(cmdline).unwrap_or_else(|e| boot_error(format_args!("heap: {e}")));
    timer::configure(cmdline).unwrap_or_else(|e| boot_error(format_args!("timer: {e}")));

    let info = BOOT_INFO.call_once(|| BootInfo {
        bootloader_name: responses.bootloader_name,
        bootloader_version: responses.bootloader_version,
        base_revision: responses.base_revision,
        hhdm_offset: responses.hhdm_offset,
        usable,
        rsdp_phys,
        kernel_physical_base: responses.kernel_physical_base,
        kernel_virtual_base: responses.kernel_virtual_base,
        cmdline,
        cpus,
        madt_cpus: madt.enabled,
        apic_mode,
        bsp_lapic_id,
        timestamp_hz,
        allocator,
        heap_bytes,
    });
    print_boot_record(info);
    // From here on the bootstrap CPU runs with interrupts on, like the
    // others do when they run a job.
    arch::interrupts::enable();
    exit(main(info))
}

fn usable_regions(entries: &[&limine::memmap::Entry]) -> &'static [MemoryRegion] {
    let (regions, count) = USABLE.call_once(|| {
        let mut regions = [MemoryRegion { start: 0, length: 0 }; MAX_USABLE_REGIONS];
        let mut count = 0;
        for entry in entries.iter().filter(|e| e.type_ == MEMMAP_USABLE) {
            if count == MAX_USABLE_REGIONS {
                println!("boot: more than {MAX_USABLE_REGIONS} usable regions; ignoring the rest");
                break;
            }
            regions[count] = MemoryRegion { start: entry.base, length: entry.length };
            count += 1;
        }
        regions[..count].sort_unstable_by_key(|r| r.start);
        (regions, count)
    });
    &regions[..*count]
}

fn print_boot_record(info: &BootInfo) {
    println!(
        "BOOT {{\"bootloader\":{},\"base_revision\":{},\"cpus\":{},\"madt_cpus\":{},\"apic\":\"{}\",\"bsp_lapic_id\":{},\"hhdm\":\"{:#x}\",\"usable_bytes\":{},\"timestamp_hz\":{},\"alloc\":\"{}\",\"heap_bytes\":{},\"cmdline\":{}}}",
        JsonStr(&info.bootloader()),
        info.base_revision,
        info.cpus,
        info.madt_cpus,
        info.apic_mode.name(),
        info.bsp_lapic_id,
        info.hhdm_offset,
        info.usable_bytes(),
        info.timestamp_hz,
        info.allocator.name,
        info.heap_bytes,
        JsonStr(info.cmdline.raw()),
    );
}

/// What boot found; panics if called before boot finished.
pub fn info() -> &'static BootInfo {
    BOOT_INFO.get().expect("boot::info is available once boot finished")
}
