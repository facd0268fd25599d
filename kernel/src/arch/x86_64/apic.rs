//! The local APIC of each CPU, through the `x2apic` crate: x2APIC where the
//! CPU has it (MSR access), xAPIC otherwise (MMIO, mapped once by the
//! bootstrap CPU). QEMU 7.2 under TCG offers only xAPIC.
//!
//! The timer runs in periodic mode, programmed through the crate's register
//! accessors, which are the same for xAPIC (MMIO) and x2APIC (MSRs). The
//! TSC-deadline mode is not used: it is one-shot (the handler would re-arm
//! the `IA32_TSC_DEADLINE` MSR every tick) and not every CPU model has it.
use ::x86_64::{PhysAddr, registers::model_specific::Msr};
use core::sync::atomic::{AtomicU64, Ordering};
use x2apic::lapic::{IpiAllShorthand, LocalApic, LocalApicBuilder, TimerDivide, TimerMode};

use super::cpu::read_timestamp;

use crate::smp::{CpuLocalCell, ThisCpu};

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of the IPI that only wakes a halted CPU.
pub const WAKEUP_VECTOR: u8 = 0xf0;
/// Vector of the IPI that asks a CPU to drain its heap caches.
pub const RECLAIM_VECTOR: u8 = 0xf1;
/// Vector of local APIC errors.
pub const ERROR_VECTOR: u8 = 0xfe;
/// Vector of spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE_MSR: u32 = 0x1b;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const XAPIC_MMIO_BYTES: u64 = 4096;
/// The LINT1 local vector table entry: xAPIC register offset, x2APIC MSR.
const XAPIC_LVT_LINT1_OFFSET: u64 = 0x360;
const X2APIC_LVT_LINT1_MSR: u32 = 0x835;
/// LVT value: deliver as an NMI (delivery mode 0b100), edge, not masked.
const LVT_DELIVER_NMI: u32 = 0b100 << 8;

/// The timer's divider: its count runs at the APIC clock over 16 (62.5 MHz
/// under QEMU), so one tick of the counter is a few cycles and a 32-bit
/// count covers over a minute.
const TIMER_DIVIDE: TimerDivide = TimerDivide::Div16;
/// Timer calibration windows measured; the median counts.
const TIMER_CALIBRATION_WINDOWS: usize = 5;
/// Length of one calibration window, in thousandths of a second.
const TIMER_CALIBRATION_WINDOW_MS: u64 = 2;

/// How this machine's local APICs are programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    X2Apic,
    XApic,
}

impl ApicMode {
    /// The name used in the `BOOT` record.
    pub fn name(self) -> &'static str {
        match self {
            Self::X2Apic => "x2apic",
            Self::XApic => "xapic",
        }
    }
}

/// The slot in each per-CPU block that holds its local APIC.
pub type LocalApicCell = CpuLocalCell<Option<LocalApic>>;

/// Virtual address of the xAPIC registers (0 in x2APIC mode or before
/// [`map_registers`]).
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

/// On the bootstrap CPU, before any CPU calls [`init_this_cpu`]: maps the
/// xAPIC register page when the CPU has no x2APIC.
pub fn map_registers() {
    if has_x2apic() {
        return;
    }
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no
    // side effects.
    let base = unsafe { Msr::new(IA32_APIC_BASE_MSR).read() } & APIC_BASE_ADDRESS_MASK;
    let virt = super::paging::map_device(PhysAddr::new(base), XAPIC_MMIO_BYTES);
    XAPIC_BASE.store(virt.as_u64(), Ordering::Release);
}

fn has_x2apic() -> bool {
    const CPUID_X2APIC_BIT: u32 = 1 << 21;
    // CPUID leaf 1 exists on every x86_64 CPU.
    core::arch::x86_64::__cpuid(1).ecx & CPUID_X2APIC_BIT != 0
}

/// Enables the running CPU's local APIC with its timer stopped and stores it
/// in the CPU's block. Returns the mode and the APIC id.
pub fn init_this_cpu(this: &ThisCpu<'_>) -> (ApicMode, u32) {
    let mut builder = LocalApicBuilder::new();
    builder
        .timer_vector(TIMER_VECTOR.into())
        .error_vector(ERROR_VECTOR.into())
        .spurious_vector(SPURIOUS_VECTOR.into())
        .timer_mode(TimerMode::OneShot)
        .timer_initial(0);
    let base = XAPIC_BASE.load(Ordering::Acquire);
    if base != 0 {
        builder.set_xapic_base(base);
    }
    let mut apic = builder.build().unwrap_or_else(|why| panic!("local APIC: {why}"));
    // The builder picks x2APIC exactly when the CPU has it.
    let mode = if has_x2apic() { ApicMode::X2Apic } else { ApicMode::XApic };
    // SAFETY: the APIC belongs to this CPU (built here, stored in this CPU's
    // block); in xAPIC mode its registers were mapped by `map_registers`.
    // Enabling it with a stopped one-shot timer and masked LINT pins
    // delivers nothing until an IPI or the timer is programmed (LINT1 is
    // made an NMI pin right after).
    let id = unsafe {
        apic.enable();
        apic.disable_timer();
        apic.id()
    };
    let id = if mode == ApicMode::XApic { id >> 24 } else { id };
    this.arch().local_apic.with(this, |slot| *slot = Some(apic));
    route_lint1_to_nmi(mode);
    (mode, id)
}

