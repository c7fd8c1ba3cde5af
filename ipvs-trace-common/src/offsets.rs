//! Byte offsets of the kernel struct fields the probes read.
//!
//! The IPVS types live in the `ip_vs` module's split BTF, which aya's CO-RE cannot relocate, and
//! their layout differs between kernels (e.g. `ip_vs_dest.activeconns` is at 368 on 6.1 and 376
//! on 6.12). Userspace resolves every field by name from BTF at start and hands the result to the
//! programs as the read-only global [`crate::OFFSETS_GLOBAL`]; the programs never hard-code a
//! layout. Sizes are not carried: userspace checks each field has the size the probes assume.

/// One field offset per member; [`KernelOffsets::flags`] says which optional parts resolved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    // struct ip_vs_conn
    pub conn_caddr: u32,
    pub conn_vaddr: u32,
    pub conn_daddr: u32,
    pub conn_cport: u32,
    pub conn_vport: u32,
    pub conn_dport: u32,
    pub conn_af: u32,
    pub conn_daf: u32,
    pub conn_protocol: u32,
    pub conn_flags: u32,
    pub conn_state: u32,
    pub conn_dest: u32,
    pub conn_ipvs: u32,
    // struct ip_vs_dest
    pub dest_weight: u32,
    pub dest_activeconns: u32,
    /// `inactconns`, or `totalconns` when [`flags::DEST_TOTALCONNS`] is set.
    pub dest_inactconns: u32,
    pub dest_svc: u32,
    // struct ip_vs_service
    pub svc_addr: u32,
    pub svc_port: u32,
    pub svc_protocol: u32,
    pub svc_af: u32,
    pub svc_scheduler: u32,
    /// `struct netns_ipvs *ipvs`: the netns of a `no_dest` event, which has no entry.
    pub svc_ipvs: u32,
    // struct ip_vs_scheduler
    pub sched_name: u32,
    // struct netns_ipvs / struct net / struct ns_common
    pub ipvs_net: u32,
    pub net_ns_inum: u32,
    // struct ip_vs_iphdr
    pub iph_len: u32,
    pub iph_saddr: u32,
    pub iph_daddr: u32,
    // struct sk_buff
    pub skb_data: u32,
    /// vmlinux BTF type ids of `struct iphdr` and `struct tcphdr`, for the per-packet
    /// trampoline program's `bpf_rdonly_cast` (set with [`flags::PACKET_CAST`]).
    pub btf_iphdr: u32,
    pub btf_tcphdr: u32,
    // struct nf_conn (vmlinux BTF): the netfilter dataplanes' decision, a new DNAT binding
    pub ct_status: u32,
    /// `tuplehash[IP_CT_DIR_ORIGINAL].tuple`: client -> VIP.
    pub ct_orig: u32,
    /// `tuplehash[IP_CT_DIR_REPLY].tuple`: backend -> client once the binding is set up.
    pub ct_reply: u32,
    /// `ct_net.net`: the conntrack entry's network namespace.
    pub ct_net: u32,
    // struct nf_conntrack_tuple, relative to the tuple
    pub tuple_src_u3: u32,
    /// `src.u.all`: the source port (TCP, UDP, SCTP), network order.
    pub tuple_src_port: u32,
    pub tuple_l3num: u32,
    pub tuple_dst_u3: u32,
    pub tuple_dst_port: u32,
    pub tuple_protonum: u32,
    /// Bits from [`flags`].
    pub flags: u32,
}

impl KernelOffsets {
    /// All zero: the value compiled into the eBPF object before userspace overrides it.
    #[must_use]
    pub const fn zeroed() -> Self {
        KernelOffsets {
            conn_caddr: 0,
            conn_vaddr: 0,
            conn_daddr: 0,
            conn_cport: 0,
            conn_vport: 0,
            conn_dport: 0,
            conn_af: 0,
            conn_daf: 0,
            conn_protocol: 0,
            conn_flags: 0,
            conn_state: 0,
            conn_dest: 0,
            conn_ipvs: 0,
            dest_weight: 0,
            dest_activeconns: 0,
            dest_inactconns: 0,
            dest_svc: 0,
            svc_addr: 0,
            svc_port: 0,
            svc_protocol: 0,
            svc_af: 0,
            svc_scheduler: 0,
            svc_ipvs: 0,
            sched_name: 0,
            ipvs_net: 0,
            net_ns_inum: 0,
            iph_len: 0,
            iph_saddr: 0,
            iph_daddr: 0,
            skb_data: 0,
            btf_iphdr: 0,
            btf_tcphdr: 0,
            ct_status: 0,
            ct_orig: 0,
            ct_reply: 0,
            ct_net: 0,
            tuple_src_u3: 0,
            tuple_src_port: 0,
            tuple_l3num: 0,
            tuple_dst_u3: 0,
            tuple_dst_port: 0,
            tuple_protonum: 0,
            flags: 0,
        }
    }
}

