//! The decoded event: plain Rust types, every optional part an `Option`.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

pub use ipvs_trace_common::EventKind;

pub use crate::dataplane::Dataplane;

/// One load-balancing decision, as userspace sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Who decided: IPVS, or one of kube-proxy's netfilter modes. The kernel tells IPVS from
    /// netfilter; which netfilter mode programmed the destination is told by
    /// [`crate::events::classify`] (until then a netfilter event says
    /// [`Dataplane::Nftables`]).
    pub dataplane: Dataplane,
    /// `CLOCK_MONOTONIC` nanoseconds (see [`crate::clock::WallClock`]).
    pub timestamp_ns: u64,
    pub cpu: u32,
    /// Inode of the network namespace owning the IPVS table, when the kernel could read it.
    pub netns: Option<u32>,
    /// The `struct ip_vs_conn *` (a netfilter decision: the `struct nf_conn *`) as an opaque
    /// id; `None` when no connection entry exists (`no_dest`).
    pub conn: Option<u64>,
    pub proto: Proto,
    /// Client address. The port is 0 in a persistence template (templates are per client IP)
    /// and when the kernel could not read it (`no_dest` from a non-TCP/UDP packet).
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// The real server chosen; `None` for `no_dest`.
    pub backend: Option<SocketAddr>,
    /// Forwarding method of the connection entry; `None` without an entry.
    pub fwd: Option<FwdMethod>,
    /// Raw `ip_vs_conn.flags` (0 without an entry).
    pub flags: u32,
    /// Raw `ip_vs_conn.state` (protocol specific).
    pub state: u32,
    /// The virtual service's scheduler (`rr`, `wrr`, ...): read by the probe, or, without
    /// module BTF, taken from the IPVS tables ([`crate::ipvs::lookup`]). The kernel's own
    /// scheduler names are static strings: no allocation per event for them.
    pub scheduler: Option<Cow<'static, str>>,
    /// Weight and counters of the chosen real server.
    pub dest: Option<DestCounters>,
}

/// `ip_vs_dest` weight and connection counters (the `Weight ActiveConn InActConn` columns of
/// `ipvsadm -Ln`: connection counts, not bytes). Read by the probe at the time of the event;
/// without module BTF the weight is the configured one from the IPVS tables and the counters
/// are `None` (the tables' counters are of another moment: they would be invented here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestCounters {
    pub weight: i32,
    pub active_conns: Option<i32>,
    pub inactive_conns: Option<i32>,
}

/// IP protocol of the virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    /// Any other IP protocol number (IPVS only schedules the three above today).
    Other(u16),
}

impl Proto {
    #[must_use]
    pub fn from_number(number: u16) -> Proto {
        match number {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => Proto::Sctp,
            other => Proto::Other(other),
        }
    }

    #[must_use]
    pub fn number(self) -> u16 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Other(number) => number,
        }
    }
}

impl fmt::Display for Proto {
    /// `TCP`, `UDP`, `SCTP` as `ipvsadm` prints them; other protocols by number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.pad("TCP"),
            Proto::Udp => f.pad("UDP"),
            Proto::Sctp => f.pad("SCTP"),
            Proto::Other(number) => f.pad(&number.to_string()),
        }
    }
}

/// Forwarding method, `ip_vs_conn.flags & IP_VS_CONN_F_FWD_MASK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FwdMethod {
    /// NAT (kube-proxy's only method).
    Masq,
    /// The real server is on this host.
    Local,
    /// IP-in-IP.
    Tunnel,
    /// Direct routing (DR).
    Route,
    /// Packets for a cache cluster pass through unchanged.
    Bypass,
    /// A value the kernel does not define (5..=7); shown by number rather than dropped.
    Unknown(u8),
}

impl FwdMethod {
    #[must_use]
    pub fn from_flags(flags: u32) -> FwdMethod {
        match flags & ipvs_trace_common::event::CONN_F_FWD_MASK {
            0 => FwdMethod::Masq,
            1 => FwdMethod::Local,
            2 => FwdMethod::Tunnel,
            3 => FwdMethod::Route,
            4 => FwdMethod::Bypass,
            other => FwdMethod::Unknown(other as u8),
        }
    }
}

impl fmt::Display for FwdMethod {
    /// The names `ipvsadm -Ln` prints in its `Forward` column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwdMethod::Masq => f.pad("Masq"),
            FwdMethod::Local => f.pad("Local"),
            FwdMethod::Tunnel => f.pad("Tunnel"),
            FwdMethod::Route => f.pad("Route"),
            FwdMethod::Bypass => f.pad("Bypass"),
            FwdMethod::Unknown(value) => f.pad(&format!("fwd{value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwd_method_uses_the_low_three_bits() {
        assert_eq!(FwdMethod::from_flags(0x0000), FwdMethod::Masq);
        assert_eq!(FwdMethod::from_flags(0x1001), FwdMethod::Local);
        assert_eq!(FwdMethod::from_flags(0x0102), FwdMethod::Tunnel);
        assert_eq!(FwdMethod::from_flags(0x0003), FwdMethod::Route);
        assert_eq!(FwdMethod::from_flags(0x0004), FwdMethod::Bypass);
        assert_eq!(FwdMethod::from_flags(0x0007), FwdMethod::Unknown(7));
        assert_eq!(FwdMethod::Unknown(7).to_string(), "fwd7");
        assert_eq!(format!("{:<6}|", FwdMethod::Route), "Route |");
    }

    #[test]
    fn proto_names_and_numbers() {
        for number in [6, 17, 132, 47] {
            assert_eq!(Proto::from_number(number).number(), number);
        }
        assert_eq!(Proto::Sctp.to_string(), "SCTP");
        assert_eq!(Proto::Other(47).to_string(), "47");
        assert_eq!(format!("{:<5}|", Proto::Udp), "UDP  |");
    }
}
