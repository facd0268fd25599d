//! `HostHeap`: `SlabHeap` over `HostBackend` on `HostPlatform`, started at
//! its first allocation from the environment's settings, as a
//! `GlobalAlloc`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8};

use crate::central::HeapUsage;
use crate::heap::SlabHeap;
use crate::host::backend::HostBackend;
use crate::host::platform::HostPlatform;
use crate::host::settings::Settings;
use crate::host::stderr::{Stderr, fatal};
use crate::platform::MAX_CPUS;
use crate::stats::{CpuStats, HeapStats};

/// The allocator core as a user-space global allocator (Linux, feature
/// `host`). README.md quotes the first two lines of this example (a test
/// in `tests/host.rs` checks it still does):
///
/// ```
/// #[global_allocator]
/// static HEAP: slab_core::HostHeap = slab_core::HostHeap::new();
///
/// fn main() {
///     let words: Vec<String> = "every allocation goes through HostHeap".split(' ').map(String::from).collect();
///     assert!(HEAP.stats().total.small_ops >= words.len() as u64);
/// }
/// ```
///
/// Per-thread slab caches (a thread owns one of the heap's CPU slots from
/// its first allocation to its exit; threads beyond the slots lease a
/// shared one per call) in front of TLSF over an mmap'd region that grows
/// as needed.
/// Settings come from the environment at the first allocation:
/// `SLAB_HOST_CPUS` (slots, default: 8 per CPU the process may run on),
/// `SLAB_HOST_MODE` (`slab` or `locked`), `SLAB_HOST_HEAPCHECK` (`on` or
/// `off`), `SLAB_HOST_STATS` (`1`: a `HEAPSTATS {json}` line on stderr at
/// exit), `SLAB_HOST_LOCK_WAIT` (`yield` or `spin`). A value that is not
/// one of those stops the program with a message naming it
/// (`docs/host.md`).
pub struct HostHeap {
    heap: SlabHeap<HostBackend, HostPlatform>,
    state: AtomicU8,
}

/// `HostHeap::state`: not started, starting (one thread reads the settings
/// and reserves the region), ready.
const UNSTARTED: u8 = 0;
const STARTING: u8 = 1;
const READY: u8 = 2;

/// Slots per CPU the process may run on, unless `SLAB_HOST_CPUS` says:
/// programs run more threads than CPUs, and each thread that owns a slot
/// keeps its own warm caches (on the 8-thread workload with 2 CPUs and
/// per-call leases, 16 slots ran in 0.71 s, 8 in 0.77 s, 2 in 0.95 s;
/// docs/host.md). A slot costs nothing until a thread takes it, and an
/// exiting thread's slot is drained and reused.
const SLOTS_PER_CPU: usize = 8;

/// Of `slots` slots, how many are leased per call (the rest are owned by
/// threads): one per CPU the process may run on (a thread leasing one
/// competes only with threads running at the same time), at most half of
/// them, at least one.
fn shared_slots(slots: usize, cpus: usize) -> usize {
    cpus.min(slots / 2).max(1)
}

/// The heap whose statistics are printed at exit (`SLAB_HOST_STATS=1`): the
/// first that asked; null for none.
static STATS_AT_EXIT: AtomicPtr<HostHeap> = AtomicPtr::new(ptr::null_mut());

/// The heap `before_fork` and `after_fork` hold across a fork (the first
/// to start); null for none.
static FORK_HEAP: AtomicPtr<HostHeap> = AtomicPtr::new(ptr::null_mut());
/// The heap `before_fork` took, for `after_fork` to give back (null when
/// it took none): glibc runs the handlers of one fork at a time.
static HELD_FOR_FORK: AtomicPtr<HostHeap> = AtomicPtr::new(ptr::null_mut());
/// Whether the fork handlers are registered (once per process).
static FORK_HANDLERS: AtomicBool = AtomicBool::new(false);

impl HostHeap {
    /// A heap that starts (reads its settings, reserves its address space)
    /// at its first allocation.
    pub const fn new() -> Self {
        Self {
            heap: SlabHeap::new(HostBackend::new(), HostPlatform::new()),
            state: AtomicU8::new(UNSTARTED),
        }
    }

    /// A snapshot of every slot's figures and the backend's usage (as the
    /// kernel's `HEAPSTATS`). Any thread may call it, at any time.
    pub fn stats(&self) -> HeapStats {
        self.heap.stats()
    }

