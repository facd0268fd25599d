//! The per-CPU blocks: one cache-line-aligned block per CPU in one static
//! array, found through the GS base. This is the kernel's one mechanism for
//! per-CPU state: shared fields are atomics; state only the owning CPU may
//! touch sits in a [`CpuLocalCell`], reachable only through a [`ThisCpu`]
//! handle, which exists only while local interrupts are masked.
use core::{
    cell::{Cell, UnsafeCell},
    marker::PhantomData,
    mem::offset_of,
    sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
};

use super::nmi_slot::{Interrupted, NmiSlot};
use crate::{
    arch::{self, CpuArchState, interrupts::IrqGuard},
    timer::CpuTimer,
};

/// The most CPUs the kernel runs on (QEMU's `-smp` up to 128): the heap
/// core's constant, so the two can never disagree.
pub use slab_core::MAX_CPUS;

/// One CPU's block. `#[repr(C)]` because the arch code reaches the first
/// three words through GS.
#[repr(C, align(64))]
pub struct Cpu {
    /// This block's own address (read through `gs:[0]`).
    self_address: AtomicUsize,
    /// The CPU's index, 0 for the bootstrap CPU (read through `gs:[8]`).
    index: usize,
    /// The heap's slot word for this CPU (`slab_core::Platform::this_cpu_word`;
    /// read and written through `gs:[16]` by this CPU, written by the
    /// heap's mode switch at boot for every CPU).
    heap_word: AtomicUsize,
    lapic_id: AtomicU32,
    online: AtomicBool,
    /// Where the last NMI dump found this CPU (written by it, read by any).
    nmi: NmiSlot,
    arch: CpuArchState,
    timer: CpuTimer,
}

const _: () = assert!(offset_of!(Cpu, self_address) == arch::BLOCK_SELF_OFFSET);
const _: () = assert!(offset_of!(Cpu, index) == arch::BLOCK_INDEX_OFFSET);
const _: () = assert!(offset_of!(Cpu, heap_word) == arch::BLOCK_HEAP_WORD_OFFSET);

static CPUS: [Cpu; MAX_CPUS] = {
    let mut cpus = [const { Cpu::new() }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i].index = i;
        cpus[i].heap_word = AtomicUsize::new(slab_core::initial_cpu_word(i));
        i += 1;
    }
    cpus
};

/// Set once the bootstrap CPU's block is installed; before that, nothing may
/// read GS.
static BLOCKS_INSTALLED: AtomicBool = AtomicBool::new(false);
static ONLINE_CPUS: AtomicUsize = AtomicUsize::new(0);

impl Cpu {
    const fn new() -> Self {
        Self {
            self_address: AtomicUsize::new(0),
            index: 0,
            heap_word: AtomicUsize::new(0),
            lapic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            nmi: NmiSlot::new(),
            arch: CpuArchState::new(),
            timer: CpuTimer::new(),
        }
    }

    /// The CPU's index (0 is the bootstrap CPU).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The CPU's local APIC id.
    pub fn lapic_id(&self) -> u32 {
        self.lapic_id.load(Ordering::Acquire)
    }

    /// Whether the CPU has finished its bring-up.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Where the NMI dump found this CPU.
    pub fn nmi_slot(&self) -> &NmiSlot {
        &self.nmi
    }

    /// The CPU's timer state (tick count, heap churn counters).
    pub fn timer(&self) -> &CpuTimer {
        &self.timer
    }
}

/// The block of CPU `index`, for the fields any CPU may read.
pub fn cpu(index: usize) -> &'static Cpu {
    &CPUS[index]
}

/// Number of CPUs online.
pub fn online_cpus() -> usize {
    ONLINE_CPUS.load(Ordering::Acquire)
}

/// The running CPU's index; one load through GS.
#[inline(always)]
pub fn current_cpu_index() -> usize {
    arch::current_cpu_index()
}

/// Returns the running CPU's heap slot word and leaves
/// `slab_core::BUSY_CPU_WORD` in its place: a load and a store through GS
/// (the busy word is the store's immediate).
#[inline(always)]
pub fn take_this_cpu_heap_word() -> usize {
    const BUSY: u32 = {
        assert!(slab_core::BUSY_CPU_WORD <= i32::MAX as usize, "an imm32 of a 64-bit mov");
        slab_core::BUSY_CPU_WORD as u32
    };
    let word = arch::current_heap_word();
    arch::set_current_heap_word_to::<BUSY>();
    word
}

/// Sets the running CPU's heap slot word; one store through GS.
#[inline(always)]
pub fn set_this_cpu_heap_word(word: usize) {
    arch::set_current_heap_word(word);
}

/// Sets CPU `index`'s heap slot word (the heap's mode switch, at boot).
pub fn set_heap_word(index: usize, word: usize) {
    CPUS[index].heap_word.store(word, Ordering::Relaxed);
}

/// The running CPU's index, or `None` this early in boot (the panic handler
/// uses it).
pub fn try_current_cpu_index() -> Option<usize> {
    BLOCKS_INSTALLED.load(Ordering::Acquire).then(current_cpu_index)
}

/// Records in the running CPU's own NMI slot where the NMI of dump `round`
/// found it (from the NMI handler: no lock, no allocation).
pub fn record_nmi_on_this_cpu(round: u64, at: &Interrupted) {
    CPUS[current_cpu_index()].nmi.record(round, at);
}

