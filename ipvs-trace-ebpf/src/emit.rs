//! Building records in the ring buffer.
//!
//! A record is reserved first and filled in place (no copy through the 512-byte stack). A failed
//! reservation or a failed mandatory read is counted in [`crate::maps::LOST`], so userspace can
//! always say how many decisions it did not see.
//!
//! Records are committed without waking the reader, which collects them on a short timer
//! (`ipvs-trace/src/events/reader.rs`), unless the ring is filling up: a wakeup per record costs
//! an irq_work and a context switch per connection, more than the probe itself.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes},
    EbpfContext,
};
use core::mem::MaybeUninit;

use aya_log_ebpf::warn;
use ipvs_trace_common::{drop, event::valid, offsets::flags, ConnEvent, EventKind};

use crate::{
    kernel::{addr_bytes, KernelPtr},
    maps::{count_drop, offset, ring_size, EVENTS},
};

/// Reserves a zeroed record of `kind` with its header filled, then lets `fill` complete it.
/// `fill` returning `None` means a mandatory read failed: the record is discarded, counted, and
/// reported through aya-log, since it points at a layout problem rather than load.
pub fn record<C: EbpfContext>(
    ctx: &C,
    kind: EventKind,
    fill: impl FnOnce(&mut ConnEvent) -> Option<()>,
) {
    let Some(mut entry) = EVENTS.reserve::<ConnEvent>(0) else {
        count_drop(drop::RING_FULL);
        return;
    };
    let event = zeroed(&mut entry);
    event.header.kind = kind as u32;
    // SAFETY: plain helper calls without arguments.
    event.header.cpu = unsafe { bpf_get_smp_processor_id() };
    event.header.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    if fill(event).is_some() {
        entry.submit(wakeup());
    } else {
        entry.discard(0);
        count_drop(drop::READ_ERROR);
        warn!(
            ctx,
            "reading kernel memory failed; dropped an event of kind {}", kind as u32
        );
    }
}

