//! The heap from interrupt context: on each timer tick
//! (`timer::TickWork::HeapChurn`) the CPU replaces [`ALLOCATIONS_PER_TICK`]
//! of the [`HELD_OBJECTS`] objects it keeps alive between ticks: each old
//! object is checked and freed, a new one of the slot's size allocated and
//! filled. Sizes cover small classes and one large (backend) size. Every
//! word holds a pattern made from the CPU, the object's address and a serial
//! number, so an object handed out twice, or overwritten by the code the
//! interrupt cut into, fails the check: a panic naming the CPU and address.
use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::smp::{self, CpuLocalCell, ThisCpu};

/// Object sizes, by slot (slot `s` holds objects of `OBJECT_BYTES[s % 6]`):
/// five size classes of the slab caches and one above them.
pub const OBJECT_BYTES: [usize; 6] = [16, 48, 200, 1000, 3000, 6144];
/// Objects each CPU keeps alive between ticks.
pub const HELD_OBJECTS: usize = 24;
/// Objects freed and allocated per tick.
pub const ALLOCATIONS_PER_TICK: usize = 8;
const OBJECT_ALIGN: usize = 8;
const WORD_BYTES: usize = size_of::<u64>();

/// One CPU's churn: counters anyone may read (written only by the CPU, in
/// its tick handler or when it releases its objects) and the objects it
/// holds, reachable only on that CPU with interrupts masked.
pub struct IrqChurnCpu {
    allocations: AtomicU64,
    frees: AtomicU64,
    held: CpuLocalCell<HeldObjects>,
}

struct HeldObjects {
    slots: [Option<HeldObject>; HELD_OBJECTS],
    /// The slot the next tick replaces first.
    next: usize,
    /// Objects made so far; the next one's serial number.
    serial: u64,
}

#[derive(Clone, Copy)]
struct HeldObject {
    address: NonNull<u8>,
    serial: u64,
}

impl IrqChurnCpu {
    pub const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            held: CpuLocalCell::new(HeldObjects {
                slots: [None; HELD_OBJECTS],
                next: 0,
                serial: 0,
            }),
        }
    }

    /// Objects this CPU's tick handler has allocated since boot.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Objects it has freed (in its tick handler or when releasing them).
    pub fn frees(&self) -> u64 {
        self.frees.load(Ordering::Relaxed)
    }
}

impl Default for IrqChurnCpu {
    fn default() -> Self {
        Self::new()
    }
}

/// Handler allocations and frees of CPU `cpu` since boot.
pub fn counts(cpu: usize) -> (u64, u64) {
    let churn = smp::cpu(cpu).timer().churn();
    (churn.allocations(), churn.frees())
}

/// One tick's work on the running CPU.
pub fn on_tick(this: &ThisCpu<'_>) {
    let churn = this.timer().churn();
    churn.held.with(this, |held| {
        for _ in 0..ALLOCATIONS_PER_TICK {
            let slot = held.next;
            held.next = (slot + 1) % HELD_OBJECTS;
            if let Some(old) = held.slots[slot].take() {
                free_checked(this.index(), churn, slot, old);
            }
            let serial = held.serial;
            held.serial += 1;
            held.slots[slot] = Some(allocate_filled(this.index(), churn, slot, serial));
        }
    });
}

/// Checks and frees every object the running CPU holds (with its timer
/// stopped, so no tick refills them).
pub fn release_held_objects(this: &ThisCpu<'_>) {
    let churn = this.timer().churn();
    churn.held.with(this, |held| {
        for (slot, object) in held.slots.iter_mut().enumerate() {
            if let Some(object) = object.take() {
                free_checked(this.index(), churn, slot, object);
            }
        }
    });
}

fn layout(slot: usize) -> Layout {
    Layout::from_size_align(OBJECT_BYTES[slot % OBJECT_BYTES.len()], OBJECT_ALIGN)
        .expect("the churn's sizes are valid layouts")
}

fn allocate_filled(cpu: usize, churn: &IrqChurnCpu, slot: usize, serial: u64) -> HeldObject {
    let layout = layout(slot);
    // SAFETY: `layout` has a non-zero size.
    let address = unsafe { alloc::alloc::alloc(layout) };
    let Some(address) = NonNull::new(address) else {
        panic!("timer interrupt on cpu {cpu}: allocating {} bytes failed", layout.size());
    };
    bump(&churn.allocations);
    let words = address.cast::<u64>();
    for i in 0..layout.size() / WORD_BYTES {
        // SAFETY: the block has `layout.size()` bytes, aligned to 8; word
        // `i` is inside it.
        unsafe { words.add(i).write(pattern(cpu, address, serial, i)) };
    }
    HeldObject { address, serial }
}

fn free_checked(cpu: usize, churn: &IrqChurnCpu, slot: usize, object: HeldObject) {
    let layout = layout(slot);
    let words = object.address.cast::<u64>();
    for i in 0..layout.size() / WORD_BYTES {
        // SAFETY: a live block of `layout.size()` bytes this CPU filled.
        let found = unsafe { words.add(i).read() };
        let expected = pattern(cpu, object.address, object.serial, i);
        assert_eq!(
            found,
            expected,
            "timer interrupt on cpu {cpu}: the {}-byte object at {:p} (churn object {}) changed at word {i}",
            layout.size(),
            object.address,
            object.serial
        );
    }
    // SAFETY: allocated with `layout` by `allocate_filled`, freed once.
    unsafe { alloc::alloc::dealloc(object.address.as_ptr(), layout) };
    bump(&churn.frees);
}

// `pattern` puts the CPU index in the top 8 bits of its seed.
const _: () = assert!(crate::smp::MAX_CPUS <= 1 << 8);

/// Word `i` of the object `serial` of CPU `cpu` at `address`.
fn pattern(cpu: usize, address: NonNull<u8>, serial: u64, i: usize) -> u64 {
    let seed = (address.as_ptr() as u64) ^ (serial << 20) ^ ((cpu as u64) << 56);
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// Adds one to a counter only its own CPU writes.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}
