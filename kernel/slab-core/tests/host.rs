//! `HostHeap` as this test binary's global allocator (feature `host`): the
//! allocations of the tests and of the test harness itself go through it.
//! Threads, large blocks, memory given back to the OS, the settings from
//! the environment (children of this binary with a variable set) and the
//! statistics at exit.
#![cfg(feature = "host")]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;

use slab_core::HostHeap;

#[global_allocator]
static HEAP: HostHeap = HostHeap::new();

/// Set in a child run by `run_child`: the test to run is one that does
/// something fatal on purpose.
const CHILD_VAR: &str = "SLAB_HOST_TEST_CHILD";

#[test]
fn the_global_allocator_is_the_host_heap() {
    let before = HEAP.stats().total.small_ops;
    let boxes: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
    let after = HEAP.stats().total.small_ops;
    assert!(after >= before + 1000, "small_ops went from {before} to {after} over 1000 Box::new");
    assert_eq!(boxes.iter().map(|b| **b).sum::<u64>(), 999 * 1000 / 2);
}

#[test]
fn threads_share_the_heap_without_corruption() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2000;
    let (sender, receiver) = mpsc::channel::<(usize, Vec<String>)>();
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let sender = sender.clone();
            thread::spawn(move || {
                let mut map = HashMap::new();
                for round in 0..ROUNDS {
                    let words: Vec<String> =
                        (0..round % 17).map(|i| format!("t{thread}-r{round}-w{i}")).collect();
                    map.insert(round, words.clone());
                    if round % 3 == 0 {
                        sender.send((thread, words)).unwrap();
                    }
                    if round % 5 == 0 {
                        map.remove(&(round / 2));
                    }
                }
                for (round, words) in &map {
                    for (i, word) in words.iter().enumerate() {
                        assert_eq!(*word, format!("t{thread}-r{round}-w{i}"), "thread {thread}");
                    }
                }
            })
        })
        .collect();
    drop(sender);
    let mut received = 0;
    for (thread, words) in receiver {
        for word in &words {
            assert!(word.starts_with(&format!("t{thread}-")), "{word} from thread {thread}");
        }
        received += 1;
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(received, THREADS * ROUNDS.div_ceil(3));
}