    /// The backend's usage now.
    pub fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }

    /// One slot's figures, per size class (`None` past the 128th).
    pub fn cpu_stats(&self, slot: usize) -> Option<CpuStats> {
        self.heap.cpu_stats(slot)
    }

    /// The slot the calling thread owns in this heap (from its first
    /// allocation to its exit), or `None` if it leases one per call: the
    /// heap is not the process's first `HostHeap`, every owned slot was
    /// taken when the thread first allocated (and none was given back
    /// since), or the thread is exiting.
    pub fn owned_slot(&self) -> Option<usize> {
        self.heap.platform().owned_slot()
    }

    /// Takes an owned slot for this thread if it can (then `true`).
    #[inline(never)]
    fn try_own(&self) -> bool {
        self.ensure_started();
        self.heap.platform().try_own(ptr::from_ref(self).cast())
    }

    /// Starts the heap if no thread has yet.
    #[inline(always)]
    fn ensure_started(&self) {
        if self.state.load(Acquire) != READY {
            self.start();
        }
    }

    #[cold]
    #[inline(never)]
    fn start(&self) {
        match self.state.compare_exchange(UNSTARTED, STARTING, Acquire, Acquire) {
            Ok(_) => {}
            Err(READY) => return,
            Err(_) => {
                while self.state.load(Acquire) != READY {
                    std::thread::yield_now();
                }
                return;
            }
        }
        let settings = Settings::from_env().unwrap_or_else(|error| fatal(format_args!("{error}")));
        let cpus = usable_cpus();
        let slots = settings.cpus.unwrap_or_else(|| (cpus * SLOTS_PER_CPU).min(MAX_CPUS));
        self.heap.platform().configure(
            slots,
            shared_slots(slots, cpus),
            settings.lock_wait,
            give_back_thread_slot,
        );
        if let Err(failed) = self.heap.with_backend(HostBackend::reserve) {
            fatal(format_args!(
                "could not reserve the heap's address space: errno {}",
                failed.errno
            ));
        }
        {
            let _lease = self.heap.platform().lease();
            let set = self.heap.set_mode(settings.mode).is_ok()
                && self.heap.set_checking(settings.checking).is_ok();
            debug_assert!(set, "nothing is allocated before the heap starts");
        }
        self.register_fork_handlers();
        if settings.stats_at_exit && self.register_stats_at_exit() {
            // SAFETY: `print_stats_at_exit` is an `extern "C" fn()` that
            // stays valid for the life of the process.
            if unsafe { libc::atexit(print_stats_at_exit) } != 0 {
                fatal(format_args!("SLAB_HOST_STATS=1: atexit refused to register the report"));
            }
        }
        self.state.store(READY, Release);
    }

    /// Makes this heap the one the process's `pthread_atfork` handlers
    /// hold across a fork (`platform.rs`, "fork"), if no other is, and
    /// registers the handlers once per process. A failed registration
    /// stops the program: a forked child could wait for ever.
    fn register_fork_handlers(&self) {
        let this = ptr::from_ref(self).cast_mut();
        if FORK_HEAP.compare_exchange(ptr::null_mut(), this, AcqRel, Relaxed).is_err()
            || FORK_HANDLERS.swap(true, Relaxed)
        {
            return;
        }
        // SAFETY: the handlers are `extern "C" fn()`s that stay valid for
        // the life of the process.
        let registered =
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
        if registered != 0 {
            fatal(format_args!("pthread_atfork refused the fork handlers (error {registered})"));
        }
    }

    /// Makes this heap the one `print_stats_at_exit` reports; `false` if
    /// another already is.
    fn register_stats_at_exit(&self) -> bool {
        let this = ptr::from_ref(self).cast_mut();
        STATS_AT_EXIT.compare_exchange(ptr::null_mut(), this, AcqRel, Relaxed).is_ok()
    }
}

impl Default for HostHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HostHeap {
    /// A heap that is not a `static` stops being reported at exit and
    /// held across forks, and the calling thread gives back the slot it
    /// owns. Another thread that still owns one of its slots would name a
    /// dead heap at its exit: that stops the program. No other thread may
    /// fork meanwhile (its fork handlers could be holding this heap).
    /// (The address space stays reserved: blocks may still be in use.)
    fn drop(&mut self) {
        let this = ptr::from_mut(self);
        let _ = STATS_AT_EXIT.compare_exchange(this, ptr::null_mut(), AcqRel, Relaxed);
        let _ = FORK_HEAP.compare_exchange(this, ptr::null_mut(), AcqRel, Relaxed);
        if self.heap.platform().others_own_slots() {
            fatal(format_args!("a HostHeap was dropped while threads still own its slots"));
        }
        self.give_back_thread_slot();
    }
}

impl HostHeap {
    /// Drains the calling thread's owned slot back to the slabs and gives
    /// it back (at thread exit, `platform.rs`).
    fn give_back_thread_slot(&self) {
        self.heap.platform().give_back_owned(|| {
            self.heap.drain_local_cpu();
        });
    }
}

/// The exit hook of a thread that owns a slot (`HostPlatform::try_own`'s
/// thread-specific key), called with its heap.
unsafe extern "C" fn give_back_thread_slot(heap: *mut core::ffi::c_void) {
    // SAFETY: the key's value is the owning heap (`HostHeap::try_own`),
    // alive: a heap dropped while other threads own its slots stops the
    // program (`Drop`), and the dropping thread gave its own slot back.
    let heap = unsafe { &*heap.cast_const().cast::<HostHeap>() };
    heap.give_back_thread_slot();
}

