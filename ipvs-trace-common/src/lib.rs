//! Types shared by the kernel side (`ipvs-trace-ebpf`) and userspace (`ipvs-trace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding: the eBPF programs write these bytes
//! into the ring buffer and userspace reads them back, so both sides must agree on every byte.
//! Names of maps and globals live here too, so a rename cannot split the two sides.
#![no_std]

pub mod event;
pub mod offsets;

pub use event::{ConnEvent, EventHeader, EventKind};
pub use offsets::KernelOffsets;

/// Ring buffer carrying [`ConnEvent`] records to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Per-CPU array (one slot) counting events dropped because the ring buffer was full.
pub const LOST_MAP: &str = "LOST";
/// Per-thread arguments of `ip_vs_schedule`, saved at entry for the return probe.
pub const SCHED_ARGS_MAP: &str = "SCHED_ARGS";
/// Read-only global of type [`KernelOffsets`], filled by userspace from BTF before load.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";