/// Held by the tests that allocate hundreds of MiB, so the one that
/// measures the resident set sees no other's blocks come and go.
static LARGE_BLOCKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn large_blocks_grow_the_heap_and_are_usable() {
    let _alone = LARGE_BLOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Larger than one growth step (64 MiB), so the region must grow.
    let bytes = 200 << 20;
    let mut block = vec![0u8; bytes];
    for (i, byte) in block.iter_mut().enumerate().step_by(4096) {
        *byte = i as u8;
    }
    assert!(block.iter().enumerate().step_by(4096).all(|(i, &b)| b == i as u8));
    let aligned = std::alloc::Layout::from_size_align(1 << 20, 1 << 20).unwrap();
    // SAFETY: a nonzero layout; freed below with it.
    let page = unsafe { std::alloc::alloc(aligned) };
    assert!(!page.is_null() && page.addr().is_multiple_of(1 << 20), "{page:?}");
    // SAFETY: allocated just above with `aligned`.
    unsafe { std::alloc::dealloc(page, aligned) };
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_freed_large_block_goes_back_to_the_os() {
    let _alone = LARGE_BLOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let bytes = 128 << 20;
    let block = vec![1u8; bytes];
    let with = resident_bytes();
    assert_eq!(block[bytes - 1], 1);
    drop(block);
    let without = resident_bytes();
    // The other tests run at the same time (small blocks): allow for them.
    assert!(
        without + (96 << 20) < with,
        "resident {with} bytes with the 128 MiB block, {without} after freeing it"
    );
}

#[test]
fn emptied_slabs_go_back_to_the_os() {
    let _alone = LARGE_BLOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // On a thread of its own, so that its exit drains its slot.
    let (with, after_free) = thread::spawn(|| {
        // 160 MiB of 1 KiB objects (32 KiB slabs), every page written. The
        // backend keeps the newest freed slabs' pages, at most
        // `DIRTY_BYTES` (32 MiB), for reuse.
        let objects: Vec<Vec<u8>> = (0..160 * 1024).map(|i| vec![i as u8; 1024]).collect();
        let with = resident_bytes();
        assert!(objects.iter().enumerate().all(|(i, o)| o[1023] == i as u8));
        drop(objects);
        (with, resident_bytes())
    })
    .join()
    .unwrap();
    let after_exit = resident_bytes();
    // Heap checking keeps an emptied slab until its owner drains (it still
    // checks frees into it); without it the slab goes back at its last free.
    let checking = std::env::var("SLAB_HOST_HEAPCHECK").is_ok_and(|value| value == "on");
    if !checking {
        assert!(
            after_free + (96 << 20) < with,
            "resident {with} bytes with 160 MiB of 1 KiB objects, {after_free} after freeing them"
        );
    }
    assert!(
        after_exit + (96 << 20) < with,
        "resident {with} bytes with 160 MiB of 1 KiB objects, {after_exit} after their thread exited \
         (heap checking {})",
        if checking { "on" } else { "off" }
    );
}

/// Runs this binary's test `name` alone with `env` set, and returns what
/// it did.
fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_VAR, name);
    for (variable, value) in env {
        command.env(variable, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs this binary's test `name` alone with `SLAB_HOST_CPUS=5` (3 owned
/// slots, 2 shared) and checks that it ran to its end: success, and its
/// `CHILD PASSED` line (a test that returns early outside a child prints
/// none).
fn assert_passes_in_a_child_with_5_slots(name: &str) {
    let output = run_child(name, &[("SLAB_HOST_CPUS", "5")]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("CHILD PASSED"), "{text}{}", stderr(&output));
}

#[test]
fn a_bad_setting_stops_the_program_naming_the_variable_and_the_value() {
    for (variable, value, message) in [
        (
            "SLAB_HOST_MODE",
            "buddy",
            "SLAB_HOST_MODE=\"buddy\" is not valid: expected `slab` or `locked`",
        ),
        ("SLAB_HOST_CPUS", "0", "SLAB_HOST_CPUS=\"0\" is not valid"),
        (
            "SLAB_HOST_HEAPCHECK",
            "yes",
            "SLAB_HOST_HEAPCHECK=\"yes\" is not valid: expected `on` or `off`",
        ),
    ] {
        let output = run_child("the_global_allocator_is_the_host_heap", &[(variable, value)]);
        assert!(!output.status.success(), "{variable}={value} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{variable}={value}: stderr {}",
            stderr(&output)
        );
    }
}

#[test]
fn stats_at_exit_print_a_heapstats_line_with_the_settings() {
    let output = run_child(
        "the_global_allocator_is_the_host_heap",
        &[("SLAB_HOST_STATS", "1"), ("SLAB_HOST_CPUS", "3"), ("SLAB_HOST_MODE", "locked")],
    );
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("HEAPSTATS {"))
        .unwrap_or_else(|| panic!("no HEAPSTATS: {text}"));
    assert!(line.contains("\"mode\":\"locked\",\"cpus\":3"), "{line}");
    let total_small_ops: u64 = line
        .split_once("\"cpus\":3,\"small_ops\":")
        .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total small_ops: {line}"));
    assert!(total_small_ops >= 1000, "the child's 1000 boxes were not counted: {line}");
}

/// In a child with `SLAB_HOST_HEAPCHECK=on`: frees a block twice.
#[test]
fn double_free_in_a_child() {
    if std::env::var(CHILD_VAR).as_deref() != Ok("double_free_in_a_child") {
        return;
    }
    let layout = std::alloc::Layout::from_size_align(48, 8).unwrap();
    // SAFETY: a nonzero layout; the second free is the fault under test.
    unsafe {
        // `black_box`: the compiler may not elide the pair.
        let block = std::hint::black_box(std::alloc::alloc(layout));
        std::alloc::dealloc(block, layout);
        std::alloc::dealloc(block, layout);
    }
}

#[test]
fn heapcheck_on_reports_a_double_free_and_stops() {
    let output = run_child("double_free_in_a_child", &[("SLAB_HOST_HEAPCHECK", "on")]);
    let text = stderr(&output);
    assert!(!output.status.success(), "the double free went unnoticed: {text}");
    assert!(text.contains("HEAPCHECK {"), "{text}");
    assert!(text.contains("double_free"), "{text}");
}

/// README.md's three-line example is the doctest of `HostHeap` (which
/// `cargo test --doc` compiles and runs): its Rust lines must stay the
/// doctest's, word for word.
#[test]
fn the_readme_quotes_the_doctest_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let source = include_str!("../src/host/heap.rs");
    let doctest: Vec<&str> = source
        .lines()
        .skip_while(|line| line.trim() != "/// ```")
        .skip(1)
        .take_while(|line| !line.trim().is_empty() && line.trim() != "///")
        .map(|line| line.trim().trim_start_matches("/// "))
        .collect();
    assert_eq!(doctest.len(), 2, "the doctest's first lines: {doctest:?}");
    let quoted = format!("```rust\n{}\n```", doctest.join("\n"));
    assert!(readme.contains(&quoted), "README.md does not quote the doctest:\n{quoted}");
    assert!(
        readme.contains("slab-core = { path = \"kernel/slab-core\", features = [\"host\"] }"),
        "README.md's dependency line"
    );
}

