//! Boot: every CPU the bootloader reported is online, with its own per-CPU
//! block, and runs code when asked.
#![no_std]
#![no_main]
#![feature(custom_test_frameworks)]
#![test_runner(kernel::testing::run_tests)]
#![reexport_test_harness_main = "test_main"]

use kernel::{
    ExitCode,
    arch::paging,
    boot::{
        BASE_REVISION_OLDEST, BASE_REVISION_WANTED, BootInfo,
        revision::{
            BaseRevisionTag, Bootloader, RevisionError, RsdpAddressError, rsdp_physical,
            served_base_revision,
        },
    },
    smp,
};
use x86_64::PhysAddr;

kernel::entry_point!(main);

fn main(_boot: &'static BootInfo) -> ExitCode {
    test_main();
    ExitCode::Success
}

#[test_case]
fn every_cpu_runs_the_job_with_its_own_index() {
    let results = smp::run_on_all_cpus(|_| smp::current_cpu_index());
    assert_eq!(results.len(), smp::online_cpus());
    for (cpu, index) in results.iter() {
        assert_eq!(*index, cpu, "cpu {cpu} reported index {index}");
    }
}

#[test_case]
fn cpu_count_matches_the_madt() {
    let boot = kernel::boot::info();
    assert_eq!(boot.cpus, boot.madt_cpus, "MP response and MADT disagree");
}

#[test_case]
fn lapic_ids_are_distinct() {
    let cpus = smp::online_cpus();
    for a in 0..cpus {
        for b in a + 1..cpus {
            let (ia, ib) = (smp::cpu(a).lapic_id(), smp::cpu(b).lapic_id());
            assert_ne!(ia, ib, "cpu {a} and cpu {b} share lapic id {ia}");
        }
    }
}

#[test_case]
fn the_served_base_revision_is_one_the_kernel_runs_under() {
    let boot = kernel::boot::info();
    assert!(
        (BASE_REVISION_OLDEST..=BASE_REVISION_WANTED).contains(&boot.base_revision),
        "{} served base revision {}",
        boot.bootloader(),
        boot.base_revision
    );
}

#[test_case]
fn the_rsdp_address_is_physical_under_every_revision() {
    let boot = kernel::boot::info();
    let rsdp = paging::map_firmware_tables(PhysAddr::new(boot.rsdp_phys), 8);
    // SAFETY: map_firmware_tables mapped the 8 bytes at `rsdp` read-only.
    let signature = unsafe { core::ptr::read_volatile(rsdp.as_ptr::<[u8; 8]>()) };
    assert_eq!(
        &signature, b"RSD PTR ",
        "no RSDP at physical {:#x} (base revision {})",
        boot.rsdp_phys, boot.base_revision
    );
}

#[test_case]
fn the_served_revision_comes_from_the_tag_or_the_limine_release() {
    let limine = |version| Some(Bootloader { name: "Limine", version });
    let tag = |wanted_is_served, reported| BaseRevisionTag { wanted_is_served, reported };
    let cases = [
        // Served as asked, with or without saying so.
        (tag(true, None), limine("9.3.0"), Ok(3)),
        (tag(true, Some(3)), limine("10.0.0"), Ok(3)),
        // Not served; the bootloader says which one it used.
        (tag(false, Some(2)), None, Ok(2)),
        (tag(false, Some(1)), limine("9.0.0"), Err(RevisionError::Unsupported { served: 1 })),
        (tag(false, Some(4)), limine("10.0.0"), Err(RevisionError::Unsupported { served: 4 })),
        // Not served, not said: Limine 7.5 to 8.x load with revision 2.
        (tag(false, None), limine("8.2.0"), Ok(2)),
        (tag(false, None), limine("7.5.3"), Ok(2)),
        (tag(false, None), limine("8"), Ok(2)),
        (
            tag(false, None),
            limine("7.4.1"),
            Err(RevisionError::Unreported(Bootloader { name: "Limine", version: "7.4.1" })),
        ),
        (
            tag(false, None),
            Some(Bootloader { name: "other", version: "8.2.0" }),
            Err(RevisionError::Unreported(Bootloader { name: "other", version: "8.2.0" })),
        ),
        (tag(false, None), None, Err(RevisionError::NoBootloader)),
    ];
    for (tag, bootloader, expected) in cases {
        assert_eq!(served_base_revision(tag, bootloader), expected, "{tag:?} {bootloader:?}");
    }
}

#[test_case]
fn the_rsdp_response_is_an_hhdm_address_before_revision_3() {
    let hhdm = 0xffff_8000_0000_0000;
    assert_eq!(rsdp_physical(0xf_5a20, 3, hhdm), Ok(0xf_5a20));
    assert_eq!(rsdp_physical(hhdm + 0xf_5a20, 2, hhdm), Ok(0xf_5a20));
    let error = rsdp_physical(0xf_5a20, 2, hhdm).unwrap_err();
    assert_eq!(error, RsdpAddressError { address: 0xf_5a20, hhdm_offset: hhdm, base_revision: 2 });
}
