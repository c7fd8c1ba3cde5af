//! Typed reads of kernel memory.
//!
//! Every read goes through `bpf_probe_read_kernel`, so a stale or wrong pointer yields `None`,
//! never a fault. Offsets come from [`crate::maps::OFFSETS`]; nothing here knows a layout.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};

/// A kernel pointer to some struct, non-null by construction.
#[derive(Clone, Copy)]
pub struct KPtr(*const u8);

impl KPtr {
    pub fn new(ptr: *const u8) -> Option<Self> {
        if ptr.is_null() {
            None
        } else {
            Some(KPtr(ptr))
        }
    }

    pub fn addr(self) -> u64 {
        self.0 as u64
    }

    pub fn as_ptr(self) -> *const u8 {
        self.0
    }

    /// Reads a `T` at byte `offset`.
    pub fn read<T>(self, offset: u32) -> Option<T> {
        // SAFETY: bpf_probe_read_kernel validates the address; it never faults.
        unsafe { bpf_probe_read_kernel(self.0.add(offset as usize).cast::<T>()) }.ok()
    }

    /// Reads a pointer member at `offset`; `None` when it is NULL or unreadable.
    pub fn ptr(self, offset: u32) -> Option<KPtr> {
        KPtr::new(self.read::<*const u8>(offset)?)
    }

    /// Copies `dst.len()` bytes from `offset` (e.g. a `union nf_inet_addr`).
    pub fn bytes(self, offset: u32, dst: &mut [u8]) -> Option<()> {
        // SAFETY: as in `read`.
        unsafe { bpf_probe_read_kernel_buf(self.0.add(offset as usize), dst) }.ok()
    }

    /// Reads a network-order `__be16` at `offset` into host order.
    pub fn be16(self, offset: u32) -> Option<u16> {
        self.read::<u16>(offset).map(u16::from_be)
    }
}