/// Number of arguments of `ip_vs_conn_new` (`p`, `dest_af`, `daddr`, `dport`, `flags`, `dest`,
/// `fwmark`; the same from 4.x to 7.2): its fexit program finds the return value in the context
/// slot after them, which userspace checks against the prototype in BTF before loading.
pub const CONN_NEW_ARGS: usize = 7;

/// Number of arguments of `nf_nat_setup_info` (`ct`, `range`, `maniptype`; the same from 4.18
/// to 7.2): its fexit program finds the return value after them.
pub const NAT_SETUP_ARGS: usize = 3;

/// `NF_NAT_MANIP_DST`: the `maniptype` of a destination NAT binding (`NF_NAT_MANIP_SRC` is 0).
pub const NF_NAT_MANIP_DST: u32 = 1;
/// `NF_ACCEPT`: what `nf_nat_setup_info` returns when the binding is set up.
pub const NF_ACCEPT: u32 = 1;
/// `IPS_DST_NAT` in `nf_conn.status`: set by `nf_nat_setup_info` only when the binding changed
/// the destination, so a null binding (no rule matched) leaves it clear.
pub const IPS_DST_NAT: u64 = 1 << 5;

/// Bits of [`KernelOffsets::flags`].
pub mod flags {
    /// `ip_vs_dest` counts `totalconns` (active + inactive) instead of `inactconns`.
    pub const DEST_TOTALCONNS: u32 = 1 << 0;
    /// `ipvs_net` and `net_ns_inum` resolved: events carry the netns inode.
    pub const NETNS: u32 = 1 << 1;
    /// `ip_vs_conn.af` is a `u8` (7.x reorganised the struct), not a `u16`.
    pub const CONN_AF_U8: u32 = 1 << 2;
    /// `ip_vs_conn.daf` is a `u8` (7.x), not a `u16`.
    pub const CONN_DAF_U8: u32 = 1 << 3;
    /// `ip_vs_conn.dest` and `struct ip_vs_dest` resolved: events carry weight and counters.
    /// Unset in the built-in layout (no module BTF), where only the stable part is known.
    pub const DEST: u32 = 1 << 4;
    /// `ip_vs_service.scheduler` and `ip_vs_scheduler.name` resolved: events carry the
    /// scheduler's name. Unset in the built-in layout.
    pub const SCHEDULER: u32 = 1 << 5;
    /// Every `nf_conn` / `nf_conntrack_tuple` member resolved: the NAT probe may run.
    pub const NAT: u32 = 1 << 6;
    /// `nf_conn.ct_net` resolved: netfilter events carry the netns inode.
    pub const NAT_NETNS: u32 = 1 << 7;
    /// vmlinux has the `bpf_rdonly_cast` kfunc (6.2+) and `btf_iphdr`/`btf_tcphdr` are set: the
    /// per-packet trampoline program reads a packet's headers by loads, and the loader turns
    /// its [`RDONLY_CAST_CALL`](super::RDONLY_CAST_CALL) calls into calls of that kfunc.
    pub const PACKET_CAST: u32 = 1 << 8;
}

/// The helper number the eBPF code calls `bpf_rdonly_cast` by: no helper has it, and the
/// trampoline loader rewrites every call of it into a call of the kfunc (`BPF_PSEUDO_KFUNC_CALL`
/// with the kfunc's vmlinux BTF id), or, where the kernel has no such kfunc (and
/// [`flags::PACKET_CAST`] is unset, so the code is never reached), into a harmless helper.
/// Only trampoline programs call it; the kprobe programs aya loads never do.
pub const RDONLY_CAST_CALL: i32 = 0x7ffe_0001;

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, only `u32` fields, so no padding and every bit pattern is valid.
unsafe impl aya::Pod for KernelOffsets {}
