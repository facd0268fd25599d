//! Multiprocessing: the per-CPU blocks, bringing the other CPUs up, and
//! running one function on every CPU at once.
mod bringup;
mod nmi_slot;
mod percpu;
mod run_on_all;
mod stop;

pub use bringup::{BringupError, start_application_processors};
pub use nmi_slot::{Interrupted, NmiSlot};
pub use percpu::{
    CpuLocalCell, MAX_CPUS, ThisCpu, cpu, current_cpu_index, init_bootstrap_cpu,
    mark_bootstrap_online, online_cpus, record_nmi_on_this_cpu, set_heap_word,
    set_this_cpu_heap_word, take_this_cpu_heap_word, try_current_cpu_index, with_this_cpu,
};
pub use run_on_all::{CpuResults, run_on_all_cpus};
pub use stop::{on_nmi, stop_other_cpus};