/// `pthread_atfork`'s prepare handler, on the forking thread: waits until
/// the registered heap has started, then leases every shared slot and
/// takes the global lock (`platform.rs`, "fork").
extern "C" fn before_fork() {
    let heap = FORK_HEAP.load(Acquire);
    if heap.is_null() {
        return;
    }
    // SAFETY: a registered heap unregisters itself before it is dropped
    // (dropping it while another thread forks is a use after free the
    // `Drop` doc rules out, as for a heap whose slots threads own).
    let heap = unsafe { &*heap };
    // It registered as it started: until another thread finishes starting
    // it (which needs a shared slot once more), this waits, before leasing
    // them all.
    heap.ensure_started();
    heap.heap.platform().lease_all_shared();
    heap.heap.hold_lock();
    HELD_FOR_FORK.store(ptr::from_ref(heap).cast_mut(), Release);
}

/// `pthread_atfork`'s handler after the fork, in the parent and in the
/// child: gives back what `before_fork` took.
extern "C" fn after_fork() {
    // The heap `before_fork` took, not the registered one now: a heap that
    // started during the fork took nothing.
    let heap = HELD_FOR_FORK.swap(ptr::null_mut(), Acquire);
    if heap.is_null() {
        return;
    }
    // SAFETY: as in `before_fork`.
    let heap = unsafe { &*heap };
    // SAFETY: `before_fork` of this thread (in the child, of the thread
    // that forked, which this one continues) holds the lock, and it is
    // released once per fork, here.
    unsafe { heap.heap.release_held_lock() };
    heap.heap.platform().give_back_all_shared();
}

/// Prints `HEAPSTATS {json}` of the registered heap on stderr (at exit).
extern "C" fn print_stats_at_exit() {
    let heap = STATS_AT_EXIT.load(Acquire);
    if heap.is_null() {
        return;
    }
    // SAFETY: a registered heap unregisters itself before it is dropped, so
    // a non-null pointer is a live heap (in practice a `static`).
    let stats = unsafe { &*heap }.stats();
    let mut out = Stderr::new();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("HEAPSTATS {}\n", stats.json()));
}

/// The CPUs this process may run on (its affinity mask), at most
/// `MAX_CPUS`; 1 if the OS will not say.
fn usable_cpus() -> usize {
    // SAFETY: `cpu_set_t` is plain data, valid all zero.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a writable `cpu_set_t` of the size passed.
    let found = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    if !found {
        return 1;
    }
    // SAFETY: `set` is a `cpu_set_t` the call above filled in.
    let cpus = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(cpus).unwrap_or(1).clamp(1, MAX_CPUS)
}

impl HostHeap {
    /// Whether the calling thread owns a slot of this heap (then the
    /// heap has started): one thread-local load and a compare.
    #[inline(always)]
    fn owns_slot(&self) -> bool {
        self.heap.platform().owned_slot().is_some()
    }

    #[cold]
    #[inline(never)]
    fn alloc_unowned(&self, layout: Layout) -> *mut u8 {
        if self.try_own() {
            return self.heap.alloc(layout);
        }
        let _lease = self.heap.platform().lease();
        self.heap.alloc(layout)
    }

    /// # Safety
    /// `GlobalAlloc::dealloc`'s.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_unowned(&self, ptr: *mut u8, layout: Layout) {
        if !self.try_own() {
            let _lease = self.heap.platform().lease();
            // SAFETY: forwarded from the caller.
            return unsafe { self.heap.dealloc(ptr, layout) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.heap.dealloc(ptr, layout) }
    }

    /// # Safety
    /// `GlobalAlloc::realloc`'s.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_unowned(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.try_own() {
            let _lease = self.heap.platform().lease();
            // SAFETY: forwarded from the caller.
            return unsafe { self.heap.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.heap.realloc(ptr, layout, new_size) }
    }
}

// SAFETY: every call runs the core on a slot the thread holds: the one it
// owns, or, if none, one it leases for the call (the `Platform` contract,
// `platform.rs`); and forwards to `SlabHeap`, whose `alloc`, `dealloc` and
// `realloc` are `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for HostHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.owns_slot() {
            return self.heap.alloc(layout);
        }
        self.alloc_unowned(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns_slot() {
            // SAFETY: forwarded from the caller: `ptr` came from this heap
            // with `layout` and is freed once.
            return unsafe { self.heap.dealloc(ptr, layout) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.dealloc_unowned(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.owns_slot() {
            // SAFETY: forwarded from the caller (`GlobalAlloc::realloc`'s
            // contract is `SlabHeap::realloc`'s).
            return unsafe { self.heap.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.realloc_unowned(ptr, layout, new_size) }
    }
}