/// Zeroes a reserved record in 8-byte stores and hands it out.
///
/// Not `write(ConnEvent::zeroed())`: a store of the whole 136-byte struct compiles to a call to
/// `memset`, which on BPF is compiler_builtins' byte loop, 132 iterations of five
/// instructions. Measured on 6.12 (bpf_stats under icount), that loop was about 700 of the 1,718
/// instructions a record cost. Volatile stores keep LLVM from turning these back into the same
/// call.
fn zeroed(record: &mut MaybeUninit<ConnEvent>) -> &mut ConnEvent {
    const WORDS: usize = size_of::<ConnEvent>() / 8;
    const _: () = assert!(size_of::<ConnEvent>().is_multiple_of(8) && align_of::<ConnEvent>() == 8);
    let words = record.as_mut_ptr().cast::<u64>();
    for i in 0..WORDS {
        // SAFETY: `record` is a reservation of size_of::<ConnEvent>() bytes, 8-byte aligned
        // (ring records start 8-byte aligned and ConnEvent's alignment is 8), so every word
        // is inside it.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte is now zero, a valid ConnEvent (plain integers and byte arrays).
    unsafe { record.assume_init_mut() }
}

/// The ring's fill level, as a fraction `1 / FILLING` of its size, from which a record wakes
/// the reader at once.
///
/// Below it nobody is woken: the reader drains the ring on its timer (every 50 ms), so a
/// record waits at most that long. From it on, every record forces a wakeup, so a burst that
/// outruns the timer still gets a reader with 7/8 of the ring left to fill before records are
/// lost (and counted).
const FILLING: u64 = 8;

/// Submit flags for a record: no wakeup while the ring holds less than `1 / FILLING` of its
/// size, a forced one from there on. The kernel's default (flags 0) wakes the reader for every
/// record committed while it is caught up, which on a busy node is nearly every record.
fn wakeup() -> u64 {
    // Bytes not consumed yet (the record being submitted included); the ring's size is the
    // constant userspace set, not a second query.
    let pending = EVENTS.query(u64::from(BPF_RB_AVAIL_DATA));
    if pending >= ring_size() / FILLING {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Fills a record from a `struct ip_vs_conn`: the tuple is mandatory, the destination's
/// counters, the scheduler name and the netns are best effort (flagged in `valid`).
pub fn fill_from_conn<K: KernelPtr>(event: &mut ConnEvent, cp: K) -> Option<()> {
    event.conn = cp.addr_value();
    event.client_addr = addr_bytes(cp.addr(offset!(conn_caddr))?);
    event.vip_addr = addr_bytes(cp.addr(offset!(conn_vaddr))?);
    event.backend_addr = addr_bytes(cp.addr(offset!(conn_daddr))?);
    event.client_port = cp.be16(offset!(conn_cport))?;
    event.vip_port = cp.be16(offset!(conn_vport))?;
    event.backend_port = cp.be16(offset!(conn_dport))?;
    event.af = conn_family(cp, offset!(conn_af), flags::CONN_AF_U8)?;
    event.daf = conn_family(cp, offset!(conn_daf), flags::CONN_DAF_U8)?;
    event.protocol = cp.read::<u16>(offset!(conn_protocol))?;
    event.flags = cp.read::<u32>(offset!(conn_flags))?;
    event.state = u32::from(cp.read::<u16>(offset!(conn_state))?);
    event.valid = valid::BACKEND | valid::CLIENT_PORT;

    // Without the destination's layout (no module BTF) the pointer is not followed: userspace
    // fills what the IPVS tables say. A bypass entry has no destination; the record is still
    // worth having.
    if offset!(flags) & flags::DEST != 0 {
        if let Some(dest) = cp.ptr(offset!(conn_dest)) {
            fill_dest(event, dest);
        }
    }
    fill_netns(event, cp, offset!(conn_ipvs));
    Some(())
}

/// An address family member of `ip_vs_conn`: a `u16` until 6.x, a `u8` in 7.x, as userspace
/// found in BTF and flagged with `u8_flag`.
pub fn conn_family<K: KernelPtr>(cp: K, offset: u32, u8_flag: u32) -> Option<u16> {
    if offset!(flags) & u8_flag != 0 {
        cp.read::<u8>(offset).map(u16::from)
    } else {
        cp.read::<u16>(offset)
    }
}

/// Counters of the chosen real server and, through its service, the scheduler's name.
fn fill_dest<K: KernelPtr>(event: &mut ConnEvent, dest: K) {
    let counters = (|| {
        let weight = dest.read::<i32>(offset!(dest_weight))?;
        let active = dest.read::<i32>(offset!(dest_activeconns))?;
        let mut inactive = dest.read::<i32>(offset!(dest_inactconns))?;
        if offset!(flags) & flags::DEST_TOTALCONNS != 0 {
            // Kernels with the 2026 backport count all connections instead of inactive ones.
            inactive = inactive.wrapping_sub(active);
        }
        Some((weight, active, inactive))
    })();
    if let Some((weight, active, inactive)) = counters {
        event.weight = weight;
        event.active_conns = active;
        event.inactive_conns = inactive;
        event.valid |= valid::DEST;
    }
    if let Some(svc) = dest.ptr(offset!(dest_svc)) {
        fill_scheduler(event, svc);
    }
}

/// `svc->scheduler->name`, NUL-padded into `event.scheduler`, when that layout is known.
pub fn fill_scheduler<K: KernelPtr>(event: &mut ConnEvent, svc: K) {
    if offset!(flags) & flags::SCHEDULER == 0 {
        return;
    }
    let Some(name) = svc
        .ptr(offset!(svc_scheduler))
        .and_then(|sched| sched.bytes_ptr(offset!(sched_name)))
    else {
        return;
    };
    // SAFETY: the helper validates the source address and bounds the copy by the slice.
    if unsafe { bpf_probe_read_kernel_str_bytes(name.as_ptr(), &mut event.scheduler) }.is_ok() {
        event.valid |= valid::SCHEDULER;
    }
}

/// `owner->ipvs->net->ns.inum` (owner a connection or a service, `ipvs` at `ipvs_offset`): the
/// network namespace that owns the IPVS table. Best effort, flagged in `valid`.
pub fn fill_netns<K: KernelPtr>(event: &mut ConnEvent, owner: K, ipvs_offset: u32) {
    if offset!(flags) & flags::NETNS == 0 {
        return;
    }
    let inum = owner
        .ptr(ipvs_offset)
        .and_then(|ipvs| ipvs.ptr(offset!(ipvs_net)))
        .and_then(|net| net.read::<u32>(offset!(net_ns_inum)));
    if let Some(inum) = inum {
        event.header.netns = inum;
        event.valid |= valid::NETNS;
    }
}
