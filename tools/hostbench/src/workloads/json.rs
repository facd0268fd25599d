//! `json`: the "JSON/collections/channels" program (run it with
//! `--threads 8`). Each thread generates records (strings, a vector of
//! tags, a vector of numbers, a `BTreeMap` of attributes), encodes each
//! with serde_json and sends the text, boxed, through a bounded
//! crossbeam channel to the next thread (thread i to i+1, the last to
//! thread 0). The receiver decodes it, checks that it is the sender's next
//! record, field by field, and keeps the last `WINDOW` records in a
//! `HashMap` by id and a `BTreeMap` by name, evicting the oldest (a
//! `VecDeque`), so maps grow, shrink and rehash all the time. Operations:
//! each record sent and each record received; each is about 38 small
//! allocations and frees (`small_ops` over `ops` of the slab runs in
//! docs/benchmarks/host/matrix). Threads block in the channel when there
//! is nothing to do, as real programs do.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::OnceLock,
};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use serde::{Deserialize, Serialize};

use bench_workloads::{CpuRun, timing::timed_batches};

use crate::harness::{HostThread, MAX_THREADS, threads};

/// Records each thread keeps from its sender.
const WINDOW: usize = 256;
/// Messages a channel holds.
const CHANNEL_CAPACITY: usize = 64;
/// Records sent per timing batch.
const RECORDS_PER_BATCH: u64 = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    values: Vec<f64>,
    attributes: BTreeMap<String, u64>,
}

/// What goes through a channel.
struct Message {
    from: usize,
    sequence: u64,
    text: String,
}

type Channel = (Sender<Box<Message>>, Receiver<Box<Message>>);

/// Channel i carries thread i-1's records to thread i; made once, used by
/// every run (each run empties them).
fn channels() -> &'static [Channel] {
    static CHANNELS: OnceLock<Vec<Channel>> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        (0..MAX_THREADS).map(|_| crossbeam_channel::bounded(CHANNEL_CAPACITY)).collect()
    })
}

/// The record `sequence` of thread `from`; the receiver makes the same one
/// to check what it decoded.
fn record(from: usize, sequence: u64) -> Record {
    let id = ((from as u64) << 40) | sequence;
    let tags = (0..sequence % 5 + 1).map(|t| format!("tag-{}", (sequence + t) % 97)).collect();
    let values = (0..sequence % 16 + 1).map(|v| (sequence * 31 + v) as f64 / 8.0).collect();
    let attributes = [("size", sequence % 1000), ("owner", from as u64), ("shard", sequence % 7)]
        .into_iter()
        .map(|(key, value)| (format!("{key}-{}", sequence % 3), value))
        .collect();
    Record { id, name: format!("record-{from}-{sequence}"), tags, values, attributes }
}

/// One thread's receiving side: what it expects next and what it keeps.
struct Inbox {
    from: usize,
    next_sequence: u64,
    by_id: HashMap<u64, Record>,
    by_name: BTreeMap<String, u64>,
    order: VecDeque<u64>,
}

impl Inbox {
    fn new(from: usize) -> Self {
        Self {
            from,
            next_sequence: 0,
            by_id: HashMap::new(),
            by_name: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Decodes and checks one message, then stores the record.
    fn take(&mut self, thread: usize, message: &Message) {
        assert_eq!(
            (message.from, message.sequence),
            (self.from, self.next_sequence),
            "bench json: thread {thread}: got record (from, sequence) {:?}, expected {:?}",
            (message.from, message.sequence),
            (self.from, self.next_sequence)
        );
        let decoded: Record = serde_json::from_str(&message.text).unwrap_or_else(|error| {
            panic!(
                "bench json: thread {thread}: record {} does not decode: {error}",
                message.sequence
            )
        });
        let expected = record(message.from, message.sequence);
        assert!(
            decoded == expected,
            "bench json: thread {thread}: decoded {decoded:?}, sent {expected:?}"
        );
        self.next_sequence += 1;
        self.by_name.insert(decoded.name.clone(), decoded.id);
        self.order.push_back(decoded.id);
        self.by_id.insert(decoded.id, decoded);
        if self.order.len() > WINDOW {
            let oldest = self.order.pop_front().expect("more than WINDOW records");
            let gone = self.by_id.remove(&oldest).expect("every kept id is in the map");
            self.by_name.remove(&gone.name);
        }
    }
}

pub fn json(thread: usize, ops: u64) -> CpuRun {
    let count = threads();
    let channels = channels();
    let outgoing = &channels[(thread + 1) % count].0;
    let incoming = &channels[thread].1;
    let from = (thread + count - 1) % count;
    let mut inbox = Inbox::new(from);
    let target = (ops / 2).max(1);
    let mut sent = 0u64;
    let mut pending: Option<Box<Message>> = None;
    let run = timed_batches::<HostThread>(2 * target, || {
        let before = sent + inbox.next_sequence;
        let batch_end = (sent + RECORDS_PER_BATCH).min(target);
        while sent < batch_end || (sent == target && inbox.next_sequence < target) {
            if sent < batch_end {
                let message = pending.take().unwrap_or_else(|| {
                    let text =
                        serde_json::to_string(&record(thread, sent)).expect("a record encodes");
                    Box::new(Message { from: thread, sequence: sent, text })
                });
                match outgoing.try_send(message) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(message)) => pending = Some(message),
                    Err(TrySendError::Disconnected(_)) => unreachable!("channels live forever"),
                }
            }
            match incoming.try_recv() {
                Ok(message) => inbox.take(thread, &message),
                Err(TryRecvError::Empty) if pending.is_some() || sent == target => {
                    // Nothing to do until a neighbour moves: block.
                    let receiving = inbox.next_sequence < target;
                    match (pending.take(), receiving) {
                        (Some(message), true) => {
                            let mut select = Select::new();
                            let receive = select.recv(incoming);
                            select.send(outgoing);
                            let ready = select.select();
                            if ready.index() == receive {
                                inbox.take(thread, &ready.recv(incoming).expect("channels live"));
                                pending = Some(message);
                            } else {
                                ready.send(outgoing, message).expect("channels live");
                                sent += 1;
                            }
                        }
                        (Some(message), false) => {
                            outgoing.send(message).expect("channels live");
                            sent += 1;
                        }
                        (None, true) => {
                            inbox.take(thread, &incoming.recv().expect("channels live"))
                        }
                        (None, false) => {}
                    }
                }
                Err(_) => {}
            }
        }
        sent + inbox.next_sequence - before
    });
    assert_eq!(
        (sent, inbox.next_sequence),
        (target, target),
        "bench json: thread {thread}: records (sent, received)"
    );
    run
}
