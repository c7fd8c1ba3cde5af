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
            flags: 0,
        }
    }
}

/// Bits of [`KernelOffsets::flags`].
/// Number of arguments of `ip_vs_conn_new` (`p`, `dest_af`, `daddr`, `dport`, `flags`, `dest`,
/// `fwmark`; the same from 4.x to 7.2): its fexit program finds the return value in the context
/// slot after them, which userspace checks against the prototype in BTF before loading.
pub const CONN_NEW_ARGS: usize = 7;

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
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, only `u32` fields, so no padding and every bit pattern is valid.
unsafe impl aya::Pod for KernelOffsets {}