/// Objects handed out and not yet freed, over every slot: small ones
/// (allocations less frees, per class) and large ones. Exact when no other
/// thread allocates meanwhile (a child with `--test-threads=1`).
fn outstanding_objects() -> i64 {
    let stats = HEAP.stats();
    (0..stats.cpus)
        .filter_map(|slot| HEAP.cpu_stats(slot))
        .map(|cpu| {
            let small: i64 = cpu.classes.iter().map(|c| c.allocs as i64 - c.frees as i64).sum();
            small + cpu.large_allocs as i64 - cpu.large_frees as i64
        })
        .sum()
}

/// Waits until the harness's main thread (the child's own, waiting for the
/// test's thread) sleeps: its first wait allocates (the channel's waiter
/// context, kept by the thread), which must not land inside a count of
/// `outstanding_objects`.
fn wait_for_the_main_thread_to_sleep() {
    let stat = format!("/proc/self/task/{}/stat", std::process::id());
    // The state is the field after the parenthesised name.
    while std::fs::read_to_string(&stat).unwrap().rsplit_once(") ").unwrap().1.as_bytes()[0] != b'S'
    {
        thread::yield_now();
    }
}

/// Bytes of objects cached in `slot`.
fn cached_bytes(slot: usize) -> u64 {
    HEAP.stats().per_cpu()[slot].cached_bytes
}

/// Work for one thread: allocations of several classes kept and checked,
/// a few sent on through `sender`, the rest freed.
fn churn(thread: usize, sender: &mpsc::Sender<Vec<u64>>) {
    let mut kept: Vec<Vec<u64>> = Vec::new();
    for round in 0..500u64 {
        kept.push(vec![thread as u64 ^ round; 1 + (round % 40) as usize]);
        if round % 7 == 0 {
            sender.send(kept.swap_remove(0)).unwrap();
        }
        if kept.len() > 64 {
            kept.drain(..32);
        }
    }
    assert!(kept.iter().all(|v| v.iter().all(|&x| x == v[0])), "thread {thread}");
}

