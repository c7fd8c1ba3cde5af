//! A new TCP connection that reuses an existing entry: event `reused`.
//!
//! When a SYN finds an entry for its tuple (a client reconnecting from the same ip:port while the
//! old entry lingers in `TIME_WAIT` or `CLOSE`, with `net.ipv4.vs.conn_reuse_mode=0`, or under
//! persistence), IPVS forwards it to the old entry's destination without scheduling, and
//! `ipvsadm --stats` does not count it. The state transition is the only place that sees it.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
use ipvs_trace_common::{offsets::flags, EventKind};

use crate::{
    emit, filter,
    kernel::{BtfPtr, KPtr, KernelPtr},
    maps::offset,
};

/// `IP_VS_DIR_INPUT`: a packet from the client.
const DIR_INPUT: i32 = 0;
/// `IP_VS_TCP_S_NONE`: a brand-new entry (the SYN that created it).
const TCP_S_NONE: u16 = 0;
/// `IP_VS_TCP_S_SYN_RECV`: a retransmitted SYN of a connection being set up.
const TCP_S_SYN_RECV: u16 = 3;
/// The version nibble of an IPv6 header.
const IP_VERSION_6: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
/// Offset of the flags byte in a TCP header.
const TCP_FLAGS_OFFSET: u32 = 13;

/// `static void tcp_state_transition(struct ip_vs_conn *cp, int direction,
///     const struct sk_buff *skb, struct ip_vs_proto_data *pd)`
/// (`net/netfilter/ipvs/ip_vs_proto_tcp.c`, called through `pp->state_transition`; checked on
/// Debian 6.1 and 6.12; a 2026 stable backport appends a fifth argument, the first three are
/// unchanged).
///
/// Runs for every TCP packet IPVS handles (in both directions), so it filters on what costs
/// least first, and each read below is there because the test before it could not decide:
/// 1. the direction: an argument, a register, no read; replies (half the packets) stop here;
/// 2. `cp->state` (one read): the SYN that created the entry (`NONE`) and its retransmissions
///    (`SYN_RECV`) are `new`, not reuse; every other state goes on, since a SYN on an entry in
///    any of them (`ESTABLISHED` included: a client that reused a port the server still holds)
///    is forwarded unscheduled;
/// 3. `skb->data` (one read): where the packet starts;
/// 4. the packet's headers ([`is_bare_syn`]): only a SYN without ACK is a new connection.
///    Two loads in the fentry program where the kernel has `bpf_rdonly_cast` (6.2+), else one
///    helper read of the headers.
///
/// So a packet in the client's direction of an existing entry costs two member reads and two
/// header loads in the fentry program (helper calls in the kprobe, and for the headers on
/// 6.1), a reply none; only a reused SYN goes on to the filter and the record.
#[kprobe]
pub fn tcp_state_transition(ctx: ProbeContext) -> u32 {
    if let Some(direction) = ctx.arg::<i32>(1) {
        let _ = state_transition::<_, KPtr>(&ctx, direction, || Some((ctx.arg(0)?, ctx.arg(2)?)));
    }
    0
}

/// The same through a BPF trampoline (`fentry`): no trap per packet, the arguments are loads
/// from the context, and `cp` and `skb` are typed, so their members are loads too.
#[fentry(function = "tcp_state_transition")]
pub fn tcp_state_transition_fentry(ctx: FEntryContext) -> u32 {
    let direction: i32 = ctx.arg(1);
    let _ = state_transition::<_, BtfPtr>(&ctx, direction, || Some((ctx.arg(0), ctx.arg(2))));
    0
}

/// `args` gives `cp` and `skb`, taken only once the direction is the client's.
fn state_transition<C: EbpfContext, K: KernelPtr>(
    ctx: &C,
    direction: i32,
    args: impl FnOnce() -> Option<(*const u8, *const u8)>,
) -> Option<()> {
    if direction != DIR_INPUT {
        return None;
    }
    let (cp, skb) = args()?;
    let cp = K::new(cp)?;
    let state = cp.read::<u16>(offset!(conn_state))?;
    if state == TCP_S_NONE || state == TCP_S_SYN_RECV {
        return None;
    }
    let data = K::new(skb)?.bytes_ptr(offset!(skb_data))?;
    if !is_bare_syn::<K>(data)? {
        return None;
    }
    // A reused connection now: a decision, filtered like the others (after the tests above,
    // which leave out every other packet for less).
    if !filter::wants(EventKind::Reused) || !filter::conn_passes(cp) {
        return None;
    }
    emit::record(ctx, EventKind::Reused, |event| {
        emit::fill_from_conn(event, cp)
    });
    Some(())
}

/// How many bytes of the packet [`tcp_flags_by_helper`] reads at once: enough for the TCP
/// flags after an IPv4 header without options (byte 33) and after an IPv6 header (byte 53).
/// Past the packet's own bytes in a short packet, the read stays in the skb's head buffer,
/// which always ends with its `skb_shared_info`.
const HEADERS: usize = 56;

/// Whether the packet whose network header is at `data` is a TCP SYN without ACK. At the IPVS
/// hooks `skb->data` points at the network header; the kernel finds the TCP header the same
/// way (`ip_hdrlen` for IPv4, a fixed 40 bytes for IPv6; in the client's direction the
/// packet's family is the entry's).
fn is_bare_syn<K: KernelPtr>(data: KPtr) -> Option<bool> {
    let flags = if K::TYPED && offset!(flags) & flags::PACKET_CAST != 0 {
        tcp_flags_by_loads(data)
    } else {
        tcp_flags_by_helper(data)?
    };
    Some(flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0)
}

/// The trampoline program's way where the kernel has `bpf_rdonly_cast` (6.2+): two loads
/// through the headers cast to `struct iphdr` and `struct tcphdr`, a few instructions, where
/// the helper's call costs about 160 (lab, 6.12) on every client packet of an established
/// entry. A load that faults reads zero: no SYN. The first byte is the version and header
/// length of IPv4, and the version of IPv6 too.
fn tcp_flags_by_loads(data: KPtr) -> u8 {
    let data = data.as_ptr() as u64;
    let first = BtfPtr::cast(data, offset!(btf_iphdr))
        .read::<u8>(0)
        .unwrap_or(0);
    let header_len = if first >> 4 == IP_VERSION_6 {
        40
    } else {
        u64::from(first & 0x0f) * 4
    };
    BtfPtr::cast(data + header_len, offset!(btf_tcphdr))
        .read::<u8>(TCP_FLAGS_OFFSET)
        .unwrap_or(0)
}

/// The kprobe's way, and the trampoline's without the kfunc: one helper read for the common
/// headers, a second for an IPv4 header with options; the indices are constants, which the
/// 5.10 verifier needs on the stack.
fn tcp_flags_by_helper(data: KPtr) -> Option<u8> {
    let headers = data.read::<[u8; HEADERS]>(0)?;
    let first = headers[0];
    if first >> 4 == IP_VERSION_6 {
        Some(headers[40 + TCP_FLAGS_OFFSET as usize])
    } else if first & 0x0f == 5 {
        Some(headers[20 + TCP_FLAGS_OFFSET as usize])
    } else {
        data.read::<u8>(u32::from(first & 0x0f) * 4 + TCP_FLAGS_OFFSET)
    }
}
