//! Connection entries as IPVS creates them: events `new` and `template`.

use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
    EbpfContext,
};
use ipvs_trace_common::{
    event::{ConnEvent, CONN_F_TEMPLATE},
    EventKind,
};

use crate::{emit, filter, kernel::KPtr, maps::offset};

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
/// the kind costs no read here. The return value comes from `bpf_get_func_ret` (5.17+), which,
/// unlike a fixed slot, does not depend on the number of arguments.
#[fexit(function = "ip_vs_conn_new")]
pub fn ip_vs_conn_new_fexit(ctx: FExitContext) -> u32 {
    let flags: u32 = ctx.arg(4);
    if let Some(cp) = ctx.ret::<*const u8>().ok().and_then(KPtr::new) {
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

fn conn_new<C: EbpfContext>(ctx: &C, cp: KPtr, kind: EventKind) {
    if !filter::wants(kind) || !filter::conn_passes(cp) {
        return;
    }
    emit::record(ctx, kind, |event: &mut ConnEvent| {
        emit::fill_from_conn(event, cp)
    });
}
