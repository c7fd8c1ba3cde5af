//! Types shared by the kernel side (`ipvs-trace-ebpf`) and userspace (`ipvs-trace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding: the eBPF programs write these bytes
//! into the ring buffer and userspace reads them back, so both sides must agree on every byte.
//! Names of maps and globals live here too, so a rename cannot split the two sides.
#![no_std]

pub mod event;
pub mod filter;
pub mod offsets;

pub use event::{ConnEvent, EventHeader, EventKind};
pub use filter::KernelFilter;
pub use offsets::KernelOffsets;

/// Ring buffer carrying [`ConnEvent`] records to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Per-CPU array of drop counters, indexed by [`drop`]: nothing the probes see is lost silently.
pub const LOST_MAP: &str = "LOST";

/// Array of one [`KernelFilter`]: what the probes deliver, written by userspace before it
/// attaches them.
pub const FILTER_MAP: &str = "FILTER";
/// Hash map of [`filter::NamedKey`] → `u8`: the VIPs of the name filters' Services.
pub const NAMED_VIPS_MAP: &str = "NAMED_VIPS";
/// Hash map of [`filter::NamedKey`] → `u8`: the name filters' pod IPs, as backend or client.
pub const NAMED_IPS_MAP: &str = "NAMED_IPS";

/// Slots of [`LOST_MAP`].
pub mod drop {
    /// An event was dropped because the ring buffer was full.
    pub const RING_FULL: u32 = 0;
    /// An event was dropped because reading kernel memory failed (a layout or race problem).
    pub const READ_ERROR: u32 = 1;
    /// A decision the kernel-side filter ([`crate::KernelFilter`]) left out: not lost, not
    /// asked for; counted so that seen = filtered out + matched stays exact.
    pub const FILTERED: u32 = 2;
    /// Number of slots.
    pub const SLOTS: u32 = 3;
}
/// Read-only global of type [`KernelOffsets`], filled by userspace from BTF before load.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";
/// Read-only global `u64`: the byte size of [`EVENTS_MAP`], set by userspace with the map's
/// size, so that a record need not ask the kernel (`bpf_ringbuf_query`) each time.
pub const RING_SIZE_GLOBAL: &str = "RING_SIZE";
/// Read-only global `u32`: the inode number of the network namespace whose DNAT bindings are
/// kube-proxy's (the tracer's own, the node's); 0 takes every namespace's.
pub const NAT_NETNS_GLOBAL: &str = "NAT_NETNS";
/// The ring's size when the user does not choose one (`--ring-size`): ~1,900 records.
pub const DEFAULT_RING_SIZE: u32 = 256 * 1024;
