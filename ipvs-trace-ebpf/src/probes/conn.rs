//! Connection entries as IPVS creates them: events `new` and `template`.

use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
    EbpfContext,
};
use ipvs_trace_common::{
    event::{ConnEvent, CONN_F_TEMPLATE},
    offsets::CONN_NEW_ARGS,
    EventKind,
};

use crate::{
    emit, filter,
    kernel::{BtfPtr, KPtr, KernelPtr},
    maps::offset,
};

/// Return of
/// `struct ip_vs_conn *ip_vs_conn_new(const struct ip_vs_conn_param *p, int dest_af,
///     const union nf_inet_addr *daddr, __be16 dport, unsigned int flags,
///     struct ip_vs_dest *dest, __u32 fwmark)` (`net/netfilter/ipvs/ip_vs_conn.c`, exported;
/// checked on Debian 6.1 and 6.12).
///
/// Every entry IPVS creates passes here: scheduled connections (`ip_vs_schedule`), persistence
/// (`ip_vs_sched_persist`, templates included), bypass and sync. The entry is already bound to
/// its destination, so the destination's counters include this connection.
#[kretprobe]
pub fn ip_vs_conn_new(ctx: RetProbeContext) -> u32 {
    let cp: *const u8 = ctx.ret();
    if let Some(cp) = KPtr::new(cp) {
        // A kretprobe has the return value only: the kind is in the entry's flags.
        let kind = match cp.read::<u32>(offset!(conn_flags)) {
            Some(flags) => kind_of(flags),
            // Unreadable: the record's own read will count it.
            None => EventKind::New,
        };
        conn_new(&ctx, cp, kind);
    }
    0
}

/// The same function through a BPF trampoline (`fexit`): no trap, and the arguments as well as
/// the return value. `flags` (argument 4) carries `IP_VS_CONN_F_TEMPLATE` from the caller
/// (`ip_vs_sched_persist`); the entry only adds the destination's forwarding method to it, so
/// the kind costs no read here.
///
/// The return value is taken from its context slot, right after the arguments, rather than
/// from `bpf_get_func_ret`: the slot gives the verifier the pointer's type (`struct
/// ip_vs_conn *`), so every member is then one load ([`BtfPtr`]), where the helper's copy would
/// be a bare number read through a helper call each time. The slot's index is the number of
/// arguments, which userspace checks against the prototype in BTF before loading
/// (`loader/probes.rs`); a kernel with another count would be refused by the verifier anyway.
#[fexit(function = "ip_vs_conn_new")]
pub fn ip_vs_conn_new_fexit(ctx: FExitContext) -> u32 {
    let flags: u32 = ctx.arg(4);
    if let Some(cp) = BtfPtr::new(ctx.arg(CONN_NEW_ARGS)) {
        conn_new(&ctx, cp, kind_of(flags));
    }
    0
}

fn kind_of(flags: u32) -> EventKind {
    if flags & CONN_F_TEMPLATE != 0 {
        EventKind::Template
    } else {
        EventKind::New
    }
}

fn conn_new<C: EbpfContext, K: KernelPtr>(ctx: &C, cp: K, kind: EventKind) {
    if !filter::wants(kind) || !filter::conn_passes(cp) {
        return;
    }
    emit::record(ctx, kind, |event: &mut ConnEvent| {
        emit::fill_from_conn(event, cp)
    });
}
