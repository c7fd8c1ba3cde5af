//! Every kernel struct member the probes read, in one table: where each lands in
//! [`KernelOffsets`], the size the probes read, the names kernels have given it, and whether
//! the tracer can run without it.

use ipvs_trace_common::offsets::{flags, KernelOffsets};

/// Whether the tracer can run without a field.
#[derive(Clone, Copy)]
pub(super) enum Need {
    Required,
    /// Without it the tracer runs, without `flag`: the flag is set only when every field that
    /// carries it resolves. `lost` says what the user goes without.
    Optional {
        flag: u32,
        lost: &'static str,
    },
}

/// One row of [`FIELDS`].
pub(super) struct Field {
    pub(super) strukt: &'static str,
    /// The member's names, tried in order, each with the flag to set when it is the one found
    /// (kernels rename fields; the probes branch on the flag).
    pub(super) names: &'static [(&'static str, u32)],
    /// Size in bytes the probes read.
    pub(super) size: u32,
    /// Another size the probes also read, and the flag that tells them so (`(0, 0)`: none).
    pub(super) narrow: (u32, u32),
    pub(super) need: Need,
    pub(super) slot: fn(&mut KernelOffsets) -> &mut u32,
}

const fn required(
    strukt: &'static str,
    names: &'static [(&'static str, u32)],
    size: u32,
    slot: fn(&mut KernelOffsets) -> &mut u32,
) -> Field {
    Field {
        strukt,
        names,
        size,
        narrow: (0, 0),
        need: Need::Required,
        slot,
    }
}

/// An address family member: a `u16` until 6.x, a `u8` in 7.x's reorganised `ip_vs_conn`.
const fn family(
    names: &'static [(&'static str, u32)],
    u8_flag: u32,
    slot: fn(&mut KernelOffsets) -> &mut u32,
) -> Field {
    Field {
        narrow: (1, u8_flag),
        ..required("ip_vs_conn", names, 2, slot)
    }
}

const NETNS: Need = Need::Optional {
    flag: flags::NETNS,
    lost: "events carry no network namespace inode (netns 0)",
};

/// Every field the probes read: struct, member name(s), size in bytes, destination slot.
/// Layouts checked against `include/net/ip_vs.h` of 6.1 and 6.12.
pub(super) const FIELDS: &[Field] = &[
    // struct ip_vs_conn: one connection entry, the return value of ip_vs_conn_new().
    required("ip_vs_conn", &[("caddr", 0)], 16, |o| &mut o.conn_caddr),
    required("ip_vs_conn", &[("vaddr", 0)], 16, |o| &mut o.conn_vaddr),
    required("ip_vs_conn", &[("daddr", 0)], 16, |o| &mut o.conn_daddr),
    required("ip_vs_conn", &[("cport", 0)], 2, |o| &mut o.conn_cport),
    required("ip_vs_conn", &[("vport", 0)], 2, |o| &mut o.conn_vport),
    required("ip_vs_conn", &[("dport", 0)], 2, |o| &mut o.conn_dport),
    family(&[("af", 0)], flags::CONN_AF_U8, |o| &mut o.conn_af),
    family(&[("daf", 0)], flags::CONN_DAF_U8, |o| &mut o.conn_daf),
    required("ip_vs_conn", &[("protocol", 0)], 2, |o| {
        &mut o.conn_protocol
    }),
    required("ip_vs_conn", &[("flags", 0)], 4, |o| &mut o.conn_flags),
    required("ip_vs_conn", &[("state", 0)], 2, |o| &mut o.conn_state),
    required("ip_vs_conn", &[("dest", 0)], 8, |o| &mut o.conn_dest),
    required("ip_vs_conn", &[("ipvs", 0)], 8, |o| &mut o.conn_ipvs),
    // struct ip_vs_dest: the real server (pod) a connection went to.
    required("ip_vs_dest", &[("weight", 0)], 4, |o| &mut o.dest_weight),
    required("ip_vs_dest", &[("activeconns", 0)], 4, |o| {
        &mut o.dest_activeconns
    }),
    // A 2026 stable backport replaced `inactconns` with `totalconns` (active + inactive).
    required(
        "ip_vs_dest",
        &[("inactconns", 0), ("totalconns", flags::DEST_TOTALCONNS)],
        4,
        |o| &mut o.dest_inactconns,
    ),
    required("ip_vs_dest", &[("svc", 0)], 8, |o| &mut o.dest_svc),
    // struct ip_vs_service: the virtual service (VIP:port).
    required("ip_vs_service", &[("addr", 0)], 16, |o| &mut o.svc_addr),
    required("ip_vs_service", &[("port", 0)], 2, |o| &mut o.svc_port),
    required("ip_vs_service", &[("protocol", 0)], 2, |o| {
        &mut o.svc_protocol
    }),
    required("ip_vs_service", &[("af", 0)], 2, |o| &mut o.svc_af),
    required("ip_vs_service", &[("scheduler", 0)], 8, |o| {
        &mut o.svc_scheduler
    }),
    // struct ip_vs_scheduler: `name` is a `char *`.
    required("ip_vs_scheduler", &[("name", 0)], 8, |o| &mut o.sched_name),
    // struct ip_vs_iphdr: the parsed header ip_vs_leave() gets.
    required("ip_vs_iphdr", &[("len", 0)], 4, |o| &mut o.iph_len),
    required("ip_vs_iphdr", &[("saddr", 0)], 16, |o| &mut o.iph_saddr),
    required("ip_vs_iphdr", &[("daddr", 0)], 16, |o| &mut o.iph_daddr),
    // struct sk_buff (vmlinux): packet data for the state-transition probes.
    required("sk_buff", &[("data", 0)], 8, |o| &mut o.skb_data),
    // cp->ipvs->net->ns.inum: the network namespace of the connection (svc->ipvs for no_dest).
    Field {
        strukt: "ip_vs_service",
        names: &[("ipvs", 0)],
        size: 8,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.svc_ipvs,
    },
    Field {
        strukt: "netns_ipvs",
        names: &[("net", 0)],
        size: 8,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.ipvs_net,
    },
    Field {
        strukt: "net",
        names: &[("ns.inum", 0)],
        size: 4,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.net_ns_inum,
    },
];