/// In a child with 5 slots (3 owned, 2 shared; the harness's main thread
/// and the test's own thread own two): 40 threads at once, so all but one
/// lease shared slots per call; every object comes back.
#[test]
fn many_more_threads_than_slots_in_a_child() {
    if std::env::var(CHILD_VAR).as_deref() != Ok("many_more_threads_than_slots_in_a_child") {
        return;
    }
    const THREADS: usize = 40;
    // std's one-time allocations for a thread that spawns scoped threads
    // (its own `Thread` handle) come before the count.
    thread::scope(|scope| scope.spawn(|| ()).join().unwrap());
    wait_for_the_main_thread_to_sleep();
    let before = outstanding_objects();
    let (sender, receiver) = mpsc::channel();
    let start = std::sync::Barrier::new(THREADS);
    let owned: Vec<Option<usize>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (sender, start) = (sender.clone(), &start);
                scope.spawn(move || {
                    let _ = vec![0u8; 16];
                    start.wait();
                    churn(thread, &sender);
                    // No thread exits (gives a slot back) before all got here.
                    let slot = HEAP.owned_slot();
                    start.wait();
                    slot
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    drop(sender);
    let received: Vec<Vec<u64>> = receiver.into_iter().collect();
    assert_eq!(received.len(), THREADS * 500usize.div_ceil(7));
    drop(received);
    let mut slots: Vec<usize> = owned.iter().flatten().copied().collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(
        slots.len(),
        owned.iter().flatten().count(),
        "two threads owned one slot: {owned:?}"
    );
    assert!(slots.iter().all(|&slot| slot < 3), "only slots 0 to 2 are owned: {owned:?}");
    assert!(owned.iter().filter(|o| o.is_none()).count() >= THREADS - 1, "{owned:?}");
    // A thread's exit drains its slot; objects of that slot freed by other
    // threads after it, through the shared slots' buckets, wait in its
    // inbox (bounded per class) for the slot's next owner or any drain.
    // One more thread's exit (its drain takes every inbox) must leave the
    // exited threads' slots empty.
    thread::spawn(|| drop(vec![0u8; 16])).join().unwrap();
    for &slot in &slots {
        assert_eq!(cached_bytes(slot), 0, "exited thread's slot {slot} kept objects after a drain");
    }
    drop(owned);
    drop(slots);
    assert_eq!(outstanding_objects(), before, "objects of the exited threads were not all freed");
    println!("CHILD PASSED");
}

#[test]
fn many_more_threads_than_slots() {
    assert_passes_in_a_child_with_5_slots("many_more_threads_than_slots_in_a_child");
}

/// In a child with 5 slots (3 owned): the harness's main thread and the
/// test's thread own two, and 20 threads one after the other each own the
/// third, given back at exit.
#[test]
fn exited_threads_slots_are_reused_in_a_child() {
    if std::env::var(CHILD_VAR).as_deref() != Ok("exited_threads_slots_are_reused_in_a_child") {
        return;
    }
    assert!(HEAP.owned_slot().is_some(), "the test thread owns a slot");
    wait_for_the_main_thread_to_sleep();
    let before = outstanding_objects();
    let (sender, receiver) = mpsc::channel();
    let mut first_slot = None;
    for thread in 0..20 {
        let sender = sender.clone();
        let slot = thread::spawn(move || {
            churn(thread, &sender);
            HEAP.owned_slot()
        })
        .join()
        .unwrap();
        let slot = slot.unwrap_or_else(|| panic!("thread {thread} owned no slot"));
        assert_eq!(*first_slot.get_or_insert(slot), slot, "thread {thread} took another slot");
        assert_eq!(cached_bytes(slot), 0, "thread {thread}'s slot {slot} kept objects");
    }
    drop(sender);
    assert_eq!(receiver.into_iter().count(), 20 * 500usize.div_ceil(7));
    assert_eq!(outstanding_objects(), before, "objects of the exited threads were not all freed");
    println!("CHILD PASSED");
}

#[test]
fn exited_threads_slots_are_reused() {
    assert_passes_in_a_child_with_5_slots("exited_threads_slots_are_reused_in_a_child");
}

/// A `thread_local!` whose destructor allocates and frees, and sends a
/// block out of the dying thread.
struct AllocatesWhenDropped(mpsc::Sender<String>);

impl Drop for AllocatesWhenDropped {
    fn drop(&mut self) {
        let words: Vec<String> = (0..100).map(|i| format!("word {i}")).collect();
        self.0.send(words.join(" ")).unwrap();
    }
}

std::thread_local! {
    static DROPPED_AT_EXIT: std::cell::RefCell<Option<AllocatesWhenDropped>> =
        const { std::cell::RefCell::new(None) };
}

/// The value of `LATE_KEY`, a thread-specific key created after the heap's
/// own, so glibc runs its destructor after the heap's: the thread has given
/// its slot back and allocates through a shared one.
static LATE_KEY: std::sync::OnceLock<libc::pthread_key_t> = std::sync::OnceLock::new();

unsafe extern "C" fn allocate_after_the_slot_went_back(sender: *mut libc::c_void) {
    // SAFETY: the value `tls_destructors_allocate` set: a leaked
    // `Box<mpsc::Sender<String>>`, taken back once here.
    let sender = unsafe { Box::from_raw(sender.cast::<mpsc::Sender<String>>()) };
    let late = format!("late {:?}", HEAP.owned_slot());
    sender.send(late.repeat(50)).unwrap();
}

#[test]
fn tls_destructors_allocate() {
    let key = *LATE_KEY.get_or_init(|| {
        let mut key = 0;
        // SAFETY: `key` is writable; the destructor is a valid function.
        let created =
            unsafe { libc::pthread_key_create(&mut key, Some(allocate_after_the_slot_went_back)) };
        assert_eq!(created, 0);
        key
    });
    let (sender, receiver) = mpsc::channel();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let sender = sender.clone();
            thread::spawn(move || {
                let _ = vec![1u8; 100];
                let late = Box::into_raw(Box::new(sender.clone()));
                // SAFETY: a live key; the value is taken back by its destructor.
                assert_eq!(unsafe { libc::pthread_setspecific(key, late.cast()) }, 0);
                DROPPED_AT_EXIT.set(Some(AllocatesWhenDropped(sender)));
            })
        })
        .collect();
    drop(sender);
    for worker in workers {
        worker.join().unwrap();
    }
    let texts: Vec<String> = receiver.into_iter().collect();
    let expected_early = (0..100).map(|i| format!("word {i}")).collect::<Vec<_>>().join(" ");
    assert_eq!(texts.iter().filter(|t| **t == expected_early).count(), 4, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| **t == "late None".repeat(50)).count(), 4, "{texts:?}");
}