/// Installs block `index` on the running CPU and loads its descriptor tables.
///
/// # Safety
/// Each index is installed once, on one CPU, and never on another.
pub(super) unsafe fn install(index: usize) -> &'static Cpu {
    let cpu = &CPUS[index];
    cpu.self_address.store(cpu as *const Cpu as usize, Ordering::Relaxed);
    arch::init_cpu_tables(&cpu.arch, index);
    // SAFETY: `cpu` is CPU `index`'s block, a static with its own address
    // and index written above; the caller guarantees no other CPU uses it.
    unsafe { arch::install_cpu_base(cpu as *const Cpu as usize) };
    cpu
}

/// Makes the running CPU CPU 0: installs its block and tables.
pub fn init_bootstrap_cpu() {
    // SAFETY: called once, by boot::start on the bootstrap CPU, before any
    // application processor runs.
    unsafe { install(0) };
    BLOCKS_INSTALLED.store(true, Ordering::Release);
}

/// Records that the running CPU is fully up.
pub(super) fn mark_online(this: &ThisCpu<'_>, lapic_id: u32) {
    this.cpu.lapic_id.store(lapic_id, Ordering::Release);
    this.cpu.online.store(true, Ordering::Release);
    ONLINE_CPUS.fetch_add(1, Ordering::AcqRel);
}

/// The running CPU's block, with access to its CPU-local state. It borrows
/// an [`IrqGuard`]: while it lives, this code cannot be interrupted on this
/// CPU (except by an NMI, whose handler touches no CPU-local state).
pub struct ThisCpu<'guard> {
    cpu: &'static Cpu,
    _irqs_masked: PhantomData<&'guard IrqGuard>,
}

impl<'guard> ThisCpu<'guard> {
    /// The running CPU, for as long as `guard` keeps interrupts masked.
    pub fn new(_guard: &'guard IrqGuard) -> Self {
        let base = arch::current_cpu_base();
        let index = (base - CPUS.as_ptr() as usize) / size_of::<Cpu>();
        Self { cpu: &CPUS[index], _irqs_masked: PhantomData }
    }

    /// The CPU's index.
    pub fn index(&self) -> usize {
        self.cpu.index
    }

    /// The architecture's part of the block.
    pub fn arch(&self) -> &'static CpuArchState {
        &self.cpu.arch
    }

    /// The CPU's timer state.
    pub fn timer(&self) -> &'static CpuTimer {
        &self.cpu.timer
    }
}

/// Runs `f` with the running CPU's block, interrupts masked meanwhile.
pub fn with_this_cpu<R>(f: impl FnOnce(&ThisCpu<'_>) -> R) -> R {
    let guard = IrqGuard::new();
    f(&ThisCpu::new(&guard))
}

/// State that only its own CPU touches, with interrupts masked. A value of
/// this type is a field of a [`Cpu`] block (directly or in its arch part).
pub struct CpuLocalCell<T> {
    value: UnsafeCell<T>,
    borrowed: Cell<bool>,
}

// SAFETY: the value is reached only through `with`, which checks that the
// cell lies in the block of the CPU that runs it and requires a `ThisCpu`,
// which exists only while that CPU's interrupts are masked; so at most one
// context on one CPU touches it at a time (the `borrowed` flag catches
// re-entry from the same context).
unsafe impl<T> Sync for CpuLocalCell<T> {}

impl<T> CpuLocalCell<T> {
    pub const fn new(value: T) -> Self {
        Self { value: UnsafeCell::new(value), borrowed: Cell::new(false) }
    }

    /// Runs `f` on the value. Panics if the cell is not in `this` CPU's block
    /// or is already borrowed.
    pub fn with<R>(&self, this: &ThisCpu<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(
            self.belongs_to(this),
            "CPU-local state of another CPU used on CPU {}",
            this.index()
        );
        assert!(!self.borrowed.get(), "CPU-local state re-entered on CPU {}", this.index());
        self.borrow(f)
    }

    /// Like [`Self::with`], but `None` instead of a panic: for the panic
    /// path, which must not panic again.
    pub fn try_with<R>(&self, this: &ThisCpu<'_>, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        (self.belongs_to(this) && !self.borrowed.get()).then(|| self.borrow(f))
    }

    fn belongs_to(&self, this: &ThisCpu<'_>) -> bool {
        let block = this.cpu as *const Cpu as usize;
        (self as *const Self as usize).wrapping_sub(block) < size_of::<Cpu>()
    }

    /// Callers have checked `belongs_to` and that no borrow is live.
    fn borrow<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.borrowed.set(true);
        // SAFETY: the callers checked that the cell is in the running CPU's
        // block and not borrowed; interrupts are masked (they hold a
        // `ThisCpu`, which borrows an IrqGuard), so no other context can
        // reach it until the flag is cleared: this is the only reference.
        let result = f(unsafe { &mut *self.value.get() });
        self.borrowed.set(false);
        result
    }
}

/// Records that the bootstrap CPU is fully up (its local APIC id known).
pub fn mark_bootstrap_online(lapic_id: u32) {
    with_this_cpu(|this| mark_online(this, lapic_id));
}
