//! The netfilter dataplanes' decision (kube-proxy's nftables and iptables modes): a new DNAT
//! binding, event `new`.
//!
//! There the Service's endpoint is picked by a random rule (`numgen random mod N vmap`, or
//! `statistic --mode random`) whose verdict leads to a `dnat to` the endpoint. The chosen
//! destination becomes kernel state once, when `nf_nat_setup_info` binds the new conntrack
//! entry: after it returns, the entry's reply tuple comes from the endpoint. That is the one
//! point both modes (and iptables-nft's xtables targets) pass through, once per connection,
//! whatever rule made the choice; later packets reuse the binding without calling it.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use ipvs_trace_common::{
    drop,
    event::{valid, DATAPLANE_NETFILTER},
    filter::AF_INET6,
    offsets::{flags, IPS_DST_NAT, NAT_SETUP_ARGS, NF_ACCEPT, NF_NAT_MANIP_DST},
    EventKind,
};

use crate::{
    emit, filter,
    kernel::{addr_bytes, BtfPtr, KPtr, KernelPtr},
    maps::{count_drop, nat_netns, offset, NAT_PENDING},
};

/// Exit of
/// `unsigned int nf_nat_setup_info(struct nf_conn *ct, const struct nf_nat_range2 *range,
///     enum nf_nat_manip_type maniptype)` (`net/netfilter/nf_nat_core.c`, exported by the
/// `nf_nat` module; the same prototype on Debian 5.10, 6.1, 6.12 and 7.2).
///
/// Called once per manipulation type for each new conntrack entry: by the NAT rules' `dnat`/
/// `snat`/`masquerade` (nftables' `nft_nat`, xtables' `DNAT` target), and, where no rule
/// matched, for a null binding (`__nf_nat_alloc_null_binding`). Only `NF_NAT_MANIP_DST` is a
/// load-balancing decision; a null binding (and an IPVS connection, which netfilter sees as one)
/// leaves `IPS_DST_NAT` clear, as the tuple did not change, so nothing is counted twice on a
/// node running IPVS beside the netfilter modes.
#[fexit(function = "nf_nat_setup_info")]
pub fn nf_nat_setup_info_fexit(ctx: FExitContext) -> u32 {
    let maniptype: u32 = ctx.arg(2);
    // The cheapest test first: half of the calls are source NAT.
    if maniptype != NF_NAT_MANIP_DST {
        return 0;
    }
    let ret: u32 = ctx.arg(NAT_SETUP_ARGS);
    if ret == NF_ACCEPT {
        if let Some(ct) = BtfPtr::new(ctx.arg(0)) {
            binding(&ctx, ct);
        }
    }
    0
}

/// Entry of the same function, for the kprobe path (no trampolines: 5.10, 6.1, or `--attach
/// kprobe`): a kretprobe sees only the return value, so the entry keeps `ct` for it, keyed by
/// the task. Source NAT is left out here already.
#[kprobe]
pub fn nf_nat_setup_info(ctx: ProbeContext) -> u32 {
    let (Some(ct), Some(maniptype)) = (ctx.arg::<u64>(0), ctx.arg::<u32>(2)) else {
        return 0;
    };
    if maniptype != NF_NAT_MANIP_DST {
        return 0;
    }
    let task = bpf_get_current_pid_tgid();
    // An entry already there is one this task never returned from: a softirq's call nested in
    // the task's own (whose binding then goes unseen) or a kretprobe the kernel missed. Either
    // way a decision is lost: counted, then replaced.
    if NAT_PENDING
        .insert(task, ct, u64::from(aya_ebpf::bindings::BPF_NOEXIST))
        .is_err()
    {
        count_drop(drop::READ_ERROR);
        let _ = NAT_PENDING.insert(task, ct, 0);
    }
    0
}

/// Return of the same function, paired with [`nf_nat_setup_info`] through [`NAT_PENDING`].
#[kretprobe]
pub fn nf_nat_setup_info_ret(ctx: RetProbeContext) -> u32 {
    let task = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(ct) = (unsafe { NAT_PENDING.get(task) }).copied() else {
        // Source NAT, which the entry left out.
        return 0;
    };
    let _ = NAT_PENDING.remove(task);
    let ret: u32 = ctx.ret();
    if ret == NF_ACCEPT {
        if let Some(ct) = KPtr::new(ct as *const u8) {
            binding(&ctx, ct);
        }
    }
    0
}

