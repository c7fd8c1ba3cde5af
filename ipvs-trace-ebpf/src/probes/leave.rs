//! Scheduling that found no real server: event `no_dest`.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
use ipvs_trace_common::{event::valid, EventKind};

use crate::{
    emit, filter,
    kernel::{addr_bytes, BtfPtr, KPtr, KernelPtr},
    maps::offset,
};

/// `int ip_vs_leave(struct ip_vs_service *svc, struct sk_buff *skb,
///     struct ip_vs_proto_data *pd, struct ip_vs_iphdr *iph)`
/// (`net/netfilter/ipvs/ip_vs_core.c`, global, not exported; checked on Debian 5.10, 6.1, 6.12
/// and 7.2).
///
/// Its only callers are the protocols' `conn_schedule` (TCP, UDP, SCTP), right after
/// `ip_vs_schedule()` returned no entry with `*ignored == 0`: the service was to be scheduled
/// but its scheduler found no destination (all real servers gone, weight 0, or overloaded).
/// `*ignored != 0` (a packet IPVS chose not to schedule, or a failed allocation) never gets
/// here. Hooking this entry alone costs nothing on the normal path, where a kprobe and
/// kretprobe pair on `ip_vs_schedule` ran for every new connection only to see this case.
#[kprobe]
pub fn ip_vs_leave(ctx: ProbeContext) -> u32 {
    if let (Some(svc), Some(skb), Some(iph)) = (ctx.arg(0), ctx.arg(1), ctx.arg(3)) {
        let _ = leave::<_, KPtr>(&ctx, svc, skb, iph);
    }
    0
}

/// The same through a BPF trampoline (`fentry`): the arguments are typed, read by loads.
#[fentry(function = "ip_vs_leave")]
pub fn ip_vs_leave_fentry(ctx: FEntryContext) -> u32 {
    let _ = leave::<_, BtfPtr>(&ctx, ctx.arg(0), ctx.arg(1), ctx.arg(3));
    0
}

fn leave<C: EbpfContext, K: KernelPtr>(
    ctx: &C,
    svc: *const u8,
    skb: *const u8,
    iph: *const u8,
) -> Option<()> {
    let svc = K::new(svc)?;
    let skb = K::new(skb)?;
    let iph = K::new(iph)?;
    if !filter::wants(EventKind::NoDest) || !passes_filter(svc, skb, iph) {
        return Some(());
    }
    emit::record(ctx, EventKind::NoDest, |event| {
        // The addresses the client used, as IPVS parsed them (for a fwmark service the
        // service has no address of its own).
        event.client_addr = addr_bytes(iph.addr(offset!(iph_saddr))?);
        event.vip_addr = addr_bytes(iph.addr(offset!(iph_daddr))?);
        event.af = svc.read::<u16>(offset!(svc_af))?;
        event.daf = event.af;
        event.protocol = svc.read::<u16>(offset!(svc_protocol))?;
        event.vip_port = svc.be16(offset!(svc_port))?;
        if let Some([sport, dport]) = ports(skb, iph) {
            event.client_port = u16::from_be(sport);
            event.vip_port = u16::from_be(dport);
            event.valid |= valid::CLIENT_PORT;
        }
        emit::fill_scheduler(event, svc);
        emit::fill_netns(event, svc, offset!(svc_ipvs));
        Some(())
    });
    Some(())
}

/// Ports from the transport header, which starts `iph->len` bytes after skb->data (network
/// order).
fn ports<K: KernelPtr>(skb: K, iph: K) -> Option<[u16; 2]> {
    let data = skb.bytes_ptr(offset!(skb_data))?;
    let l4 = iph.read::<i32>(offset!(iph_len))?;
    data.read::<[u16; 2]>(u32::try_from(l4).ok()?)
}

/// The kernel-side filter on what the record would hold; reads only when a test is set, and
/// lets the decision through when a read fails (the record then counts it as unreadable).
fn passes_filter<K: KernelPtr>(svc: K, skb: K, iph: K) -> bool {
    if !filter::active() {
        return true;
    }
    let read = || {
        let af = svc.read::<u16>(offset!(svc_af))?;
        let proto = svc.read::<u16>(offset!(svc_protocol))?;
        let client = iph.addr(offset!(iph_saddr))?;
        let vip = iph.addr(offset!(iph_daddr))?;
        let vport = match ports(skb, iph) {
            Some([_, dport]) => u16::from_be(dport),
            None => svc.be16(offset!(svc_port))?,
        };
        Some(filter::values_pass(&filter::Decision {
            af,
            proto,
            client: &client,
            vip: &vip,
            vport,
            backend: None,
        }))
    };
    read().unwrap_or(true)
}
