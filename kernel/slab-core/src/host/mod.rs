//! `HostHeap`: the core as a user-space `#[global_allocator]` on Linux
//! (feature `host`). Threads lease the heap's CPU slots per call
//! (`platform`), the backend is TLSF over an mmap'd reservation that grows
//! on demand (`backend`), settings come from the environment (`settings`),
//! and reports go to stderr without allocating (`stderr`).
//! `docs/host.md` has the design and the figures.

mod backend;
mod heap;
mod platform;
mod settings;
mod stderr;

pub use heap::HostHeap;
pub use settings::{LockWait, SettingError, Settings};