/// A connection's two tuples as the binding left them.
struct Binding {
    af: u16,
    proto: u16,
    client: [u32; 4],
    client_port: u16,
    vip: [u32; 4],
    vip_port: u16,
    backend: [u32; 4],
    backend_port: u16,
}

/// A destination binding just set up on `ct`: a record, unless it is a null binding or the
/// filter leaves it out.
fn binding<C: EbpfContext, K: KernelPtr>(ctx: &C, ct: K) {
    if offset!(flags) & flags::NAT == 0 {
        return;
    }
    let Some(status) = ct.read::<u64>(offset!(ct_status)) else {
        count_drop(drop::READ_ERROR);
        return;
    };
    if status & IPS_DST_NAT == 0 {
        return;
    }
    // Where the binding was made: outside kube-proxy's namespace it is no Service's decision
    // (not counted as filtered either: it was never one the user could ask for).
    let netns = if offset!(flags) & flags::NAT_NETNS != 0 {
        ct.ptr(offset!(ct_net))
            .and_then(|net| net.read::<u32>(offset!(net_ns_inum)))
    } else {
        None
    };
    let scope = nat_netns();
    if scope != 0 && netns.is_some_and(|inum| inum != scope) {
        return;
    }
    if !filter::wants(EventKind::New) {
        return;
    }
    let Some(b) = read_binding(ct) else {
        count_drop(drop::READ_ERROR);
        return;
    };
    if filter::active()
        && !filter::values_pass(&filter::Decision {
            af: b.af,
            proto: b.proto,
            client: &b.client,
            vip: &b.vip,
            vport: b.vip_port,
            backend: Some((b.af, &b.backend, b.backend_port)),
        })
    {
        return;
    }
    emit::record(ctx, EventKind::New, |event| {
        event.header.dataplane = DATAPLANE_NETFILTER;
        event.conn = ct.addr_value();
        event.af = b.af;
        event.daf = b.af;
        event.protocol = b.proto;
        event.client_addr = addr_bytes(b.client);
        event.client_port = b.client_port;
        event.vip_addr = addr_bytes(b.vip);
        event.vip_port = b.vip_port;
        event.backend_addr = addr_bytes(b.backend);
        event.backend_port = b.backend_port;
        event.valid = valid::BACKEND | valid::CLIENT_PORT;
        if let Some(inum) = netns {
            event.header.netns = inum;
            event.valid |= valid::NETNS;
        }
        Some(())
    });
}

/// Client and VIP from the original tuple, the endpoint from the reply tuple's source (the
/// binding rewrote it). Ports are `u.all`: the port for TCP, UDP and SCTP (for ICMP the echo id,
/// shown as it is).
fn read_binding<K: KernelPtr>(ct: K) -> Option<Binding> {
    let orig = offset!(ct_orig);
    let reply = offset!(ct_reply);
    let af = ct.read::<u16>(orig + offset!(tuple_l3num))?;
    let ipv6 = af == AF_INET6;
    Some(Binding {
        af,
        proto: u16::from(ct.read::<u8>(orig + offset!(tuple_protonum))?),
        client: addr(ct, orig + offset!(tuple_src_u3), ipv6)?,
        client_port: ct.be16(orig + offset!(tuple_src_port))?,
        vip: addr(ct, orig + offset!(tuple_dst_u3), ipv6)?,
        vip_port: ct.be16(orig + offset!(tuple_dst_port))?,
        backend: addr(ct, reply + offset!(tuple_src_u3), ipv6)?,
        backend_port: ct.be16(reply + offset!(tuple_src_port))?,
    })
}

/// A `union nf_inet_addr`: one word for IPv4 (the rest of the union is not the address's).
fn addr<K: KernelPtr>(ct: K, offset: u32, ipv6: bool) -> Option<[u32; 4]> {
    if ipv6 {
        ct.addr(offset)
    } else {
        Some([ct.read::<u32>(offset)?, 0, 0, 0])
    }
}
