//! The one way to run code on every CPU: [`run_on_all_cpus`] hands a closure
//! to every online CPU, lets them all start together behind a barrier, and
//! collects each CPU's result. A panic on any CPU ends the run through the
//! panic handler, which names that CPU.
//!
//! Idle application processors wait in [`serve_jobs`], halted until a
//! wake-up IPI, so they cost the host nothing under emulation. Jobs run with
//! local interrupts enabled on every CPU.
use core::{
    cell::UnsafeCell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use super::{MAX_CPUS, cpu, current_cpu_index, online_cpus, with_this_cpu};
use crate::arch::{self, apic, interrupts};

/// The job every CPU runs: a pointer to a `&dyn Fn(usize)` on the caller's
/// stack, valid while `PENDING` is non-zero.
static JOB: AtomicUsize = AtomicUsize::new(0);
/// Bumped once per job; an idle CPU runs the job when it sees a new value.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// CPUs that have reached the start barrier of the current job.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// CPUs that have not finished the current job.
static PENDING: AtomicUsize = AtomicUsize::new(0);

type JobFn<'a> = &'a (dyn Fn(usize) + Sync);

/// Each CPU's result, by CPU index.
pub struct CpuResults<R> {
    results: [Option<R>; MAX_CPUS],
    cpus: usize,
}

impl<R> CpuResults<R> {
    /// Number of CPUs that ran the job.
    pub fn len(&self) -> usize {
        self.cpus
    }

    /// Whether no CPU ran the job (never: at least the caller does).
    pub fn is_empty(&self) -> bool {
        self.cpus == 0
    }

    /// CPU `index`'s result.
    pub fn get(&self, index: usize) -> &R {
        self.results[index].as_ref().expect("every online CPU stores a result")
    }

    /// `(cpu index, result)` for every CPU, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &R)> {
        (0..self.cpus).map(|i| (i, self.get(i)))
    }
}

/// One result slot per CPU, each written only by its own CPU.
struct ResultSlots<R>([UnsafeCell<Option<R>>; MAX_CPUS]);

// SAFETY: slot `i` is written only by CPU `i` while the job runs, and read by
// the caller only after every CPU has decremented PENDING (Release), which
// the caller observes with Acquire.
unsafe impl<R: Send> Sync for ResultSlots<R> {}

impl<R> ResultSlots<R> {
    /// Stores CPU `index`'s result; only CPU `index` calls this.
    fn store(&self, index: usize, result: R) {
        // SAFETY: see the `Sync` impl: slot `index` has one writer, this
        // CPU, and no reader until the job is over.
        unsafe { *self.0[index].get() = Some(result) };
    }
}

/// Runs `f(cpu_index)` on every online CPU at once and returns the results.
/// All CPUs pass a start barrier before calling `f`. Call it from CPU 0,
/// not from inside a job.
pub fn run_on_all_cpus<R: Send>(f: impl Fn(usize) -> R + Sync) -> CpuResults<R> {
    assert_eq!(current_cpu_index(), 0, "run_on_all_cpus is called from CPU 0");
    assert_eq!(PENDING.load(Ordering::Acquire), 0, "run_on_all_cpus is not re-entrant");
    let cpus = online_cpus();
    let slots = ResultSlots([const { UnsafeCell::new(None) }; MAX_CPUS]);
    let run = |index: usize| {
        slots.store(index, f(index));
    };
    let job: JobFn<'_> = &run;
    ARRIVED.store(0, Ordering::Relaxed);
    PENDING.store(cpus, Ordering::Relaxed);
    JOB.store(&job as *const JobFn<'_> as usize, Ordering::Relaxed);
    GENERATION.fetch_add(1, Ordering::Release);
    wake_application_processors(cpus);
    run_job(cpus);
    while PENDING.load(Ordering::Acquire) != 0 {
        arch::pause();
    }
    JOB.store(0, Ordering::Relaxed);
    let results = slots.0.map(UnsafeCell::into_inner);
    CpuResults { results, cpus }
}

fn wake_application_processors(cpus: usize) {
    with_this_cpu(|this| {
        for index in 1..cpus {
            apic::send_ipi(this, apic::WAKEUP_VECTOR, cpu(index).lapic_id());
        }
    });
}

/// Runs the current job on this CPU: barrier, job, completion.
fn run_job(cpus: usize) {
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    while ARRIVED.load(Ordering::Acquire) < cpus {
        arch::pause();
    }
    let job = JOB.load(Ordering::Relaxed) as *const JobFn<'_>;
    // SAFETY: the caller of run_on_all_cpus stored a pointer to a live
    // `JobFn` before bumping GENERATION (Release; we loaded it with Acquire)
    // and keeps it alive until PENDING reaches 0, after our decrement below.
    let job = unsafe { *job };
    job(current_cpu_index());
    PENDING.fetch_sub(1, Ordering::AcqRel);
}

/// The idle loop of every application processor: run each new job, halt in
/// between.
pub(super) fn serve_jobs() -> ! {
    let mut seen = 0;
    loop {
        let generation = GENERATION.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            // Jobs run with interrupts on, as main does on CPU 0: IPIs (heap
            // reclaim) and timer interrupts must reach a busy CPU.
            interrupts::enable();
            run_job(online_cpus());
            interrupts::disable();
        } else {
            interrupts::wait_for_interrupt();
        }
    }
}
