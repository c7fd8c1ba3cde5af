//! Typed reads of kernel memory, two ways.
//!
//! - [`KPtr`]: a pointer the verifier only knows as a number (a kprobe's argument or return
//!   value, a pointer to bytes). Every read is a `bpf_probe_read_kernel` call, so a stale or
//!   wrong pointer yields `None`, never a fault.
//! - [`BtfPtr`]: a pointer the verifier knows the type of (`PTR_TO_BTF_ID`): a trampoline
//!   program's argument, and the struct pointers read through it. A read is one load
//!   instruction, which the verifier checks against the kernel's BTF layout and the JIT guards
//!   with an exception entry (a faulting load yields 0). A helper call costs about a hundred
//!   instructions on the kernels in the lab; a record reads some twenty members.
//!
//! The probes' bodies are generic over [`KernelPtr`], so the kprobe and the trampoline program
//! of a hook run the same code. Offsets come from [`crate::maps::OFFSETS`], a frozen read-only
//! global the verifier sees as constants (which a load through a typed pointer needs); nothing
//! here knows a layout.

use core::ptr::read_volatile;

use aya_ebpf::helpers::bpf_probe_read_kernel;
use ipvs_trace_common::offsets::RDONLY_CAST_CALL;

/// A kernel pointer to a struct, non-null by construction, read one of the two ways above.
pub trait KernelPtr: Copy {
    /// Whether this is the trampoline programs' kind, which may read memory by loads through
    /// [`BtfPtr::cast`] (a compile-time constant: the kprobe programs never contain the cast).
    const TYPED: bool = false;

    fn new(ptr: *const u8) -> Option<Self>;

    fn as_ptr(self) -> *const u8;

    /// Reads a scalar `T` (a member of the struct, never an aggregate) at byte `offset`.
    fn read<T: Copy>(self, offset: u32) -> Option<T>;

    /// Reads a pointer member at `offset` to another struct; `None` when it is NULL or
    /// unreadable.
    fn ptr(self, offset: u32) -> Option<Self> {
        Self::new(self.read::<*const u8>(offset)?)
    }

    /// Reads a pointer member at `offset` to bytes (`skb->data`, a `char *` name): the
    /// verifier does not type those, so reads through it always go through the helper.
    fn bytes_ptr(self, offset: u32) -> Option<KPtr> {
        KPtr::new(self.read::<*const u8>(offset)?)
    }

    /// Reads a `union nf_inet_addr` (16 bytes) at `offset`, as four 32-bit loads of members
    /// of the union, in memory order.
    fn addr(self, offset: u32) -> Option<[u32; 4]> {
        Some([
            self.read::<u32>(offset)?,
            self.read::<u32>(offset + 4)?,
            self.read::<u32>(offset + 8)?,
            self.read::<u32>(offset + 12)?,
        ])
    }

    /// Reads a network-order `__be16` at `offset` into host order.
    fn be16(self, offset: u32) -> Option<u16> {
        self.read::<u16>(offset).map(u16::from_be)
    }

    /// The pointer's value, for the record (`conn`: the entry's identity).
    fn addr_value(self) -> u64 {
        self.as_ptr() as u64
    }
}

/// Read through `bpf_probe_read_kernel`.
#[derive(Clone, Copy)]
pub struct KPtr(*const u8);

impl KernelPtr for KPtr {
    fn new(ptr: *const u8) -> Option<Self> {
        (!ptr.is_null()).then_some(KPtr(ptr))
    }

    fn as_ptr(self) -> *const u8 {
        self.0
    }

    fn read<T: Copy>(self, offset: u32) -> Option<T> {
        // SAFETY: bpf_probe_read_kernel validates the address; it never faults.
        unsafe { bpf_probe_read_kernel(self.0.add(offset as usize).cast::<T>()) }.ok()
    }

    /// One helper call for the 16 bytes.
    fn addr(self, offset: u32) -> Option<[u32; 4]> {
        self.read::<[u32; 4]>(offset)
    }
}

/// Read by direct loads; only ever built from a trampoline program's typed argument or from a
/// struct pointer member read through one, which is what the verifier accepts loads from.
#[derive(Clone, Copy)]
pub struct BtfPtr(*const u8);

impl BtfPtr {
    /// `addr` as a pointer to the vmlinux struct of BTF id `btf_id`, through the
    /// `bpf_rdonly_cast` kfunc (6.2+): the verifier inlines the call into a move and types the
    /// result as an untrusted pointer to that struct, so loads through it are checked against
    /// its layout and guarded like every load here (a fault reads zero). Only to be reached
    /// with [`flags::PACKET_CAST`](ipvs_trace_common::offsets::flags::PACKET_CAST) set, which
    /// says the kernel has the kfunc, `btf_id` is a frozen global's value (the verifier wants
    /// a constant), and the loader turned the placeholder call into the kfunc's.
    pub fn cast(addr: u64, btf_id: u32) -> BtfPtr {
        // SAFETY: the placeholder helper number the loader rewrites into the kfunc (see
        // RDONLY_CAST_CALL), called with the kfunc's arguments; the verifier checks the call.
        let kfunc: unsafe extern "C" fn(u64, u32) -> *const u8 =
            unsafe { core::mem::transmute(RDONLY_CAST_CALL as usize) };
        BtfPtr(unsafe { kfunc(addr, btf_id) })
    }
}

impl KernelPtr for BtfPtr {
    const TYPED: bool = true;

    fn new(ptr: *const u8) -> Option<Self> {
        (!ptr.is_null()).then_some(BtfPtr(ptr))
    }

    fn as_ptr(self) -> *const u8 {
        self.0
    }

    /// Always `Some`: a load the JIT's exception entry catches yields zero, not an error (the
    /// pointers here come from the kernel's own arguments, so that takes a kernel bug).
    fn read<T: Copy>(self, offset: u32) -> Option<T> {
        // SAFETY: the verifier admits the load only at a member of the pointed-to struct's BTF
        // layout, and a load that faults is fixed up to zero. Volatile: one load of exactly
        // `T`, which LLVM must not widen, merge or split into something the verifier refuses.
        Some(unsafe { read_volatile(self.0.add(offset as usize).cast::<T>()) })
    }
}

/// The bytes of four words read by [`KernelPtr::addr`], in memory order.
pub fn addr_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}