/// Makes the LINT1 pin deliver an NMI, as PC firmware sets it up: QEMU's
/// `inject-nmi` (the runner's hang dump) arrives through LINT1 on every CPU,
/// and the `x2apic` crate leaves the pin as fixed vector 0.
fn route_lint1_to_nmi(mode: ApicMode) {
    match mode {
        // SAFETY: LVT LINT1 exists on every local APIC (MSR 0x835 in x2APIC
        // mode, enabled by `init_this_cpu`); NMI delivery only runs the NMI
        // handler, installed before the APIC is enabled.
        ApicMode::X2Apic => unsafe {
            Msr::new(X2APIC_LVT_LINT1_MSR).write(u64::from(LVT_DELIVER_NMI))
        },
        ApicMode::XApic => {
            let register = XAPIC_BASE.load(Ordering::Acquire) + XAPIC_LVT_LINT1_OFFSET;
            // SAFETY: `map_registers` mapped the xAPIC page uncached at
            // XAPIC_BASE (xAPIC mode only); LVT LINT1 is a 32-bit register
            // in it, this CPU's own; the value is as above.
            unsafe { core::ptr::write_volatile(register as *mut u32, LVT_DELIVER_NMI) };
        }
    }
}

fn with_apic<R>(this: &ThisCpu<'_>, f: impl FnOnce(&mut LocalApic) -> R) -> R {
    this.arch()
        .local_apic
        .with(this, |slot| f(slot.as_mut().expect("local APIC used before init_this_cpu")))
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt(this: &ThisCpu<'_>) {
    // SAFETY: called from an interrupt handler for an APIC-delivered vector
    // on this CPU; writing EOI acknowledges exactly that interrupt.
    with_apic(this, |apic| unsafe { apic.end_of_interrupt() });
}

/// Sends the fixed interrupt `vector` to the CPU whose APIC id is `apic_id`.
pub fn send_ipi(this: &ThisCpu<'_>, vector: u8, apic_id: u32) {
    // In xAPIC mode the destination is the top byte of the ICR's high word.
    let destination = if has_x2apic() { apic_id } else { apic_id << 24 };
    // SAFETY: `vector` is one this kernel's IDT handles; a fixed IPI has no
    // effect beyond running that handler on the target.
    with_apic(this, |apic| unsafe { apic.send_ipi(vector, destination) });
}

/// Sends an NMI to every CPU but this one, if this CPU's APIC is usable
/// right now (the panic path calls this, so it never panics itself).
pub fn try_send_nmi_to_others(this: &ThisCpu<'_>) -> bool {
    this.arch()
        .local_apic
        .try_with(this, |slot| {
            let Some(apic) = slot.as_mut() else {
                return false;
            };
            // SAFETY: the NMI handler is installed on every CPU before it is
            // marked online; an NMI only makes the others run it.
            unsafe { apic.send_nmi_all(IpiAllShorthand::AllExcludingSelf) };
            true
        })
        .unwrap_or(false)
}

/// Measures this CPU's local APIC timer against the timestamp counter, whose
/// frequency is `timestamp_hz`: the timer's count rate in ticks per second
/// (at the divider [`start_periodic_timer`] uses), or `None` if the timer
/// does not count. Leaves the timer stopped.
pub fn measure_timer_hz(this: &ThisCpu<'_>, timestamp_hz: u64) -> Option<u64> {
    let window_cycles =
        (u128::from(timestamp_hz) * u128::from(TIMER_CALIBRATION_WINDOW_MS) / 1000) as u64;
    let mut estimates = [0u64; TIMER_CALIBRATION_WINDOWS];
    for estimate in &mut estimates {
        *estimate = with_apic(this, |apic| {
            // SAFETY: this CPU's APIC; a masked one-shot countdown delivers
            // no interrupt, and the timer is stopped again below.
            let (counted, start, end) = unsafe {
                apic.disable_timer();
                apic.set_timer_divide(TIMER_DIVIDE);
                apic.set_timer_mode(TimerMode::OneShot);
                let start = read_timestamp();
                apic.set_timer_initial(u32::MAX);
                while read_timestamp() - start < window_cycles {
                    core::hint::spin_loop();
                }
                let counted = u32::MAX - apic.timer_current();
                let end = read_timestamp();
                apic.set_timer_initial(0);
                (counted, start, end)
            };
            u128::from(counted) * u128::from(timestamp_hz) / u128::from(end - start).max(1)
        }) as u64;
    }
    estimates.sort_unstable();
    let median = estimates[TIMER_CALIBRATION_WINDOWS / 2];
    (median != 0).then_some(median)
}

/// Starts this CPU's timer in periodic mode: an interrupt on
/// [`TIMER_VECTOR`] every `count` timer ticks (at the rate
/// [`measure_timer_hz`] measured).
pub fn start_periodic_timer(this: &ThisCpu<'_>, count: u32) {
    // SAFETY: this CPU's APIC; the timer vector's handler is in the IDT of
    // every CPU, and the count is written before the timer is unmasked.
    with_apic(this, |apic| unsafe {
        apic.disable_timer();
        apic.set_timer_divide(TIMER_DIVIDE);
        apic.set_timer_mode(TimerMode::Periodic);
        apic.set_timer_initial(count);
        apic.enable_timer();
    });
}

/// Stops this CPU's timer (an interrupt already pending is still delivered).
pub fn stop_timer(this: &ThisCpu<'_>) {
    // SAFETY: this CPU's APIC; masking the timer and clearing its count
    // only stops it.
    with_apic(this, |apic| unsafe {
        apic.disable_timer();
        apic.set_timer_initial(0);
    });
}
