//! Maps and the read-only offsets global, named by the constants in `ipvs_trace_common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use ipvs_trace_common::{
    drop,
    filter::{NamedKey, NAMED_MAX},
    KernelFilter, KernelOffsets, DEFAULT_RING_SIZE,
};

/// Records to userspace. 256 KiB holds ~1,900 records; userspace may resize it before load
/// (`--ring-size`).
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_SIZE, 0);

/// [`EVENTS`]'s byte size, as userspace created it (a read-only global: a constant to the
/// verifier, where `bpf_ringbuf_query(BPF_RB_RING_SIZE)` is a helper call per record).
#[unsafe(no_mangle)]
pub static RING_SIZE: u64 = DEFAULT_RING_SIZE as u64;

/// Reads [`RING_SIZE`]; volatile for the reason [`offset!`] is.
pub fn ring_size() -> u64 {
    // SAFETY: a static; the pointer is valid and aligned.
    unsafe { core::ptr::read_volatile(&raw const RING_SIZE) }
}

/// The network namespace (its inode number) whose DNAT bindings the NAT probe reports, set by
/// userspace at load to its own: kube-proxy programs the node's namespace only, and a pod's
/// own rules (a service mesh's `REDIRECT` of every outgoing connection) are no Service's
/// decision. 0: every namespace. A read-only global, a constant to the verifier.
#[unsafe(no_mangle)]
pub static NAT_NETNS: u32 = 0;

/// Reads [`NAT_NETNS`]; volatile for the reason [`offset!`] is.
pub fn nat_netns() -> u32 {
    // SAFETY: a static; the pointer is valid and aligned.
    unsafe { core::ptr::read_volatile(&raw const NAT_NETNS) }
}

/// Drop counters per CPU, indexed by `ipvs_trace_common::drop`.
#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::SLOTS, 0);

/// What the probes deliver (one entry), written by userspace before it attaches them and
/// never after: a map rather than a global so that a later version can change it live.
#[map(name = "FILTER")]
pub static FILTER: Array<KernelFilter> = Array::with_max_entries(1, 0);

/// The VIPs the name filters resolve to (see `filter::test::NAMES`).
///
/// Preallocated, as every hash map a kprobe uses must be: on 5.10 the verifier answers a
/// kprobe program using a `BPF_F_NO_PREALLOC` map with `WARN_ONCE("trace type BPF program
/// uses run-time allocation")`, a kernel warning that taints the kernel (and panics a node
/// booted with `panic_on_warn`), and a PREEMPT_RT kernel refuses the load. Userspace sizes
/// the maps at load: [`NAMED_MAX`] entries with name filters, one without.
#[map(name = "NAMED_VIPS")]
pub static NAMED_VIPS: HashMap<NamedKey, u8> = HashMap::with_max_entries(NAMED_MAX, 0);

/// The pod IPs the name filters resolve to, as backend or client (preallocated and sized as
/// [`NAMED_VIPS`]).
#[map(name = "NAMED_IPS")]
pub static NAMED_IPS: HashMap<NamedKey, u8> = HashMap::with_max_entries(NAMED_MAX, 0);

/// The kprobe path of the NAT probe: the `struct nf_conn *` of a destination binding being set
/// up, by task (`pid_tgid`), from `nf_nat_setup_info`'s entry to its return. LRU: an entry
/// whose return was missed ages out instead of filling the map.
#[map(name = "NAT_PENDING")]
pub static NAT_PENDING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Field offsets, filled by userspace from BTF before the programs are loaded.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

/// Reads one member of [`OFFSETS`].
///
/// The volatile read keeps the compiler from folding the all-zero initial value into the code:
/// the real value is only known once userspace has rewritten `.rodata` at load time.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: OFFSETS is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) }
    };
}
pub(crate) use offset;

/// Adds one to drop counter `slot` of the current CPU.
pub fn count_drop(slot: u32) {
    if let Some(counter) = LOST.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot: no other program touches it while we run on this CPU.
        unsafe { *counter += 1 };
    }
}
