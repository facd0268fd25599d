//! The 8-thread workload of issue 13: JSON, collections and channels, with
//! the allocator picked by `HOST_WORKLOAD_ALLOC` (`slab`: `HostHeap`, with
//! its `SLAB_HOST_*` settings; `glibc`: the system allocator) at the first
//! allocation. Prints one line with the wall time.
//!
//! ```sh
//! cargo run -p slab-core --features host --release --example host_workload -- [THREADS] [ROUNDS]
//! ```
//! Each thread builds JSON documents (`serde_json::Value`: maps, arrays,
//! strings), serialises them, sends the text to the next thread over a
//! channel, parses what the previous thread sent, and keeps the parsed
//! documents in a `HashMap` and a `BTreeMap` of bounded size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde_json::{Value, json};
use slab_core::HostHeap;

/// `HostHeap` or the system allocator, chosen once.
struct Chosen {
    slab: HostHeap,
    /// 0 not chosen yet, 1 slab, 2 glibc.
    choice: AtomicU8,
}

const SLAB: u8 = 1;
const GLIBC: u8 = 2;

impl Chosen {
    fn choice(&self) -> u8 {
        match self.choice.load(Relaxed) {
            0 => {
                // SAFETY: a NUL-terminated name; the value is read at once.
                let value = unsafe { libc::getenv(c"HOST_WORKLOAD_ALLOC".as_ptr()) };
                let choice = if value.is_null() {
                    SLAB
                } else {
                    // SAFETY: `getenv` returned a NUL-terminated string.
                    match unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes() {
                        b"slab" => SLAB,
                        b"glibc" => GLIBC,
                        _ => {
                            let message = b"HOST_WORKLOAD_ALLOC must be `slab` or `glibc`\n";
                            // SAFETY: a live buffer of that many bytes.
                            unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
                            std::process::abort();
                        }
                    }
                };
                self.choice.store(choice, Relaxed);
                choice
            }
            choice => choice,
        }
    }
}

// SAFETY: forwards to one allocator, the same for the life of the process.
unsafe impl GlobalAlloc for Chosen {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            if self.choice() == SLAB { self.slab.alloc(layout) } else { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded: `ptr` came from the same allocator.
        unsafe {
            if self.choice() == SLAB {
                self.slab.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            if self.choice() == SLAB {
                self.slab.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Chosen = Chosen { slab: HostHeap::new(), choice: AtomicU8::new(0) };

/// Parsed documents each thread keeps.
const KEPT: usize = 256;

/// Document `round` of `thread`.
fn document(thread: usize, round: usize) -> Value {
    let tags: Vec<String> = (0..round % 13).map(|i| format!("tag-{thread}-{i}")).collect();
    let points: Vec<Value> = (0..round % 7).map(|i| json!({"x": i, "y": i * round})).collect();
    json!({
        "thread": thread,
        "round": round,
        "name": format!("document {round} of thread {thread}"),
        "tags": tags,
        "points": points,
        "nested": {"a": [1, 2, 3], "b": {"c": "deep"}},
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(8, |a| a.parse().expect("THREADS: a number"));
    let rounds: usize = args.next().map_or(20_000, |a| a.parse().expect("ROUNDS: a number"));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| mpsc::channel::<String>()).unzip();
    let started = Instant::now();
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(thread, receiver)| {
            let next = senders[(thread + 1) % threads].clone();
            thread::spawn(move || {
                let mut by_round = HashMap::new();
                let mut by_name = BTreeMap::new();
                let mut checksum = 0u64;
                for round in 0..rounds {
                    next.send(serde_json::to_string(&document(thread, round)).unwrap()).unwrap();
                    let text = receiver.recv().unwrap();
                    let parsed: Value = serde_json::from_str(&text).unwrap();
                    checksum += parsed["round"].as_u64().unwrap();
                    let name = parsed["name"].as_str().unwrap().to_owned();
                    by_round.insert(round, parsed);
                    by_name.insert(name, round);
                    if round >= KEPT {
                        by_round.remove(&(round - KEPT));
                    }
                    if by_name.len() > KEPT {
                        by_name.pop_first();
                    }
                }
                checksum
            })
        })
        .collect();
    drop(senders);
    let checksum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let expected = (threads * rounds * (rounds - 1) / 2) as u64;
    assert_eq!(checksum, expected, "documents lost or corrupted");
    let choice = if ALLOCATOR.choice() == SLAB { "slab" } else { "glibc" };
    println!(
        "host_workload alloc={choice} threads={threads} rounds={rounds} wall_s={:.3}",
        started.elapsed().as_secs_f64()
    );
}