/// Forks this many times while other threads allocate.
const FORKS: usize = 200;
/// How long a forked child may take to allocate and exit.
const CHILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// In a forked child: allocates small and large blocks (the large ones
/// under the global lock, the small ones on the forking thread's owned
/// slot), and small ones on a new thread, which finds every owned slot
/// taken (by the parent's threads) and leases a shared one; checks them.
/// The exit status says whether they held their values.
fn allocate_in_the_forked_child() -> i32 {
    let small: Vec<Box<u64>> = (0..200).map(Box::new).collect();
    let large = vec![7u8; 300_000];
    let sum: u64 = small.iter().map(|b| **b).sum();
    let leased = thread::spawn(|| (0..100u64).map(Box::new).map(|b| *b).sum::<u64>());
    let leased_sum = leased.join().unwrap_or(0);
    if sum == 199 * 200 / 2 && large.iter().all(|&b| b == 7) && leased_sum == 99 * 100 / 2 {
        0
    } else {
        3
    }
}

/// Waits for forked child `pid` until `CHILD_DEADLINE`: its exit status,
/// or `None` (then it was killed) if it did not exit in time.
fn wait_or_kill(pid: libc::pid_t) -> Option<i32> {
    let started = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(waited >= 0, "waitpid failed");
        if waited == pid {
            return Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 });
        }
        if started.elapsed() > CHILD_DEADLINE {
            // SAFETY: `pid` is our child, not yet waited for.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// In a child with 5 slots (3 owned, 2 shared; the harness's main thread
/// and the test's own thread own two): six threads allocate small blocks
/// (five of them on leased shared slots) and large ones (under the global
/// lock) without pause while the test's thread forks `FORKS` times, and
/// each forked child allocates. A lock or a shared slot that another
/// thread held at the fork would stay held in the forked child, which has
/// only the forking thread: without `HostHeap`'s `pthread_atfork`
/// handlers the child waits for ever.
#[test]
fn fork_while_other_threads_allocate_in_a_child() {
    if std::env::var(CHILD_VAR).as_deref() != Ok("fork_while_other_threads_allocate_in_a_child") {
        return;
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|scope| {
        for thread in 0..6u64 {
            let stop = &stop;
            scope.spawn(move || {
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let small: Vec<Box<u64>> =
                        (0..16).map(|i| Box::new(thread ^ round ^ i)).collect();
                    let large = vec![thread as u8; 20_000 + (round % 8) as usize * 40_000];
                    assert!(large.iter().all(|&b| b == thread as u8), "thread {thread}");
                    assert_eq!(*small[5], thread ^ round ^ 5, "thread {thread}");
                    round += 1;
                }
            });
        }
        let mut results = Vec::new();
        for fork in 0..FORKS {
            // SAFETY: the child only allocates (through `HostHeap`), frees
            // and ends with `_exit`, running nothing that another thread of
            // the parent could have left locked but the heap under test.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork {fork} failed");
            if pid == 0 {
                let status = allocate_in_the_forked_child();
                // SAFETY: ends the forked child without running the
                // parent's exit handlers or unwinding into the harness.
                unsafe { libc::_exit(status) };
            }
            results.push(wait_or_kill(pid));
            if results[fork] != Some(0) {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let hung = results.iter().position(|r| r.is_none());
        assert_eq!(hung, None, "forked child {hung:?} did not exit within {CHILD_DEADLINE:?}");
        let failed = results.iter().position(|r| *r != Some(0));
        assert_eq!(
            failed,
            None,
            "forked child {failed:?} exited with {:?}",
            failed.map(|f| results[f])
        );
        assert_eq!(results.len(), FORKS);
    });
    println!("CHILD PASSED");
}

#[test]
fn fork_while_other_threads_allocate() {
    assert_passes_in_a_child_with_5_slots("fork_while_other_threads_allocate_in_a_child");
}
