//! The periodic tick: every CPU's local APIC timer at `timer_hz` (default
//! 10 kHz), calibrated against the timestamp counter, each tick counted per
//! CPU and, on request, used to exercise the heap from interrupt context
//! ([`TickWork::HeapChurn`], `heap::irq_churn`). Code that wants ticks starts
//! and stops them on every CPU at once, from CPU 0.
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use spin::Once;

use crate::{
    arch::apic,
    cmdline::Cmdline,
    heap::{IrqChurnCpu, irq_churn},
    smp::{self, ThisCpu},
    time,
};

/// The tick rate when the command line names none, up to 16 CPUs.
pub const DEFAULT_TIMER_HZ: u32 = 10_000;
/// Above 16 CPUs the default rate shrinks so that all CPUs together get
/// this many ticks per second (1250 Hz each at 128 CPUs): at 128 CPUs and
/// 10 kHz, QEMU's TCG on a 2-core host spent all its time in the handlers
/// and `tests/irq_alloc.rs` made no progress in 120 s; at 1 kHz it passed in
/// 44 s.
pub const DEFAULT_TOTAL_TICKS_PER_SECOND: u32 = 16 * DEFAULT_TIMER_HZ;

/// The default tick rate on `cpus` CPUs.
pub fn default_timer_hz(cpus: usize) -> u32 {
    let cpus = u32::try_from(cpus.max(1)).unwrap_or(u32::MAX);
    DEFAULT_TIMER_HZ.min(DEFAULT_TOTAL_TICKS_PER_SECOND / cpus).max(1)
}
/// The highest rate `timer_hz` accepts (QEMU clamps shorter periods).
pub const MAX_TIMER_HZ: u32 = 100_000;

/// The rate from the command line (`timer_hz`), set at boot.
static CONFIGURED_HZ: AtomicU32 = AtomicU32::new(DEFAULT_TIMER_HZ);
/// The local APIC timer's count rate, measured on first use.
static TIMER_COUNT_HZ: Once<Option<u64>> = Once::new();
/// What each tick does, a [`TickWork`] as a number.
static WORK: AtomicU8 = AtomicU8::new(TickWork::CountOnly as u8);

/// What every CPU does on each tick besides counting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TickWork {
    /// Nothing.
    CountOnly = 0,
    /// Allocate, fill, check and free heap objects (`heap::irq_churn`).
    HeapChurn = 1,
}

/// Why the timer cannot run as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerError {
    /// `timer_hz=` is not a number in `1..=MAX_TIMER_HZ`.
    BadRate(&'static str),
    /// The local APIC timer did not count during calibration.
    NotCounting,
    /// The rate cannot be made from the timer's count rate.
    RateOutOfRange { hz: u32, timer_count_hz: u64 },
}

impl core::fmt::Display for TimerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadRate(text) => {
                write!(f, "timer_hz={text}: not a rate in Hz from 1 to {MAX_TIMER_HZ}")
            }
            Self::NotCounting => f.write_str("the local APIC timer does not count"),
            Self::RateOutOfRange { hz, timer_count_hz } => write!(
                f,
                "{hz} Hz cannot be made from a local APIC timer counting at {timer_count_hz} Hz"
            ),
        }
    }
}

/// One CPU's timer state, in its per-CPU block: the ticks it took (written
/// by its own tick handler only, read by anyone) and its heap churn.
pub struct CpuTimer {
    ticks: AtomicU64,
    churn: IrqChurnCpu,
}

impl CpuTimer {
    pub const fn new() -> Self {
        Self { ticks: AtomicU64::new(0), churn: IrqChurnCpu::new() }
    }

    /// Ticks this CPU has taken since boot.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// The CPU's heap churn (its counters; its objects only through
    /// `heap::irq_churn` on that CPU).
    pub fn churn(&self) -> &IrqChurnCpu {
        &self.churn
    }
}

impl Default for CpuTimer {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads `timer_hz` from the command line (at boot).
pub fn configure(cmdline: &Cmdline) -> Result<u32, TimerError> {
    let hz = match cmdline.get("timer_hz") {
        None => default_timer_hz(smp::online_cpus()),
        Some(text) => text
            .parse()
            .ok()
            .filter(|hz| (1..=MAX_TIMER_HZ).contains(hz))
            .ok_or(TimerError::BadRate(text))?,
    };
    CONFIGURED_HZ.store(hz, Ordering::Relaxed);
    Ok(hz)
}

/// The rate `timer_hz` asked for (default [`default_timer_hz`]).
pub fn configured_hz() -> u32 {
    CONFIGURED_HZ.load(Ordering::Relaxed)
}

/// The local APIC timer's count rate, measured on the first call (on the
/// calling CPU, against the calibrated timestamp counter, a few ms).
pub fn timer_count_hz() -> Result<u64, TimerError> {
    let measured = TIMER_COUNT_HZ.call_once(|| {
        smp::with_this_cpu(|this| apic::measure_timer_hz(this, time::timestamp_hz()))
    });
    measured.ok_or(TimerError::NotCounting)
}

/// Starts the periodic timer at `hz` on every online CPU, each tick doing
/// `work`. Call it from CPU 0, not inside a job.
pub fn start_on_every_cpu(hz: u32, work: TickWork) -> Result<(), TimerError> {
    let count = initial_count(hz)?;
    WORK.store(work as u8, Ordering::SeqCst);
    smp::run_on_all_cpus(|_| smp::with_this_cpu(|this| apic::start_periodic_timer(this, count)));
    Ok(())
}

/// Starts the periodic timer at `hz` on the running CPU alone, its ticks
/// only counted (from inside a job; the other CPUs' timers are left as
/// they are). Stop it with [`stop_on_this_cpu`].
pub fn start_on_this_cpu(hz: u32) -> Result<(), TimerError> {
    let count = initial_count(hz)?;
    WORK.store(TickWork::CountOnly as u8, Ordering::SeqCst);
    smp::with_this_cpu(|this| apic::start_periodic_timer(this, count));
    Ok(())
}

/// Stops the running CPU's timer (from inside a job).
pub fn stop_on_this_cpu() {
    smp::with_this_cpu(apic::stop_timer);
}

/// The timer's initial count for `hz`.
fn initial_count(hz: u32) -> Result<u32, TimerError> {
    let timer_count_hz = timer_count_hz()?;
    u32::try_from(timer_count_hz / u64::from(hz.max(1)))
        .ok()
        .filter(|&count| count > 0)
        .ok_or(TimerError::RateOutOfRange { hz, timer_count_hz })
}

/// Stops the timer on every online CPU and gives back the objects the heap
/// churn still holds (checked first). Call it from CPU 0, not inside a job.
pub fn stop_on_every_cpu() {
    // From here on a late tick only counts.
    WORK.store(TickWork::CountOnly as u8, Ordering::SeqCst);
    smp::run_on_all_cpus(|_| {
        smp::with_this_cpu(|this| {
            apic::stop_timer(this);
            irq_churn::release_held_objects(this);
        })
    });
}

/// Ticks CPU `cpu` has taken since boot.
pub fn ticks(cpu: usize) -> u64 {
    smp::cpu(cpu).timer().ticks()
}

/// The tick handler's work, on the CPU that took the tick (interrupts
/// masked, in the timer interrupt).
pub fn on_tick(this: &ThisCpu<'_>) {
    let timer = this.timer();
    timer.ticks.store(timer.ticks.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    if WORK.load(Ordering::Relaxed) == TickWork::HeapChurn as u8 {
        irq_churn::on_tick(this);
    }
}
