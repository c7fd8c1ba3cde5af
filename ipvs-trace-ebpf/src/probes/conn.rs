//! Connection entries as IPVS creates them: events `new` and `template`.

use aya_ebpf::{macros::kretprobe, programs::RetProbeContext};
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
        conn_new(&ctx, cp);
    }
    0
}

fn conn_new(ctx: &RetProbeContext, cp: KPtr) {
    // The flags decide the kind before the record is reserved; an unreadable entry is counted
    // as a read error like any other failed record.
    let kind = match cp.read::<u32>(offset!(conn_flags)) {
        Some(flags) if flags & CONN_F_TEMPLATE != 0 => EventKind::Template,
        _ => EventKind::New,
    };
    if !filter::wants(kind) || !filter::conn_passes(cp) {
        return;
    }
    emit::record(ctx, kind, |event: &mut ConnEvent| {
        emit::fill_from_conn(event, cp)
    });
}
